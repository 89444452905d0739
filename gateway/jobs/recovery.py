"""Finishing paid jobs left open in the journal, and making sure only one call works on a clip at a time.

After a crash, a deadline or an unreadable status, a vendor job may still run (and be billed) while
its clip has no result. ``Recovery`` re-attaches to such jobs — Runware by ``taskUUID``, fal by
request id, WaveSpeed by prediction id — instead of submitting again, and refuses to submit a clip
whose earlier job is still unsettled unless the caller accepts a possible second charge.
"""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from gateway.clock import Clock
from gateway.contract import JobHandle, Provider, SubmitContext
from gateway.errors import (
    PAID_JOB_ALIVE,
    DeadlineExceeded,
    GatewayError,
    JobUnresolved,
    ResultExpired,
    SubmitOutcomeUnknown,
)
from gateway.jobs.runner import FollowedJob, Runner
from gateway.result import Attempt, OviResult
from gateway.routing.planner import Candidate, Route
from gateway.routing.pricing import Quote
from gateway.store.journal import OPEN, Journal, SubmitRecord

__all__ = ["Recovery", "ResumeOutcome", "lease_owner", "owner_alive"]


@dataclass(frozen=True)
class ResumeOutcome:
    """What resuming did with one open submit: ``outcome`` is succeeded, failed, expired,
    not-submitted, unknown or in-progress (another call holds the clip)."""

    clip_key: str
    provider: str
    outcome: str
    result: OviResult | None = None
    error: str | None = None


def lease_owner() -> str:
    """A name for this call: host, process and a random part (``host:pid:hex``)."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex}"


def owner_alive(owner: str) -> bool:
    """Whether the call that holds a clip may still run: its process is alive on this host (a lease
    held from another host counts as alive until it expires)."""
    host, _, rest = owner.partition(":")
    pid_text = rest.partition(":")[0]
    if host != socket.gethostname() or not pid_text.isdigit():
        return True
    try:
        os.kill(int(pid_text), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class Recovery:
    """Re-attaches to open submits of the journal through the gateway's providers."""

    def __init__(self, journal: Journal, providers: Callable[[], Mapping[str, Provider]],
                 configured: Callable[[str], bool], clock: Clock) -> None:
        self.journal = journal
        self.providers = providers
        self.configured = configured
        self.clock = clock

    def open_submits(self, clip_key: str) -> list[SubmitRecord]:
        return [r for r in self.journal.submits(clip_key) if r.state in OPEN]

    async def clip(self, clip_key: str, runner: Runner, deadline_at: float | None = None) -> list[ResumeOutcome]:
        """Follow every open submit of the clip until one delivers it. ``DeadlineExceeded`` propagates."""
        outcomes = []
        for record in self.open_submits(clip_key):
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
                if record.state != "unknown":
                    self.journal.unknown(record.submit_key, error="no vendor answer was recorded; "
                                         f"{record.provider} cannot be asked whether it took the job")
                return ResumeOutcome(record.clip_key, record.provider, "unknown",
                                     error="submit outcome unknown; cannot be reconciled")
            try:
                handle = await provider.find(SubmitContext(idempotency_key=record.submit_key))
            except GatewayError as error:
                return ResumeOutcome(record.clip_key, record.provider, "unknown", error=str(error))
            if handle is None:
                self.journal.failed(record.submit_key, error="never reached the vendor", may_be_billed=False)
                return ResumeOutcome(record.clip_key, record.provider, "not-submitted")
            self.journal.accepted(record.submit_key, handle.to_json())
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
            outcome = ("expired" if isinstance(error, ResultExpired)
                       else "unknown" if isinstance(error, PAID_JOB_ALIVE) else "failed")
            return ResumeOutcome(record.clip_key, record.provider, outcome, error=str(error))
        return ResumeOutcome(record.clip_key, record.provider, "succeeded", result=result)

    def refuse_if_open(self, clip_key: str, route: Route) -> list[Attempt]:
        """Raise if an earlier submit of the clip may still hold a paid job, unless the route accepts a
        possible second charge; then return those submits as attempts to report on the result."""
        still_open = self.open_submits(clip_key)
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
        return [Attempt(provider=r.provider, outcome="unknown", error_type="earlier submit still open",
                        may_be_billed=True, job_id=r.job_id) for r in still_open]
