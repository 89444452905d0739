"""Pushes between replicas on one PostgreSQL database: ``LISTEN``/``NOTIFY`` (psycopg 3).

A vendor delivers its webhook to whichever replica its URL reaches; the follower of that job may run
on another. The receiving replica stores the verified delivery (shared table) and, when no follower of
its own sleeps on the clip, ``NOTIFY ovi_push, '<clip>'`` after the store committed it; every replica
``LISTEN``s on one dedicated connection and wakes its own follower of that clip, which then finds the
delivery in the shared table — no GET of the video and no status poll needed. A notification lost
while a listener reconnects is harmless: the GET path and the slow poll remain the fallback.

No schema change: the channel is a name, not a table. SQLite has no such thing (one file, and
``--workers`` needs PostgreSQL), so ``relay_for`` answers ``None`` there.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

import gateway.secrets as secrets
from gateway.clock import cancel_and_wait

__all__ = ["CHANNEL", "PushRelay", "relay_for"]

CHANNEL = "ovi_push"
"""The ``LISTEN``/``NOTIFY`` channel; the payload is a clip key (a video id), never a token or a body."""
RECONNECT_S = (0.5, 1.0, 2.0, 5.0)
"""Seconds before each reconnect of a lost listening connection (the last repeats)."""
_log = logging.getLogger("gateway.store.notify")


class PushRelay:
    """Sends and receives push notices for one PostgreSQL journal.

    Args:
        pool: the journal's ``psycopg_pool.ConnectionPool`` (``notify`` borrows a connection from it).
        conninfo: where to open the dedicated listening connection (the pool's own).
        connect_kwargs: options of the pool's connections (``connect_timeout``).
    """

    def __init__(self, pool: Any, conninfo: str, connect_kwargs: dict[str, Any] | None = None) -> None:
        self._pool = pool
        self._conninfo = conninfo
        self._kwargs = dict(connect_kwargs or {})
        self._task: asyncio.Task[None] | None = None
        self.listening = asyncio.Event()
        """Set while the listening connection is up (tests wait for it)."""
        self.sent = 0
        self.received = 0

    def notify(self, clip: str) -> None:
        """Tell every replica a push for ``clip`` was stored (after its commit). Best effort: a failure
        is logged, never raised — the webhook was stored, and the fallbacks still find it. On an event
        loop the notice goes from a worker thread: a pool with no free connection must not hold the loop."""
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            self._notify(clip)
            return
        loop.run_in_executor(None, self._notify, clip)

    def _notify(self, clip: str) -> None:
        try:
            with self._pool.connection() as conn:
                conn.execute("SELECT pg_notify(%s, %s)", (CHANNEL, clip))
            self.sent += 1
        except Exception as failure:  # any database trouble: the stored delivery is found by the fallbacks
            _log.warning("could not notify other replicas of a push for %s: %s", clip,
                         secrets.redact(f"{type(failure).__name__}: {failure}"))

    def start(self, on_push: Callable[[str], None]) -> None:
        """Listen in the background until ``close``; ``on_push(clip)`` runs on this event loop."""
        self._task = asyncio.create_task(self._listen(on_push), name="ovi-push-listener")

    async def _listen(self, on_push: Callable[[str], None]) -> None:
        import psycopg

        failures = 0
        while True:
            try:
                conn = await psycopg.AsyncConnection.connect(self._conninfo, autocommit=True, **self._kwargs)
                async with conn:
                    await conn.execute(f"LISTEN {CHANNEL}")
                    self.listening.set()
                    failures = 0
                    async for note in conn.notifies():
                        self.received += 1
                        on_push(note.payload)
            except asyncio.CancelledError:
                raise
            except Exception as failure:  # connection lost: reconnect; meanwhile the fallbacks hold
                self.listening.clear()
                _log.warning("push listener connection lost (%s); reconnecting",
                             secrets.redact(f"{type(failure).__name__}: {failure}"))
                await asyncio.sleep(RECONNECT_S[min(failures, len(RECONNECT_S) - 1)])
                failures += 1

    async def close(self) -> None:
        """Stop listening (closes the listening connection)."""
        task, self._task = self._task, None
        await cancel_and_wait(task)
        self.listening.clear()


def relay_for(journal: Any) -> PushRelay | None:
    """The relay of ``journal`` when it is on PostgreSQL, else ``None``."""
    engine = getattr(journal, "_engine", None)
    pool = getattr(engine, "pool", None)
    if pool is None or not hasattr(pool, "conninfo"):
        return None
    kwargs = {k: v for k, v in dict(getattr(pool, "kwargs", None) or {}).items() if k == "connect_timeout"}
    return PushRelay(pool, pool.conninfo, kwargs)
