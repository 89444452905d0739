"""Every provider call bounded in time, on the runner's clock (issue 9, item 7).

httpx's timeouts bound each *read*; a vendor that sends one byte a second never trips them, and a
``Route(deadline=5)`` ran on for 40 s. ``bounded_call`` wraps one adapter call in
``Clock.timeout(min(time left to the deadline, cap))`` — virtual under ``VirtualClock``, so the tests
of slow bodies run in virtual time — and turns the bound firing into the taxonomy, leaving the job's
fate to the runner's own rules:

* a submit that got no answer in time may still have reached the vendor: ``SubmitOutcomeUnknown``
  (``may_be_billed``), which the runner reconciles or reports like any other ambiguous submit;
* any other call (status, result, find, cancel) is a failed *check*: ``ProviderUnavailable``
  (retryable), so the runner's next wait meets the deadline and raises ``DeadlineExceeded`` with the
  job left open for ``resume()``.
"""

from __future__ import annotations

import asyncio
import contextvars
import math
import threading
from types import TracebackType

from gateway.clock import Clock, RealClock, bounded
from gateway.contract import SubmitContext
from gateway.errors import ProviderUnavailable, SubmitOutcomeUnknown

__all__ = ["CALL_TIMEOUT", "bounded_call"]

CALL_TIMEOUT = 300.0
"""Seconds one provider call may take even with no deadline (a 20 MB inline image upload fits)."""
TICK_S = 0.01
"""Bounds of ``TICKED_FROM_S`` up to ``LONG_FROM_S`` fire at the end of the ``TICK_S`` tick they end in (at
most 10 ms late, 1 % of the shortest such bound), sharing one loop timer per tick (``_Ticks``)."""
TICKED_FROM_S = 1.0
"""Shorter bounds (a deadline about to end) get a loop timer of their own, exact."""
LONG_TICK_S = 1.0
"""Bounds of ``LONG_FROM_S`` or more (every call's ``CALL_TIMEOUT`` cap) share ticks of ``LONG_TICK_S``
instead, still at most 1 % late: a tick's timer stays armed until it ends even once its bounds are all
left, so 300 s caps in 10 ms ticks would keep up to 30,000 timers armed in a busy process (300 here)."""
LONG_FROM_S = 100.0
"""Seconds from which a bound takes a ``LONG_TICK_S`` tick (1 s late at most is 1 % of it)."""


class _PerThread(threading.local):
    """Per thread: the context a bound's timer runs in, and the ticks of the loop this thread runs.

    The context: ``_fire`` reads no context variable, and ``call_at`` would otherwise copy the task's
    context into a new object per call (held by the cancelled timer until the loop drops it). Per thread,
    because a ``Context`` can be entered by one thread at a time: event loops in two threads
    (``BackgroundLoop``, sync ``generate`` from a thread pool) firing bounds at once would otherwise fail
    the second ``ctx.run`` and that bound would never fire.

    The ticks: bounds of ``TICKED_FROM_S`` or more are grouped by the tick they end in, one loop timer per
    tick (``_Ticks``), instead of one timer per call: with 10,000 jobs in flight the loop's timer heap
    already holds their 10,000 sleeps, and every timer pushed onto it (and every heap rebuild the cancelled
    ones cause) costs a dozen Python-level comparisons (measured: 6.2 µs per bound beside 10,000 sleeps,
    2.3 µs on an idle loop). A thread runs one loop at a time; when it runs another, that loop gets ticks
    of its own (the old ticks' timers, armed on the old loop, still fire there)."""

    def __init__(self) -> None:
        self.context = contextvars.Context()
        self.loop: asyncio.AbstractEventLoop | None = None
        self.ticks = _Ticks(self.context)

    def ticks_of(self, loop: asyncio.AbstractEventLoop) -> _Ticks:
        if self.loop is not loop:
            self.loop, self.ticks = loop, _Ticks(self.context)
        return self.ticks


class _Ticks:
    """One loop's long bounds by the tick (``TICK_S``) they end in, and one timer per tick in use."""

    __slots__ = ("context", "due", "due_long")

    def __init__(self, context: contextvars.Context) -> None:
        self.context = context
        self.due: dict[int, set[bounded_call]] = {}
        self.due_long: dict[int, set[bounded_call]] = {}

    def add(self, bound: bounded_call, loop: asyncio.AbstractEventLoop, at: float, left: float) -> set[bounded_call]:
        """Arm ``bound`` (``left`` seconds long) to fire at the end of the tick holding ``at`` (at most
        ``TICK_S``, or ``LONG_TICK_S`` for a bound of ``LONG_FROM_S`` or more, late); the set it is in
        (leaving the bound removes it from there)."""
        step, due = (TICK_S, self.due) if left < LONG_FROM_S else (LONG_TICK_S, self.due_long)
        tick = math.ceil(at / step)
        bounds = due.get(tick)
        if bounds is None:
            bounds = due[tick] = set()
            loop.call_at(tick * step, _fire_tick, due, tick, context=self.context)
        bounds.add(bound)
        return bounds


