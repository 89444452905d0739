"""A breaker refresh on SQLite answers from the last read, without an operation, only while nothing can have
changed the stored breakers: no other connection (any process) committed (``PRAGMA data_version``), this
connection wrote no breaker row (a temporary trigger counts them, whoever wrote them), and no breaker write
of this process waits to be committed. Each test changes one of these and checks the next read sees it."""

from __future__ import annotations

import ast
import asyncio
import concurrent.futures
import re
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest

import gateway.store as store_package
from gateway.store import shared_queries
from gateway.store.journal import Journal
from gateway.store.queries import Queries
from gateway.store.records import BreakerRecord, Durability
from gateway.store.sqlite import BREAKER_WRITES, SqliteStore, _read_breakers

pytestmark = pytest.mark.anyio


def _record(provider: str, failures: int) -> BreakerRecord:
    return BreakerRecord(provider, failures, 0, None, None, None)


def _reads(store: SqliteStore) -> list[str]:
    """Collects the breaker SELECTs the store's connection runs from now on."""
    seen: list[str] = []
    store.engine.db.set_trace_callback(lambda sql: seen.append(sql) if "FROM breakers" in sql else None)
    return seen


@pytest.fixture(params=[True, False], ids=["offload", "inline"])
async def store(tmp_path: Path, request: pytest.FixtureRequest) -> SqliteStore:
    made = SqliteStore(tmp_path / "j.sqlite3", offload=request.param)
    yield made  # type: ignore[misc]
    await made.aclose()


async def test_a_refresh_with_nothing_changed_runs_no_read(store: SqliteStore) -> None:
    await store.save_breaker(_record("fal", 1))
    assert (await store.load_breakers())["fal"].failures == 1
    reads = _reads(store)
    assert (await store.load_breakers())["fal"].failures == 1
    assert reads == []
    (await store.load_breakers())["extra"] = _record("x", 9)  # the answer is the caller's own copy
    assert set(await store.load_breakers()) == {"fal"} and reads == []


async def test_another_connection_s_commit_is_read(store: SqliteStore, tmp_path: Path) -> None:
    await store.save_breaker(_record("fal", 1))
    await store.load_breakers()
    other = Journal(str(tmp_path / "j.sqlite3"))  # another connection, as another process has
    try:
        other.save_breaker(_record("fal", 4))
    finally:
        other.close()
    assert (await store.load_breakers())["fal"].failures == 4


async def test_a_commit_of_another_connection_to_any_table_makes_a_read(store: SqliteStore, tmp_path: Path) -> None:
    await store.load_breakers()
    other = Journal(str(tmp_path / "j.sqlite3"))
    try:
        other.open_clip("c1", "{}", "h")
    finally:
        other.close()
    reads = _reads(store)
    await store.load_breakers()
    assert len(reads) == 1  # data_version cannot tell which table: read again


async def test_this_connection_s_own_breaker_writes_are_read(store: SqliteStore) -> None:
    await store.save_breaker(_record("fal", 1))
    await store.load_breakers()
    face = Journal.over(store)  # the sync face: same connection, so data_version does not change
    face.save_breaker(_record("fal", 2))
    assert (await store.load_breakers())["fal"].failures == 2
    with store.engine.raw() as db:  # any SQL that touches the table, not only the known operations
        db.execute("UPDATE breakers SET failures = 7")
    assert (await store.load_breakers())["fal"].failures == 7
    with store.engine.raw() as db:
        db.execute("DELETE FROM breakers")
    assert await store.load_breakers() == {}


async def test_a_rolled_back_read_is_not_trusted(store: SqliteStore) -> None:
    await store.save_breaker(_record("fal", 1))
    with pytest.raises(RuntimeError), store.engine.raw() as db:
        db.execute("UPDATE breakers SET failures = 5")
        store.engine.note_breakers(store.engine._tx, False, {"fal": _record("fal", 5)})  # read in the doomed tx
        raise RuntimeError("rolled back")
    assert (await store.load_breakers())["fal"].failures == 1


async def test_a_breaker_write_waiting_on_the_loop_is_read_after_it(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "j.sqlite3")  # offload: writes wait for the loop's turn to end
    try:
        await store.save_breaker(_record("fal", 1))
        await store.load_breakers()
        save = asyncio.ensure_future(store.save_breaker(_record("fal", 3)))
        await asyncio.sleep(0)  # the save is gathered on this loop, not committed yet
        assert asyncio.get_running_loop() in store._pending
        assert (await store.load_breakers())["fal"].failures == 3  # in order: read behind the save
        await save
    finally:
        await store.aclose()


