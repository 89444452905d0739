"""The result step of a followed job: read the clip once the vendor said the job is done, then record
it and build the ``OviResult`` (``finish``).

A failed result read is a failed check (``fate``: ``result``/``check_failed``), retried with backoff
on the same job until ``PollPolicy.max_wait``. Before each retry the job's status is asked again: a
"done" answer whose outputs are not readable yet (a WaveSpeed ``completed`` with ``outputs: []``, a
Runware ``success`` item with no URL) would otherwise be re-parsed from the same stale body until
``max_wait`` and end a paid, deliverable clip as ``JobUnresolved``.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any, Literal

from gateway.contract import JobState, JobStatus, ProviderOutput
from gateway.errors import ContentRejected, GatewayError, GenerationFailed
from gateway.jobs import fate
from gateway.jobs.events import Event, no_event
from gateway.jobs.fate import Answer, Fate, Phase
from gateway.jobs.writes import JOURNAL_WRITE_TRIES, flush
from gateway.result import Attempt, OviResult, Timings

if TYPE_CHECKING:
    from gateway.jobs.runner import FollowedJob, Runner

__all__ = ["fetch_result", "finish", "recheck"]

_log = logging.getLogger("gateway.jobs.runner")


async def fetch_result(runner: Runner, job: FollowedJob, status: JobStatus) -> ProviderOutput:
    """The finished clip of ``job``, whose last ``status`` said it is done; raises a verdict's error,
    or ``JobUnresolved`` (open for ``resume()``) when no read succeeds within ``max_wait``."""
    tries = 0
    while True:
        try:
            async with runner._bounded(job.deadline_at, job.name, "result"):
                output = await job.provider.result(job.handle, status)
        except GatewayError as error:
            if fate.decide(Phase.RESULT, fate.answer_of(error, Phase.RESULT)) is not Fate.CHECK_AGAIN:
                await runner._record_failure(job, error)
                raise
            tries += 1
            wait = max(runner.poll.interval, runner._backoff(tries, error))
            if runner.clock.now() + wait - job.vendor_started > runner.poll.max_wait:
                fate.decide(Phase.RESULT, Answer.OUT_OF_TIME)
                raise await runner._unresolved(job, error) from error
            await runner.clock.sleep(await runner._remaining(job.deadline_at, wait, job.name, job))
            status = await recheck(runner, job, status)
            continue
        fate.decide(Phase.RESULT, Answer.CLIP)
        return output


async def recheck(runner: Runner, job: FollowedJob, status: JobStatus) -> JobStatus:
    """A fresh status for the next result read. A failed check keeps ``status`` (the job was done);
    a verdict in the fresh answer ends the job like any verdict."""
    try:
        async with runner._bounded(job.deadline_at, job.name, "status check"):
            fresh = await job.provider.status(job.handle)
    except GatewayError as error:
        if fate.decide(Phase.FOLLOW, fate.answer_of(error, Phase.FOLLOW)) is not Fate.CHECK_AGAIN:
            await runner._record_failure(job, error)
            raise
        return status
    if fresh.state is JobState.FAILED:
        failure = fresh.error or GenerationFailed(f"job {job.handle.job_id} failed", provider=job.name)
        fate.decide(Phase.RESULT, Answer.JOB_REFUSED if isinstance(failure, ContentRejected) else Answer.JOB_FAILED)
        await runner._record_failure(job, failure)
        raise failure
    return fresh


async def finish(runner: Runner, job: FollowedJob, output: ProviderOutput, last_queued: float | None,
                 extra: dict[str, Any] | None = None) -> OviResult:
    """The job's ``OviResult``, after its result and end are on record (``gateway.jobs.writes``)."""
    now = runner.clock.now()
    runner.health[job.name].success()
    if not job.resumed:  # a resumed job's start is unknown: it would teach the policy nonsense
        runner.poll.observe(job.name, now - job.vendor_started, lower=job.seen_unfinished_at or 0.0)
    quoted = job.candidate.quote.price_usd
    source: Literal["reported", "estimated", "unknown"]
    cost, source = (output.cost_usd, "reported") if output.cost_usd is not None else (
        (quoted, "estimated") if quoted is not None else (None, "unknown"))
    job.attempts.append(Attempt(provider=job.name, outcome="succeeded", elapsed_s=now - job.vendor_started,
                                may_be_billed=True, job_id=job.handle.job_id))
    # Polls bound the phases: queued at least until last seen queued, running at most since then.
    running_from = last_queued if last_queued is not None else job.vendor_started
    result = OviResult(
        provider=job.name, job_id=job.handle.job_id, video_url=output.video_url, seed=output.seed,
        cost_usd=cost, cost_source=source, quoted_usd=quoted, nsfw=output.nsfw,
        timings=Timings(total_s=now - job.started,
                        queued_s=None if job.resumed or last_queued is None else last_queued - job.vendor_started,
                        running_s=None if job.resumed else now - running_from,
                        inference_s=output.inference_s),
        dropped=sorted(job.candidate.dropped), attempts=list(job.attempts),
        idempotency_key=job.clip_key, raw=output.raw, **(extra or {}))
    store = runner.store
    if store is not None:  # journal=None: nothing to record (and the result is not serialized for nobody)
        # Batched progress still in flight is superseded by the end written next (same queue, in order).
        await flush(runner.clock, job, tries=JOURNAL_WRITE_TRIES, cap=runner.backoff_cap, settle=False)
        # The clip's result and its submit's end are one transaction (``SqlStore.finish``): never an open
        # clip whose submit is closed, nor a finished submit whose clip has no result. The call's lease
        # goes back in it too: callers of the key get the committed result without claiming. Not for a
        # resumed job: recovery may follow more of the clip's earlier jobs after this one.
        lease = runner.lease
        owner = None if lease is None or job.resumed else lease.giving_back()
        await runner._write(job, "result", lambda: store.finish(job.clip_key, result.model_dump_json(),
                                                                job.submit_key, cost_usd=cost, cost_source=source,
                                                                release=owner))
        if owner is not None:
            lease.released = True  # type: ignore[union-attr]  # (an owner implies a lease)
    if _log.isEnabledFor(logging.INFO):  # the extra dict is not built for a line nobody writes
        _log.info("%s job %s finished (idempotency key %s, cost %s USD, %s)", job.name, job.handle.job_id,
                  job.submit_key, cost, source, extra={"vendor": job.name, "job_id": job.handle.job_id,
                                                       "idempotency_key": job.submit_key, "clip_key": job.clip_key})
    if runner.on_event is not no_event:
        runner.on_event(Event("done", job.name, now - job.started, state="succeeded", message=output.video_url))
    return result
