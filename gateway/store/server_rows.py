"""The server's rows, on either backend: videos made through ``serve`` (migration 0004), verified vendor
webhook deliveries (0006), the client-callback outbox (0008, 0010) and server settings (0010).

``ServerQueries`` is mixed into ``Queries``: each method runs inside one transaction ``tx`` of whichever
engine (SQLite, PostgreSQL) the store has, with ``?`` placeholders, so every replica sharing a database
shares these rows. The sync ``Journal`` and the async ``SqlStore`` expose them under the same names.

The outbox is claimed like a job queue: due rows (``next_at`` passed, no live claim) are leased to one
drainer for ``lease`` seconds, with ``FOR UPDATE SKIP LOCKED`` on PostgreSQL so N replicas split them
without blocking each other; a drainer killed mid-delivery leaves a claim that expires, and the row is
delivered again (at-least-once; the receiver dedupes on the event id).
"""

from __future__ import annotations

import secrets as stdlib_secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from gateway.store.records import Durability

__all__ = ["OutboxRow", "ServerQueries", "ServerRowsJournal", "ServerRowsStore", "VideoRow"]

_T = TypeVar("_T")

_VIDEO_COLUMNS = ("id, owner, idempotency_key, fingerprint, model, seconds, size, prompt, route_json, callback_url,"
                  " created_at, deleted_at")
_OUTBOX_COLUMNS = "id, event_id, clip_key, url, body, attempts"
_FINAL = ("succeeded", "failed")


@dataclass(frozen=True)
class VideoRow:
    """One video of one owner. ``created_at``/``deleted_at`` in Unix seconds."""

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


@dataclass(frozen=True)
class OutboxRow:
    """One claimed callback: ``event_id`` is the Standard Webhooks ``webhook-id`` (stable across retries),
    ``body`` the exact JSON text to send, ``attempts`` the deliveries tried before this one."""

    id: int
    event_id: str
    clip_key: str
    url: str
    body: str
    attempts: int


def _video(row: tuple[Any, ...] | None) -> VideoRow | None:
    if row is None:
        return None
    values = list(row)
    values[10] = float(values[10])
    values[11] = None if values[11] is None else float(values[11])
    return VideoRow(*values)


def _skip_locked(tx: Any) -> str:
    """PostgreSQL's row claim that skips rows another transaction holds; SQLite serializes writers."""
    return f"{tx.lock} SKIP LOCKED" if tx.lock else ""


