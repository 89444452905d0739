"""Executes a plan: submit, poll, retry, fail over, record every attempt — and never pay twice.

The runner owns all waiting, through the injected clock. Retries on one vendor use tenacity
(exponential backoff with jitter, ``Retry-After`` honored, bounded by the deadline). A submit that may
have reached the vendor is reconciled before anything else is paid for: a vendor that can look a job
up by our key (Runware, by ``taskUUID``) is asked; for the others the runner raises
``SubmitOutcomeUnknown`` unless the route opts in to failing over, and then records the possible
extra charge.
"""

from __future__ import annotations

import random
import uuid
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from tenacity import AsyncRetrying, RetryCallState, retry_if_exception

from gateway.clock import Clock
from gateway.contract import JobHandle, JobState, JobStatus, Provider, ProviderOutput, SubmitContext
from gateway.errors import (
    AllProvidersFailed,
    BudgetExceeded,
    ContentRejected,
    DeadlineExceeded,
    GatewayError,
    GenerationFailed,
    JobUnresolved,
    ProviderRejected,
    ProviderUnavailable,
    ResultExpired,
    SubmitOutcomeUnknown,
)
from gateway.health import Health
from gateway.polling import PollPolicy
from gateway.pricing import Budget
from gateway.request import OviRequest
from gateway.result import Attempt, OviResult, Timings
from gateway.routing import Candidate, Plan, Route

__all__ = ["Event", "PollPolicy", "Runner"]  # PollPolicy re-exported for callers of the runner


@dataclass(frozen=True, slots=True)
class Event:
    """Progress for displays: ``kind`` is wait (every capable vendor cooling down), submit, accepted,
    status, retry, reconcile, failover, resubmit (a new job on the same vendor after its job failed)
    or done. ``provider`` is empty for ``wait``."""

    kind: str
    provider: str
    elapsed: float
    state: str | None = None
    queue_position: int | None = None
    message: str | None = None


_JOB_VERDICTS = (GenerationFailed, ContentRejected, ProviderRejected, ResultExpired)
"""Errors from a result fetch that settle the job's fate; any other leaves a paid job to resume."""


def _fails_over(error: GatewayError, route: Route) -> bool:
    if not route.allow_fallbacks or route.provider is not None:
        return False
    return error.failover or (route.failover_on_content_rejection and isinstance(error, ContentRejected))


class _Journal:
    """No journal: every call does nothing (the gateway passes a real one by default)."""

    def __getattr__(self, name: str) -> Callable[..., None]:
        return lambda *args, **kwargs: None


