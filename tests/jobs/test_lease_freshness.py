"""A confirming lease check (before a verdict or a new submit) renews the lease only when this call's
last beat is older than ``FRESH_BEATS`` of a heartbeat (``gateway.jobs.leasing``): a fresher beat
leaves the lease 2.5 beats of life, so no one can hold the clip yet. The lost-lease rule itself is
pinned in ``tests/store/test_lost_lease.py``."""

from __future__ import annotations

import pytest

import gateway.store.queries as queries
from gateway import Gateway, OviRequest
from gateway.clock import VirtualClock
from gateway.emulator import Emulator
from gateway.jobs.leasing import FRESH_BEATS, ClipLease
from gateway.store.journal import Journal
from gateway.store.lease import Heartbeat

pytestmark = pytest.mark.anyio


class Wall:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _lease(wall: Wall, answers: list[bool], heartbeat: Heartbeat | None = None) -> tuple[ClipLease, list[float]]:
    renewed: list[float] = []

    def renew() -> bool:
        renewed.append(wall.now)
        return answers.pop(0)

    lease = ClipLease("k", "me", renew, lambda: "them", heartbeat, wall=wall, interval=10.0)
    lease.beat_at = wall.now  # claimed now
    return lease, renewed


async def test_a_fresh_beat_spares_the_renewal_and_an_old_one_does_not() -> None:
    wall = Wall()
    lease, renewed = _lease(wall, [True, False])
    wall.now += FRESH_BEATS * 10.0 - 0.1  # the claim is still fresh
    assert await lease.check(confirm=True) is None and renewed == []
    wall.now += 0.2  # now it is not: renew
    assert await lease.check(confirm=True) is None and renewed == [wall.now] and lease.beat_at == wall.now
    wall.now += 1.0  # the renewal is a beat: fresh again
    assert await lease.check(confirm=True) is None and len(renewed) == 1
    wall.now += 10.0
    assert await lease.check(confirm=True) == "them"  # an old beat is renewed, and the renewal finds it lost
    assert lease.lost_to == "them" and len(renewed) == 2


async def test_a_heartbeat_counts_as_a_fresh_beat() -> None:
    wall = Wall()
    beat = Heartbeat(lambda: True, sleep=None, interval=10.0, wall=wall)  # type: ignore[arg-type]
    lease, renewed = _lease(wall, [], beat)
    wall.now += 20.0
    beat.beat_at = wall.now - 1.0  # the heartbeat renewed a second ago
    assert await lease.check(confirm=True) is None and renewed == []


async def test_the_claims_own_time_counts_not_when_the_claim_returned(tmp_path) -> None:
    wall = Wall()
    journal = Journal(str(tmp_path / "journal.sqlite3"), wall=wall)
    store = journal.store(offload=False)
    await store.open_clip("k", "{}", "h")
    assert await store.claim_clip("k", "me", heartbeat=10.0) is None  # the lease's life counts from 1000
    wall.now += 4.9  # the claim's answer came late (a busy database): the lease is older than it looks
    lease = ClipLease.on_journal(store, "k", "me", Heartbeat(lambda: True, sleep=None, interval=10.0),  # type: ignore[arg-type]
                                 10.0)
    assert lease.beat_at == 1000.0 and store.claimed_at("k", "me") is None  # read once
    wall.now += 0.2  # 5.1 s after the claim: not fresh any more, whatever the wait
    assert await lease.check(confirm=True) is None and lease.renewals == 1
    journal.close()


async def test_without_a_wall_every_confirming_check_renews() -> None:
    renewed: list[int] = []
    lease = ClipLease("k", "me", lambda: renewed.append(1) is None, lambda: None)
    assert await lease.check(confirm=True) is None and await lease.check(confirm=True) is None
    assert renewed == [1, 1]


async def test_a_quick_job_makes_no_renewal(monkeypatch: pytest.MonkeyPatch) -> None:
    import gateway.store.base as base

    own: list[str] = []  # renewals in a transaction of their own (the lease's or a heartbeat's)
    inner: list[str] = []  # every renewal statement, the ack's included
    original, store_renew = queries.Queries.renew_clip, base.SqlStore.renew_clip

    def counted(self: queries.Queries, *args: object, **kwargs: object) -> bool:
        inner.append("renew")
        return original(self, *args, **kwargs)  # type: ignore[arg-type]

    def renewal(self: base.SqlStore, *args: object, **kwargs: object) -> object:
        own.append("renew")
        return store_renew(self, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(queries.Queries, "renew_clip", counted)
    monkeypatch.setattr(base.SqlStore, "renew_clip", renewal)
    clock = VirtualClock()
    gateway = Gateway(emulator=Emulator(clock=clock, seed=2, job_time=lambda rng: 0.0), clock=clock,
                      journal=Journal(":memory:"), lease_heartbeat=10.0)  # leases in real wall time
    result = await gateway.agenerate(OviRequest(prompt="A cat. <S>Hello.<E>", image="https://example.com/cat.png"),
                                    provider="runware")
    await gateway.aclose()
    assert result.provider == "runware" and own == []  # the claim was fresh at the submit and the verdict
    assert inner == []  # none in the ack either: it came moments after the claim (base.ACK_RENEWS_AFTER)


async def test_claim_times_nobody_reads_are_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    import gateway.store.base as base

    monkeypatch.setattr(base, "_CLAIMS_KEPT", 3)
    journal = Journal(":memory:")
    store = journal.store(offload=False)
    for i in range(5):
        await store.open_clip(f"k{i}", "{}", "h")
        assert await store.claim_clip(f"k{i}", "me") is None
    assert store.claimed_at("k0", "me") is None and store.claimed_at("k4", "me") is not None
    assert len(store._claims) == 2
    journal.close()


async def test_a_retired_heartbeat_beats_no_more_and_loses_nothing() -> None:
    """``Heartbeat.retire``: the call gives its lease back with its result; a renewal that then finds it
    gone (one already in flight) is no loss, and no beat follows."""
    answers = [False]
    beats: list[bool] = []

    def renew() -> bool:
        beats.append(True)
        return answers.pop(0)

    clock = VirtualClock()
    heartbeat = Heartbeat(renew, clock.sleep, 10.0).start()
    heartbeat.retire()
    assert await heartbeat._beat() is False and not heartbeat.lost  # the in-flight one: our own release
    await clock.sleep(35.0)
    assert beats == [True] and not heartbeat.lost  # the task beat no more
    await heartbeat.stop()
