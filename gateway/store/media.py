"""The journal's record of downloaded clips (migration 0007): facts per download, and finished clips
nobody has downloaded yet (whose vendor URL may expire).

Two records, each with one job: the ``media`` table logs every download with its probed facts (defective
ones included: they were paid, and a failover may follow); ``clips.media_json`` (migration 0003,
``Journal.record_media``) holds the clip's accepted file (sha256, size, path), which the CLI compares
against a file already on disk. ``record_download`` writes both.

``MediaJournal`` is mixed into ``Journal``; it uses only the journal's ``_tx``/``_query`` and the
``clips``/``media`` tables, so another backend implements the same three methods over its own SQL.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from gateway.store.records import Durability

__all__ = ["MediaJournal", "MediaRecord", "PendingClip", "record_download"]


def record_download(queries: Any, tx: Any, *, clip_key: str, provider: str, job_id: str, video_url: str,
                    saved_to: str | None, facts: Any) -> bool:
    """The store operation behind ``record_download`` (both faces, both backends): the ``media`` row
    and, for a saved clip that is not defective, ``clips.media_json`` — in one transaction."""
    verdict = "defective" if facts.problems else ("ok" if facts.verified else "unverified")
    now = datetime.now(UTC).isoformat(timespec="microseconds")
    if not tx.run(
            "INSERT INTO media (clip_key, provider, job_id, video_url, saved_to, verdict, size_bytes, sha256,"
            " duration_s, facts_json, created_at) SELECT ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?"
            " WHERE EXISTS (SELECT 1 FROM clips WHERE key = ?)",
            (clip_key, provider, job_id, video_url, saved_to, verdict, facts.size_bytes, facts.sha256,
             facts.duration_s, facts.model_dump_json(), now, clip_key)):
        return False
    if saved_to is not None and verdict != "defective":
        queries.record_media(tx, clip_key, {
            "sha256": facts.sha256, "size": facts.size_bytes, "path": saved_to, "verified": facts.verified,
            "duration_s": facts.duration_s, "job_id": job_id})
    return True


@dataclass(frozen=True)
class MediaRecord:
    """One download of a clip: ``verdict`` is ``ok``, ``unverified`` (no PyAV) or ``defective``."""

    clip_key: str
    provider: str
    job_id: str
    video_url: str
    saved_to: str | None
    verdict: str
    size_bytes: int
    sha256: str
    duration_s: float | None
    facts: dict[str, Any]
    created_at: str


@dataclass(frozen=True)
class PendingClip:
    """A finished clip with no saved download: where it is and until when (``expires_at`` UTC ISO, or
    ``None`` when the vendor documents no retention)."""

    clip_key: str
    provider: str
    job_id: str
    video_url: str
    expires_at: str | None
    finished_at: str


class MediaJournal:
    """Download facts in the journal. Needs ``_tx()`` and ``_query()`` from the class it is mixed into."""

    def record_download(self, *, clip_key: str, provider: str, job_id: str, video_url: str,
                        saved_to: str | None, facts: Any) -> bool:
        """Record one download's ``MediaFacts``; a clip that is not defective and was saved also becomes
        the clip's file (``clips.media_json``). ``False`` (nothing written) when the clip is not in this
        journal (a result from elsewhere downloaded through this gateway). One committed transaction
        (``record_download``; the async store's ``SqlStore.record_download`` runs the same)."""
        return bool(self._do(Durability.COMMITTED, record_download, clip_key=clip_key,  # type: ignore[attr-defined]
                             provider=provider, job_id=job_id, video_url=video_url, saved_to=saved_to, facts=facts))

    def downloads(self, clip_key: str) -> list[MediaRecord]:
        """Every recorded download of the clip, oldest first."""
        rows = self._query(  # type: ignore[attr-defined]
            "SELECT clip_key, provider, job_id, video_url, saved_to, verdict, size_bytes, sha256, duration_s,"
            " facts_json, created_at FROM media WHERE clip_key = ? ORDER BY seq", (clip_key,))
        return [MediaRecord(clip_key=r[0], provider=r[1], job_id=r[2], video_url=r[3], saved_to=r[4], verdict=r[5],
                            size_bytes=r[6], sha256=r[7], duration_s=r[8], facts=json.loads(r[9]), created_at=r[10])
                for r in rows]

    def undownloaded(self) -> list[PendingClip]:
        """Succeeded clips with no saved download, soonest expiry first (unknown expiry last)."""
        rows = self._query(  # type: ignore[attr-defined]
            "SELECT c.key, c.result_json, c.updated_at FROM clips c WHERE c.state = 'succeeded'"
            " AND c.result_json IS NOT NULL AND c.media_json IS NULL AND NOT EXISTS"
            " (SELECT 1 FROM media m WHERE m.clip_key = c.key AND m.saved_to IS NOT NULL) ORDER BY c.updated_at")
        pending = []
        for key, result_json, finished in rows:
            try:
                result = json.loads(result_json)
            except ValueError:
                continue
            pending.append(PendingClip(clip_key=key, provider=str(result.get("provider", "")),
                                       job_id=str(result.get("job_id", "")), video_url=str(result.get("video_url", "")),
                                       expires_at=result.get("expires_at"), finished_at=finished))
        return sorted(pending, key=lambda p: (p.expires_at is None, p.expires_at or ""))
