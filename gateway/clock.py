"""Time for the runner and the emulator: the real clock, and a virtual one for tests and benchmarks.

Everything that waits goes through a ``Clock``, so tests never really sleep.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import time
from typing import Protocol

__all__ = ["Clock", "RealClock", "VirtualClock"]


class Clock(Protocol):
    """``now()`` in seconds (monotonic), and ``sleep(seconds)``."""

    def now(self) -> float: ...

    async def sleep(self, seconds: float) -> None: ...


class RealClock:
    """The process's monotonic clock and ``asyncio.sleep``."""

    def now(self) -> float:
        return time.monotonic()

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(max(0.0, seconds))


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
        self.slept = 0.0
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
        await future

    async def _drive(self) -> None:
        loop = asyncio.get_running_loop()
        while self._sleepers:
            await _settle(loop)
            if not self._sleepers:
                break
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
