"""Executes a plan: submit, poll, retry, fail over, record every attempt — and never pay twice.

The runner owns all waiting, through the injected clock, and acts on the fate that
``gateway.jobs.fate.decide`` gives each answer (the phase × answer table is in that module): before a
submit may have reached the vendor, failures are retried (exponential backoff with jitter,
``Retry-After`` honored, bounded by the deadline) or failed over; once it may have, only the vendor's
verdict on that job ends it. An ambiguous submit is settled the vendor's own way — Runware by sending
the same ``taskUUID`` again, fal by following a request id the answer carried — or raised as
``SubmitOutcomeUnknown``; a failed status or result check is retried on the same job until the
deadline or ``PollPolicy.max_wait``, then raised as ``JobUnresolved`` with the job left open for
``resume()``.
"""

from __future__ import annotations

import logging
import random
import uuid
from collections.abc import Awaitable, Callable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from typing import Any

import gateway.telemetry as telemetry
from gateway.clock import Clock
from gateway.contract import JobHandle, JobState, Provider, ProviderOutput, SubmitContext
from gateway.errors import (
    PAID_JOB_ALIVE,
    AllProvidersFailed,
    ContentRejected,
    DeadlineExceeded,
    DefectiveClip,
    GatewayError,
    GenerationFailed,
    JobUnresolved,
    SubmitOutcomeUnknown,
)
from gateway.jobs import fate
from gateway.jobs.bounds import CALL_TIMEOUT, bounded_call
from gateway.jobs.events import Event, EventKind, no_event
from gateway.jobs.fate import Answer, Fate, Phase
from gateway.jobs.followed import FollowedJob
from gateway.jobs.leasing import ClipLease, check_lease
from gateway.jobs.polling import PollPolicy
from gateway.jobs.results import fetch_result, finish
from gateway.jobs.settle import settle
from gateway.jobs.submit import submit
from gateway.jobs.writes import flush, write_paid
from gateway.request import OviRequest
from gateway.result import Attempt, OviResult
from gateway.routing.health import Health
from gateway.routing.planner import Candidate, Plan, Route
from gateway.routing.pricing import Budget, budget_holds

_log = logging.getLogger(__name__)
# INFO lines carry vendor, job id and keys, never a prompt, image or API key (gateway.logs); error texts
# (which may quote what was sent) only at DEBUG.

__all__ = ["Event", "EventKind", "FollowedJob", "PollPolicy", "Runner"]