class ServerQueries:
    """SQL of the server's tables; see the module docstring."""

    def _now(self) -> str:  # pragma: no cover - Queries gives wall-clock UTC ISO text
        raise NotImplementedError

    # -- server_videos -------------------------------------------------------------------------
    def video_insert(self, tx: Any, row: VideoRow) -> VideoRow:
        """Store ``row``; when its (owner, idempotency key) exists already, return that row instead."""
        created = tx.run(f"INSERT INTO server_videos ({_VIDEO_COLUMNS}) VALUES (?,?,?,?,?,?,?,?,?,?,?,?)"
                         " ON CONFLICT DO NOTHING",
                         (row.id, row.owner, row.idempotency_key, row.fingerprint, row.model, row.seconds,
                          row.size, row.prompt, row.route_json, row.callback_url, row.created_at, row.deleted_at))
        if created:
            return row
        existing = self.video_by_idempotency_key(tx, row.owner, row.idempotency_key or "")
        if existing is None:
            raise RuntimeError(f"video {row.id} could not be stored")
        return existing

    def video_remove(self, tx: Any, video_id: str) -> None:
        """Forget a row whose create failed before anything was submitted."""
        tx.run("DELETE FROM server_videos WHERE id = ?", (video_id,))

    def video_get(self, tx: Any, owner: str, video_id: str) -> VideoRow | None:
        """The owner's video (``None`` for another owner's, a deleted or an unknown one)."""
        return _video(tx.one(f"SELECT {_VIDEO_COLUMNS} FROM server_videos WHERE id = ? AND owner = ?"
                             " AND deleted_at IS NULL", (video_id, owner)))

    def video_by_idempotency_key(self, tx: Any, owner: str, key: str) -> VideoRow | None:
        return _video(tx.one(f"SELECT {_VIDEO_COLUMNS} FROM server_videos WHERE owner = ? AND idempotency_key = ?",
                             (owner, key)))

    def video_recent_twin(self, tx: Any, owner: str, fingerprint: str, since: float) -> VideoRow | None:
        """The owner's newest video with this fingerprint created at or after ``since`` (Unix s)."""
        return _video(tx.one(f"SELECT {_VIDEO_COLUMNS} FROM server_videos WHERE owner = ? AND fingerprint = ? AND"
                             " created_at >= ? AND deleted_at IS NULL ORDER BY created_at DESC LIMIT 1",
                             (owner, fingerprint, since)))

    def video_page(self, tx: Any, owner: str, *, after: str | None, limit: int,
                   ascending: bool) -> tuple[list[VideoRow], bool]:
        """One page of the owner's videos by creation time, and whether more follow."""
        sign, order = (">", "ASC") if ascending else ("<", "DESC")
        where, args = "owner = ? AND deleted_at IS NULL", [owner]
        if after:
            anchor = tx.one("SELECT created_at, id FROM server_videos WHERE id = ? AND owner = ?", (after, owner))
            if anchor:  # row comparison: both engines order (created_at, id) pairs lexicographically
                where += f" AND (created_at {sign} ? OR (created_at = ? AND id {sign} ?))"
                args += [anchor[0], anchor[0], anchor[1]]
        rows = tx.all(f"SELECT {_VIDEO_COLUMNS} FROM server_videos WHERE {where} ORDER BY created_at {order},"
                      f" id {order} LIMIT ?", (*args, limit + 1))
        videos = [v for v in map(_video, rows[:limit]) if v is not None]
        return videos, len(rows) > limit

    def video_mark_deleted(self, tx: Any, video_id: str, wall: float) -> None:
        tx.run("UPDATE server_videos SET deleted_at = ? WHERE id = ?", (wall, video_id))

    def video_ping(self, tx: Any) -> None:
        """Read the table once (``/readyz``): raises when the storage cannot be read."""
        tx.one("SELECT COUNT(*) FROM server_videos WHERE 1 = 0")

    # -- webhook_events ------------------------------------------------------------------------
    def webhook_record(self, tx: Any, *, vendor: str, job_id: str, status: str, clip_key: str, trusted: bool,
                       body: bytes, wall: float) -> bool:
        """Store a verified delivery; ``False`` when the same (vendor, job id, status) was stored before."""
        return bool(tx.run("INSERT INTO webhook_events (vendor, job_id, status, clip_key, trusted, body, received_at)"
                           " VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
                           (vendor, job_id, status, clip_key, int(trusted), body, wall)))

    def webhook_latest_trusted(self, tx: Any, vendor: str, job_id: str) -> bytes | None:
        """The body of a trusted final delivery for the job (the first received), if any."""
        row = tx.one("SELECT body FROM webhook_events WHERE vendor = ? AND job_id = ? AND trusted = 1"
                     " AND status IN (?, ?) ORDER BY received_at LIMIT 1", (vendor, job_id, *_FINAL))
        return None if row is None else bytes(row[0])

    def webhook_count(self, tx: Any, where: dict[str, Any]) -> int:
        """Rows matching ``where`` (column = value; column names from code, never from input)."""
        for name in where:
            if not name.isidentifier():
                raise ValueError(f"not a column name: {name!r}")
        clause = " AND ".join(f"{name} = ?" for name in where) or "1 = 1"
        row = tx.one(f"SELECT COUNT(*) FROM webhook_events WHERE {clause}", tuple(where.values()))
        return 0 if row is None else int(row[0])

    # -- server_settings -----------------------------------------------------------------------
    def setting(self, tx: Any, name: str, default_bytes: int = 32) -> str:
        """The shared setting ``name``; made (random hex of ``default_bytes`` bytes) by the first caller,
        so every replica on the database reads the same value."""
        tx.run("INSERT INTO server_settings (name, value) VALUES (?, ?) ON CONFLICT DO NOTHING",
               (name, stdlib_secrets.token_hex(default_bytes)))
        row = tx.one("SELECT value FROM server_settings WHERE name = ?", (name,))
        assert row is not None
        return str(row[0])

    # -- the callback outbox -------------------------------------------------------------------
    def callbacks_due(self, tx: Any, limit: int) -> list[tuple[str, str, str]]:
        """(video id, owner, callback URL) of videos whose clip has ended and whose callback is not
        queued yet, oldest first."""
        rows = tx.all("SELECT v.id, v.owner, v.callback_url FROM server_videos v JOIN clips c ON c.key = v.id"
                      " WHERE v.callback_url IS NOT NULL AND v.callback_queued_at IS NULL AND v.deleted_at IS NULL"
                      " AND c.state IN (?, ?)"
                      " ORDER BY v.created_at LIMIT ?", (*_FINAL, limit))
        return [(str(r[0]), str(r[1]), str(r[2])) for r in rows]

    def outbox_put(self, tx: Any, *, event_id: str, clip_key: str, url: str, body: str, wall: float) -> bool:
        """Queue one callback (once per ``event_id``) and mark the video's callback queued, in one
        transaction; ``False`` when that event was queued before."""
        created = tx.run("INSERT INTO outbox (event_id, clip_key, url, body, attempts, next_at, created_at)"
                         " VALUES (?, ?, ?, ?, 0, ?, ?) ON CONFLICT DO NOTHING",
                         (event_id, clip_key, url, body, wall, self._now()))
        tx.run("UPDATE server_videos SET callback_queued_at = ? WHERE id = ? AND callback_queued_at IS NULL",
               (wall, clip_key))
        return bool(created)

    def outbox_claim(self, tx: Any, owner: str, *, wall: float, lease: float, limit: int) -> list[OutboxRow]:
        """Lease up to ``limit`` due callbacks to ``owner`` for ``lease`` seconds."""
        rows = tx.all(f"SELECT {_OUTBOX_COLUMNS} FROM outbox WHERE delivered_at IS NULL AND given_up_at IS NULL"
                      " AND next_at <= ? AND (lease_until IS NULL OR lease_until <= ?) ORDER BY next_at, id"
                      f" LIMIT ?{_skip_locked(tx)}", (wall, wall, limit))
        for row in rows:
            tx.run("UPDATE outbox SET lease_owner = ?, lease_until = ? WHERE id = ?", (owner, wall + lease, row[0]))
        return [OutboxRow(int(r[0]), str(r[1]), str(r[2]), str(r[3]), str(r[4]), int(r[5])) for r in rows]

    def outbox_delivered(self, tx: Any, row_id: int, owner: str) -> bool:
        """Record a 2xx answer (``False`` when ``owner`` had lost the claim: another drainer has it)."""
        return bool(tx.run("UPDATE outbox SET delivered_at = ?, attempts = attempts + 1, lease_owner = NULL,"
                           " lease_until = NULL WHERE id = ? AND lease_owner = ? AND delivered_at IS NULL",
                           (self._now(), row_id, owner)))

    def outbox_retry(self, tx: Any, row_id: int, owner: str, *, error: str, next_at: float | None) -> None:
        """Record a failed delivery: try again at ``next_at`` (Unix s), or give up when it is ``None``."""
        tx.run("UPDATE outbox SET attempts = attempts + 1, last_error = ?, next_at = COALESCE(?, next_at),"
               " given_up_at = ?, lease_owner = NULL, lease_until = NULL WHERE id = ? AND lease_owner = ?",
               (error[:500], next_at, None if next_at is not None else self._now(),
                row_id, owner))

    def outbox_release(self, tx: Any, owner: str) -> int:
        """Hand back every claim of ``owner`` (a draining replica), due at once for another drainer."""
        return int(tx.run("UPDATE outbox SET lease_owner = NULL, lease_until = NULL WHERE lease_owner = ?"
                          " AND delivered_at IS NULL", (owner,)))

    def outbox_rows(self, tx: Any, clip_key: str) -> list[dict[str, Any]]:
        """Every outbox row of a video, oldest first (for tests, metrics and operators)."""
        names = ("id", "event_id", "url", "attempts", "next_at", "delivered_at", "given_up_at", "last_error",
                 "lease_owner")
        rows = tx.all(f"SELECT {', '.join(names)} FROM outbox WHERE clip_key = ? ORDER BY id", (clip_key,))
        return [dict(zip(names, r, strict=True)) for r in rows]


