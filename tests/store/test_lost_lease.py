"""A call whose clip lease was taken over (it missed its heartbeats while alive but slow) stops following:
no verdict, no failover, no new submit, and a ``JobUnresolved`` naming the vendor job and the new holder.
Leases are judged in injected wall time (each journal's ``wall``), so the takeover is deterministic."""

from __future__ import annotations

import asyncio

import pytest

from gateway import Gateway, OviRequest
from gateway.clock import VirtualClock
from gateway.emulator import Emulator
from gateway.errors import ClipInProgress, JobUnresolved
from gateway.store.journal import Journal

pytestmark = pytest.mark.anyio
REQUEST = OviRequest(prompt="A cat. <S>Hello.<E>")


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.slow)])
def path(request: pytest.FixtureRequest, tmp_path) -> str:
    if request.param == "sqlite":
        return str(tmp_path / "journal.sqlite3")
    return request.getfixturevalue("pg_url")


async def test_the_loser_stops_and_the_taker_finishes_the_same_job(path: str) -> None:
    clock = VirtualClock()
    emulator = Emulator(clock=clock, seed=4, job_time=lambda rng: 120.0)
    slow = Gateway(emulator=emulator, clock=clock, journal=Journal(path, wall=clock.now), lease_heartbeat=10.0)
    # To the taker, 100 s later by its wall clock, the slow call's last beat is 3 beats old: a stale lease.
    taker = Gateway(emulator=emulator, clock=clock, journal=Journal(path, wall=lambda: clock.now() + 100.0),
                    lease_heartbeat=10.0)
    first = asyncio.ensure_future(slow.agenerate(REQUEST, provider="fal", idempotency_key="k"))
    await clock.sleep(15.0)  # the job is accepted and followed
    second = asyncio.ensure_future(taker.agenerate(REQUEST, idempotency_key="k"))
    with pytest.raises(JobUnresolved) as lost:
        await first
    error = lost.value
    assert not second.done() and error.held_by is not None
    assert error.held_by == taker.journal.lease_holder("k")  # the taker holds the clip and follows the job
    result = await second
    assert error.job.job_id == result.job_id and result.job_id in error.message and error.held_by in error.message
    assert error.may_be_billed and result.provider == "fal"
    assert len(emulator.ledger.jobs) == 1  # one paid job, followed to its end by the taker
    assert [s.state for s in taker.journal.submits("k")] == ["succeeded"]
    await slow.aclose()
    await taker.aclose()


async def test_a_verdict_seen_after_the_takeover_is_left_to_the_holder(path: str) -> None:
    clock = VirtualClock()
    emulator = Emulator(clock=clock, seed=5, faults="fal.job=fail", job_time=lambda rng: 30.0)
    # Beats every 50 s: the job's failure (at 30 s) is seen before the next beat could tell of the takeover.
    slow = Gateway(emulator=emulator, clock=clock, journal=Journal(path, wall=clock.now), lease_heartbeat=50.0)
    first = asyncio.ensure_future(slow.agenerate(REQUEST, idempotency_key="k"))  # the default route fails over
    await clock.sleep(15.0)
    other = Journal(path, wall=lambda: clock.now() + 200.0)
    assert other.claim_clip("k", "elsewhere:77:boot.ns:cafe") is None  # a stale-takeover by another process
    with pytest.raises(JobUnresolved) as lost:
        await first
    assert lost.value.held_by == "elsewhere:77:boot.ns:cafe" and "elsewhere:77" in lost.value.message
    assert len(emulator.ledger.jobs) == 1  # no failover, no resubmit after the failed job
    [submit] = other.submits("k")
    assert submit.state in ("accepted", "running") and submit.job_id == lost.value.job.job_id  # no verdict
    assert other.get_clip("k").state == "open"  # the clip was not failed either: the holder decides
    other.close()
    await slow.aclose()


async def test_a_submit_retry_after_the_lease_was_lost_is_not_sent(path: str) -> None:
    # Review finding (session 3): the submit's retry loop POSTed again after each backoff without asking
    # whether this call still held the clip; taken over meanwhile, two calls could each submit a job.
    clock = VirtualClock()
    emulator = Emulator(clock=clock, seed=4, faults="wavespeed.submit=refuse")
    slow = Gateway(emulator=emulator, clock=clock, journal=Journal(path, wall=clock.now), lease_heartbeat=10.0,
                   backoff_base=16.0)  # the first retry waits 8-16 s: the claim's beat is no longer fresh
    first = asyncio.ensure_future(slow.agenerate(REQUEST, provider="wavespeed", idempotency_key="k"))
    await clock.sleep(6.0)  # the first submit was refused (connection refused: nothing sent); the call is backing off
    other = Journal(path, wall=lambda: clock.now() + 200.0)
    assert other.claim_clip("k", "elsewhere:77:boot.ns:cafe") is None  # a stale-takeover by another process
    with pytest.raises(ClipInProgress):
        await first
    assert emulator.ledger.calls("wavespeed", "submit") == 1  # the retry was never sent
    other.close()
    await slow.aclose()
