"""A clip keyed by the gateway itself is created, leased, in its first intent's transaction, on both backends.

``SqlStore.intent(opening=…)`` (``ClipOpening``): one flushed commit where a fresh clip took two (the
committed open-and-claim, then the intent). The claim is visible only from that commit on, so the
intent itself must keep two calls from both submitting under one key: the second call's intent finds
the clip and writes nothing (no intent, so no POST), raising ``ClipInProgress`` — or ``InvalidRequest``
for a different request. A naive version (create the clip if absent, then record the intent anyway)
fails ``test_a_second_opening_of_one_key_writes_nothing``.
"""

from __future__ import annotations

import json
from decimal import Decimal

import pytest

from gateway.errors import BudgetExceeded, ClipInProgress, InvalidRequest
from gateway.store import open_store
from gateway.store.base import SqlStore
from gateway.store.records import STALE_BEATS, ClipOpening, request_hash
from tests.store.conftest import Wall

pytestmark = pytest.mark.anyio
REQ = json.dumps({"prompt": "a cat <S>hello<E>", "seed": 0})
BEAT = 10.0


def _opening(owner: str, request: str = REQ) -> ClipOpening:
    return ClipOpening(request, request_hash(request), owner, BEAT, options_json='{"o": 1}')


async def test_the_opening_intent_creates_the_clip_leased_to_its_owner(store: SqlStore) -> None:
    assert isinstance(store.wall, Wall)
    claimed = store.wall.now
    await store.intent(clip_key="c1", submit_key="s1", provider="fal", quote_usd=Decimal("0.20"),
                       opening=_opening("me"))
    clip = await store.get_clip("c1")
    assert clip is not None and clip.state == "open" and clip.request_json == REQ and clip.options_json == '{"o": 1}'
    [submit] = await store.submits("c1")
    assert submit.submit_key == "s1" and submit.state == "intent" and submit.quote_usd == Decimal("0.20")
    assert await store.lease_holder("c1") == "me" and store.claimed_at("c1", "me") == claimed
    store.wall.now = claimed + STALE_BEATS * BEAT - 1.0  # the lease counts from the claim in the intent
    assert await store.claim_clip("c1", "them", heartbeat=BEAT) == "me"
    assert await store.reserved_and_spent() == Decimal("0.20")  # the intent's running totals moved with it


async def test_a_second_opening_of_one_key_writes_nothing(store: SqlStore, journal_target: str) -> None:
    other = open_store(journal_target)  # another process on the same journal
    other.wall = store.wall
    try:
        await store.intent(clip_key="k", submit_key="first", provider="fal", quote_usd=Decimal("0.20"),
                           opening=_opening("me"))
        with pytest.raises(ClipInProgress, match="opened by another call"):
            await other.intent(clip_key="k", submit_key="second", provider="fal", quote_usd=Decimal("0.20"),
                               opening=_opening("them"))
        assert [s.submit_key for s in await store.submits("k")] == ["first"]  # no intent: nothing to POST
        assert await store.lease_holder("k") == "me" and other.claimed_at("k", "them") is None
        assert other._acks == {}  # no ack is coming for the refused intent
        assert await store.reserved_and_spent() == Decimal("0.20")
        different = json.dumps({"prompt": "a dog <S>hi<E>"})
        with pytest.raises(InvalidRequest, match="different request"):
            await other.intent(clip_key="k", submit_key="third", provider="fal", quote_usd=Decimal("0.20"),
                               opening=_opening("them", different))
        assert [s.submit_key for s in await store.submits("k")] == ["first"]
    finally:
        await other.aclose()


async def test_an_opening_after_a_caller_opened_the_key_writes_nothing(store: SqlStore) -> None:
    await store.open_clip("k", REQ, request_hash(REQ))  # opened (not yet submitted) by a call of the caller's key
    with pytest.raises(ClipInProgress):
        await store.intent(clip_key="k", submit_key="s", provider="fal", quote_usd=None, opening=_opening("me"))
    assert await store.submits("k") == [] and await store.lease_holder("k") is None


async def test_an_opening_intent_over_budget_keeps_the_clip_and_its_refusal(store: SqlStore) -> None:
    budget = ((Decimal("0.10"), "total", ""),)
    with pytest.raises(BudgetExceeded):
        await store.intent(clip_key="c1", submit_key="s1", provider="fal", quote_usd=Decimal("0.20"), budget=budget,
                           opening=_opening("me"))
    [submit] = await store.submits("c1")  # the refusal is on record, under its clip
    assert submit.state == "failed" and await store.lease_holder("c1") == "me"
    assert store.claimed_at("c1", "me") is not None and await store.reserved_and_spent() == Decimal("0")


async def test_a_later_intent_of_an_opened_clip_needs_no_opening(store: SqlStore) -> None:
    await store.intent(clip_key="c1", submit_key="s1", provider="fal", quote_usd=Decimal("0.20"),
                       opening=_opening("me"))
    await store.failed("s1", error="refused", may_be_billed=False)
    await store.intent(clip_key="c1", submit_key="s2", provider="runware", quote_usd=Decimal("0.13"))  # a failover
    assert [s.submit_key for s in await store.submits("c1")] == ["s1", "s2"]
    with pytest.raises(ValueError, match="already in the journal"):
        await store.intent(clip_key="c1", submit_key="s2", provider="runware", quote_usd=Decimal("0.13"))


async def test_the_result_gives_back_its_owners_lease_and_no_other(store: SqlStore) -> None:
    """``finish(release=owner)``: the result's UPDATE gives the lease back (``release_clip`` in the same
    transaction); a lease another call took over meanwhile stays that call's."""
    assert isinstance(store.wall, Wall)
    for key in ("mine", "taken"):
        await store.intent(clip_key=key, submit_key=f"{key}-s", provider="fal", quote_usd=Decimal("0.2"),
                           opening=_opening("me"))
        await store.accepted(f"{key}-s", {"provider": "fal", "job_id": key})
    store.wall.now += (STALE_BEATS + 1) * BEAT
    assert await store.claim_clip("taken", "them", heartbeat=BEAT) is None  # a stale takeover
    for key in ("mine", "taken"):
        await store.finish(key, '{"provider": "fal"}', f"{key}-s", cost_usd=Decimal("0.2"), cost_source="reported",
                           release="me")
        clip = await store.get_clip(key)
        assert clip is not None and clip.state == "succeeded" and clip.result_json == '{"provider": "fal"}'
    assert await store.lease_holder("mine") is None and "mine" not in store._held
    assert await store.lease_holder("taken") == "them"  # never another owner's
    assert [s.state for s in await store.submits("mine")] == ["succeeded"]
