"""Leases kept live by a heartbeat for as long as a call runs, and vendor breakers shared through the
journal (consecutive runs and other processes see them), all in virtual time."""

from __future__ import annotations

import asyncio

import pytest

import gateway.store.lease as lease
from gateway import Gateway, OviRequest
from gateway.clock import VirtualClock
from gateway.emulator import Emulator
from gateway.errors import ClipInProgress, GatewayError
from gateway.routing.planner import Route
from gateway.store.journal import Journal

pytestmark = pytest.mark.anyio


def _request(text: str = "A cat. <S>Hello.<E>") -> OviRequest:
    return OviRequest(prompt=text)


async def _second_call_during_a_long_first(monkeypatch: pytest.MonkeyPatch | None) -> BaseException | None:
    clock = VirtualClock()
    if monkeypatch is not None:  # the heartbeat never beats: the lease must go stale
        monkeypatch.setattr(lease.Heartbeat, "start", lambda self: self)
    journal = Journal(":memory:", wall=clock.now)  # leases judged in virtual wall time
    gw = Gateway(emulator=Emulator(clock=clock, seed=4, job_time=lambda rng: 600.0), clock=clock, journal=journal,
                 lease_heartbeat=10.0)
    first = asyncio.ensure_future(gw.agenerate(_request(), provider="fal", idempotency_key="k"))
    await clock.sleep(400.0)  # 40 heartbeats later; stale after 3 missed beats (30 s) without them
    try:
        await gw.agenerate(_request(), provider="fal", idempotency_key="k")
    except ClipInProgress as error:
        outcome: BaseException | None = error
    except Exception as error:  # a takeover: the two calls collide on one clip (what leases prevent)
        outcome = error
    else:
        outcome = None
    await asyncio.gather(first, return_exceptions=True)  # after a takeover the first call may fail late
    await gw.aclose()
    return outcome


async def test_a_call_running_far_past_three_beats_keeps_its_clip() -> None:
    assert isinstance(await _second_call_during_a_long_first(None), ClipInProgress)


async def test_without_heartbeats_the_same_lease_goes_stale(monkeypatch: pytest.MonkeyPatch) -> None:
    assert not isinstance(await _second_call_during_a_long_first(monkeypatch), ClipInProgress)


def test_a_dead_process_on_this_kernel_and_namespace_frees_its_lease_at_once() -> None:
    import subprocess
    import sys

    child = subprocess.run([sys.executable, "-c", "from gateway.store.lease import lease_owner; print(lease_owner())"],
                           capture_output=True, text=True, check=True)
    owner = child.stdout.strip()
    assert lease.owner_dead(owner)  # that process has exited
    assert not lease.owner_dead(lease.lease_owner())  # this one runs
    host, pid, _namespace, tail = owner.split(":")
    assert not lease.owner_dead(f"{host}:{pid}:0000.1:{tail}")  # another container or boot: wait for beats
    assert not lease.owner_dead(f"{host}:{pid}:{tail}")  # an old-style name proves nothing


async def test_an_open_breaker_is_seen_by_the_next_gateway_on_the_journal(tmp_path) -> None:
    clock = VirtualClock()
    emulator = Emulator(clock=clock, seed=5, faults="fal.submit=503*50")
    path = str(tmp_path / "journal.sqlite3")
    first = Gateway(emulator=emulator, clock=clock, journal=path, breaker={"threshold": 1, "cooldown": 300})
    with pytest.raises(GatewayError):
        await first.agenerate(_request(), provider="fal", route=Route(max_tries=1))
    await first.aclose()
    assert [b.state for b in first.health() if b.provider == "fal"] == ["open"]
    clock.advance(100)
    second = Gateway(emulator=emulator, clock=clock, journal=path, breaker={"threshold": 1, "cooldown": 300})
    [fal] = [b for b in second.health() if b.provider == "fal"]
    assert fal.state == "open" and fal.open_until == pytest.approx(clock.now() + 200)
    result = await second.agenerate(_request("Elsewhere. <S>Go.<E>"))  # the planner skips the cooling vendor
    assert result.provider != "fal"
    await second.aclose()
    clock.advance(250)  # past the shared cooldown: half-open for every process
    third = Gateway(emulator=emulator, clock=clock, journal=path, breaker={"threshold": 1, "cooldown": 300})
    assert [b.state for b in third.health() if b.provider == "fal"] == ["half-open"]


async def test_a_real_time_heartbeat_beats_on_timers_until_stopped_or_lost() -> None:
    """On real time the heartbeat waits on loop timers (no sleeping task per lease): it beats every
    interval, stops beating at ``stop``, and stops by itself once a renewal says the lease is lost."""
    beats: list[float] = []

    async def renew() -> bool:
        beats.append(asyncio.get_running_loop().time())
        return len(beats) < 5

    beat = lease.Heartbeat(renew, asyncio.sleep, 0.01).start()
    assert beat._task is None and beat._timer is not None  # a timer, not a sleeping task
    for _ in range(500):
        if beat.lost:
            break
        await asyncio.sleep(0.01)
    assert beat.lost and len(beats) == 5 and beat.beats == 5
    assert beat._timer is None  # lost: nothing more scheduled
    await beat.stop()

    kept: list[int] = []
    steady = lease.Heartbeat(lambda: kept.append(1) is None, asyncio.sleep, 0.01).start()
    while len(kept) < 2:
        await asyncio.sleep(0.005)
    await steady.stop()
    stopped_at = len(kept)
    await asyncio.sleep(0.05)
    assert len(kept) == stopped_at and steady._timer is None  # no beat after stop