_C, _F = Durability.COMMITTED, Durability.FLUSHED


class ServerRowsJournal:
    """The server's rows on the sync ``Journal`` (mixed in; it provides ``_do`` and ``wall``)."""

    wall: Callable[[], float]

    def _do(self, durability: Durability, fn: Callable[..., _T], *args: Any, **kwargs: Any) -> _T:
        raise NotImplementedError  # pragma: no cover - the Journal's

    def video_insert(self, row: VideoRow) -> VideoRow:
        """``ServerQueries.video_insert``: the stored row (an earlier one with the same idempotency key)."""
        return self._do(_C, ServerQueries.video_insert, row)

    def video_remove(self, video_id: str) -> None:
        self._do(_C, ServerQueries.video_remove, video_id)

    def video_get(self, owner: str, video_id: str) -> VideoRow | None:
        return self._do(_C, ServerQueries.video_get, owner, video_id)

    def video_by_idempotency_key(self, owner: str, key: str) -> VideoRow | None:
        return self._do(_C, ServerQueries.video_by_idempotency_key, owner, key)

    def video_recent_twin(self, owner: str, fingerprint: str, since: float) -> VideoRow | None:
        return self._do(_C, ServerQueries.video_recent_twin, owner, fingerprint, since)

    def video_page(self, owner: str, *, after: str | None, limit: int,
                   ascending: bool) -> tuple[list[VideoRow], bool]:
        return self._do(_C, ServerQueries.video_page, owner, after=after, limit=limit, ascending=ascending)

    def video_mark_deleted(self, video_id: str) -> None:
        self._do(_C, ServerQueries.video_mark_deleted, video_id, self.wall())

    def video_ping(self) -> None:
        self._do(_C, ServerQueries.video_ping)

    def webhook_record(self, *, vendor: str, job_id: str, status: str, clip_key: str, trusted: bool,
                       body: bytes) -> bool:
        """Store a verified delivery (flushed: the vendor is answered 2xx only after it is durable);
        ``False`` for a repeat of the same (vendor, job id, status)."""
        return self._do(_F, ServerQueries.webhook_record, vendor=vendor, job_id=job_id, status=status,
                        clip_key=clip_key, trusted=trusted, body=body, wall=self.wall())

    def webhook_latest_trusted(self, vendor: str, job_id: str) -> bytes | None:
        return self._do(_C, ServerQueries.webhook_latest_trusted, vendor, job_id)

    def webhook_count(self, **where: Any) -> int:
        return self._do(_C, ServerQueries.webhook_count, where)

    def setting(self, name: str) -> str:
        """A value every replica on this database shares (made at random by the first one)."""
        return self._do(_C, ServerQueries.setting, name)

    def callbacks_due(self, limit: int = 50) -> list[tuple[str, str, str]]:
        return self._do(_C, ServerQueries.callbacks_due, limit)

    def outbox_put(self, *, event_id: str, clip_key: str, url: str, body: str) -> bool:
        return self._do(_C, ServerQueries.outbox_put, event_id=event_id, clip_key=clip_key, url=url, body=body,
                        wall=self.wall())

    def outbox_claim(self, owner: str, *, lease: float = 60.0, limit: int = 20) -> list[OutboxRow]:
        return self._do(_C, ServerQueries.outbox_claim, owner, wall=self.wall(), lease=lease, limit=limit)

    def outbox_delivered(self, row_id: int, owner: str) -> bool:
        return self._do(_C, ServerQueries.outbox_delivered, row_id, owner)

    def outbox_retry(self, row_id: int, owner: str, *, error: str, next_at: float | None) -> None:
        self._do(_C, ServerQueries.outbox_retry, row_id, owner, error=error, next_at=next_at)

    def outbox_release(self, owner: str) -> int:
        return self._do(_C, ServerQueries.outbox_release, owner)

    def outbox_rows(self, clip_key: str) -> list[dict[str, Any]]:
        return self._do(_C, ServerQueries.outbox_rows, clip_key)


