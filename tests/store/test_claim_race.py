"""A call that opens a key while another call's result for it is committing must see the clip delivered,
never claim it: the result gives its lease back in the same UPDATE (``clip_to(release=…)``), so a claim
that read the clip open before waiting on its row would take a succeeded clip and submit it again (found
double-billing one clip of the 8-process fleet test on PostgreSQL under load). And whatever led there,
an intent for a succeeded clip writes nothing."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from decimal import Decimal
from typing import Any

import psycopg
import pytest

import gateway.store.base as base
from gateway.errors import ClipInProgress
from gateway.store import open_store
from gateway.store.base import SqlStore
from gateway.store.records import request_hash

pytestmark = pytest.mark.anyio

REQ = json.dumps({"prompt": "a cat <S>hello<E>", "seed": 0})
HASH = request_hash(REQ)


async def test_an_intent_for_a_delivered_clip_writes_nothing(store: SqlStore) -> None:
    await store.open_and_claim("k", REQ, HASH, "first")
    await store.intent(clip_key="k", submit_key="s1", provider="runware", quote_usd=Decimal("0.12"))
    await store.accepted("s1", {"job_id": "j1", "provider": "runware"})
    await store.finish("k", '{"job_id": "j1"}', "s1", cost_usd=Decimal("0.12"), cost_source="reported",
                       release="first")
    with pytest.raises(ClipInProgress, match="delivered"):
        await store.intent(clip_key="k", submit_key="s2", provider="runware", quote_usd=Decimal("0.12"))
    assert [s.submit_key for s in await store.submits("k")] == ["s1"]
    assert await store.reserved_and_spent() == Decimal("0.12")


def _waiting_on_a_lock(url: str) -> bool:
    with psycopg.connect(url) as conn:
        row = conn.execute("SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'").fetchone()
    return bool(row and row[0])


@pytest.mark.slow
async def test_a_claim_racing_a_committing_result_never_takes_the_clip(
        pg_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """The second call reads the clip (open, leased to the first), then the first call's result UPDATE
    runs, then the second call's claim: it must end either refused by the first's live lease (it ran
    first) or with the clip delivered (it ran after) — never holding the lease of a clip it saw open."""
    first, second = open_store(pg_url), open_store(pg_url)  # two processes on one database
    read, claim = threading.Event(), threading.Event()
    entered, commit = threading.Event(), threading.Event()
    real_finish, real_claim = base._finish, base._claim

    def held_open(*args: Any, **kwargs: Any) -> None:  # the result written, its transaction not yet committed
        real_finish(*args, **kwargs)
        entered.set()
        commit.wait(20)

    def paused_claim(queries: Any, tx: Any, key: str, owner: str, **kwargs: Any) -> str | None:
        if owner == "second":  # its transaction has read the clip; the claim comes once the result is written
            read.set()
            claim.wait(20)
        return real_claim(queries, tx, key, owner, **kwargs)

    monkeypatch.setattr(base, "_finish", held_open)
    monkeypatch.setattr(base, "_claim", paused_claim)
    try:
        await first.open_and_claim("k", REQ, HASH, "first")
        await first.intent(clip_key="k", submit_key="s1", provider="runware", quote_usd=Decimal("0.12"))
        await first.accepted("s1", {"job_id": "j1", "provider": "runware"})
        opening = asyncio.ensure_future(second.open_and_claim("k", REQ, HASH, "second"))
        assert await asyncio.to_thread(read.wait, 20)
        finishing = asyncio.ensure_future(first.finish("k", '{"job_id": "j1"}', "s1", cost_usd=Decimal("0.12"),
                                                       cost_source="reported", release="first"))
        began = time.monotonic()
        # Either the result's UPDATE ran (and holds the row), or it waits on a row the second call locked.
        while not entered.is_set() and not await asyncio.to_thread(_waiting_on_a_lock, pg_url):
            assert time.monotonic() - began < 20, "the result neither ran nor waited"
            await asyncio.sleep(0.01)
        claim.set()
        if entered.is_set():  # the claim now meets the uncommitted result: let it wait on the row first
            while not await asyncio.to_thread(_waiting_on_a_lock, pg_url):
                assert time.monotonic() - began < 20 and not opening.done(), "the claim never waited on the row"
                await asyncio.sleep(0.01)
        commit.set()
        await finishing
        clip, holder, submits = await opening
        assert holder == "first" or (clip.state, clip.result_json, holder) == ("succeeded", '{"job_id": "j1"}', None), (
            clip.state, holder, submits)
        assert await second.lease_holder("k") != "second"  # the delivered clip was never claimed
        assert (await second.get_clip("k")).state == "succeeded"  # type: ignore[union-attr]
    finally:
        for event in (read, claim, commit):
            event.set()
        await first.aclose()
        await second.aclose()
