"""PostgreSQL write classes and batching (``gateway.store.postgres``): a FLUSHED transaction commits with
``synchronous_commit = on``, others with the pool's ``off``; a BATCHED write is not awaited and rides in
the loop's next transaction, or commits alone within ``BATCH_DELAY_S``; closing commits what waits."""

from __future__ import annotations

import asyncio
import json
from decimal import Decimal
from typing import Any

import pytest

import gateway.store.postgres as pg
from gateway.store.journal import Journal
from gateway.store.postgres import PostgresStore
from gateway.store.queries import Queries
from gateway.store.records import Durability, request_hash

pytestmark = [pytest.mark.anyio, pytest.mark.slow]
REQ = json.dumps({"prompt": "a cat <S>hello<E>", "seed": 0})


def _commit_setting(queries: Queries, tx: Any) -> str:
    row = tx.one("SHOW synchronous_commit")
    assert row is not None
    return str(row[0])


async def _submit(store: PostgresStore) -> None:
    await store.open_clip("c1", REQ, request_hash(REQ))
    await store.intent(clip_key="c1", submit_key="s1", provider="fal", quote_usd=Decimal("0.2"))


async def test_only_flushed_transactions_wait_for_the_wal_flush(pg_url: str) -> None:
    store = PostgresStore(pg_url)
    try:
        assert await store._run(Durability.FLUSHED, _commit_setting) == "on"
        assert await store._run(Durability.COMMITTED, _commit_setting) == "off"
        assert await store._run(Durability.BATCHED, _commit_setting) == "off"
    finally:
        await store.aclose()


async def test_a_batched_write_rides_in_the_next_transaction(pg_url: str, monkeypatch) -> None:
    store = PostgresStore(pg_url)
    batches: list[list[str]] = []
    original = pg.PostgresEngine.batch

    def counted(engine: Any, ops: list[Any]) -> Any:
        batches.append([op[1].__name__ for op in ops])
        return original(engine, ops)

    monkeypatch.setattr(pg.PostgresEngine, "batch", counted)
    try:
        await _submit(store)
        written = await store.state("s1", "running")
        assert written is not None and not written.done()  # not waited for
        [record] = await store.submits("c1")
        assert record.state == "running" and written.done()  # committed first, in order, in one transaction
        assert batches == [["submit_to", "submits"]]
    finally:
        await store.aclose()


async def test_a_lone_batched_write_commits_within_the_delay_and_close_commits_the_rest(
        pg_url: str, monkeypatch) -> None:
    store = PostgresStore(pg_url)
    other = Journal(pg_url)
    try:
        await _submit(store)
        monkeypatch.setattr(pg, "BATCH_DELAY_S", 0.0)
        written = await store.state("s1", "running")
        assert written is not None
        await asyncio.wait_for(written, 10)
        assert [s.state for s in other.submits("c1")] == ["running"]  # another process sees it
        monkeypatch.setattr(pg, "BATCH_DELAY_S", 3600.0)
        await store.release_clip("c1", "nobody", wait=False)
        await store.state("s1", "queued")
    finally:
        await store.aclose()  # commits the write still waiting
    assert [s.state for s in other.submits("c1")] == ["queued"]
    other.close()


async def test_a_batched_write_someone_waits_for_is_sent_at_once(pg_url: str, monkeypatch) -> None:
    monkeypatch.setattr(pg, "BATCH_DELAY_S", 3600.0)
    store = PostgresStore(pg_url)
    try:
        await _submit(store)
        written = await store.state("s1", "running")
        assert written is not None
        await asyncio.wait_for(asyncio.wait([written]), 10)
        assert written.done() and written.exception() is None
    finally:
        await store.aclose()


class _GatedEngine:
    """A stand-in engine whose transactions record their ops' names at commit, each batch or statement
    waiting for its gate first (so a test decides which transaction is slow)."""

    def __init__(self) -> None:
        import threading

        self.order: list[str] = []
        self.gates: dict[str, Any] = {}
        self._lock = threading.Lock()

    def _commit(self, names: list[str]) -> None:
        gate = self.gates.get(names[0])
        if gate is not None:
            assert gate.wait(10)
        with self._lock:
            self.order.extend(names)

    def batch(self, ops: list[Any]) -> list[tuple[Any, None]]:
        self._commit([op[1].__name__ for op in ops])
        return [(None, None)] * len(ops)

    def execute(self, durability: Durability, fn: Any, args: Any, kwargs: Any) -> None:
        self._commit([fn.__name__])


def op0(queries: Queries, tx: Any) -> None: ...
def running_a(queries: Queries, tx: Any) -> None: ...
def finish_a(queries: Queries, tx: Any) -> None: ...


async def test_batched_writes_sent_alone_and_a_later_write_commit_in_order() -> None:
    # Review finding (session 3): a later write could commit before an earlier batched one. A batch sent
    # alone did not wait for the batch in flight before it, and an operation waited for one snapshot of
    # the in-flight batches only, so a write sent alone during that wait was overtaken.
    import threading

    engine = _GatedEngine()
    engine.gates = {"op0": threading.Event()}
    store = PostgresStore.__new__(PostgresStore)  # the engine stands in for a database; nothing else is used
    store.offload, store.engine, store.deferred_errors = True, engine, []  # type: ignore[assignment]
    store._pending, store._timers, store._carried = {}, {}, {}
    loop = asyncio.get_running_loop()
    first = await store._later(op0)
    store._send_alone(loop)  # in flight, held at its gate
    second = await store._later(running_a)  # job A's batched write, still pending
    later = asyncio.ensure_future(store._run(Durability.COMMITTED, finish_a))  # job A's next write waits
    await asyncio.sleep(0.05)
    store._send_alone(loop)  # the batched write goes alone (its timer), while op0 is still in flight
    await asyncio.sleep(0.1)  # time for an unordered batch to commit ahead of op0
    engine.gates["op0"].set()
    await asyncio.wait_for(later, 10)
    await asyncio.wait([first, second])  # type: ignore[list-item]
    assert engine.order == ["op0", "running_a", "finish_a"]
