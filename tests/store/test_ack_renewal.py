"""The ack renews the clip's lease in its own transaction (``SqlStore.accepted``), on both backends.

A call holding a clip's lease is alive when its vendor acks, so the flushed ack's transaction pushes the
lease out as a heartbeat would (``SqlStore.renewed_at``). A verdict within ``FRESH_BEATS`` of a beat
needs no renewal of its own (``gateway.jobs.leasing``); with ten thousand jobs in flight that renewal
was one more group-commit round trip on every job's way to its result. The ack's renewal counts only
once committed, and never for a lease lost before it: the ack itself is recorded either way.
"""

from __future__ import annotations

import json
from decimal import Decimal

import pytest

from gateway.jobs.leasing import FRESH_BEATS, ClipLease
from gateway.store.base import ACK_RENEWS_AFTER, SqlStore
from gateway.store.lease import Heartbeat
from gateway.store.records import STALE_BEATS, request_hash
from tests.store.conftest import Wall

pytestmark = pytest.mark.anyio
REQ = json.dumps({"prompt": "a cat <S>hello<E>", "seed": 0})
BEAT = 10.0


async def _claimed_and_submitted(store: SqlStore, key: str = "c1") -> ClipLease:
    _, holder, _ = await store.open_and_claim(key, REQ, request_hash(REQ), "me", heartbeat=BEAT)
    assert holder is None and await store.lease_holder(key) == "me"
    await store.intent(clip_key=key, submit_key=f"{key}-s", provider="fal", quote_usd=Decimal("0.2"))
    idle = Heartbeat(lambda: True, sleep=None, interval=BEAT)  # type: ignore[arg-type]  # never started
    return ClipLease.on_journal(store, key, "me", idle, BEAT)


async def test_the_ack_renews_the_lease_so_a_verdict_soon_after_needs_no_renewal(store: SqlStore) -> None:
    wall = store.wall
    assert isinstance(wall, Wall)
    claimed = wall.now
    lease = await _claimed_and_submitted(store)
    wall.now += FRESH_BEATS * BEAT - 0.1  # a slow submit: the claim is about to stop counting as fresh
    acked = wall.now
    await store.accepted("c1-s", {"provider": "fal", "job_id": "job-1"})
    assert store.renewed_at("c1", "me") == acked
    [submit] = await store.submits("c1")
    assert submit.state == "accepted" and submit.job_id == "job-1"
    wall.now += FRESH_BEATS * BEAT - 0.1  # the verdict: long after the claim, soon after the ack
    assert wall.now - claimed > FRESH_BEATS * BEAT
    assert await lease.check(confirm=True) is None and lease.renewals == 0
    wall.now += 0.2  # now the ack's beat is old too: the verdict renews
    assert await lease.check(confirm=True) is None and lease.renewals == 1


async def test_the_acks_renewal_is_in_the_database(store: SqlStore) -> None:
    wall = store.wall
    assert isinstance(wall, Wall)
    claimed = wall.now
    await _claimed_and_submitted(store)
    wall.now += BEAT
    await store.accepted("c1-s", {"provider": "fal", "job_id": "job-1"})
    wall.now = claimed + STALE_BEATS * BEAT + 1.0  # the claim alone would be stale by now
    assert await store.claim_clip("c1", "them", heartbeat=BEAT) == "me"  # the ack's renewal keeps it live


async def test_an_ack_after_the_lease_was_taken_is_recorded_but_renews_nothing(store: SqlStore) -> None:
    wall = store.wall
    assert isinstance(wall, Wall)
    lease = await _claimed_and_submitted(store)
    wall.now += (STALE_BEATS + 1) * BEAT  # this call missed its beats: its lease is stale
    assert await store.claim_clip("c1", "them", heartbeat=BEAT) is None  # taken over
    await store.accepted("c1-s", {"provider": "fal", "job_id": "job-1"})  # the late ack of the paid job
    [submit] = await store.submits("c1")
    assert submit.state == "accepted" and submit.job_id == "job-1"  # the job id is never dropped
    assert store.renewed_at("c1", "me") is None
    assert await store.lease_holder("c1") == "them"  # the new holder's lease is untouched
    assert await lease.check(confirm=True) == "them"  # the verdict's own renewal finds it lost


async def test_an_ack_moments_after_the_claim_renews_nothing(store: SqlStore) -> None:
    wall = store.wall
    assert isinstance(wall, Wall)
    claimed = wall.now
    statements = _statements(store)
    lease = await _claimed_and_submitted(store)
    wall.now += ACK_RENEWS_AFTER * BEAT - 0.01  # a quick POST: the claim is as good as a renewal
    before = len(statements or [])
    await store.accepted("c1-s", {"provider": "fal", "job_id": "job-1"})
    if statements is not None:  # SQLite: the ack alone, no UPDATE of the clip in its transaction
        assert [s.split()[:2] for s in statements[before:] if s.split()[0] in ("UPDATE", "INSERT")] \
            == [["UPDATE", "submits"]]
    [submit] = await store.submits("c1")
    assert submit.state == "accepted" and submit.job_id == "job-1"  # the ack is recorded all the same
    assert store.renewed_at("c1", "me") is None
    wall.now = claimed + FRESH_BEATS * BEAT - 0.1  # a verdict while the claim itself is still fresh
    assert await lease.check(confirm=True) is None and lease.renewals == 0
    wall.now = claimed + FRESH_BEATS * BEAT + 0.1  # the claim is the last beat: the verdict renews
    assert await lease.check(confirm=True) is None and lease.renewals == 1


async def test_an_ack_after_a_renewal_was_due_renews(store: SqlStore) -> None:
    wall = store.wall
    assert isinstance(wall, Wall)
    await _claimed_and_submitted(store)
    wall.now += ACK_RENEWS_AFTER * BEAT + 0.01
    await store.accepted("c1-s", {"provider": "fal", "job_id": "job-1"})
    assert store.renewed_at("c1", "me") == wall.now


def _statements(store: SqlStore) -> list[str] | None:
    engine = getattr(store, "engine", None)
    db = getattr(engine, "db", None)
    if db is None or not hasattr(db, "set_trace_callback"):
        return None
    seen: list[str] = []
    db.set_trace_callback(seen.append)
    return seen


async def test_a_released_lease_is_forgotten(store: SqlStore) -> None:
    await _claimed_and_submitted(store)
    assert isinstance(store.wall, Wall)
    store.wall.now += BEAT  # a renewal is due at the ack
    await store.accepted("c1-s", {"provider": "fal", "job_id": "job-1"})
    assert store.renewed_at("c1", "me") is not None
    await store.release_clip("c1", "me")
    assert store.renewed_at("c1", "me") is None and "c1" not in store._held


async def test_a_submit_that_ends_without_an_ack_is_forgotten(store: SqlStore) -> None:
    await _claimed_and_submitted(store)
    assert store._acks == {"c1-s": "c1"}
    await store.failed("c1-s", error="refused before anything was billed", may_be_billed=False)
    assert store._acks == {}  # no ack is coming: nothing kept for one