class Runner:
    """Runs one clip across the planned vendors.

    Args:
        providers: the loaded adapters by name.
        clock: the source of time and sleep.
        health: per-vendor breakers.
        journal: durable record of every paid submit (``gateway.journal.Journal``), or ``None``.
        poll: the polling policy.
        rng: jitter source (seeded in tests).
        new_key: makes per-submit idempotency keys (UUID4 strings).
        on_event: called with each ``Event``.
    """

    def __init__(self, providers: Mapping[str, Provider], *, clock: Clock, health: Health,
                 journal: Any = None, poll: PollPolicy | None = None, rng: random.Random | None = None,
                 new_key: Callable[[], str] | None = None, on_event: Callable[[Event], None] | None = None,
                 backoff_base: float = 1.0, backoff_cap: float = 30.0, max_status_errors: int = 8,
                 budget: Budget | None = None) -> None:
        self.providers = providers
        self.clock = clock
        self.health = health
        self.journal = journal if journal is not None else _Journal()
        self.poll = poll or PollPolicy()
        self.rng = rng or random.Random()
        self.new_key = new_key or (lambda: str(uuid.uuid4()))
        self.on_event = on_event or (lambda event: None)
        self.backoff_base = backoff_base
        self.backoff_cap = backoff_cap
        self.max_status_errors = max_status_errors
        self.budget = budget

    # ---- the plan ---------------------------------------------------------------------------
    async def run(self, request: OviRequest, plan: Plan, route: Route, *, clip_key: str) -> OviResult:
        """Try each candidate in order until one delivers the clip."""
        started = self.clock.now()
        deadline_at = None if route.deadline is None else started + route.deadline
        attempts: list[Attempt] = []
        last_error: GatewayError | None = None
        queue = deque(plan.candidates)
        resubmitted: dict[str, int] = {}
        while queue:
            candidate = queue.popleft()
            if last_error is not None:
                kind = "resubmit" if candidate.provider == last_error.provider else "failover"
                self.on_event(Event(kind, candidate.provider, self.clock.now() - started,
                                    message=f"after {type(last_error).__name__}: {last_error.message}"))
            try:
                result = await self._on_vendor(request, candidate, route, clip_key, started, deadline_at, attempts)
            except GatewayError as error:
                last_error = error
                if isinstance(error, GenerationFailed) and resubmitted.get(candidate.provider, 0) < route.job_retries:
                    # A job that died at the vendor is worth one more try there, after every other vendor.
                    resubmitted[candidate.provider] = resubmitted.get(candidate.provider, 0) + 1
                    queue.append(candidate)
                    continue
                if _fails_over(error, route):
                    continue
                error.attempts = list(attempts)
                raise
            if result is not None:
                return result
        raise AllProvidersFailed(f"all {len(plan.candidates)} candidate vendors failed", attempts=attempts)

    async def _on_vendor(self, request: OviRequest, candidate: Candidate, route: Route, clip_key: str,
                         started: float, deadline_at: float | None, attempts: list[Attempt]) -> OviResult | None:
        name = candidate.provider
        provider = self.providers[name]
        breaker = self.health[name]
        if not breaker.allow():
            attempts.append(Attempt(provider=name, outcome="skipped", error=breaker.reason()))
            return None
        self._check_deadline(deadline_at, name, None)
        ctx = SubmitContext(idempotency_key=self.new_key(), dropped=frozenset(candidate.dropped))
        self.journal.intent(clip_key=clip_key, submit_key=ctx.idempotency_key, provider=name,
                            quote_usd=candidate.quote.price_usd, deadline=deadline_at, steps=request.steps)
        self._reserve(name, ctx.idempotency_key, candidate.quote.price_usd)
        vendor_started = self.clock.now()
        try:
            handle = await self._submit(provider, request, ctx, route, deadline_at, attempts, started)
        except GatewayError as error:
            self._record_failure(name, error, vendor_started, attempts, submit_key=ctx.idempotency_key)
            if isinstance(error, SubmitOutcomeUnknown) and route.failover_on_unknown:
                return None
            raise
        self.journal.accepted(ctx.idempotency_key, handle.to_json())
        self.on_event(Event("accepted", name, self.clock.now() - started, message=handle.job_id))
        return await self.follow(provider, handle, request=request, candidate=candidate, clip_key=clip_key,
                                 submit_key=ctx.idempotency_key, started=started, vendor_started=vendor_started,
                                 deadline_at=deadline_at, attempts=attempts,
                                 abandon_stuck=route.failover_on_unknown)

    # ---- submit, with retries and reconciliation --------------------------------------------
    async def _submit(self, provider: Provider, request: OviRequest, ctx: SubmitContext, route: Route,
                      deadline_at: float | None, attempts: list[Attempt], started: float) -> JobHandle:
        name = provider.name

        def before_sleep(state: RetryCallState) -> None:
            error = state.outcome.exception() if state.outcome else None
            attempts.append(Attempt(provider=name, outcome="retried", error_type=type(error).__name__,
                                    error=str(error), elapsed_s=self.clock.now() - started))
            self.health[name].failure(error)  # type: ignore[arg-type]
            self.on_event(Event("retry", name, self.clock.now() - started, message=str(error)))

        retrying = AsyncRetrying(
            retry=retry_if_exception(lambda e: isinstance(e, GatewayError) and e.retryable and not e.may_be_billed),
            stop=lambda state: state.attempt_number >= route.max_tries or self._past(
                deadline_at, state.upcoming_sleep),
            wait=self._wait, sleep=self.clock.sleep, before_sleep=before_sleep, reraise=True)
        async for attempt in retrying:
            with attempt:
                self.on_event(Event("submit", name, self.clock.now() - started))
                try:
                    return await provider.submit(request, ctx)
                except GatewayError as error:
                    if not error.may_be_billed:
                        raise
                    found = await self._reconcile(provider, ctx, error, started)
                    if found is not None:
                        return found
                    # The vendor confirmed it holds no job under our key: the failure was harmless.
                    if isinstance(error, SubmitOutcomeUnknown):
                        raise ProviderUnavailable(f"submit was lost before {name} took it "
                                                  f"(confirmed by lookup): {error.message}", provider=name) from error
                    error.may_be_billed = False
                    raise
        raise AssertionError("unreachable: tenacity reraises the last error")

    async def _reconcile(self, provider: Provider, ctx: SubmitContext, error: GatewayError,
                         started: float) -> JobHandle | None:
        """After a submit that may have reached the vendor: the job if it exists, ``None`` if the
        vendor confirms it does not, else ``SubmitOutcomeUnknown``."""
        self.on_event(Event("reconcile", provider.name, self.clock.now() - started, message=str(error)))
        hint = {"provider": provider.name, "idempotency_key": ctx.idempotency_key}
        if not provider.reconcilable:
            raise SubmitOutcomeUnknown(
                f"the submit may have created a paid job ({error.message}); {provider.name} offers no way "
                "to look it up, so the gateway will not submit elsewhere", provider=provider.name, job_hint=hint)
        for _ in range(3):
            try:
                return await provider.find(ctx)
            except GatewayError as lookup_error:
                if not lookup_error.retryable:
                    break
                await self.clock.sleep(self._backoff(1, lookup_error))
        raise SubmitOutcomeUnknown(f"the submit may have created a paid job ({error.message}) and "
                                   f"{provider.name} could not be asked", provider=provider.name, job_hint=hint)

    # ---- following a job to its end --------------------------------------------------------
    async def follow(self, provider: Provider, handle: JobHandle, *, request: OviRequest | None,
                     candidate: Candidate | None, clip_key: str, submit_key: str, started: float,
                     vendor_started: float, deadline_at: float | None, attempts: list[Attempt],
                     abandon_stuck: bool = False) -> OviResult | None:
        """Poll ``handle`` to the end and build the result.

        A job still unfinished after ``PollPolicy.max_wait`` is left running and raised as
        ``JobUnresolved`` (it stays in the journal for ``resume()``); with ``abandon_stuck`` it is
        cancelled and raised as ``GenerationFailed`` (may have been billed) so the runner moves on.
        """
        name = provider.name
        checks, errors_in_row = 0, 0
        last_queued: float | None = None  # when the job was last seen waiting in the vendor's queue
        running_seen = False
        last_error: GatewayError | None = None
        status: JobStatus | None = None
        while True:
            elapsed = self.clock.now() - vendor_started
            if elapsed > self.poll.max_wait:
                stuck = f"job {handle.job_id} still unfinished after {self.poll.max_wait:.0f} s"
                if not abandon_stuck:
                    raise self._unresolved(name, handle, GenerationFailed(stuck, provider=name), vendor_started,
                                           attempts, submit_key)
                await self._cancel_quietly(provider, handle)
                error = GenerationFailed(f"{stuck}; cancelled", provider=name, may_be_billed=True)
                self._record_failure(name, error, vendor_started, attempts, job_id=handle.job_id,
                                     submit_key=submit_key)
                raise error
            wait = (self.poll.next_wait(name, elapsed, checks) if errors_in_row == 0
                    else max(self.poll.interval, self._backoff(errors_in_row, last_error)))
            self._check_deadline(deadline_at, name, handle, wait, attempts=attempts, since=vendor_started)
            await self.clock.sleep(wait)
            checks += 1
            try:
                status = await provider.status(handle)
            except GatewayError as error:
                errors_in_row += 1
                last_error = error
                if error.retryable and errors_in_row < self.max_status_errors:
                    continue
                raise self._unresolved(name, handle, error, vendor_started, attempts, submit_key) from error
            errors_in_row = 0
            self.on_event(Event("status", name, self.clock.now() - started, state=status.state,
                                queue_position=status.queue_position))
            if status.state == JobState.QUEUED:
                last_queued = self.clock.now()
                continue
            if not running_seen:
                running_seen = True
                self.journal.state(submit_key, "running")
            if status.state == JobState.FAILED:
                error = status.error or GenerationFailed(f"job {handle.job_id} failed", provider=name)
                self._record_failure(name, error, vendor_started, attempts, job_id=handle.job_id,
                                     submit_key=submit_key)
                raise error
            if status.state == JobState.SUCCEEDED:
                break
        output = await self._fetch_result(provider, handle, status, deadline_at, name, vendor_started, attempts,
                                          submit_key)
        return self._finish(provider, handle, output, request=request, candidate=candidate, clip_key=clip_key,
                            submit_key=submit_key, started=started, vendor_started=vendor_started,
                            last_queued=last_queued, attempts=attempts)

    async def _fetch_result(self, provider: Provider, handle: JobHandle, status: JobStatus,
                            deadline_at: float | None, name: str, vendor_started: float,
                            attempts: list[Attempt], submit_key: str) -> ProviderOutput:
        for tries in range(1, self.max_status_errors + 1):
            try:
                return await provider.result(handle, status)
            except GatewayError as error:
                if isinstance(error, _JOB_VERDICTS):  # the vendor says the job failed, or its result is gone
                    self._record_failure(name, error, vendor_started, attempts, job_id=handle.job_id,
                                         submit_key=submit_key)
                    raise
                if not error.retryable or tries == self.max_status_errors:
                    raise self._unresolved(name, handle, error, vendor_started, attempts, submit_key) from error
                wait = self._backoff(tries, error)
                self._check_deadline(deadline_at, name, handle, wait, attempts=attempts, since=vendor_started)
                await self.clock.sleep(wait)
        raise AssertionError("unreachable")

    def _finish(self, provider: Provider, handle: JobHandle, output: ProviderOutput, *,
                request: OviRequest | None, candidate: Candidate | None, clip_key: str, submit_key: str,
                started: float, vendor_started: float, last_queued: float | None,
                attempts: list[Attempt]) -> OviResult:
        name = provider.name
        now = self.clock.now()
        self.health[name].success()
        # Polls bound the phases: queued at least until last seen queued, running at most since then.
        running_from = last_queued if last_queued is not None else vendor_started
        self.poll.observe(name, now - running_from)
        quoted = candidate.quote.price_usd if candidate else None
        cost, source = (output.cost_usd, "reported") if output.cost_usd is not None else (
            (quoted, "estimated") if quoted is not None else (None, "unknown"))
        attempts.append(Attempt(provider=name, outcome="succeeded", elapsed_s=now - vendor_started,
                                may_be_billed=True, job_id=handle.job_id))
        result = OviResult(
            provider=name, job_id=handle.job_id, video_url=output.video_url, seed=output.seed,
            cost_usd=cost, cost_source=source, quoted_usd=quoted, nsfw=output.nsfw,
            timings=Timings(total_s=now - started,
                            queued_s=None if last_queued is None else last_queued - vendor_started,
                            running_s=now - running_from,
                            inference_s=output.inference_s),
            dropped=sorted(candidate.dropped) if candidate else [], attempts=list(attempts),
            idempotency_key=clip_key, raw=output.raw)
        # The clip's result is on record before its submit is closed: a crash between the two leaves an
        # open submit that resume() re-reads, never a finished submit whose clip has no result.
        self.journal.finish_clip(clip_key, result.model_dump_json())
        self.journal.finished(submit_key, cost_usd=cost, cost_source=source)
        self.on_event(Event("done", name, now - started, state="succeeded", message=output.video_url))
        return result

    # ---- helpers ----------------------------------------------------------------------------
    def _reserve(self, name: str, submit_key: str, quote: Decimal | None) -> None:
        """Hold the quote against the budget, or refuse the submit (the intent just written counts)."""
        if self.budget is None:
            return
        if quote is None:
            self.journal.failed(submit_key, error="budget needs a price", may_be_billed=False)
            raise BudgetExceeded(f"{name} has no known price, so a budget cannot be checked", provider=name)
        spent = self.journal.reserved_and_spent(since=self.budget.since())
        if spent is not None and spent > self.budget.limit_usd:
            self.journal.failed(submit_key, error="over budget", may_be_billed=False)
            raise BudgetExceeded(f"a ${quote} submit would bring {self.budget.period} spend to ${spent}, over the "
                                 f"${self.budget.limit_usd} budget; nothing was sent", provider=name)
        self.journal.reserve(submit_key, quote)

    def _record_failure(self, name: str, error: GatewayError, since: float, attempts: list[Attempt], *,
                        submit_key: str, job_id: str | None = None) -> None:
        """Note a failed attempt on the result, the breaker and the journal.

        A submit whose outcome is unknown, or a job that is still alive (deadline, unreadable status),
        stays open in the journal so ``resume()`` can settle it; a failed job is closed there.
        """
        alive = isinstance(error, (SubmitOutcomeUnknown, JobUnresolved, DeadlineExceeded))
        attempts.append(Attempt(provider=name, outcome="unknown" if alive else "failed",
                                error_type=type(error).__name__, error=str(error),
                                elapsed_s=self.clock.now() - since, may_be_billed=error.may_be_billed,
                                job_id=job_id))
        if not isinstance(error, DeadlineExceeded):
            self.health[name].failure(error)
        if isinstance(error, SubmitOutcomeUnknown):
            self.journal.unknown(submit_key, error=str(error))
        elif not alive:
            self.journal.failed(submit_key, error=str(error), may_be_billed=error.may_be_billed)

    def _unresolved(self, name: str, handle: JobHandle, error: GatewayError, since: float,
                    attempts: list[Attempt], submit_key: str) -> JobUnresolved:
        unresolved = JobUnresolved(f"job {handle.job_id} was accepted but cannot be read ({error!r}); "
                                   "it stays in the journal for resume()", provider=name, job=handle)
        self._record_failure(name, unresolved, since, attempts, job_id=handle.job_id, submit_key=submit_key)
        return unresolved

    def _backoff(self, tries: int, error: GatewayError | None) -> float:
        hinted = getattr(error, "retry_after", None)
        if hinted:
            return float(hinted)
        exp = min(self.backoff_cap, self.backoff_base * 2 ** (tries - 1))
        return exp * self.rng.uniform(0.5, 1.0)

    def _wait(self, state: RetryCallState) -> float:
        error = state.outcome.exception() if state.outcome else None
        return self._backoff(state.attempt_number, error if isinstance(error, GatewayError) else None)

    def _past(self, deadline_at: float | None, upcoming: float | None) -> bool:
        return deadline_at is not None and self.clock.now() + (upcoming or 0.0) > deadline_at

    def _check_deadline(self, deadline_at: float | None, name: str, handle: JobHandle | None,
                        wait: float = 0.0, *, attempts: list[Attempt] | None = None, since: float = 0.0) -> None:
        if not self._past(deadline_at, wait):
            return
        where = f"; job {handle.job_id} on {name} is still running and can be resumed" if handle else ""
        error = DeadlineExceeded(f"deadline reached{where}", provider=name, job=handle)
        if attempts is not None and handle is not None:
            attempts.append(Attempt(provider=name, outcome="unknown", error_type="DeadlineExceeded",
                                    error=str(error), elapsed_s=self.clock.now() - since, may_be_billed=True,
                                    job_id=handle.job_id))
        raise error

    async def _cancel_quietly(self, provider: Provider, handle: JobHandle) -> None:
        try:
            await provider.cancel(handle)
        except GatewayError:
            pass