class ServerRowsStore:
    """The server's rows on the async ``SqlStore`` (mixed in; it provides ``_run`` and ``wall``)."""

    wall: Callable[[], float]

    def _run(self, durability: Durability, fn: Callable[..., _T], *args: Any, **kwargs: Any) -> Awaitable[_T]:
        raise NotImplementedError  # pragma: no cover - the store's

    async def video_insert(self, row: VideoRow) -> VideoRow:
        return await self._run(_C, ServerQueries.video_insert, row)

    async def video_remove(self, video_id: str) -> None:
        await self._run(_C, ServerQueries.video_remove, video_id)

    async def video_get(self, owner: str, video_id: str) -> VideoRow | None:
        return await self._run(_C, ServerQueries.video_get, owner, video_id)

    async def video_by_idempotency_key(self, owner: str, key: str) -> VideoRow | None:
        return await self._run(_C, ServerQueries.video_by_idempotency_key, owner, key)

    async def video_recent_twin(self, owner: str, fingerprint: str, since: float) -> VideoRow | None:
        return await self._run(_C, ServerQueries.video_recent_twin, owner, fingerprint, since)

    async def video_page(self, owner: str, *, after: str | None, limit: int,
                         ascending: bool) -> tuple[list[VideoRow], bool]:
        return await self._run(_C, ServerQueries.video_page, owner, after=after, limit=limit, ascending=ascending)

    async def video_mark_deleted(self, video_id: str) -> None:
        await self._run(_C, ServerQueries.video_mark_deleted, video_id, self.wall())

    async def video_ping(self) -> None:
        await self._run(_C, ServerQueries.video_ping)

    async def webhook_record(self, *, vendor: str, job_id: str, status: str, clip_key: str, trusted: bool,
                             body: bytes) -> bool:
        return await self._run(_F, ServerQueries.webhook_record, vendor=vendor, job_id=job_id, status=status,
                               clip_key=clip_key, trusted=trusted, body=body, wall=self.wall())

    async def webhook_latest_trusted(self, vendor: str, job_id: str) -> bytes | None:
        return await self._run(_C, ServerQueries.webhook_latest_trusted, vendor, job_id)

    async def webhook_count(self, **where: Any) -> int:
        return await self._run(_C, ServerQueries.webhook_count, where)

    async def setting(self, name: str) -> str:
        return await self._run(_C, ServerQueries.setting, name)

    async def callbacks_due(self, limit: int = 50) -> list[tuple[str, str, str]]:
        return await self._run(_C, ServerQueries.callbacks_due, limit)

    async def outbox_put(self, *, event_id: str, clip_key: str, url: str, body: str) -> bool:
        return await self._run(_C, ServerQueries.outbox_put, event_id=event_id, clip_key=clip_key, url=url,
                               body=body, wall=self.wall())

    async def outbox_claim(self, owner: str, *, lease: float = 60.0, limit: int = 20) -> list[OutboxRow]:
        return await self._run(_C, ServerQueries.outbox_claim, owner, wall=self.wall(), lease=lease, limit=limit)

    async def outbox_delivered(self, row_id: int, owner: str) -> bool:
        return await self._run(_C, ServerQueries.outbox_delivered, row_id, owner)

    async def outbox_retry(self, row_id: int, owner: str, *, error: str, next_at: float | None) -> None:
        await self._run(_C, ServerQueries.outbox_retry, row_id, owner, error=error, next_at=next_at)

    async def outbox_release(self, owner: str) -> int:
        return await self._run(_C, ServerQueries.outbox_release, owner)

    async def outbox_rows(self, clip_key: str) -> list[dict[str, Any]]:
        return await self._run(_C, ServerQueries.outbox_rows, clip_key)
