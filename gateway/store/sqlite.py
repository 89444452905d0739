"""The embedded backend: one SQLite file in WAL mode, written by one thread with group commit.

``SqliteEngine`` (``gateway.store.sqlite_engine``) is the connection: WAL, ``synchronous = NORMAL``,
``BEGIN IMMEDIATE`` for every write, and an explicit ``fdatasync`` of the WAL after the commit of a
``Durability.FLUSHED`` write (``sqlite_engine._fsync`` is the seam tests count).

``SqliteStore`` is the async interface over it. While the writer thread is idle, an operation runs at
once on the loop's thread (``_at_once``) — unless another caller already made one in this loop
iteration: one job at a time then waits no loop turn for its SQL. Others are gathered until the end of
that loop iteration and handed over together (``_kick``):

- when the writer thread is idle, they run at once on the loop's thread, in ONE transaction: a commit
  costs microseconds, less than a thread hop, so one job at a time pays no hop for them. This never
  waits on another process: the write lock is only tried (``busy_timeout`` 0), and when another
  process holds it the operations go to the writer thread instead. A flush is made there too only
  while this disk's flushes are measured quick (``quick_flush``: their recent average at most
  ``FLUSH_ON_LOOP_S``): a hop each way costs more than such a flush, and the loop is then held for
  no longer than a hop would take. Before the first measurement, or on a slow disk, a flush goes to
  the writer thread: a slow fsync never holds the loop;
- otherwise (the writer is busy, i.e. many jobs are in flight, or a flush is slow) the writer thread
  takes everything queued, runs it in ONE transaction, commits once and flushes once if any operation
  asked for it: ten thousand jobs in flight pay one commit per batch, not one per write.

The operations of a transaction run back to back; when one fails they run again, each under its own
savepoint, so one failure spoils no other. ``BATCHED`` writes are not awaited: they wait (at most
``BATCH_DELAY_S``, and not at all once someone waits for them: ``Batched``) for the next operation to
ride with, in order (so this process reads its own writes); the caller gets a future, and their errors
are logged and kept (``deferred_errors``). The ``Journal`` face of the same file shares
the engine and takes this thread's unsent operations first, then runs behind the writer while it is
busy (``call``): one connection and one writer per file and process, and sync reads see every earlier
async write. With ``offload=False`` (virtual clocks in tests) operations run inline at once instead,
for determinism.
"""

from __future__ import annotations

import asyncio
import atexit
import concurrent.futures
import logging
import os
import queue
import sqlite3
import threading
import time
import weakref
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from gateway.store.base import SqlStore
from gateway.store.futures import Batched, _running_loop, _settle, _settle_many
from gateway.store.queries import Queries
from gateway.store.records import BreakerRecord, Durability
from gateway.store.sqlite_engine import BUSY_TIMEOUT_MS, SqliteEngine, _Item

__all__ = ["BATCH_DELAY_S", "BUSY_TIMEOUT_MS", "Batched", "SqliteEngine", "SqliteStore"]

_T = TypeVar("_T")

_BATCH_MAX = 512
BREAKER_WRITES = frozenset({Queries.save_breaker, Queries.take_probe, Queries.end_probe})
"""Every operation that writes the ``breakers`` table (``load_breakers`` answers from its last read only
while none is waiting to be committed)."""
BATCH_DELAY_S = 0.05
"""Seconds a ``BATCHED`` write may wait on its event loop for another operation to share a commit with."""
_log = logging.getLogger("gateway.store")


