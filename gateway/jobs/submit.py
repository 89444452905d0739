"""The submit step: one vendor POST, retried only while nothing can have been billed.

Before the submit may have reached the vendor, failures are retried (exponential backoff with jitter,
``Retry-After`` honored, bounded by the deadline) and then left to the plan (failover). The loop is
written out rather than built with tenacity: every job passes through it, and setting up tenacity's
``AsyncRetrying`` cost more than the rest of the submit step's own work. Once it
may have (no answer), the job is settled the vendor's own way (``gateway.jobs.settle``). An ack that
is a ``conflict`` (Runware's ``conflictTaskUUID``) is followed only for our own key.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from gateway.contract import JobHandle, Provider, SubmitContext
from gateway.errors import GatewayError, RateLimited
from gateway.jobs import fate
from gateway.jobs.events import Event, no_event
from gateway.jobs.fate import Answer, Fate, Phase
from gateway.jobs.leasing import check_lease
from gateway.jobs.settle import acked, settle
from gateway.request import OviRequest
from gateway.result import Attempt
from gateway.routing.planner import Route

if TYPE_CHECKING:
    from gateway.jobs.runner import Runner

__all__ = ["submit", "worth_retrying"]

_log = logging.getLogger("gateway.jobs.runner")  # one logger for the whole job path (tests and ops filter on it)


async def submit(runner: Runner, provider: Provider, request: OviRequest, ctx: SubmitContext,
                 route: Route, deadline_at: float | None, attempts: list[Attempt], started: float) -> JobHandle:
    """Send the submit, retrying (same key) while ``worth_retrying`` says nothing can have been billed,
    at most ``route.max_tries`` times and never past the deadline; see the module."""
    name = provider.name
    sent: set[str] = set()
    tries = 0
    while True:
        tries += 1
        if _log.isEnabledFor(logging.INFO):  # the extra dict is not built for a line nobody writes
            _log.info("submitting to %s (idempotency key %s, try %d)", name, ctx.idempotency_key, tries,
                      extra={"vendor": name, "idempotency_key": ctx.idempotency_key})
        if runner.on_event is not no_event:
            runner.on_event(Event("submit", name, runner.clock.now() - started))
        try:
            async with runner._bounded(deadline_at, name, "submit", submit=ctx):
                handle = await provider.submit(request, ctx)
        except GatewayError as error:
            if error.status_code is not None:
                sent.add(ctx.idempotency_key)  # the vendor answered it: a later try is a resend
            answer = fate.answer_of(error, Phase.SUBMIT)
            if answer is Answer.JOB_IN_ANSWER and fate.decide(Phase.SUBMIT, answer) is Fate.FOLLOW:
                return JobHandle.from_json(error.job_hint["handle"])  # type: ignore[attr-defined]
            if answer is Answer.NO_ANSWER and fate.decide(Phase.SUBMIT, answer) is Fate.RECONCILE:
                sent.add(ctx.idempotency_key)
                return await settle(runner, provider, request, ctx, error, started, deadline_at, sent)
            fate.decide(Phase.SEND, answer)  # nothing billed: retried below, or the plan moves on
            if not worth_retrying(runner, error):
                raise
            # The wait is drawn before the stop check (as tenacity did), so seeded jitter is unchanged.
            wait = runner._backoff(tries, error)
            if tries >= route.max_tries or runner._past(deadline_at, wait):
                raise
            attempts.append(Attempt(provider=name, outcome="retried", error_type=type(error).__name__,
                                    error=str(error), elapsed_s=runner.clock.now() - started))
            runner.health[name].failure(error)
            runner.on_event(Event("retry", name, runner.clock.now() - started, message=str(error)))
            await runner.clock.sleep(wait)
            if runner.lease is not None:
                # A retry is a new POST: like the first, only while this call still holds the clip (lost
                # during the backoff, another call may be submitting for it now).
                await check_lease(runner.lease, None, name, confirm=True)
            continue
        return acked(provider, handle, ctx, sent)


def worth_retrying(runner: Runner, error: BaseException) -> bool:
    """Same vendor again: a retryable error that cannot have billed, and no long ``Retry-After``."""
    if not isinstance(error, GatewayError) or not error.retryable or error.may_be_billed:
        return False
    return not (isinstance(error, RateLimited) and (error.retry_after or 0) > runner.backoff_cap)