def _fire_tick(due: dict[int, set[bounded_call]], tick: int) -> None:
    for bound in due.pop(tick, ()):
        bound._fire()


_THREAD = _PerThread()
_INF = math.inf
_EMPTY = _THREAD  # the timer context per thread (``_EMPTY.context``), as the threads test enters it


class bounded_call:  # lower case: used like the function it replaced, ``async with bounded_call(...)``
    """Run the body within the deadline (absolute, on ``clock``) and ``cap`` seconds; see the module.

    A class rather than an ``@asynccontextmanager`` generator: every provider call enters one, and the
    generator machinery cost about as much as the bound itself. On the real clock the bound is one
    ``loop.call_at`` that cancels the task, undone on the way out — what ``asyncio.timeout`` does, without
    its ``Timeout`` object, state machine and reschedule step (three of these per job, issue 14); a bound of
    ``TICKED_FROM_S`` or more shares its tick's timer instead (``_Ticks``). Any other clock
    (``VirtualClock``) gets its own ``timeout``."""

    __slots__ = ("_bound", "_cancelling", "_fired", "_handle", "_left", "_provider", "_submit", "_task", "_tick",
                 "_what")

    def __init__(self, clock: Clock, deadline_at: float | None, *, provider: str, what: str,
                 cap: float = CALL_TIMEOUT, submit: SubmitContext | None = None) -> None:
        self._left = cap if deadline_at is None else min(cap, max(0.0, deadline_at - clock.now()))
        # RealClock.now() is time.monotonic(), the event loop's own clock: ``call_at`` on it is the bound
        self._bound = None if type(clock) is RealClock else bounded(clock, self._left)
        self._provider, self._what, self._submit = provider, what, submit
        self._fired = False

    async def __aenter__(self) -> None:
        if self._bound is not None:
            await self._bound.__aenter__()
            return
        task = asyncio.current_task()
        if task is None:
            raise RuntimeError("bounded_call needs a running task")
        loop = task.get_loop()
        self._task, self._cancelling = task, task.cancelling()
        if TICKED_FROM_S <= self._left < _INF:
            here = _THREAD
            ticks = here.ticks if here.loop is loop else here.ticks_of(loop)
            self._tick: set[bounded_call] | None = ticks.add(self, loop, loop.time() + self._left, self._left)
        else:
            self._tick = None
            self._handle = loop.call_at(loop.time() + self._left, self._fire, context=_THREAD.context)

    def _fire(self) -> None:
        self._fired = True
        self._task.cancel()

    async def __aexit__(self, kind: type[BaseException] | None, error: BaseException | None,
                        tb: TracebackType | None) -> bool:
        if self._bound is None:
            if self._tick is not None:
                self._tick.discard(self)
            else:
                self._handle.cancel()
            if self._fired:
                # Ours was one of the cancellations: take it back; only when none other is pending (the
                # caller's own cancel stays a CancelledError) is it this bound's timeout.
                if self._task.uncancel() <= self._cancelling and kind is asyncio.CancelledError:
                    raise self._timed_out() from None
            if isinstance(error, TimeoutError):
                raise self._timed_out() from None
            return False
        try:
            suppressed = await self._bound.__aexit__(kind, error, tb)
        except TimeoutError:
            raise self._timed_out() from None
        if isinstance(error, TimeoutError) and not suppressed:
            raise self._timed_out() from None
        return bool(suppressed)

    def _armed(self) -> bool:
        """Whether this bound can still fire (inside the body; never once it is left)."""
        return (self in self._tick) if self._tick is not None else not self._handle.cancelled()

    def _timed_out(self) -> ProviderUnavailable | SubmitOutcomeUnknown:
        why = f"{self._provider} did not finish answering the {self._what} within {self._left:g} s"
        if self._submit is not None:
            return SubmitOutcomeUnknown(f"{why}; the submit may have reached it", provider=self._provider,
                                        job_hint={"provider": self._provider,
                                                  "idempotency_key": self._submit.idempotency_key})
        return ProviderUnavailable(why, provider=self._provider)
