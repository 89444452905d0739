"""The server's rows (``server_videos``, migration 0004) beside the journal's clips, in the same database.

One row per video: who owns it (a digest of the caller's API key), the OpenAI-shaped fields it was asked
with, and the keys that make a create idempotent. Clip state is never copied here: it is read from the
journal, so every replica sharing the journal sees the same job. The SQL is the storage interface's
(``gateway.store.server_rows``), so this runs on SQLite and on PostgreSQL alike.
"""

from __future__ import annotations

from typing import Any

from gateway.store.server_rows import VideoRow

__all__ = ["VideoRow", "VideoStore"]


class VideoStore:
    """``server_videos`` through the gateway's journal (a ``Journal``: SQLite file or PostgreSQL)."""

    def __init__(self, journal: Any) -> None:
        if getattr(journal, "path", None) == ":memory:":
            raise ValueError("the server needs a journal file or database (several connections share it), "
                             "not ':memory:'")
        self.journal = journal

    def close(self) -> None:
        """Nothing to close: the journal's connections belong to the gateway."""

    def ping(self) -> None:
        """Raise when the storage cannot be read (for ``/readyz``)."""
        self.journal.video_ping()

    def insert(self, row: VideoRow) -> VideoRow:
        """Store ``row``; when its (owner, idempotency key) exists already, return that row instead."""
        stored: VideoRow = self.journal.video_insert(row)
        return stored

    def remove(self, video_id: str) -> None:
        """Forget a row whose create failed before anything was submitted."""
        self.journal.video_remove(video_id)

    def get(self, owner: str, video_id: str) -> VideoRow | None:
        """The owner's video (``None`` for another owner's, a deleted or an unknown one)."""
        found: VideoRow | None = self.journal.video_get(owner, video_id)
        return found

    def by_idempotency_key(self, owner: str, key: str) -> VideoRow | None:
        found: VideoRow | None = self.journal.video_by_idempotency_key(owner, key)
        return found

    def recent_twin(self, owner: str, fingerprint: str, since: float) -> VideoRow | None:
        """The owner's newest video with this fingerprint created at or after ``since``."""
        found: VideoRow | None = self.journal.video_recent_twin(owner, fingerprint, since)
        return found

    def page(self, owner: str, *, after: str | None, limit: int, ascending: bool) -> tuple[list[VideoRow], bool]:
        """One page of the owner's videos by creation time and the ``has_more`` flag."""
        page: tuple[list[VideoRow], bool] = self.journal.video_page(owner, after=after, limit=limit,
                                                                    ascending=ascending)
        return page

    def mark_deleted(self, video_id: str) -> None:
        self.journal.video_mark_deleted(video_id)
