"""Finishing paid jobs left open in the journal, and making sure only one call works on a clip at a time.

After a crash, a deadline or an unreadable status, a vendor job may still run (and be billed) while
its clip has no result. ``Recovery`` re-attaches to such jobs — Runware by ``taskUUID``, fal by
request id, WaveSpeed by prediction id — instead of submitting again, and refuses to submit a clip
whose earlier job is still unsettled unless the caller accepts a possible second charge.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from gateway.clock import Clock
from gateway.contract import JobHandle, Provider, SubmitContext
from gateway.errors import (
    PAID_JOB_ALIVE,
    DeadlineExceeded,
    GatewayError,
    JobUnresolved,
    SubmitOutcomeUnknown,
)
from gateway.jobs import fate
from gateway.jobs.fate import Answer, Fate, Phase
from gateway.jobs.runner import FollowedJob, Runner
from gateway.request import OviRequest
from gateway.result import Attempt, OviResult
from gateway.routing.planner import Candidate, Route
from gateway.routing.pricing import Quote
from gateway.store.intake import load_request
from gateway.store.journal import OPEN, SubmitRecord

__all__ = ["Recovery", "ResumeOutcome"]


@dataclass(frozen=True)
class ResumeOutcome:
    """What resuming did with one open submit: ``outcome`` is succeeded, failed (the vendor's verdict),
    unknown (still open), abandoned (given up, may be billed) or in-progress (another call holds the clip)."""

    clip_key: str
    provider: str
    outcome: str
    result: OviResult | None = None
    error: str | None = None


class Recovery:
    """Re-attaches to open submits of the journal through the gateway's providers.

    Every decision goes through ``gateway.jobs.fate``: a submit with no recorded answer is settled the
    vendor's way (Runware: the same ``taskUUID`` sent again) or left open; a job that cannot be read is
    left open, counted, and ``abandoned`` (may be billed) once older than the vendor's documented
    retention plus a margin, or after ``fate.ABANDON_AFTER_RESUMES`` resumes that found nothing.
    ``store`` is the async store (``gateway.store.base.SqlStore``); ``wall`` is the wall clock (UTC) the
    journal's timestamps are compared with.
    """

    def __init__(self, store: Any, providers: Callable[[], Mapping[str, Provider]],
                 configured: Callable[[str], bool], clock: Clock,
                 wall: Callable[[], datetime] | None = None) -> None:
        self.store: Any = store
        self.providers: Callable[[], Mapping[str, Provider]] = providers
        self.configured: Callable[[str], bool] = configured
        self.clock: Clock = clock
        self.wall: Callable[[], datetime] = wall or (lambda: datetime.now(UTC))

    async def _request(self, request_json: str) -> OviRequest:
        """The journaled request, its stored image read from the store first (``store.intake``)."""
        value = json.loads(request_json)
        image = value.get("image") if isinstance(value, dict) else None
        digest = image.get("sha256") if isinstance(image, dict) and image.get("stored") else None
        data = None if digest is None else await self.store.get_image(str(digest))
        return load_request(request_json, lambda _digest: data)

    async def open_submits(self, clip_key: str) -> list[SubmitRecord]:
        return [r for r in await self.store.submits(clip_key) if r.state in OPEN]

    async def clip(self, clip_key: str, runner: Runner, deadline_at: float | None = None) -> list[ResumeOutcome]:
        """Follow every open submit of the clip until one delivers it. ``DeadlineExceeded`` propagates.

        The caller holds the clip's lease. A clip already delivered is skipped (``[]``: nothing followed,
        nothing sent): ``resume`` lists clips before claiming them, and a result that committed in between
        — another call delivered the clip, maybe beside a submit still open under ``failover_on_unknown`` —
        is seen by this read made after the claim, so no vendor is asked about a delivered clip."""
        clip = await self.store.get_clip(clip_key)
        if clip is not None and clip.state == "succeeded":
            return []
        outcomes = []
        for record in await self.open_submits(clip_key):
            if not self.configured(record.provider):
                outcomes.append(ResumeOutcome(clip_key, record.provider, "unknown",
                                              error=f"{record.provider} is not configured here"))
                continue
            outcome = await self._submit(record, runner, deadline_at)
            outcomes.append(outcome)
            if outcome.result is not None:
                break
        return outcomes

    async def _submit(self, record: SubmitRecord, runner: Runner, deadline_at: float | None) -> ResumeOutcome:
        provider = self.providers()[record.provider]
        handle = JobHandle.from_json(record.handle) if record.handle else None
        if handle is None:
            if not provider.reconcilable:
                return await self._nothing_found(record, provider, "no vendor answer was recorded and "
                                           f"{record.provider} cannot be asked whether it took the job")
            try:  # Runware dedupes by taskUUID: sending the same key again settles it (ack or conflict)
                request = await self._request(record.request_json)
                ctx = SubmitContext(idempotency_key=record.submit_key, dropped=frozenset(record.dropped))
                error = SubmitOutcomeUnknown("the submit was sent before a crash; its answer is unknown",
                                             provider=record.provider)
                handle = await runner._settle(provider, request, ctx, error, self.clock.now(), deadline_at,
                                              {record.submit_key})
            except DeadlineExceeded:
                raise
            except GatewayError as error:
                return await self._nothing_found(record, provider, str(error))
            await self.store.accepted(record.submit_key, handle.to_json())
        now = self.clock.now()
        candidate = Candidate(record.provider, Quote(provider=record.provider, price_usd=record.quote_usd),
                              record.dropped)
        job = FollowedJob(provider, handle, candidate, record.clip_key, record.submit_key, started=now,
                          vendor_started=now, deadline_at=deadline_at, resumed=True)
        try:
            result = await runner.follow(job)
        except DeadlineExceeded:
            raise
        except GatewayError as error:
            if isinstance(error, JobUnresolved) and error.held_by is not None:
                raise  # another call took the clip over: it follows the job now
            if isinstance(error, PAID_JOB_ALIVE):
                if job.seen_unfinished_at is not None:  # the vendor answered "pending": not a resume that found nothing
                    await self.store.note_resume(record.submit_key, reset=True)
                    return ResumeOutcome(record.clip_key, record.provider, "unknown", error=str(error))
                return await self._nothing_found(record, provider, str(error))
            runner.verdicts.append(error)  # a new run of this clip counts it (job_retries, failover)
            return ResumeOutcome(record.clip_key, record.provider, "failed", error=str(error))
        return ResumeOutcome(record.clip_key, record.provider, "succeeded", result=result)

    async def _nothing_found(self, record: SubmitRecord, provider: Provider, why: str) -> ResumeOutcome:
        """A resume that could not settle the submit: it stays open (``unknown``), unless it is past the
        vendor's result retention or has been resumed ``ABANDON_AFTER_RESUMES`` times — then it is
        ``abandoned``: terminal, may be billed, shown by ``jobs`` and ``spend``."""
        retention = getattr(provider, "result_retention_s", None)
        resumes = await self.store.note_resume(record.submit_key, spacing_s=fate.RESUME_SPACING_S)
        answer = (Answer.PAST_RETENTION
                  if fate.past_retention(record.created_at, retention, now=self.wall())
                  or resumes >= fate.ABANDON_AFTER_RESUMES else Answer.NOTHING_FOUND)
        if fate.decide(Phase.RESUME, answer) is Fate.ABANDONED:
            await self.store.abandoned(record.submit_key,
                                       error=f"abandoned after {resumes} resumes (may be billed): {why}")
            return ResumeOutcome(record.clip_key, record.provider, "abandoned", error=why)
        if record.state != "unknown" and record.handle is None:
            await self.store.unknown(record.submit_key, error=why)
        return ResumeOutcome(record.clip_key, record.provider, "unknown", error=why)

    async def refuse_if_open(self, clip_key: str, route: Route) -> list[Attempt]:
        """Raise if an earlier submit of the clip may still hold a paid job, unless the route accepts a
        possible second charge; then return those submits as attempts to report on the result."""
        history = await self.store.submits(clip_key)
        still_open = [r for r in history if r.state in OPEN]
        if still_open and not route.failover_on_unknown:
            record = still_open[-1]
            hint = {"provider": record.provider, "idempotency_key": record.submit_key, "clip": clip_key}
            advice = ("not submitting the clip again; run resume() later, or pass "
                      "Route(failover_on_unknown=True) to accept a possible second charge")
            if record.handle is None:
                raise SubmitOutcomeUnknown(f"an earlier submit of clip {clip_key!r} to {record.provider} may have "
                                           f"created a paid job that cannot be looked up; {advice}",
                                           provider=record.provider, job_hint=hint)
            raise JobUnresolved(f"job {record.job_id} of clip {clip_key!r} on {record.provider} is still open; "
                                f"{advice}", provider=record.provider, job=JobHandle.from_json(record.handle))
        # Earlier submits of this key that may have been billed — abandoned ones (they no longer block the
        # key) and failed ones the vendor may charge for (a refusal fal bills, a Runware failure) — are
        # reported on the new result as possible extra charges, never hidden.
        abandoned = [r for r in history if r.state == "abandoned"]
        billed_failures = [r for r in history if r.state == "failed" and r.may_be_billed]
        return [Attempt(provider=r.provider, outcome="unknown", error_type="earlier submit still open",
                        may_be_billed=True, job_id=r.job_id) for r in still_open] + [
                Attempt(provider=r.provider, outcome="unknown", error_type="earlier submit abandoned",
                        error=r.error, may_be_billed=True, job_id=r.job_id) for r in abandoned] + [
                Attempt(provider=r.provider, outcome="failed", error_type="earlier submit failed",
                        error=r.error, may_be_billed=True, job_id=r.job_id) for r in billed_failures]