class Runner:
    """Runs one clip across the planned vendors.

    Args:
        providers: the loaded adapters by name.
        clock: the source of time and sleep.
        health: per-vendor breakers.
        store: the async store (``gateway.store.base.SqlStore``) recording every paid submit, or ``None``
            (``journal=None``: nothing is recorded, and no store call, coroutine or task is made for it);
            no call blocks the event loop on the database.
        poll: the polling policy.
        rng: jitter source (seeded in tests).
        new_key: makes per-submit idempotency keys (UUID4 strings).
        on_event: called with each ``Event``.
        backoff_base, backoff_cap: same-vendor retry backoff in seconds; a ``Retry-After`` longer than
            the cap is not waited for on submit (the runner fails over instead).
        budget: refuse submits past these spend caps (``Budget``: needs a real store; checked and
            reserved in the intent's own transaction).
        budget_scope: the caller's scope digest (``routing.pricing.scope_id``) for per-caller budgets.
        deliver: called with each finished job and its output before the result is built; returns extra
            ``OviResult`` fields (``expires_at``, media facts…) and may raise ``DefectiveClip``
            (``gateway.jobs.delivery``).
        settle_window: seconds an ambiguous submit to a vendor that dedupes by our key (Runware) is
            sent again before ``SubmitOutcomeUnknown`` (the route's deadline may end it sooner).
    """

    call_timeout: float = CALL_TIMEOUT
    """Seconds any one provider call may take, deadline or not (``gateway.jobs.bounds``)."""

    def __init__(self, providers: Mapping[str, Provider], *, clock: Clock, health: Health,
                 store: Any = None, poll: PollPolicy | None = None, rng: random.Random | None = None,
                 new_key: Callable[[], str] | None = None, on_event: Callable[[Event], None] | None = None,
                 backoff_base: float = 1.0, backoff_cap: float = 30.0, budget: Budget | Sequence[Budget] | None = None,
                 budget_scope: str | None = None, settle_window: float = 300.0,
                 deliver: Callable[[FollowedJob, ProviderOutput], Awaitable[dict[str, Any]]] | None = None) -> None:
        self.providers: Mapping[str, Provider] = providers
        self.clock: Clock = clock
        self.health: Health = health
        self.store: Any = store
        self.poll: PollPolicy = poll or PollPolicy()
        self.rng: random.Random = rng or random.Random()
        self.new_key: Callable[[], str] = new_key or (lambda: str(uuid.uuid4()))
        self.on_event: Callable[[Event], None] = on_event or no_event
        self.backoff_base: float = backoff_base
        self.backoff_cap: float = backoff_cap
        self.budget: Budget | Sequence[Budget] | None = budget
        self.budget_scope: str | None = budget_scope
        self.settle_window: float = settle_window
        self.deliver: Callable[[FollowedJob, ProviderOutput], Awaitable[dict[str, Any]]] | None = deliver
        self.lease: ClipLease | None = None
        """The call's lease on the clip (set by the gateway): lost, the runner stops (``jobs.leasing``)."""
        self._traced = False  # whether the current attempt's span records (``run`` asks once per attempt)
        self._verdicts: list[GatewayError] | None = None  # made on first use: most runs re-attach nothing

    @property
    def verdicts(self) -> list[GatewayError]:
        """Verdicts on this clip's earlier jobs found when re-attaching (``Recovery``): ``run`` counts them
        as its own failures (the route's ``job_retries`` and failover rules), so none is paid for twice."""
        if self._verdicts is None:
            self._verdicts = []
        return self._verdicts

    # ---- the plan ---------------------------------------------------------------------------
    async def run(self, request: OviRequest, plan: Plan, route: Route, *, clip_key: str,
                  earlier: list[Attempt] | None = None) -> OviResult:
        """Try each candidate in order until one delivers the clip. A vendor whose job failed gets
        ``route.job_retries`` new jobs, after every other candidate has had its turn. ``earlier``
        attempts (open submits of this clip from before) are reported first on the result."""
        started = self.clock.now()
        deadline_at = None if route.deadline is None else started + route.deadline
        attempts: list[Attempt] = list(earlier or [])
        queue = list(plan.candidates)  # a list: a deque's first block is ~600 B, kept by every job in flight
        resubmitted: dict[str, int] = {}
        for verdict in self._verdicts or ():  # the same rules as a failure below, for a job ended before this run
            again = [c for c in queue if c.provider == verdict.provider]
            queue = [c for c in queue if c.provider != verdict.provider]
            if isinstance(verdict, GenerationFailed) and resubmitted.get(verdict.provider or "", 0) < route.job_retries:
                resubmitted[verdict.provider or ""] = resubmitted.get(verdict.provider or "", 0) + 1
                queue.extend(again)
            elif not _fails_over(verdict, route):
                verdict.attempts = list(attempts)
                raise verdict
        previous: str | None = None
        why = "skipped"
        while queue:
            candidate = queue.pop(0)
            if previous is not None:
                kind: EventKind = "resubmit" if candidate.provider == previous else "failover"
                _log.info("%s from %s to %s (clip %s) after %s", "resubmitting" if kind == "resubmit" else
                          "failing over", previous, candidate.provider, clip_key, why.split(":", 1)[0],
                          extra={"vendor": candidate.provider, "clip_key": clip_key})
                self.on_event(Event(kind, candidate.provider, self.clock.now() - started, message=f"after {why}"))
            previous = candidate.provider
            try:
                work = self._on_vendor(request, candidate, route, clip_key, started, deadline_at, attempts)
                self._traced = telemetry.live() is not None  # asked per attempt: a provider set later is used
                result = await (work if not self._traced else  # no span nobody records: no wrapper
                                telemetry.attempt(work, vendor=candidate.provider, clip_key=clip_key))
            except GatewayError as error:
                why = f"{type(error).__name__}: {error.message}"
                if isinstance(error, GenerationFailed) and resubmitted.get(candidate.provider, 0) < route.job_retries:
                    resubmitted[candidate.provider] = resubmitted.get(candidate.provider, 0) + 1
                    queue.append(candidate)
                    continue
                if _fails_over(error, route):
                    continue
                error.attempts = list(attempts)
                raise
            if result is not None:
                return result
            why = "skipped"
        raise AllProvidersFailed(f"all {len(plan.candidates)} candidate vendors failed", attempts=attempts)

    async def _on_vendor(self, request: OviRequest, candidate: Candidate, route: Route, clip_key: str,
                         started: float, deadline_at: float | None, attempts: list[Attempt]) -> OviResult | None:
        name = candidate.provider
        provider = self.providers[name]
        if self.lease is not None:
            await check_lease(self.lease, None, name, confirm=True)  # a call that lost the clip submits nothing
        breaker = self.health[name]
        if not breaker.allow():
            attempts.append(Attempt(provider=name, outcome="skipped", error=breaker.reason()))
            return None
        try:
            if self._left(deadline_at, 0.0) is None:
                await self._remaining(deadline_at, 0.0, name)  # raises DeadlineExceeded
            ctx = SubmitContext(idempotency_key=self.new_key(),
                                dropped=frozenset(candidate.dropped) if candidate.dropped else _NOTHING)
            store = self.store
            if store is not None:
                checks, scopes = budget_holds(self.budget, self.budget_scope)  # one reservation path, in the intent
                lease = self.lease
                opening = None if lease is None else lease.opening  # a clip this intent creates (jobs.clips)
                try:
                    await store.intent(clip_key=clip_key, submit_key=ctx.idempotency_key, provider=name,
                                       quote_usd=candidate.quote.price_usd, deadline=deadline_at, steps=request.steps,
                                       dropped=ctx.dropped, budget=checks or None, scopes=scopes, opening=opening)
                finally:
                    if opening is not None:
                        lease.opened()  # type: ignore[union-attr]  # (opening implies a lease)
            job = FollowedJob(provider, JobHandle(name, ""), candidate, clip_key, ctx.idempotency_key, started,
                              self.clock.now(), deadline_at, attempts, abandon_stuck=route.failover_on_unknown)
            try:
                job.handle = await submit(self, provider, request, ctx, route, deadline_at, attempts, started)
            except GatewayError as error:
                await self._record_failure(job, error)
                raise
            if store is not None:
                await self._write(job, "accepted", store.accepted, ctx.idempotency_key, job.handle.to_json(),
                                  keep=True)
            if self._traced:
                telemetry.note(job_id=job.handle.job_id, idempotency_key=ctx.idempotency_key)
            if _log.isEnabledFor(logging.INFO):  # the extra dict is not built for a line nobody writes
                _log.info("%s accepted job %s (idempotency key %s, clip %s)", name, job.handle.job_id,
                          ctx.idempotency_key, clip_key, extra={"vendor": name, "job_id": job.handle.job_id,
                                                                "idempotency_key": ctx.idempotency_key,
                                                                "clip_key": clip_key})
            if self.on_event is not no_event:
                self.on_event(Event("accepted", name, self.clock.now() - started, message=job.handle.job_id))
            return await self.follow(job)
        finally:
            breaker.release()  # a half-open probe that ended without a verdict must not block the vendor

    # ---- submit: retries before anything can be billed (jobs.submit, called directly), settling after ----
    async def _settle(self, provider: Provider, request: OviRequest, ctx: SubmitContext, error: GatewayError,
                      started: float, deadline_at: float | None, sent: set[str]) -> JobHandle:
        return await settle(self, provider, request, ctx, error, started, deadline_at, sent)

    # ---- following a job to its end --------------------------------------------------------
    async def follow(self, job: FollowedJob) -> OviResult:
        """Poll the job to its end and build the result.

        Only a verdict ends the job early. A failed check (any error an adapter raises that is not a
        verdict) is retried with backoff; a job still unfinished after ``PollPolicy.max_wait`` is raised
        as ``JobUnresolved`` and stays open in the journal for ``resume()`` (with ``job.abandon_stuck``,
        i.e. ``failover_on_unknown``, a cancel is requested first, best effort, and the runner moves on).
        """
        name, handle = job.name, job.handle
        checks, errors_in_row = 0, 0
        last_queued: float | None = None  # when the job was last seen waiting in the vendor's queue
        running_seen = False
        last_error: GatewayError | None = None
        while True:
            elapsed = self.clock.now() - job.vendor_started
            if elapsed > self.poll.max_wait:
                raise await self._stuck(job, last_error)
            floor = getattr(job.provider, "min_poll_interval", 0.0)
            wait = (self.poll.next_wait(name, elapsed, checks, floor) if errors_in_row == 0
                    else max(self.poll.interval, floor, self._backoff(errors_in_row, last_error)))
            if checks == 0 and errors_in_row == 0 and (fallback := getattr(job.provider, "push_fallback", None)):
                later = fallback(handle) - elapsed  # a push is expected: polling is the slow fallback ...
                if job.deadline_at is None or self.clock.now() + later + wait <= job.deadline_at:
                    wait = max(wait, later)  # ... unless it would leave no check before the caller's deadline
            left = self._left(job.deadline_at, wait)
            if left is None:
                left = await self._remaining(job.deadline_at, wait, name, job)  # raises DeadlineExceeded
            if left > 0 or checks:  # the first check with nothing to wait for follows the submit's answer at
                await self.clock.sleep(left)  # once (as fal-client's does); later ones always yield to the loop
            if self.lease is not None:
                await check_lease(self.lease, job, name, confirm=False)  # taken over: the holder follows it
            if job.unwritten or job.pending or job.refused is not None:  # only a journal leaves any
                await flush(self.clock, job)  # writes a full disk refused earlier (the handle is in memory)
            checks += 1
            try:
                async with self._bounded(job.deadline_at, name, "status check"):
                    status = await job.provider.status(handle)
            except GatewayError as error:
                verdict = fate.decide(Phase.FOLLOW, fate.answer_of(error, Phase.FOLLOW))
                if verdict is Fate.CHECK_AGAIN:
                    errors_in_row, last_error = errors_in_row + 1, error
                    self.on_event(Event("retry", name, self.clock.now() - job.started, message=str(error)))
                    continue
                if self.lease is not None:
                    await check_lease(self.lease, job, name, confirm=True)  # only the holder records a verdict
                await self._record_failure(job, error)
                raise
            errors_in_row = 0
            if _log.isEnabledFor(logging.DEBUG):  # every check of every job: no extra dict for nobody
                _log.debug("%s job %s: %s", name, handle.job_id, status.state.value,
                           extra={"vendor": name, "job_id": handle.job_id, "idempotency_key": job.submit_key})
            if self.on_event is not no_event:
                self.on_event(Event("status", name, self.clock.now() - job.started, state=status.state,
                                    queue_position=status.queue_position))
            if not status.state.final:  # the poll policy learns job times from when a job was last unfinished
                job.seen_unfinished_at = self.clock.now() - job.vendor_started
                fate.decide(Phase.FOLLOW, Answer.PENDING)
            if status.state == JobState.QUEUED:
                last_queued = self.clock.now()
                continue
            if not running_seen:
                running_seen = True
                if self.store is not None:
                    await self._write(job, "running", self.store.state, job.submit_key, "running", keep=True)
            if status.state.final and self.lease is not None:
                await check_lease(self.lease, job, name, confirm=True)  # only the holder records a verdict
            if status.state == JobState.FAILED:
                failure = status.error or GenerationFailed(f"job {handle.job_id} failed", provider=name)
                answer = Answer.JOB_REFUSED if isinstance(failure, ContentRejected) else Answer.JOB_FAILED
                fate.decide(Phase.FOLLOW, answer)
                await self._record_failure(job, failure)
                raise failure
            if status.state == JobState.SUCCEEDED:
                fate.decide(Phase.FOLLOW, Answer.DONE)
                output = await fetch_result(self, job, status)
                return await finish(self, job, output, last_queued, await self._delivered(job, output))

    async def _stuck(self, job: FollowedJob, last_error: GatewayError | None) -> GatewayError:
        fate.decide(Phase.FOLLOW, Answer.OUT_OF_TIME)
        stuck = f"job {job.handle.job_id} still unfinished after {self.poll.max_wait:.0f} s"
        if last_error is not None:
            stuck += f" (last check: {type(last_error).__name__}: {last_error.message})"
        if job.abandon_stuck:
            try:  # saves money where the vendor can still drop a queued job (fal); the job stays open
                async with self._bounded(None, job.name, "cancel"):
                    await job.provider.cancel(job.handle)
            except GatewayError:
                pass
        return await self._unresolved(job, GenerationFailed(stuck, provider=job.name))

    # ---- delivery: media checks before success (gateway.jobs.delivery) ----------------------
    async def _delivered(self, job: FollowedJob, output: ProviderOutput) -> dict[str, Any]:
        """Extra result fields from ``deliver``; a defective clip is the vendor's (paid) failure."""
        if self.deliver is None:
            return {}
        try:
            return await self.deliver(job, output)
        except DefectiveClip as error:
            await self._record_failure(job, error)
            raise

    # ---- helpers ----------------------------------------------------------------------------
    def _bounded(self, deadline_at: float | None, name: str, what: str,
                 submit: SubmitContext | None = None) -> AbstractAsyncContextManager[None]:
        """One provider call bounded by the deadline and ``call_timeout`` (see ``gateway.jobs.bounds``)."""
        return bounded_call(self.clock, deadline_at, provider=name, what=what, cap=self.call_timeout, submit=submit)

    async def _write(self, job: FollowedJob, what: str, write: Callable[..., Any], *args: Any,
                     keep: bool = False) -> None:
        """A journal write about a paid job (``gateway.jobs.writes``: retried; ``keep``: kept for later)."""
        await write_paid(self.clock, job, what, write, args, keep=keep, cap=self.backoff_cap)

    async def _record_failure(self, job: FollowedJob, error: GatewayError) -> None:
        """Note a failed attempt on the result, the breaker and the journal.

        A submit whose outcome is unknown, or a job that is still alive (deadline, unreadable status),
        stays open in the journal so ``resume()`` can settle it; only a job the vendor said ended, or a
        submit refused before any job existed, is closed.
        """
        alive = isinstance(error, PAID_JOB_ALIVE)
        _log.info("%s job %s %s: %s (idempotency key %s, may be billed: %s)", job.name, job.handle.job_id or "-",
                  "left open" if alive else "failed", type(error).__name__, job.submit_key, error.may_be_billed,
                  extra={"vendor": job.name, "job_id": job.handle.job_id or None, "idempotency_key": job.submit_key,
                         "clip_key": job.clip_key})
        _log.debug("%s job %s error: %s", job.name, job.handle.job_id or "-", error)
        job.attempts.append(Attempt(provider=job.name, outcome="unknown" if alive else "failed",
                                    error_type=type(error).__name__, error=str(error),
                                    elapsed_s=self.clock.now() - job.vendor_started,
                                    may_be_billed=error.may_be_billed, job_id=job.handle.job_id or None))
        if not isinstance(error, DeadlineExceeded):
            self.health[job.name].failure(error)
        if self.store is None:
            return
        if isinstance(error, SubmitOutcomeUnknown):
            await self.store.unknown(job.submit_key, error=str(error))
        elif not alive:
            await self.store.failed(job.submit_key, error=str(error), may_be_billed=error.may_be_billed)

    async def _unresolved(self, job: FollowedJob, error: GatewayError) -> JobUnresolved:
        unresolved = JobUnresolved(f"job {job.handle.job_id} was accepted but its outcome cannot be read yet "
                                   f"({type(error).__name__}: {error.message}); it stays open in the journal "
                                   "for resume()", provider=job.name, job=job.handle)
        await self._record_failure(job, unresolved)
        return unresolved

    def _backoff(self, tries: int, error: GatewayError | None) -> float:
        """Seconds before the next try: the vendor's ``Retry-After`` (at most ``backoff_cap``), else
        exponential backoff with jitter."""
        hinted = getattr(error, "retry_after", None)
        if hinted:
            return min(float(hinted), self.backoff_cap)
        exp = min(self.backoff_cap, self.backoff_base * 2.0 ** (tries - 1))
        return exp * self.rng.uniform(0.5, 1.0)

    def _past(self, deadline_at: float | None, upcoming: float | None) -> bool:
        return deadline_at is not None and self.clock.now() + (upcoming or 0.0) > deadline_at

    def _left(self, deadline_at: float | None, wait: float) -> float | None:
        """``wait``, shortened to end at the deadline, while the deadline is still ahead (else ``None``:
        ``_remaining`` raises). Plain, not a coroutine: it runs before every check of every job."""
        if deadline_at is None:
            return wait
        left = deadline_at - self.clock.now()
        return min(wait, left) if left > 0 else None

    async def _remaining(self, deadline_at: float | None, wait: float, name: str,
                         job: FollowedJob | None = None) -> float:
        """``wait``, shortened to end at the deadline; ``DeadlineExceeded`` once the deadline has come
        (a running job stays open in the journal for ``resume()``)."""
        if deadline_at is None:
            return wait
        left = deadline_at - self.clock.now()
        if left > 0:
            return min(wait, left)
        running = f"; job {job.handle.job_id} on {name} is still running and can be resumed" if job else ""
        error = DeadlineExceeded(f"deadline reached{running}", provider=name, job=job.handle if job else None)
        if job is not None:
            await self._record_failure(job, error)
        raise error


_NOTHING: frozenset[str] = frozenset()


def _fails_over(error: GatewayError, route: Route) -> bool:
    """Whether the next candidate may be tried. A job that may still run (``SubmitOutcomeUnknown``,
    ``JobUnresolved``) is failed over only with ``failover_on_unknown``; it stays open in the journal and
    its attempt, marked ``may_be_billed``, is counted in ``possible_extra_charges``."""
    if not route.allow_fallbacks or route.provider is not None:
        return False
    if isinstance(error, JobUnresolved) and error.held_by is not None:
        return False  # this call lost the clip: the holder decides what follows
    if isinstance(error, (SubmitOutcomeUnknown, JobUnresolved)):
        return route.failover_on_unknown
    return (error.failover or (route.failover_on_content_rejection and isinstance(error, ContentRejected))
            or (route.failover_on_defective and isinstance(error, DefectiveClip)))
