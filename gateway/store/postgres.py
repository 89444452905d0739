"""The shared backend: PostgreSQL through psycopg 3 and a psycopg_pool connection pool.

Every operation of ``Queries`` runs in one transaction on a pooled connection, on a worker thread
(``asyncio.to_thread``), so the event loop never waits on the network. ``BATCHED`` writes are not
awaited: they ride in the transaction of the same loop's next operation (saving a round trip each), or
go alone after ``BATCH_DELAY_S``; an operation waits for batched writes already in a transaction, so
this process's writes commit in the order it made them. Write classes map to
PostgreSQL's own durability switch: ``FLUSHED`` commits with ``SET LOCAL synchronous_commit = on`` (the
WAL is flushed before the commit returns); ``COMMITTED`` and ``BATCHED`` commit with the pool's session
setting, ``synchronous_commit = off`` (visible to every replica at once; the server flushes within a few hundred ms).
Row locks (``FOR UPDATE``) order writers on the rows they change; resume workers claim clips with
``FOR UPDATE SKIP LOCKED``. Deadlocks and serialization failures are retried (each operation is one
transaction, safe to run again). Migrations take an advisory lock (``migrate.migrate_postgres``).

Install with the ``postgres`` extra: ``pip install 'ovi-gateway[postgres]'``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar, cast

from gateway.errors import ConfigurationError, StoreUnavailable
from gateway.store.base import SqlStore
from gateway.store.futures import Batched, _retrieved
from gateway.store.migrate import migrate_postgres
from gateway.store.queries import Queries
from gateway.store.records import Durability
from gateway.store.sqlite import BATCH_DELAY_S
from gateway.store.url import redact, register_password

__all__ = ["PostgresEngine", "PostgresStore"]

_T = TypeVar("_T")
_RETRIES = 8
_log = logging.getLogger("gateway.store")
_FLUSHED = "SET LOCAL synchronous_commit = on"


def _unflushed_by_default(conn: Any) -> None:
    """Pooled connections commit without waiting for the WAL flush unless a transaction asks
    (``_FLUSHED``): most transactions are not FLUSHED, and each saves a round trip this way."""
    conn.execute("SET synchronous_commit = off")
    conn.commit()


class _Tx:
    lock = " FOR UPDATE"
    skip_locked = " FOR UPDATE OF c SKIP LOCKED"
    returning = True
    bytewise = ' COLLATE "C"'

    def __init__(self, conn: Any) -> None:
        self.conn = conn

    def one(self, sql: str, args: tuple[Any, ...] = ()) -> tuple[Any, ...] | None:
        row = self.conn.execute(sql.replace("?", "%s"), args).fetchone()
        return None if row is None else tuple(row)

    def all(self, sql: str, args: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        return [tuple(r) for r in self.conn.execute(sql.replace("?", "%s"), args).fetchall()]

    def run(self, sql: str, args: tuple[Any, ...] = ()) -> int:
        return int(self.conn.execute(sql.replace("?", "%s"), args).rowcount)


class _Raw:
    def __init__(self, conn: Any) -> None:
        self.conn = conn

    def execute(self, sql: str, args: tuple[Any, ...] = ()) -> Any:
        return self.conn.execute(sql.replace("?", "%s"), args)


class PostgresEngine:
    """A connection pool to one PostgreSQL database, migrated on open.

    Raises ``StoreUnavailable`` (naming the URL with its password redacted) when the database cannot
    be reached within ``connect_timeout`` seconds — before anything is submitted anywhere."""

    def __init__(self, url: str, queries: Queries, *, max_size: int = 8, connect_timeout: float = 10.0) -> None:
        register_password(url)
        self.where = redact(url)
        self.queries = queries
        try:
            import psycopg
            import psycopg_pool
        except ImportError as exc:
            raise ConfigurationError("a postgresql:// journal needs psycopg: pip install 'ovi-gateway[postgres]'"
                                     ) from exc
        self._errors = psycopg
        self.flushes = 0
        try:  # one direct attempt first: the pool would keep retrying until its timeout
            psycopg.connect(url, connect_timeout=max(1, int(connect_timeout))).close()
        except psycopg.Error as exc:
            raise StoreUnavailable(f"database {self.where} is unreachable ({type(exc).__name__}); nothing was "
                                   "submitted") from None
        self.pool = psycopg_pool.ConnectionPool(url, min_size=1, max_size=max_size, open=False,
                                                kwargs={"connect_timeout": max(1, int(connect_timeout))},
                                                configure=_unflushed_by_default, name="ovi-gateway")
        try:
            self.pool.open(wait=True, timeout=connect_timeout)
        except Exception as exc:
            self.pool.close()
            raise StoreUnavailable(f"database {self.where} is unreachable ({type(exc).__name__}); nothing was "
                                   "submitted") from None
        try:
            with self.pool.connection() as conn:
                self.schema_version = migrate_postgres(conn, self.where)
            self.execute(Durability.COMMITTED, Queries.backfill_held, (), {})
        except BaseException:
            self.pool.close()
            raise

    def execute(self, durability: Durability, fn: Callable[..., _T], args: tuple[Any, ...],
                kwargs: dict[str, Any]) -> _T:
        """Run one operation in its own transaction, retrying deadlocks and serialization failures."""
        return self._transaction(durability is Durability.FLUSHED,
                                 lambda conn: fn(self.queries, _Tx(conn), *args, **kwargs))

    def batch(self, ops: list[tuple[Durability, Callable[..., Any], tuple[Any, ...], dict[str, Any]]]
              ) -> list[tuple[Any, BaseException | None]]:
        """Run ``ops`` in ONE transaction, each under a savepoint (one failure spoils no other), flushed
        if any is ``FLUSHED``; retried whole on deadlocks and serialization failures. (value, error) per op."""
        errors = self._errors.errors

        def run_all(conn: Any) -> list[tuple[Any, BaseException | None]]:
            out: list[tuple[Any, BaseException | None]] = []
            tx = _Tx(conn)
            for _, fn, args, kwargs in ops:
                try:
                    with conn.transaction():  # a savepoint
                        out.append((fn(self.queries, tx, *args, **kwargs), None))
                except (errors.DeadlockDetected, errors.SerializationFailure, errors.UniqueViolation):
                    raise
                except self._errors.OperationalError:
                    raise
                except Exception as error:  # that op's own failure, reported to its caller
                    out.append((None, error))
            return out

        return self._transaction(any(op[0] is Durability.FLUSHED for op in ops), run_all)

    def _transaction(self, flushed: bool, body: Callable[[Any], _T]) -> _T:
        """``body(connection)`` in one transaction (synchronous_commit on when ``flushed``), retried whole
        on deadlocks, serialization failures and unique-key races; a lost database is ``StoreUnavailable``."""
        errors = self._errors.errors
        for attempt in range(_RETRIES):
            try:
                with self.pool.connection() as conn, conn.transaction():
                    if flushed:
                        conn.execute(_FLUSHED)
                    value = body(conn)
                if flushed:
                    self.flushes += 1
                return value
            except (errors.DeadlockDetected, errors.SerializationFailure, errors.UniqueViolation):
                if attempt == _RETRIES - 1:
                    raise
                time.sleep(0.005 * (attempt + 1))
            except self._errors.OperationalError as exc:
                raise StoreUnavailable(f"database {self.where} failed: {type(exc).__name__}") from None
            except self._errors.errors.ConnectionTimeout as exc:  # pragma: no cover - pool exhaustion
                raise StoreUnavailable(f"database {self.where}: {exc}") from None
        raise AssertionError("unreachable")

    @contextmanager
    def raw(self) -> Iterator[Any]:
        """One transaction whose ``execute(sql, args)`` takes ``?`` placeholders (for mixins' own SQL)."""
        with self.pool.connection() as conn, conn.transaction():
            conn.execute(_FLUSHED)  # mixins' own SQL keeps the server's default durability
            yield _Raw(conn)

    def close(self) -> None:
        self.pool.close()


class PostgresStore(SqlStore):
    """The async store on PostgreSQL; ``url`` a ``postgresql://`` URL (its password is a secret);
    ``engine``: an open ``PostgresEngine`` to share (the ``Journal`` face of the same database);
    ``offload``: each operation on a worker thread (default) or inline on the caller's thread."""

    dialect = "postgresql"

    def __init__(self, url: str, *, wall: Callable[[], float] = time.time, emulator_instance: str | None = None,
                 max_size: int = 8, connect_timeout: float = 10.0, queries: Queries | None = None,
                 engine: PostgresEngine | None = None, offload: bool = True) -> None:
        super().__init__(wall=wall, emulator_instance=emulator_instance)
        self.offload = offload
        self.engine = engine if engine is not None else PostgresEngine(
            url, queries or Queries(), max_size=max_size, connect_timeout=connect_timeout)
        self.where = self.engine.where
        self._pending: dict[asyncio.AbstractEventLoop, list[tuple[Callable[..., Any], tuple[Any, ...],
                                                                  dict[str, Any], asyncio.Future[Any]]]] = {}
        """This loop's BATCHED writes not yet sent (they ride with its next operation)."""
        self._timers: dict[asyncio.AbstractEventLoop, asyncio.TimerHandle] = {}
        self._carried: dict[asyncio.AbstractEventLoop, set[asyncio.Future[Any]]] = {}
        """BATCHED writes in a transaction now: later operations of the loop wait for them."""
        self.deferred_errors: list[BaseException] = []

    @property
    def schema_version(self) -> int:
        return self.engine.schema_version

    def __repr__(self) -> str:
        return f"PostgresStore({self.where})"

    async def _run(self, durability: Durability, fn: Callable[..., _T], *args: Any, **kwargs: Any) -> _T:
        if not self.offload:  # inline on the caller's thread (virtual clocks: time must not jump meanwhile)
            return self.engine.execute(durability, fn, args, kwargs)
        loop = asyncio.get_running_loop()
        # Batched writes made earlier and in a transaction now commit first (their order). While this
        # waits, writes still pending may be sent alone too (their timer, or someone waiting for them):
        # wait again until none is in flight, so no later write commits before an earlier one.
        while carried := self._carried.get(loop):
            await asyncio.wait(list(carried))
        taken = self._take(loop)
        if not taken:
            return await asyncio.to_thread(self.engine.execute, durability, fn, args, kwargs)
        self._mark(loop, taken)
        results = await self._carry(loop, taken, (durability, fn, args, kwargs))
        value, error = results[-1]
        if error is not None:
            raise error
        return cast(_T, value)

    async def _later(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> asyncio.Future[Any] | None:
        """A ``BATCHED`` write: rides in the transaction of this loop's next operation, or goes alone
        after ``BATCH_DELAY_S`` (at once when someone waits for it: ``Batched``); the returned future
        ends when it is committed (or with its error)."""
        if not self.offload:
            self.engine.execute(Durability.BATCHED, fn, args, kwargs)
            return None
        loop = asyncio.get_running_loop()
        future = Batched(loop, self)  # awaited: sent at once (``_hurry``)
        self._pending.setdefault(loop, []).append((fn, args, kwargs, future))
        if loop not in self._timers:
            self._timers[loop] = loop.call_later(BATCH_DELAY_S, self._send_alone, loop)
        return future

    def _hurry(self, loop: asyncio.AbstractEventLoop) -> None:
        """Someone waits for a batched write of ``loop``: send what it gathered at the end of this turn."""
        loop.call_soon(self._send_alone, loop)

    def _take(self, loop: asyncio.AbstractEventLoop) -> list[tuple[Callable[..., Any], tuple[Any, ...],
                                                                   dict[str, Any], asyncio.Future[Any]]]:
        timer = self._timers.pop(loop, None)
        if timer is not None:
            timer.cancel()
        return self._pending.pop(loop, [])

    def _send_alone(self, loop: asyncio.AbstractEventLoop) -> None:
        self._timers.pop(loop, None)
        taken = self._take(loop)
        if taken:
            earlier = self._mark(loop, taken)  # before the task starts: an operation made meanwhile waits
            task = loop.create_task(self._carry(loop, taken, None, after=earlier))
            task.add_done_callback(_retrieved)

    def _mark(self, loop: asyncio.AbstractEventLoop,
              taken: list[tuple[Callable[..., Any], tuple[Any, ...], dict[str, Any], asyncio.Future[Any]]]
              ) -> list[asyncio.Future[Any]]:
        """Mark ``taken`` as in a transaction; returns the batched writes that were in flight before them."""
        carried = self._carried.setdefault(loop, set())
        earlier = list(carried)
        carried.update(future for *_, future in taken)
        return earlier

    async def _carry(self, loop: asyncio.AbstractEventLoop,
                     taken: list[tuple[Callable[..., Any], tuple[Any, ...], dict[str, Any], asyncio.Future[Any]]],
                     op: tuple[Durability, Callable[..., Any], tuple[Any, ...], dict[str, Any]] | None,
                     *, after: list[asyncio.Future[Any]] | None = None) -> list[tuple[Any, BaseException | None]]:
        """Commit ``taken`` batched writes (and ``op`` last) in one transaction, once the batches in flight
        before them (``after``) have committed; answer their futures."""
        futures = [future for *_, future in taken]
        carried = self._carried.setdefault(loop, set())  # ``_mark``-ed by the caller
        ops = [(Durability.BATCHED, fn, args, kwargs) for fn, args, kwargs, _ in taken]
        try:
            if after:  # two batches sent alone commit in the order they were sent
                await asyncio.wait(after)
            try:
                results = await asyncio.to_thread(self.engine.batch, ops + ([] if op is None else [op]))
            except Exception as failure:  # the transaction itself failed: every op fails
                results = [(None, failure)] * (len(ops) + (op is not None))
            for future, (value, error) in zip(futures, results, strict=False):
                if error is not None:
                    self.deferred_errors.append(error)
                    _log.error("batched journal write failed: %s", error)
                if not future.done():
                    if error is not None:
                        future.set_exception(error)
                    else:
                        future.set_result(value)
            return results
        finally:
            carried.difference_update(futures)

    async def drain(self) -> None:
        """Wait until every BATCHED write made so far on this loop is committed (writes started in tasks
        that have not run yet, such as a breaker's save, are let in first)."""
        await asyncio.sleep(0)
        await self._run(Durability.COMMITTED, Queries.noop)

    async def aclose(self) -> None:
        if self._pending or any(self._carried.values()):
            await self.drain()
        await asyncio.to_thread(self.close)

    def close(self) -> None:
        """Commit BATCHED writes still waiting on any loop (it may be closed), then close the pool."""
        for loop in list(self._pending):
            taken = self._take(loop)
            if not taken:
                continue
            try:
                self.engine.batch([(Durability.BATCHED, fn, args, kwargs) for fn, args, kwargs, _ in taken])
            except Exception as error:  # the database is gone: nothing more can be written
                _log.error("batched journal writes lost at close: %s", error)
        self.engine.close()
