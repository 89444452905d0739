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
