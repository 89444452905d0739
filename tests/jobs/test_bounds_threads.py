"""A provider-call bound fires on its own thread's event loop while another thread's loop is inside its
timer context (two loops in one process: ``BackgroundLoop`` followers, sync ``generate`` from a thread
pool). A ``contextvars.Context`` can be entered by one thread at a time, so one timer context shared by
every thread made the second ``ctx.run`` fail inside the loop and that bound never fired."""

from __future__ import annotations

import asyncio
import contextvars
import threading

import pytest

from gateway.clock import RealClock
from gateway.errors import ProviderUnavailable
from gateway.jobs import bounds

pytestmark = pytest.mark.slow  # real time (a 20 ms bound)


def test_a_bound_fires_while_another_thread_is_inside_its_timer_context() -> None:
    entered, leave = threading.Event(), threading.Event()

    def hold() -> None:  # another thread's loop, stopped inside a timer callback of its own
        def inside() -> None:
            entered.set()
            leave.wait(10)
        bounds._EMPTY.context.run(inside)

    other = threading.Thread(target=hold)
    other.start()
    try:
        assert entered.wait(10)

        async def bounded() -> None:
            async with bounds.bounded_call(RealClock(), None, provider="v", what="status check", cap=0.02):
                await asyncio.sleep(3)

        async def main() -> None:
            with pytest.raises(ProviderUnavailable, match=r"within 0\.02 s"):
                await asyncio.wait_for(bounded(), 2)  # a bound that never fires: TimeoutError here

        asyncio.run(main())
    finally:
        leave.set()
        other.join(10)


def test_long_bounds_share_one_timer_per_tick_and_each_still_fires_or_is_left(monkeypatch: pytest.MonkeyPatch) -> None:
    """Bounds of ``TICKED_FROM_S`` or more share one loop timer per ``TICK_S`` tick instead of one each:
    every bound still inside its body when its tick ends fires (as the taxonomy), and one whose call
    answered in time leaves nothing armed that could cancel later work."""
    monkeypatch.setattr(bounds, "TICKED_FROM_S", 0.0)  # a 20 ms bound takes the tick path here

    async def main() -> None:
        loop = asyncio.get_running_loop()
        armed_before = len(loop._scheduled)  # type: ignore[attr-defined]

        async def slow() -> None:
            async with bounds.bounded_call(RealClock(), None, provider="v", what="status check", cap=0.02):
                await asyncio.sleep(3)

        quick = bounds.bounded_call(RealClock(), None, provider="v", what="result", cap=0.02)
        tasks = [asyncio.ensure_future(slow()) for _ in range(50)]
        await asyncio.sleep(0)  # all 50 inside their bounds
        assert len(loop._scheduled) - armed_before <= 50 + 3  # type: ignore[attr-defined]  # 50 sleeps, few ticks
        async with quick:
            assert quick._armed()
        assert not quick._armed()
        results = await asyncio.wait_for(asyncio.gather(*tasks, return_exceptions=True), 2)
        assert all(isinstance(r, ProviderUnavailable) and "within 0.02 s" in str(r) for r in results)

    asyncio.run(main())


def test_long_caps_share_coarse_ticks_so_few_timers_stay_armed() -> None:
    """Every call's 300 s cap is armed on a tick whose timer stays until it ends: calls spread over time
    must not leave one armed timer per 10 ms (30,000 in a busy process), yet each bound still fires at
    most 1 % late, and a short bound keeps its 10 ms tick."""

    class Loop:  # the two loop methods ``_Ticks`` uses, on a clock the test moves
        def __init__(self) -> None:
            self.now, self.armed = 1000.0, []

        def time(self) -> float:
            return self.now

        def call_at(self, when: float, *args: object, **kwargs: object) -> None:
            self.armed.append(when)

    loop, ticks = Loop(), bounds._Ticks(contextvars.Context())
    ends = []
    for i in range(3000):  # one call every 10 ms for 30 s, each with the default cap
        loop.now = 1000.0 + i * 0.01
        ticks.add(object(), loop, loop.now + bounds.CALL_TIMEOUT, bounds.CALL_TIMEOUT)  # type: ignore[arg-type]
        ends.append(loop.now + bounds.CALL_TIMEOUT)
    assert len(loop.armed) <= 31  # was 3000
    late = [fire - end for fire, end in zip(_fires(ticks), ends, strict=True)]
    assert 0 <= min(late) and max(late) <= 0.01 * bounds.CALL_TIMEOUT
    ticks.add(object(), loop, loop.now + 5.0, 5.0)  # type: ignore[arg-type]
    assert loop.armed[-1] - (loop.now + 5.0) <= bounds.TICK_S + 1e-9


def _fires(ticks: bounds._Ticks) -> list[float]:
    """When each long bound added so far fires: the end of its tick, in the order they were added."""
    return sorted(tick * bounds.LONG_TICK_S for tick, members in ticks.due_long.items() for _ in members)
