"""Verified webhook deliveries (``webhook_events``, migration 0006) in the journal's database (SQLite or
PostgreSQL: the SQL is the storage interface's, ``gateway.store.server_rows``)."""

from __future__ import annotations

from typing import Any

__all__ = ["WebhookEvents"]


class WebhookEvents:
    """Deduplicated deliveries: one row per (vendor, job id, status); readable by every replica."""

    def __init__(self, journal: Any) -> None:
        if getattr(journal, "path", None) == ":memory:":
            raise ValueError("webhooks need a journal file or database (the server and its followers share it)")
        self.journal = journal

    def close(self) -> None:
        """Nothing to close: the journal's connections belong to the gateway."""

    def record(self, *, vendor: str, job_id: str, status: str, clip_key: str, trusted: bool, body: bytes) -> bool:
        """Store a delivery (durable before the vendor is answered); ``False`` when the same (vendor, job
        id, status) was stored before."""
        return bool(self.journal.webhook_record(vendor=vendor, job_id=job_id, status=status, clip_key=clip_key,
                                                trusted=trusted, body=body))

    def latest_trusted(self, vendor: str, job_id: str) -> bytes | None:
        """The body of a trusted final delivery for the job (the first received), if any."""
        body: bytes | None = self.journal.webhook_latest_trusted(vendor, job_id)
        return body

    def count(self, **where: Any) -> int:
        """Rows matching ``where`` (column = value), for tests and metrics."""
        return int(self.journal.webhook_count(**where))
