"""Time for the runner and the emulator: the real clock, and a virtual one for tests and benchmarks.

Everything that waits goes through a ``Clock``, so tests never really sleep. ``Clock.timeout(seconds)``
bounds any await (a slow body, a stalled read) on the same clock: under ``VirtualClock`` the bound
fires in virtual time, so a test of a vendor trickling one byte a second runs in milliseconds and
fails if the bound is removed. httpx's own timeouts stay as the real-time backstop.
"""

from __future__ import annotations

import heapq
import itertools
import time
from collections.abc import AsyncIterator, Coroutine
from contextlib import AbstractAsyncContextManager, asynccontextmanager, nullcontext
from typing import TYPE_CHECKING, Any, Protocol

from gateway.lazy import LazyModule

if TYPE_CHECKING:
    import asyncio
else:  # asyncio loads on first use: a new gateway needs no event loop (gateway.lazy)
    asyncio = LazyModule("asyncio", globals())

__all__ = ["Clock", "RealClock", "VirtualClock", "bounded", "cancel_and_wait"]


class Clock(Protocol):
    """``now()`` in seconds (monotonic), ``sleep(seconds)``, and ``timeout(seconds)``: an async
    context manager that cancels its body after ``seconds`` on this clock and raises ``TimeoutError``."""

    def now(self) -> float: ...

    async def sleep(self, seconds: float) -> None: ...

    def timeout(self, seconds: float) -> AbstractAsyncContextManager[None]: ...


def bounded(clock: object, seconds: float | None) -> AbstractAsyncContextManager[object]:
    """``clock.timeout(seconds)``, or no bound when ``seconds`` is ``None``. A clock written before
    ``timeout`` existed gets ``asyncio.timeout`` (real time)."""
    if seconds is None:
        return nullcontext()
    make = getattr(clock, "timeout", None)
    return make(seconds) if make is not None else asyncio.timeout(max(0.0, seconds))


class RealClock:
    """The process's monotonic clock and ``asyncio.sleep``."""

    def now(self) -> float:
        return time.monotonic()

    def sleep(self, seconds: float) -> Coroutine[Any, Any, None]:
        """``asyncio.sleep`` itself, not a coroutine around it: a job in flight keeps one frame less."""
        return asyncio.sleep(max(0.0, seconds))

    def timeout(self, seconds: float) -> AbstractAsyncContextManager[None]:
        """``asyncio.timeout``: raises ``TimeoutError`` when the body runs past ``seconds``."""
        return asyncio.timeout(max(0.0, seconds))  # type: ignore[return-value]


class VirtualClock:
    """Virtual time: sleeping never waits. When every task in the loop is blocked on this clock,
    time jumps to the earliest wake-up, so any number of concurrent sleepers see consistent time.

    ``advance(seconds)`` moves time by hand (for code that only reads ``now()``).
    """

    def __init__(self, start: float = 0.0) -> None:
        self._now = start
        self._sleepers: list[tuple[float, int, asyncio.Future[None]]] = []
        self._seq = itertools.count()
        self._driver: asyncio.Task[None] | None = None
        self._waiting = 0  # tasks inside sleep(): bounds alone never move time
        self.slept: float = 0.0
        """Total seconds requested by all ``sleep`` calls (for assertions)."""

    def now(self) -> float:
        return self._now

    def advance(self, seconds: float) -> None:
        self._now += seconds

    async def sleep(self, seconds: float) -> None:
        seconds = max(0.0, seconds)
        self.slept += seconds
        loop = asyncio.get_running_loop()
        future: asyncio.Future[None] = loop.create_future()
        heapq.heappush(self._sleepers, (self._now + seconds, next(self._seq), future))
        if self._driver is None or self._driver.done():
            self._driver = loop.create_task(self._drive())
        self._waiting += 1
        try:
            await future
        finally:
            self._waiting -= 1

    def timeout(self, seconds: float) -> AbstractAsyncContextManager[None]:
        """Cancel the body once virtual time reaches ``now() + seconds``, raising ``TimeoutError``
        (like ``asyncio.timeout``). Time moves only as it always does here — when every task waits on
        this clock it jumps to the earliest wake-up, a bound's included — and only while some task
        *sleeps*: a body waiting on real I/O (a loopback socket) holds virtual time still, so a bound
        never fires just because the loop was idle."""
        return self._timeout(max(0.0, seconds))

    @asynccontextmanager
    async def _timeout(self, seconds: float) -> AsyncIterator[None]:
        task = asyncio.current_task()
        if task is None:
            raise RuntimeError("VirtualClock.timeout needs a running task")
        loop = asyncio.get_running_loop()
        alarm: asyncio.Future[None] = loop.create_future()
        fired = False

        def ring(_: asyncio.Future[None]) -> None:
            nonlocal fired
            if not alarm.cancelled():
                fired = True
                task.cancel()

        alarm.add_done_callback(ring)
        entry = (self._now + seconds, next(self._seq), alarm)
        heapq.heappush(self._sleepers, entry)
        if self._driver is None or self._driver.done():
            self._driver = loop.create_task(self._drive())
        try:
            yield
        except asyncio.CancelledError:
            if fired and task.uncancel() == 0:
                raise TimeoutError(f"no answer within {seconds:g} s (virtual time)") from None
            raise
        finally:
            if not alarm.done():
                alarm.cancel()
            self._discard(entry)
        if fired:  # the alarm rang after the body had finished: not a timeout, but undo its cancel
            task.uncancel()

    def _discard(self, entry: tuple[float, int, asyncio.Future[None]]) -> None:
        """Take a finished bound out of the heap, so it never drags time forward for nobody."""
        try:
            self._sleepers.remove(entry)
        except ValueError:
            return
        heapq.heapify(self._sleepers)

    async def _drive(self) -> None:
        loop = asyncio.get_running_loop()
        while self._sleepers:
            await _settle(loop)
            while self._sleepers and self._sleepers[0][2].done():
                heapq.heappop(self._sleepers)  # a cancelled waiter must not move time
            if not self._sleepers or self._waiting == 0:
                break  # only bounds are left: nobody sleeps, so time stands still
            wake = self._sleepers[0][0]
            self._now = max(self._now, wake)
            while self._sleepers and self._sleepers[0][0] <= self._now:
                _, _, future = heapq.heappop(self._sleepers)
                if not future.done():
                    future.set_result(None)


async def _settle(loop: asyncio.AbstractEventLoop, rounds: int = 1000) -> None:
    """Yield until nothing else in the loop is ready to run (or ``rounds`` yields have passed)."""
    for _ in range(rounds):
        await asyncio.sleep(0)
        ready = getattr(loop, "_ready", None)
        if ready is not None and len(ready) == 0:
            return


async def cancel_and_wait(task: asyncio.Task[Any] | None) -> None:
    """Cancel ``task`` (a background loop: heartbeat, drainer, listener) and wait until it has ended;
    its own cancellation is not raised here. ``None``: nothing to stop."""
    if task is None:
        return
    task.cancel()
    try:
        await task
    except asyncio.CancelledError:
        pass