@pytest.mark.slow
async def test_another_process_s_breaker_is_read(store: SqliteStore, tmp_path: Path) -> None:
    await store.save_breaker(_record("fal", 1))
    await store.load_breakers()
    code = ("import sys; from gateway.store.journal import Journal; from gateway.store.records import BreakerRecord;"
            "j = Journal(sys.argv[1]); j.save_breaker(BreakerRecord('fal', 6, 1, None, None, 'x')); j.close()")
    subprocess.run([sys.executable, "-c", code, str(tmp_path / "j.sqlite3")], check=True, timeout=60)
    assert (await store.load_breakers())["fal"].failures == 6


def test_every_operation_that_writes_breakers_is_listed() -> None:
    """``BREAKER_WRITES`` decides whether a waiting write may change a breaker: every query function that
    writes the table must be in it (a new one that is not would let a read answer from before it)."""
    writes = re.compile(r"(INSERT INTO|UPDATE|DELETE FROM) breakers\b")
    writers = set()
    for source in Path(store_package.__file__).parent.rglob("*.py"):
        for node in ast.walk(ast.parse(source.read_text(encoding="utf-8"))):
            if isinstance(node, ast.FunctionDef) and any(
                    isinstance(c, ast.Constant) and isinstance(c.value, str) and writes.search(c.value)
                    for c in ast.walk(node)):
                writers.add(node.name)
    assert writers == {f.__name__ for f in BREAKER_WRITES}, writers
    assert all(getattr(shared_queries.SharedQueries, name, None) is not None for name in writers)


class _Abort(BaseException):
    """Ends a whole transaction (not one operation's own failure): the engine rolls all of it back."""


def _abort(queries: Queries, tx: object) -> None:
    raise _Abort


async def test_a_read_noted_in_a_transaction_then_rolled_back_whole_is_not_served(tmp_path: Path) -> None:
    """A batch that saves a breaker, reads the breakers (noting what it saw) and is then rolled back whole:
    the saved row is gone from the file, so the noted read must not answer the next refresh."""
    store = SqliteStore(tmp_path / "j.sqlite3", offload=False)
    try:
        await store.save_breaker(_record("fal", 1))
        engine = store.engine
        with pytest.raises(_Abort):
            engine.batch([(Durability.COMMITTED, Queries.save_breaker, (_record("fal", 5), store.emulated, 0.0), {}),
                          (Durability.COMMITTED, _read_breakers, (store.emulated, engine), {}),
                          (Durability.COMMITTED, _abort, (), {})])
        assert (await store.load_breakers())["fal"].failures == 1
    finally:
        await store.aclose()


async def test_a_breaker_write_the_writer_thread_holds_is_read_after(tmp_path: Path, monkeypatch) -> None:
    """A breaker write handed to the writer thread, which has taken it but not yet the connection: the
    connection is free and nothing is committed, so only the count of writes in the writer's hands tells
    the refresh to wait for it (and read what this process wrote before asking)."""
    store = SqliteStore(tmp_path / "j.sqlite3")  # offload: the writer thread
    entered, release = threading.Event(), threading.Event()
    try:
        await store.save_breaker(_record("fal", 1))
        await store.load_breakers()  # noted: the next refresh could answer from it
        engine, batch = store.engine, store.engine.batch

        def held(*args: Any, **kwargs: Any) -> Any:
            if threading.current_thread() is store._thread:
                entered.set()
                release.wait(10)
            return batch(*args, **kwargs)

        monkeypatch.setattr(engine, "batch", held)
        with store._start:
            store._hand([(Durability.COMMITTED, Queries.save_breaker, (_record("fal", 3), store.emulated, 0.0), {},
                          None, concurrent.futures.Future())])
        assert await asyncio.to_thread(entered.wait, 10)  # the writer holds the batch, not the connection
        reading = asyncio.ensure_future(store.load_breakers())
        await asyncio.sleep(0)  # the refresh decides before the writer goes on
        release.set()
        assert (await reading)["fal"].failures == 3
    finally:
        release.set()
        await store.aclose()
