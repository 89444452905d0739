"""The embedded backend: one SQLite file in WAL mode, written by one thread with group commit.

``SqliteEngine`` is the connection: WAL, ``synchronous = NORMAL`` (a commit is visible to every other
process at once, and survives a killed process, but is not flushed), ``BEGIN IMMEDIATE`` for every
write. A ``Durability.FLUSHED`` write is made durable against power loss by ``fsync`` of the WAL file
after its commit — explicit, so a test can count it (``_fsync`` is the seam).

``SqliteStore`` is the async interface over it. Its writer thread takes every queued operation,
runs them in ONE transaction (each under a savepoint, so one failure spoils no other), commits once
and flushes once if any of them asked for it: ten thousand jobs in flight pay one commit per batch,
not one per write, and the event loop never waits on the disk. ``BATCHED`` writes are not awaited
(the queue keeps their order, so this process reads its own writes): the caller gets a future, and
their errors are logged and kept (``deferred_errors``). The ``Journal`` face of the same file shares
the engine and, while the writer runs, queues its own calls behind the writer's (``call``): one
connection and one writer per file and process, and sync reads see every earlier async write.
With ``offload=False`` (virtual clocks in tests) operations run inline instead, for determinism.
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
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar, cast

from gateway.store.base import SqlStore
from gateway.store.migrate import migrate_sqlite
from gateway.store.queries import Queries
from gateway.store.records import Durability

__all__ = ["BUSY_TIMEOUT_MS", "SqliteEngine", "SqliteStore"]

_T = TypeVar("_T")
BUSY_TIMEOUT_MS = 5000
_BATCH_MAX = 512
_log = logging.getLogger("gateway.store")
_fsync = os.fsync  # the durability seam: tests count calls


class _Tx:
    lock = ""
    skip_locked = ""

    def __init__(self, db: sqlite3.Connection) -> None:
        self.db = db

    def one(self, sql: str, args: tuple[Any, ...] = ()) -> tuple[Any, ...] | None:
        row = self.db.execute(sql, args).fetchone()
        return None if row is None else tuple(row)

    def all(self, sql: str, args: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        return [tuple(r) for r in self.db.execute(sql, args).fetchall()]

    def run(self, sql: str, args: tuple[Any, ...] = ()) -> int:
        return self.db.execute(sql, args).rowcount


class SqliteEngine:
    """One connection to a journal file (or ``":memory:"``), migrated on open; thread-safe by a lock."""

    def __init__(self, path: str, queries: Queries) -> None:
        self.path = path
        self.queries = queries
        if path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        self.lock = threading.RLock()
        self.db = sqlite3.connect(path, timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None,
                                  check_same_thread=False)
        self.flushes = 0
        try:
            self._setup()
        except BaseException:
            self.db.close()
            raise

    def _setup(self) -> None:
        db = self.db
        db.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        db.execute("PRAGMA foreign_keys = ON")
        if self.path != ":memory:":
            # Switching to WAL needs a moment alone with the file; a peer opening it too may hold it.
            for attempt in range(100):
                try:
                    if db.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
                        db.execute("PRAGMA journal_mode = WAL")
                    break
                except sqlite3.OperationalError as exc:
                    if ("locked" not in str(exc) and "busy" not in str(exc)) or attempt == 99:
                        raise
                    time.sleep(0.05)
            # Commits are not flushed by SQLite itself: FLUSHED writes fsync the WAL explicitly.
            db.execute("PRAGMA synchronous = NORMAL")
        with self.lock:
            db.execute("BEGIN IMMEDIATE")
            try:
                self.schema_version = migrate_sqlite(db, self.path)
                self.queries.backfill_held(_Tx(db))
            except BaseException:
                db.execute("ROLLBACK")
                raise
            db.execute("COMMIT")

    def execute(self, durability: Durability, fn: Callable[..., _T], args: tuple[Any, ...],
                kwargs: dict[str, Any]) -> _T:
        """Run one operation in its own transaction (inline callers and reads)."""
        [(value, error)] = self.batch([(durability, fn, args, kwargs)])
        if error is not None:
            raise error
        return cast(_T, value)

    def batch(self, ops: list[tuple[Durability, Callable[..., Any], tuple[Any, ...], dict[str, Any]]]
              ) -> list[tuple[Any, BaseException | None]]:
        """Run ``ops`` in one transaction, each under its own savepoint; commit once, flush once if any
        succeeded op is ``FLUSHED``. Returns (value, error) per op."""
        out: list[tuple[Any, BaseException | None]] = []
        flush = False
        with self.lock:
            tx = _Tx(self.db)
            self.db.execute("BEGIN IMMEDIATE")
            try:
                for durability, fn, args, kwargs in ops:
                    self.db.execute("SAVEPOINT op")
                    try:
                        value = fn(self.queries, tx, *args, **kwargs)
                    except Exception as error:  # that op's own failure, reported to its caller
                        self.db.execute("ROLLBACK TO op")
                        self.db.execute("RELEASE op")
                        out.append((None, error))
                        continue
                    self.db.execute("RELEASE op")
                    out.append((value, None))
                    flush = flush or durability is Durability.FLUSHED
            except BaseException:
                self.db.execute("ROLLBACK")
                raise
            self.db.execute("COMMIT")
            if flush:
                self.flush()
        return out

    @contextmanager
    def raw(self) -> Iterator[sqlite3.Connection]:
        """The connection inside one ``BEGIN IMMEDIATE`` transaction (committed on leaving)."""
        with self.lock:
            self.db.execute("BEGIN IMMEDIATE")
            try:
                yield self.db
            except BaseException:
                self.db.execute("ROLLBACK")
                raise
            self.db.execute("COMMIT")

    def flush(self) -> None:
        """Make every commit so far durable against power loss: fsync the WAL file."""
        if self.path == ":memory:":
            return
        fd = os.open(self.path + "-wal", os.O_RDONLY)
        try:
            _fsync(fd)
        finally:
            os.close(fd)
        self.flushes += 1

    def close(self) -> None:
        with self.lock:
            self.db.close()


class SqliteStore(SqlStore):
    """The async store on one SQLite file. ``path``: a file or ``":memory:"``; ``offload``: run SQL on
    the writer thread (default) or inline on the caller's thread; ``wall``: epoch seconds (a seam);
    ``engine``: an open ``SqliteEngine`` to share (the ``Journal`` face of the same file), so one
    process has one connection and one writer per file."""

    dialect = "sqlite"

    def __init__(self, path: str | os.PathLike[str], *, offload: bool = True, wall: Callable[[], float] = time.time,
                 emulator_instance: str | None = None, queries: Queries | None = None,
                 engine: SqliteEngine | None = None) -> None:
        super().__init__(wall=wall, emulator_instance=emulator_instance)
        self.engine = engine if engine is not None else SqliteEngine(os.fspath(path), queries or Queries())
        self.path = self.engine.path
        self.where = self.path
        self.offload = offload
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._start = threading.Lock()
        self.deferred_errors: list[BaseException] = []

    @property
    def schema_version(self) -> int:
        return self.engine.schema_version

    def _enqueue(self, item: tuple[Any, ...]) -> None:
        """Queue one operation for the writer (started on first use). Under the start lock, so a stop
        (which queues the end marker under it) never strands an operation behind the marker."""
        with self._start:
            if self._thread is None:
                self._thread = threading.Thread(target=self._writer, name="ovi-store-writer", daemon=True)
                self._thread.start()
                _LIVE.add(self)
            self._queue.put(item)

    async def _run(self, durability: Durability, fn: Callable[..., _T], *args: Any, **kwargs: Any) -> _T:
        if not self.offload:
            return self.engine.execute(durability, fn, args, kwargs)
        loop = asyncio.get_running_loop()
        future: asyncio.Future[_T] = loop.create_future()
        self._enqueue((durability, fn, args, kwargs, loop, future))
        return await future

    async def _later(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> asyncio.Future[Any] | None:
        if not self.offload:
            self.engine.execute(Durability.BATCHED, fn, args, kwargs)
            return None
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        future.add_done_callback(_retrieved)  # its failure is logged and kept; never "never retrieved"
        self._enqueue((Durability.BATCHED, fn, args, kwargs, loop, future))
        return future

    def call(self, durability: Durability, fn: Callable[..., _T], args: tuple[Any, ...],
             kwargs: dict[str, Any]) -> _T:
        """Run one operation for synchronous code (the ``Journal`` face), after every operation queued
        before it (so it reads this process's batched writes); inline when no writer runs."""
        with self._start:
            thread = self._thread
            if thread is not None and threading.current_thread() is not thread:
                done: concurrent.futures.Future[_T] = concurrent.futures.Future()
                self._queue.put((durability, fn, args, kwargs, None, done))
        if thread is None or threading.current_thread() is thread:
            return self.engine.execute(durability, fn, args, kwargs)
        return done.result()

    def _writer(self) -> None:
        while True:
            first = self._queue.get()
            if first is None:
                return
            items = [first]
            while len(items) < _BATCH_MAX:
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
                if item is None:
                    self._queue.put(None)  # stop after this batch
                    break
                items.append(item)
            try:
                results = self.engine.batch([(d, fn, a, k) for d, fn, a, k, _, _ in items])
            except BaseException as failure:  # the transaction itself failed (disk full, I/O): every op fails
                results = [(None, failure)] * len(items)
            for (durability, fn, _, _, loop, future), (value, error) in zip(items, results, strict=True):
                if error is not None and durability is Durability.BATCHED:
                    self.deferred_errors.append(error)
                    _log.error("batched journal write %s failed: %s", fn.__name__, error)
                if loop is None:
                    if error is not None:
                        future.set_exception(error)
                    else:
                        future.set_result(value)
                    continue
                try:
                    loop.call_soon_threadsafe(_settle, future, value, error)
                except RuntimeError:  # that event loop is closed: nobody waits for this answer any more
                    pass

    def _stop(self) -> None:
        with self._start:
            thread, self._thread = self._thread, None
            if thread is not None:
                self._queue.put(None)
        if thread is not None:
            thread.join()
        _LIVE.discard(self)

    async def drain(self) -> None:
        """Wait until every write queued so far is committed (visible to other processes)."""
        if self.offload and self._thread is not None:
            await self._run(Durability.COMMITTED, Queries.noop)

    async def aclose(self) -> None:
        """Write everything queued, stop the writer and close the file."""
        await asyncio.to_thread(self._stop)
        self.engine.close()

    def close(self) -> None:
        self._stop()
        self.engine.close()


_LIVE: weakref.WeakSet[SqliteStore] = weakref.WeakSet()


@atexit.register
def _drain_at_exit() -> None:
    """Batched writes still queued at interpreter exit are committed, not dropped with the daemon thread."""
    for store in list(_LIVE):
        store._stop()


def _retrieved(future: asyncio.Future[Any]) -> None:
    if not future.cancelled():
        future.exception()


def _settle(future: asyncio.Future[Any], value: Any, error: BaseException | None) -> None:
    if future.done():
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(value)
