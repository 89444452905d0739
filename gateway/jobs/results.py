"""The result step of a followed job: read the clip once the vendor said the job is done.

A failed result read is a failed check (``fate``: ``result``/``check_failed``), retried with backoff
on the same job until ``PollPolicy.max_wait``. Before each retry the job's status is asked again: a
"done" answer whose outputs are not readable yet (a WaveSpeed ``completed`` with ``outputs: []``, a
Runware ``success`` item with no URL) would otherwise be re-parsed from the same stale body until
``max_wait`` and end a paid, deliverable clip as ``JobUnresolved``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from gateway.contract import JobState, JobStatus, ProviderOutput
from gateway.errors import ContentRejected, GatewayError, GenerationFailed
from gateway.jobs import fate
from gateway.jobs.fate import Answer, Fate, Phase

if TYPE_CHECKING:
    from gateway.jobs.runner import FollowedJob, Runner

__all__ = ["fetch_result", "recheck"]


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
                runner._record_failure(job, error)
                raise
            tries += 1
            wait = max(runner.poll.interval, runner._backoff(tries, error))
            if runner.clock.now() + wait - job.vendor_started > runner.poll.max_wait:
                fate.decide(Phase.RESULT, Answer.OUT_OF_TIME)
                raise runner._unresolved(job, error) from error
            await runner.clock.sleep(runner._remaining(job.deadline_at, wait, job.name, job))
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
            runner._record_failure(job, error)
            raise
        return status
    if fresh.state is JobState.FAILED:
        failure = fresh.error or GenerationFailed(f"job {job.handle.job_id} failed", provider=job.name)
        fate.decide(Phase.RESULT, Answer.JOB_REFUSED if isinstance(failure, ContentRejected) else Answer.JOB_FAILED)
        runner._record_failure(job, failure)
        raise failure
    return fresh
