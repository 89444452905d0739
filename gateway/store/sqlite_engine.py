"""The SQLite connection under the embedded backend (``gateway.store.sqlite``): one file in WAL mode.

``SqliteEngine`` is the connection: WAL, ``synchronous = NORMAL`` (a commit is visible to every other
process at once, and survives a killed process, but is not flushed), ``BEGIN IMMEDIATE`` for every
write. A ``Durability.FLUSHED`` write is made durable against power loss by ``fdatasync`` of the WAL
file after its commit (what SQLite itself uses on Linux: the data and the size needed to read it back)
— explicit, so a test can count it (``_fsync`` is the seam). It checkpoints the WAL itself
(``checkpoint_due``), never inside a commit, and measures its flushes (``quick_flush``): the async store
in ``gateway.store.sqlite`` decides from them which thread a flushed write runs on.
"""

from __future__ import annotations

import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar, cast

from gateway.store.migrate import migrate_sqlite
from gateway.store.queries import Queries
from gateway.store.records import Durability

__all__ = ["BUSY_TIMEOUT_MS", "CHECKPOINT_OPS", "FLUSH_ON_LOOP_S", "SqliteEngine"]

_T = TypeVar("_T")
BUSY_TIMEOUT_MS = 5000
CHECKPOINT_OPS = 300
"""Operations committed between two checkpoints of the WAL into the database file (about 1,000-2,000
pages, SQLite's own default is 1,000), run by the writer thread or a synchronous caller."""
FLUSH_ON_LOOP_S = 0.001
"""Seconds: a flush may run on an event loop's thread while the recent average flush of this file took
at most this long (``SqliteEngine.quick_flush``), less than the two thread hops it saves."""
_fsync = getattr(os, "fdatasync", os.fsync)  # the durability seam: tests count calls
_Op = tuple[Durability, Callable[..., Any], tuple[Any, ...], dict[str, Any]]


_RETURNING = sqlite3.sqlite_version_info >= (3, 35, 0)
"""``UPDATE … RETURNING`` exists from SQLite 3.35 (2021); Pythons linked to an older system SQLite (Debian 11,
Ubuntu 20.04, RHEL 8) get the read-then-write form of the same step."""


