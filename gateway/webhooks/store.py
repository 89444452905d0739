"""Verified webhook deliveries (``webhook_events``, migration 0006) on the journal's SQLite file."""

from __future__ import annotations

import sqlite3
import threading
import time
from typing import Any

__all__ = ["WebhookEvents"]

_FINAL = ("succeeded", "failed")


class WebhookEvents:
    """Deduplicated deliveries: one row per (vendor, job id, status); readable by every replica."""

    def __init__(self, path: str) -> None:
        if path == ":memory:":
            raise ValueError("webhooks need a journal file (the server and its followers share it)")
        self._lock = threading.Lock()
        self._db = sqlite3.connect(path, timeout=5.0, isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA busy_timeout = 5000")

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def record(self, *, vendor: str, job_id: str, status: str, clip_key: str, trusted: bool, body: bytes) -> bool:
        """Store a delivery; ``False`` when the same (vendor, job id, status) was stored before."""
        with self._lock:
            cursor = self._db.execute(
                "INSERT OR IGNORE INTO webhook_events (vendor, job_id, status, clip_key, trusted, body, received_at)"
                " VALUES (?, ?, ?, ?, ?, ?, ?)", (vendor, job_id, status, clip_key, int(trusted), body, time.time()))
            return cursor.rowcount == 1

    def latest_trusted(self, vendor: str, job_id: str) -> bytes | None:
        """The body of a trusted final delivery for the job (the first received), if any."""
        with self._lock:
            row = self._db.execute(
                "SELECT body FROM webhook_events WHERE vendor = ? AND job_id = ? AND trusted = 1 AND status IN (?, ?)"
                " ORDER BY received_at LIMIT 1", (vendor, job_id, *_FINAL)).fetchone()
        return None if row is None else bytes(row[0])

    def count(self, **where: Any) -> int:
        """Rows matching ``where`` (column = value), for tests and metrics."""
        clause = " AND ".join(f"{name} = ?" for name in where) or "1"
        with self._lock:
            return int(self._db.execute(f"SELECT COUNT(*) FROM webhook_events WHERE {clause}",
                                        tuple(where.values())).fetchone()[0])
