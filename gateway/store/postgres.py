"""The shared backend: PostgreSQL through psycopg 3 and a psycopg_pool connection pool.

Every operation of ``Queries`` runs in one transaction on a pooled connection, on a worker thread
(``asyncio.to_thread``), so the event loop never waits on the network. Write classes map to
PostgreSQL's own durability switch: ``FLUSHED`` commits with ``synchronous_commit = on`` (the WAL is
flushed before the commit returns); ``COMMITTED`` and ``BATCHED`` set ``synchronous_commit = off`` for
their transaction (visible to every replica at once; the server flushes within a few hundred ms).
Row locks (``FOR UPDATE``) order writers on the rows they change; resume workers claim clips with
``FOR UPDATE SKIP LOCKED``. Deadlocks and serialization failures are retried (each operation is one
transaction, safe to run again). Migrations take an advisory lock (``migrate.migrate_postgres``).

Install with the ``postgres`` extra: ``pip install 'ovi-gateway[postgres]'``.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

from gateway.errors import ConfigurationError, StoreUnavailable
from gateway.store.base import SqlStore
from gateway.store.migrate import migrate_postgres
from gateway.store.queries import Queries
from gateway.store.records import Durability
from gateway.store.url import redact, register_password

__all__ = ["PostgresEngine", "PostgresStore"]

_T = TypeVar("_T")
_RETRIES = 8


class _Tx:
    lock = " FOR UPDATE"
    skip_locked = " FOR UPDATE OF c SKIP LOCKED"

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
                                                name="ovi-gateway")
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
        errors = self._errors.errors
        for attempt in range(_RETRIES):
            try:
                with self.pool.connection() as conn, conn.transaction():
                    if durability is not Durability.FLUSHED:
                        conn.execute("SET LOCAL synchronous_commit = off")
                    value = fn(self.queries, _Tx(conn), *args, **kwargs)
                if durability is Durability.FLUSHED:
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

    @property
    def schema_version(self) -> int:
        return self.engine.schema_version

    def __repr__(self) -> str:
        return f"PostgresStore({self.where})"

    async def _run(self, durability: Durability, fn: Callable[..., _T], *args: Any, **kwargs: Any) -> _T:
        if not self.offload:  # inline on the caller's thread (virtual clocks: time must not jump meanwhile)
            return self.engine.execute(durability, fn, args, kwargs)
        return await asyncio.to_thread(self.engine.execute, durability, fn, args, kwargs)

    async def aclose(self) -> None:
        await asyncio.to_thread(self.engine.close)

    def close(self) -> None:
        self.engine.close()