class _Tx:
    lock = ""
    skip_locked = ""
    returning = _RETURNING
    bytewise = ""

    def __init__(self, db: sqlite3.Connection) -> None:
        self.db = db

    # The connection has no row factory: its rows are tuples already (no copy of each).
    def one(self, sql: str, args: tuple[Any, ...] = ()) -> tuple[Any, ...] | None:
        row: tuple[Any, ...] | None = self.db.execute(sql, args).fetchone()
        return row

    def all(self, sql: str, args: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        rows: list[tuple[Any, ...]] = self.db.execute(sql, args).fetchall()
        return rows

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
        self._tx = _Tx(self.db)
        self._busy_ms = BUSY_TIMEOUT_MS
        self.flushes = 0
        self._wal_fd: int | None = None
        """The WAL file, opened by the first flush and kept until ``close`` (an open and a close less per
        flush, about 10 us here). The same file SQLite writes through its own descriptor for the life of
        the connection: the WAL is only deleted by the last connection to close, never while this one is
        open, and a checkpoint's truncation keeps the file."""
        self.flush_s: float | None = None
        """Seconds a flush of this file took, recent average (``quick_flush``); None before the first."""
        self.checkpoints = 0
        self._checkpointer: sqlite3.Connection | None = None
        self._checkpoint_lock = threading.Lock()
        self._since_checkpoint = 0
        """Operations committed since the last checkpoint (``CHECKPOINT_OPS``)."""
        self.breaker_writes = 0
        """Rows of ``breakers`` this connection inserted, updated or deleted, committed or not (counted by
        a temporary trigger, whoever wrote them: ``breakers_unchanged``)."""
        self.breakers_read: dict[bool, tuple[int, int, dict[str, Any]]] = {}
        """Per kind (emulated or not), the last breaker read: (``PRAGMA data_version`` and
        ``breaker_writes`` in its transaction, the records)."""
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
            # SQLite would checkpoint (copy the WAL into the file, and fsync it) inside whichever commit
            # crosses 1000 pages — on the event loop for an inline commit. This connection checkpoints
            # itself instead, where waiting is allowed (``checkpoint_due``).
            db.execute("PRAGMA wal_autocheckpoint = 0")
        with self.lock:
            db.execute("BEGIN IMMEDIATE")
            try:
                self.schema_version = migrate_sqlite(db, self.path)
                self.queries.backfill_held(_Tx(db))
            except BaseException:
                db.execute("ROLLBACK")
                raise
            db.execute("COMMIT")
        # Counts this connection's own breaker writes (``breakers_unchanged``); TEMP: this connection's
        # alone, never in the file (another process's writes show in ``PRAGMA data_version`` instead).
        db.create_function("ovi_breakers_written", 0, self._breakers_written)
        for event in ("INSERT", "UPDATE", "DELETE"):
            db.execute(f"CREATE TEMP TRIGGER IF NOT EXISTS ovi_breakers_{event.lower()} AFTER {event} ON"
                       " main.breakers BEGIN SELECT ovi_breakers_written(); END")

    def _breakers_written(self) -> None:
        self.breaker_writes += 1

    def note_breakers(self, tx: _Tx, emulated: bool, records: dict[str, Any]) -> None:
        """Remember ``records``, just read in ``tx`` (this connection's open transaction), for
        ``breakers_unchanged``."""
        version = tx.one("PRAGMA data_version")
        if version is not None:
            self.breakers_read[emulated] = (version[0], self.breaker_writes, records)

    def breakers_unchanged(self, emulated: bool) -> dict[str, Any] | None:
        """The records of the last breaker read (``note_breakers``) when no breaker can have changed in the
        file since: this connection wrote none (``breaker_writes``) and no other connection committed
        anything (``PRAGMA data_version``, SQLite's own count of other connections' commits: any process).
        None when either may have happened, or the connection is busy (a thread holds it): read then."""
        seen = self.breakers_read.get(emulated)
        if seen is None or not self.lock.acquire(blocking=False):
            return None
        try:  # under the lock: no write of this connection's can run between this check and the PRAGMA
            if self.db.in_transaction or seen[1] != self.breaker_writes:
                return None
            self._busy(0)  # never waits on the loop's thread
            row = self.db.execute("PRAGMA data_version").fetchone()
        except sqlite3.Error:
            return None
        finally:
            self.lock.release()
        return dict(seen[2]) if row is not None and row[0] == seen[0] else None

    def execute(self, durability: Durability, fn: Callable[..., _T], args: tuple[Any, ...],
                kwargs: dict[str, Any]) -> _T:
        """Run one operation in its own transaction (inline callers and reads)."""
        [(value, error)] = self.batch([(durability, fn, args, kwargs)]) or [(None, None)]
        if error is not None:
            raise error
        return cast(_T, value)

    def batch(self, ops: Sequence[_Op] | Sequence[_Item], *, wait: bool = True,
              checkpoint: bool = True) -> list[tuple[Any, BaseException | None]] | None:
        """Run ``ops`` in one transaction (see ``_in_transaction``); commit once, flush once if any
        succeeded op is ``FLUSHED``. ``ops``: operations, or queued items (an operation's four fields
        first: no copy of each). Returns (value, error) per op. ``wait=False``: only try the
        connection and the file's write lock, never wait for them (the event loop's thread): ``None``
        when either is taken, and nothing was run. A due checkpoint follows the commit unless
        ``wait=False`` or ``checkpoint=False``."""
        if not self.lock.acquire(blocking=wait):
            return None
        try:
            self._busy(0 if not wait else BUSY_TIMEOUT_MS)
            try:
                self.db.execute("BEGIN IMMEDIATE")
            except sqlite3.OperationalError:
                if wait:
                    raise
                return None  # another process writes: the writer thread waits for it
            out = self._in_transaction(ops)
        finally:
            self.lock.release()
        if wait and checkpoint and self.checkpoint_due:  # after the commit (and the lock): this caller waits anyway
            self.checkpoint()
        return out

    def _busy(self, ms: int) -> None:
        """Set how long SQLite waits for another process's write lock (changed only when it differs:
        the loop's thread tries, the writer thread waits)."""
        if self._busy_ms != ms:
            self.db.execute(f"PRAGMA busy_timeout = {ms}")
            self._busy_ms = ms

    def _in_transaction(self, ops: Sequence[_Op] | Sequence[_Item]) -> list[tuple[Any, BaseException | None]]:
        """Run ``ops`` in the open transaction and commit. They run back to back first (several: under one
        savepoint); when one fails (its own error, reported to its caller alone), that pass is rolled back
        and they run again each under its own savepoint, so the failure spoils no other. An op is a function of the
        transaction alone, so running it again is running it once (the first run was rolled back)."""
        try:
            out: list[tuple[Any, BaseException | None]]
            several = len(ops) > 1
            if several:  # undone by ROLLBACK TO, which keeps the transaction and this file's write lock
                self.db.execute("SAVEPOINT batch")
            try:
                queries, tx = self.queries, self._tx
                out = [(op[1](queries, tx, *op[2], **op[3]), None) for op in ops]
            except Exception as error:  # one op's own failure
                if not several:
                    self.db.execute("ROLLBACK")
                    return [(None, error)]
                # Not ROLLBACK and BEGIN again: between the two another process could take the write lock,
                # and every op of this batch would fail with "database is locked" for one op's refusal.
                self.db.execute("ROLLBACK TO batch")
                out = [self._alone(op) for op in ops]
        except BaseException:
            self.breakers_read.clear()  # a read noted in this transaction may have seen writes now undone
            if self.db.in_transaction:
                self.db.execute("ROLLBACK")
            raise
        try:
            self.db.execute("COMMIT")
        except BaseException:
            self.breakers_read.clear()
            raise
        self._since_checkpoint += len(ops)
        if any(op[0] is Durability.FLUSHED and result[1] is None for op, result in zip(ops, out, strict=True)):
            self.flush()
        return out

    def _alone(self, op: _Op | _Item) -> tuple[Any, BaseException | None]:
        self.db.execute("SAVEPOINT op")
        try:
            value = op[1](self.queries, self._tx, *op[2], **op[3])
        except Exception as error:  # that op's own failure, reported to its caller
            self.db.execute("ROLLBACK TO op")
            self.db.execute("RELEASE op")
            return None, error
        self.db.execute("RELEASE op")
        return value, None

    @property
    def checkpoint_due(self) -> bool:
        """``CHECKPOINT_OPS`` operations were committed since the last checkpoint."""
        return self._since_checkpoint >= CHECKPOINT_OPS and self.path != ":memory:"

    def checkpoint(self) -> None:
        """Copy committed WAL frames into the database file (``PASSIVE``: never waits for readers or the
        writer). The bulk is copied on a connection of its own, without this engine's lock: the loop's
        inline commits go on meanwhile instead of queueing behind it (milliseconds: it writes and fsyncs
        the file). The frames committed meanwhile are then copied under the lock, so the checkpoint is
        complete and the next commit starts the WAL from its beginning again (else it would only grow)."""
        with self._checkpoint_lock:
            if self._checkpointer is None:
                self._checkpointer = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_MS / 1000,
                                                     isolation_level=None, check_same_thread=False)
            self._since_checkpoint = 0
            self._checkpointer.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
            with self.lock:  # the few frames committed since: no commit can add more while this runs
                self.db.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
            self.checkpoints += 1

    @contextmanager
    def raw(self) -> Iterator[sqlite3.Connection]:
        """The connection inside one ``BEGIN IMMEDIATE`` transaction (committed on leaving)."""
        with self.lock:
            self._busy(BUSY_TIMEOUT_MS)
            self.db.execute("BEGIN IMMEDIATE")
            try:
                yield self.db
            except BaseException:
                self.breakers_read.clear()  # as in ``_in_transaction``: nothing read in it is trusted
                self.db.execute("ROLLBACK")
                raise
            self.db.execute("COMMIT")

    def flush(self) -> None:
        """Make every commit so far durable against power loss: fsync the WAL file."""
        if self.path == ":memory:":
            return
        began = time.perf_counter()
        if self._wal_fd is None:
            self._wal_fd = os.open(self.path + "-wal", os.O_RDONLY)
        _fsync(self._wal_fd)
        took = time.perf_counter() - began
        self.flush_s = took if self.flush_s is None else 0.75 * self.flush_s + 0.25 * took
        self.flushes += 1

    @property
    def quick_flush(self) -> bool:
        """This file's recent flushes took ``FLUSH_ON_LOOP_S`` or less on average (False before the first;
        an in-memory journal never flushes)."""
        return self.path == ":memory:" or (self.flush_s is not None and self.flush_s <= FLUSH_ON_LOOP_S)

    def close(self) -> None:
        with self._checkpoint_lock:
            if self._checkpointer is not None:
                self._checkpointer.close()
                self._checkpointer = None
        with self.lock:
            self.db.close()
            if self._wal_fd is not None:
                os.close(self._wal_fd)
                self._wal_fd = None


_Item = tuple[Durability, Callable[..., Any], tuple[Any, ...], dict[str, Any], Any, Any]
