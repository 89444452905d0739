"""Virtual and real clocks (gateway/clock.py)."""

from __future__ import annotations

import asyncio
import random
import time

import pytest

from gateway.clock import Clock, RealClock, VirtualClock

pytestmark = pytest.mark.anyio


async def test_sleep_advances_instantly(clock: VirtualClock) -> None:
    wall = time.perf_counter()
    assert clock.now() == 0.0
    await clock.sleep(3600)
    assert clock.now() == 3600.0
    await clock.sleep(86400)
    assert clock.now() == 90000.0
    assert clock.slept == 90000.0
    assert time.perf_counter() - wall < 0.5


async def test_negative_and_zero_sleep(clock: VirtualClock) -> None:
    await clock.sleep(-5)
    await clock.sleep(0)
    assert clock.now() == 0.0
    assert clock.slept == 0.0


async def test_custom_start() -> None:
    c = VirtualClock(start=100.0)
    await c.sleep(2.5)
    assert c.now() == 102.5


def test_advance() -> None:
    c = VirtualClock()
    c.advance(1.5)
    c.advance(2)
    assert c.now() == 3.5
    assert c.slept == 0.0


async def test_many_concurrent_sleepers_wake_in_order(clock: VirtualClock) -> None:
    rng = random.Random(7)
    durations = [rng.randint(1, 500) / 4 for _ in range(1000)]
    woke: list[tuple[int, float]] = []

    async def sleeper(i: int) -> None:
        await clock.sleep(durations[i])
        woke.append((i, clock.now()))

    wall = time.perf_counter()
    await asyncio.gather(*(sleeper(i) for i in range(len(durations))))
    assert time.perf_counter() - wall < 2.0
    assert len(woke) == 1000
    for i, seen in woke:
        assert seen == durations[i], (i, seen)
    times = [t for _, t in woke]
    assert times == sorted(times)
    assert clock.now() == max(durations)
    assert clock.slept == sum(durations)


async def test_chained_sleeps_interleave(clock: VirtualClock) -> None:
    log: list[tuple[str, float]] = []

    async def worker(name: str, steps: list[float]) -> None:
        for step in steps:
            await clock.sleep(step)
            log.append((name, clock.now()))

    await asyncio.gather(worker("a", [1, 1, 1]), worker("b", [2.5, 0.25]), worker("c", [0.5]))
    assert log == [("c", 0.5), ("a", 1.0), ("a", 2.0), ("b", 2.5), ("b", 2.75), ("a", 3.0)]


async def test_gather_ends_at_longest_sleep(clock: VirtualClock) -> None:
    async def slow() -> str:
        await clock.sleep(10)
        return "slow"

    async def fast() -> str:
        await clock.sleep(1)
        return "fast"

    done = await asyncio.gather(slow(), fast())
    assert done == ["slow", "fast"]
    assert clock.now() == 10.0


def test_clocks_satisfy_protocol() -> None:
    def takes(c: Clock) -> float:
        return c.now()

    assert takes(VirtualClock(start=4.0)) == 4.0
    assert isinstance(takes(RealClock()), float)


async def test_real_clock_basic() -> None:
    c = RealClock()
    first = c.now()
    assert abs(first - time.monotonic()) < 1.0
    await c.sleep(-1)  # clamped to 0, returns at once
    await c.sleep(0.01)
    second = c.now()
    assert second - first >= 0.009
    assert second - first < 1.0


def test_wavespeed_is_never_polled_faster_than_its_documented_5_seconds() -> None:
    from gateway.jobs.polling import PollPolicy
    from providers.runware import RunwareProvider
    from providers.wavespeed import WaveSpeedProvider

    policy = PollPolicy()
    assert WaveSpeedProvider.min_poll_interval == 5.0  # the floor is the adapter's, not the core's
    assert not hasattr(RunwareProvider, "min_poll_interval")
    assert policy.next_wait("wavespeed", elapsed=50.0, checks=3, floor=5.0) == 5.0
    assert policy.next_wait("runware", elapsed=50.0, checks=3) == 3.0
    assert PollPolicy(min_interval={}).next_wait("wavespeed", elapsed=50.0, checks=3, floor=5.0) == 3.0


# ---- Clock.timeout: bounds in the clock's own time ----------------------------------------------

async def test_virtual_timeout_cuts_a_trickle_at_the_bound_in_virtual_time(clock: VirtualClock) -> None:
    received: list[float] = []

    async def trickle() -> None:  # a vendor sending one byte a second, for ever
        while True:
            await clock.sleep(1.0)
            received.append(clock.now())

    wall = time.perf_counter()
    with pytest.raises(TimeoutError):
        async with clock.timeout(5.5):
            await trickle()
    assert clock.now() == 5.5
    assert len(received) == 5
    assert time.perf_counter() - wall < 1.0


async def test_virtual_timeout_that_is_not_reached_leaves_time_and_the_task_alone(clock: VirtualClock) -> None:
    async with clock.timeout(100):
        await clock.sleep(2)
    assert clock.now() == 2.0
    await clock.sleep(1)  # no stale bound drags time to 100, and no stray cancel arrives
    assert clock.now() == 3.0
    assert clock.slept == 3.0


async def test_virtual_timeouts_nest_and_the_inner_one_fires_first(clock: VirtualClock) -> None:
    with pytest.raises(TimeoutError):
        async with clock.timeout(10):
            async with clock.timeout(3):
                await clock.sleep(60)
    assert clock.now() == 3.0
    with pytest.raises(TimeoutError):
        async with clock.timeout(4):
            try:
                async with clock.timeout(30):
                    await clock.sleep(60)
            except TimeoutError:  # the outer bound is no inner timeout
                raise AssertionError("the inner bound fired") from None
    assert clock.now() == 7.0


async def test_virtual_timeout_bounds_concurrent_tasks_independently(clock: VirtualClock) -> None:
    async def bounded_sleep(bound: float, sleep: float) -> str:
        try:
            async with clock.timeout(bound):
                await clock.sleep(sleep)
        except TimeoutError:
            return f"timeout@{clock.now()}"
        return f"done@{clock.now()}"

    assert await asyncio.gather(bounded_sleep(5, 2), bounded_sleep(3, 9), bounded_sleep(8, 7)) == [
        "done@2.0", "timeout@3.0", "done@7.0"]


async def test_a_real_cancel_passes_through_a_virtual_timeout(clock: VirtualClock) -> None:
    async def body() -> None:
        async with clock.timeout(50):
            await clock.sleep(100)

    task = asyncio.ensure_future(body())
    await asyncio.sleep(0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


async def test_real_clock_timeout_and_bounded_helper() -> None:
    from gateway.clock import bounded

    with pytest.raises(TimeoutError):
        async with RealClock().timeout(0.01):
            await asyncio.sleep(5)
    async with bounded(RealClock(), None):
        await asyncio.sleep(0)