class SqliteStore(SqlStore):
    """The async store on one SQLite file. ``path``: a file or ``":memory:"``; ``offload``: hand SQL to
    the writer thread as the module docstring says (default) or run it inline at once on the caller's
    thread; ``wall``: epoch seconds (a seam); ``engine``: an open ``SqliteEngine`` to share (the
    ``Journal`` face of the same file), so one process has one connection and one writer per file."""

    dialect = "sqlite"

    def __init__(self, path: str | os.PathLike[str], *, offload: bool = True, wall: Callable[[], float] = time.time,
                 emulator_instance: str | None = None, queries: Queries | None = None,
                 engine: SqliteEngine | None = None) -> None:
        super().__init__(wall=wall, emulator_instance=emulator_instance)
        self.engine = engine if engine is not None else SqliteEngine(os.fspath(path), queries or Queries())
        self.path = self.engine.path
        self.where = self.path
        self.offload = offload
        self._queue: queue.SimpleQueue[list[_Item] | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._start = threading.Lock()
        """Guards the writer's start and stop, the unsent operations and ``_outstanding``."""
        self._pending: dict[asyncio.AbstractEventLoop, list[_Item]] = {}
        """Operations made on each event loop and not yet handed over (``_kick``)."""
        self._flushing: set[asyncio.AbstractEventLoop] = set()
        """Loops whose gathered operations include a ``FLUSHED`` one (``_at_once`` asks per operation: a
        scan of ten thousand gathered ones each time made a group commit's turn quadratic)."""
        self._soon: set[asyncio.AbstractEventLoop] = set()
        self._late: dict[asyncio.AbstractEventLoop, asyncio.TimerHandle] = {}
        self._turn: dict[asyncio.AbstractEventLoop, object] = {}
        """Per loop, the task whose operation ran at once first in the loop's current turn (``_at_once``)."""
        self._outstanding = 0
        """Batches handed to the writer thread and not yet committed."""
        self.deferred_errors: list[BaseException] = []
        self.inline_commits = 0
        """Transactions run on an event loop's thread (not flushed; the writer was idle)."""

    @property
    def schema_version(self) -> int:
        return self.engine.schema_version

    def _enqueue(self, items: list[_Item]) -> None:
        """Hand ``items`` to the writer (started on first use) as one batch. Under the start lock, so a
        stop (which queues the end marker under it) never strands an operation behind the marker."""
        with self._start:
            self._hand(items)

    def _hand(self, items: list[_Item]) -> None:  # the start lock is held
        if self._thread is None:
            self._thread = threading.Thread(target=self._writer, name="ovi-store-writer", daemon=True)
            self._thread.start()
            _LIVE.add(self)
        self._outstanding += 1
        self._queue.put(items)

    def _submit(self, loop: asyncio.AbstractEventLoop, item: _Item) -> None:
        """Keep ``item`` until this loop iteration ends (``BATCHED``: at most ``BATCH_DELAY_S``)."""
        with self._start:
            pending = self._pending.get(loop)
            if pending is None:
                pending = self._pending[loop] = []
                _LIVE.add(self)
            pending.append(item)
            if item[0] is Durability.FLUSHED:
                self._flushing.add(loop)
            if item[0] is Durability.BATCHED:
                if loop not in self._soon and loop not in self._late:
                    self._late[loop] = loop.call_later(BATCH_DELAY_S, self._kick, loop)
            elif loop not in self._soon:
                self._soon.add(loop)
                loop.call_soon(self._kick, loop)

    def _kick(self, loop: asyncio.AbstractEventLoop) -> None:
        """Hand over what this loop gathered: inline in one transaction when the writer is idle (and no
        flush is asked for, or flushes are quick), else to the writer thread as one batch (see the
        module docstring)."""
        with self._start:
            self._soon.discard(loop)
            late = self._late.pop(loop, None)
            items = self._pending.pop(loop, None)
            self._flushing.discard(loop)
            if not items:
                return
            inline = self._outstanding == 0 and (self.engine.quick_flush or all(
                item[0] is not Durability.FLUSHED for item in items))
            if not inline:
                self._hand(items)
        if late is not None:
            late.cancel()
        if inline:
            self._inline(items)

    def _at_once(self, loop: asyncio.AbstractEventLoop, item: _Item) -> bool:
        """Run ``item`` (and what this loop gathered before it, in order) now, on the loop's thread, when
        the writer is idle and no other caller made an operation in this loop turn: one job at a time
        then pays no loop turns waiting for ``_kick`` (two per operation: the kick's, and the wake-up of
        its waiter). Operations of other callers in the same turn are gathered as before, so concurrent
        jobs still share one commit. A flush only while flushes are quick, as in ``_kick``."""
        task = asyncio.current_task(loop) or item  # no task (a callback): never "the same caller"
        with self._start:
            if self._outstanding:
                return False
            if not self.engine.quick_flush and (item[0] is Durability.FLUSHED or loop in self._flushing):
                return False  # a flush may run on the loop only while flushes are quick
            first = self._turn.get(loop)
            if first is None:
                self._turn[loop] = task
                loop.call_soon(self._turn.pop, loop, None)
            elif first is not task:  # another caller made one this turn: gather, for one commit
                return False
            items = self._pending.pop(loop, None) or []
            self._flushing.discard(loop)
            items.append(item)
            late = self._late.pop(loop, None)
        if late is not None:
            late.cancel()
        self._inline(items)
        return True

    def _inline(self, items: list[_Item]) -> None:
        """Run ``items`` in one transaction on this thread, never waiting for the write lock."""
        try:
            results = self.engine.batch(items, wait=False)
        except BaseException as failure:  # the transaction itself failed (disk full, I/O): every op fails
            results = [(None, failure)] * len(items)
        if results is None:  # another thread or process holds the write lock: the writer waits for it
            self._enqueue(items)
            return
        self.inline_commits += 1
        self._settle_all(items, results)
        if self.engine.checkpoint_due:  # the writer thread checkpoints: never the loop
            self._enqueue([(Durability.BATCHED, Queries.noop, (), {}, None, concurrent.futures.Future())])

    def _run(self, durability: Durability, fn: Callable[..., _T], *args: Any, **kwargs: Any) -> Awaitable[_T]:
        """The operation's future (a plain function, not a coroutine: one object less per operation
        waiting, ten thousand of them at once with as many jobs in flight)."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[_T] = loop.create_future()
        if not self.offload:
            try:
                future.set_result(self.engine.execute(durability, fn, args, kwargs))
            except Exception as error:  # the operation's own failure, raised where it is awaited
                future.set_exception(error)
            return future
        item: _Item = (durability, fn, args, kwargs, loop, future)
        if durability is Durability.BATCHED or not self._at_once(loop, item):
            self._submit(loop, item)
        return future

    async def _later(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> asyncio.Future[Any] | None:
        if not self.offload:
            self.engine.execute(Durability.BATCHED, fn, args, kwargs)
            return None
        loop = asyncio.get_running_loop()
        future = Batched(loop, self)
        self._submit(loop, (Durability.BATCHED, fn, args, kwargs, loop, future))
        return future

    def _hurry(self, loop: asyncio.AbstractEventLoop) -> None:
        """Someone waits for a batched write of ``loop``: send what it gathered at the end of this turn."""
        with self._start:
            if loop in self._pending and loop not in self._soon:
                self._soon.add(loop)
                loop.call_soon(self._kick, loop)

    def call(self, durability: Durability, fn: Callable[..., _T], args: tuple[Any, ...],
             kwargs: dict[str, Any]) -> _T:
        """Run one operation for synchronous code (the ``Journal`` face), after every operation made
        before it on this thread's event loop and every one handed to the writer (so it reads this
        process's batched writes): inline when the writer is idle, else behind it. A flush asked for
        on an event loop's thread goes to the writer thread even then (fsync never runs on a loop)."""
        loop = _running_loop()
        done: concurrent.futures.Future[_T] = concurrent.futures.Future()
        item: _Item = (durability, fn, args, kwargs, None, done)
        with self._start:
            items = self._pending.pop(loop, []) if loop is not None else []
            if loop is not None:
                self._flushing.discard(loop)
            items.append(item)
            writer = self._thread is not None and threading.current_thread() is self._thread
            behind = not writer and (self._outstanding > 0 or (
                self.offload and loop is not None and any(i[0] is Durability.FLUSHED for i in items)))
            if behind:
                self._hand(items)
        if behind:
            return done.result()
        try:
            results = self.engine.batch(items, checkpoint=loop is None)
        except BaseException as failure:
            results = [(None, failure)] * len(items)
        self._settle_all(items, results or [])
        return done.result()

    def _settle_all(self, items: list[_Item], results: list[tuple[Any, BaseException | None]]) -> None:
        """Answer every operation: futures of the running loop at once, other loops' in one callback
        each, synchronous callers' directly. Errors of ``BATCHED`` writes are logged and kept."""
        here = _running_loop()
        elsewhere: dict[asyncio.AbstractEventLoop, list[tuple[Any, Any, BaseException | None]]] = {}
        for (durability, fn, _, _, loop, future), (value, error) in zip(items, results, strict=True):
            if error is not None and durability is Durability.BATCHED:
                self.deferred_errors.append(error)
                _log.error("batched journal write %s failed: %s", fn.__name__, error)
            if loop is None:
                if error is not None:
                    future.set_exception(error)
                else:
                    future.set_result(value)
            elif loop is here:
                _settle(future, value, error)
            else:
                elsewhere.setdefault(loop, []).append((future, value, error))
        for loop, answers in elsewhere.items():
            try:
                loop.call_soon_threadsafe(_settle_many, answers)
            except RuntimeError:  # that event loop is closed: nobody waits for these answers any more
                pass

    def _writer(self) -> None:
        while True:
            first = self._queue.get()
            if first is None:
                return
            items, taken = list(first), 1
            while len(items) < _BATCH_MAX:
                try:
                    more = self._queue.get_nowait()
                except queue.Empty:
                    break
                if more is None:
                    self._queue.put(None)  # stop after this batch
                    break
                items += more
                taken += 1
            try:
                results = self.engine.batch(items, checkpoint=False) or []
            except BaseException as failure:  # the transaction itself failed (disk full, I/O): every op fails
                results = [(None, failure)] * len(items)
            with self._start:
                self._outstanding -= taken
            self._settle_all(items, results)
            if self.engine.checkpoint_due:  # after the answers: nobody waits for it
                try:
                    self.engine.checkpoint()
                except sqlite3.Error as error:  # the next one will try again
                    _log.warning("journal checkpoint failed: %s", error)

    def _stop(self) -> None:
        with self._start:
            thread, self._thread = self._thread, None
            if thread is not None:
                self._queue.put(None)
        if thread is not None:
            thread.join()
        with self._start:  # operations still gathered on a loop (it may be closed): commit them too
            items = [item for pending in self._pending.values() for item in pending]
            self._pending.clear()
            self._flushing.clear()
            self._soon.clear()
            for late in self._late.values():
                late.cancel()
            self._late.clear()
        if items:
            try:
                results = self.engine.batch(items) or []
            except BaseException as failure:
                results = [(None, failure)] * len(items)
            self._settle_all(items, results)
        _LIVE.discard(self)

    async def load_breakers(self) -> dict[str, BreakerRecord]:
        """The stored breakers. The last read's answer, without a transaction, when nothing can have
        changed them since (``SqliteEngine.breakers_unchanged``: no other connection committed, this one
        wrote no breaker) and no breaker write made before it waits to be committed (on this loop, or on
        the writer thread): a process alone on its journal then refreshes its breakers for one ``PRAGMA``
        instead of an operation (and often a transaction) per refresh."""
        loop = asyncio.get_running_loop()
        with self._start:
            settled = not self._outstanding and not any(
                item[1] in BREAKER_WRITES for item in self._pending.get(loop, ()))
        if settled:
            known = self.engine.breakers_unchanged(self.emulated)
            if known is not None:
                return known
        return await self._read(_read_breakers, self.emulated, self.engine)

    async def drain(self) -> None:
        """Wait until every write made so far is committed (visible to other processes). Writes already
        started on this loop in tasks that have not run yet (a breaker's save) are let in first."""
        await asyncio.sleep(0)
        if self.offload:
            await self._run(Durability.COMMITTED, Queries.noop)

    async def aclose(self) -> None:
        """Write everything queued, stop the writer and close the file."""
        await asyncio.to_thread(self._stop)
        self.engine.close()

    def close(self) -> None:
        self._stop()
        self.engine.close()


"""One operation and who waits for it: its event loop and asyncio future, or ``None`` and a
``concurrent.futures.Future`` (a synchronous caller)."""


def _read_breakers(queries: Queries, tx: Any, emulated: bool, engine: SqliteEngine) -> dict[str, BreakerRecord]:
    records = queries.load_breakers(tx, emulated)
    engine.note_breakers(tx, emulated, dict(records))
    return records


_LIVE: weakref.WeakSet[SqliteStore] = weakref.WeakSet()


@atexit.register
def _drain_at_exit() -> None:
    """Batched writes still queued at interpreter exit are committed, not dropped with the daemon thread."""
    for store in list(_LIVE):
        store._stop()
