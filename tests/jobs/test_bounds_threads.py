"""A provider-call bound fires on its own thread's event loop while another thread's loop is inside its
timer context (two loops in one process: ``BackgroundLoop`` followers, sync ``generate`` from a thread
pool). A ``contextvars.Context`` can be entered by one thread at a time, so one timer context shared by
every thread made the second ``ctx.run`` fail inside the loop and that bound never fired."""

from __future__ import annotations

import asyncio
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
