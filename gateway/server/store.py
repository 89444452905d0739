"""The server's own rows (``server_videos``, migration 0004) beside the journal's clips, in the same file.

One row per video: who owns it (a digest of the caller's API key), the OpenAI-shaped fields it was asked
with, and the keys that make a create idempotent. Clip state is never copied here: it is read from the
journal, so every replica sharing the journal sees the same job.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from dataclasses import dataclass
from typing import Any

from gateway.store.journal import Journal

__all__ = ["VideoRow", "VideoStore"]

_COLUMNS = ("id, owner, idempotency_key, fingerprint, model, seconds, size, prompt, route_json, callback_url,"
            " created_at, deleted_at")


@dataclass(frozen=True)
class VideoRow:
    """One video of one owner. ``created_at`` in Unix seconds."""

    id: str
    owner: str
    idempotency_key: str | None
    fingerprint: str
    model: str
    seconds: str
    size: str
    prompt: str
    route_json: str | None
    callback_url: str | None
    created_at: float
    deleted_at: float | None


class VideoStore:
    """``server_videos`` on the journal's SQLite file (its migrations create the table)."""

    def __init__(self, journal: Journal) -> None:
        if journal.path == ":memory:":
            raise ValueError("the server needs a journal file (several connections share it), not ':memory:'")
        self._lock = threading.Lock()
        self._db = sqlite3.connect(journal.path, timeout=5.0, isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA busy_timeout = 5000")

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def ping(self) -> None:
        """Raise when the storage cannot be read (for ``/readyz``)."""
        self._query("SELECT COUNT(*) FROM server_videos WHERE 0")

    def _query(self, sql: str, args: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        with self._lock:
            return self._db.execute(sql, args).fetchall()

    def insert(self, row: VideoRow) -> VideoRow:
        """Store ``row``; when its (owner, idempotency key) exists already, return that row instead."""
        with self._lock:
            try:
                self._db.execute(f"INSERT INTO server_videos ({_COLUMNS}) VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
                                 (row.id, row.owner, row.idempotency_key, row.fingerprint, row.model, row.seconds,
                                  row.size, row.prompt, row.route_json, row.callback_url, row.created_at,
                                  row.deleted_at))
                return row
            except sqlite3.IntegrityError:
                pass
        existing = self.by_idempotency_key(row.owner, row.idempotency_key or "")
        if existing is None:
            raise RuntimeError(f"video {row.id} could not be stored")
        return existing

    def remove(self, video_id: str) -> None:
        """Forget a row whose create failed before anything was submitted."""
        with self._lock:
            self._db.execute("DELETE FROM server_videos WHERE id = ?", (video_id,))

    def get(self, owner: str, video_id: str) -> VideoRow | None:
        """The owner's video (``None`` for another owner's, a deleted or an unknown one)."""
        rows = self._query(f"SELECT {_COLUMNS} FROM server_videos WHERE id = ? AND owner = ? AND deleted_at IS NULL",
                           (video_id, owner))
        return VideoRow(*rows[0]) if rows else None

    def by_idempotency_key(self, owner: str, key: str) -> VideoRow | None:
        rows = self._query(f"SELECT {_COLUMNS} FROM server_videos WHERE owner = ? AND idempotency_key = ?",
                           (owner, key))
        return VideoRow(*rows[0]) if rows else None

    def recent_twin(self, owner: str, fingerprint: str, since: float) -> VideoRow | None:
        """The owner's newest video with this fingerprint created at or after ``since``."""
        rows = self._query(f"SELECT {_COLUMNS} FROM server_videos WHERE owner = ? AND fingerprint = ? AND"
                           " created_at >= ? AND deleted_at IS NULL ORDER BY created_at DESC LIMIT 1",
                           (owner, fingerprint, since))
        return VideoRow(*rows[0]) if rows else None

    def page(self, owner: str, *, after: str | None, limit: int, ascending: bool) -> tuple[list[VideoRow], bool]:
        """One page of the owner's videos by creation time and the ``has_more`` flag."""
        sign, order = (">", "ASC") if ascending else ("<", "DESC")
        where, args = "owner = ? AND deleted_at IS NULL", [owner]
        if after:
            anchor = self._query("SELECT created_at, id FROM server_videos WHERE id = ? AND owner = ?", (after, owner))
            if anchor:
                where += f" AND (created_at, id) {sign} (?, ?)"
                args += [anchor[0][0], anchor[0][1]]
        rows = self._query(f"SELECT {_COLUMNS} FROM server_videos WHERE {where} ORDER BY created_at {order}, id"
                           f" {order} LIMIT ?", (*args, limit + 1))
        return [VideoRow(*r) for r in rows[:limit]], len(rows) > limit

    def mark_deleted(self, video_id: str) -> None:
        with self._lock:
            self._db.execute("UPDATE server_videos SET deleted_at = ? WHERE id = ?", (time.time(), video_id))
