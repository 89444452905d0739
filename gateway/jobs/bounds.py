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

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from gateway.clock import Clock, bounded
from gateway.contract import SubmitContext
from gateway.errors import ProviderUnavailable, SubmitOutcomeUnknown

__all__ = ["CALL_TIMEOUT", "bounded_call"]

CALL_TIMEOUT = 300.0
"""Seconds one provider call may take even with no deadline (a 20 MB inline image upload fits)."""


@asynccontextmanager
async def bounded_call(clock: Clock, deadline_at: float | None, *, provider: str, what: str,
                       cap: float = CALL_TIMEOUT, submit: SubmitContext | None = None) -> AsyncIterator[None]:
    """Run the body within the deadline (absolute, on ``clock``) and ``cap`` seconds; see the module."""
    left = cap if deadline_at is None else min(cap, max(0.0, deadline_at - clock.now()))
    try:
        async with bounded(clock, left):
            yield
    except TimeoutError:
        why = f"{provider} did not finish answering the {what} within {left:g} s"
        if submit is not None:
            raise SubmitOutcomeUnknown(f"{why}; the submit may have reached it", provider=provider,
                                       job_hint={"provider": provider,
                                                 "idempotency_key": submit.idempotency_key}) from None
        raise ProviderUnavailable(why, provider=provider) from None
