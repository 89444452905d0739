"""Journal writes about a paid job, which must never drop it.

A write that fails (disk full, a locked file) is retried with backoff. A write the job can be followed
without — ``accepted``, ``running`` — is then kept on the job (``FollowedJob.unwritten``) and tried again
before every poll: the job is followed with its handle in memory and the call ends only when the clip is
delivered or the vendor ended the job (issue 9 item 6). Before this, the call gave up after four tries
with the handle only in the error text; a vendor without lookup (fal, WaveSpeed) then left ``resume()``
nothing to find, the submit was abandoned and the same key paid again. A write the outcome depends on
(the result, the end) that still fails raises ``JobUnresolved`` naming the vendor job and how to resume.

A write the journal itself refuses (``KeyError``/``ValueError``: a state change after another process
ended the submit, say) is not storage trouble and is never retried: it raises ``JobUnresolved`` naming
the vendor job, with ``held_by`` set so the runner neither fails over nor records anything more — the
journal's end for that submit was written by whoever ended it, and paying again could double-bill.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from gateway.clock import Clock
from gateway.errors import JobUnresolved
from gateway.store.futures import watch

if TYPE_CHECKING:
    from gateway.jobs.followed import FollowedJob

__all__ = ["JOURNAL_WRITE_TRIES", "flush", "write_paid"]

_log = logging.getLogger("gateway.jobs.runner")

REFUSED_BY = "another process (the journal refused this call's write)"
"""``JobUnresolved.held_by`` of a follower stopped by a write the journal refused (see the module docstring)."""

JOURNAL_WRITE_TRIES = 4
"""Tries (with backoff 0.5, 1, 2 s, capped) of one journal write before it is kept for later or raised."""

Write = tuple[str, Callable[..., Any], tuple[Any, ...]]


async def _attempt(clock: Clock, write: Callable[..., Any], args: tuple[Any, ...], tries: int,
                   cap: float, *, backoff: float = 0.5) -> Exception | asyncio.Future[Any] | None:
    """``None`` when written; the write's future when it was queued for a group commit (``BATCHED``, not
    waited for); else the last storage failure after ``tries`` tries (waiting ``backoff`` seconds, then
    twice that each time, capped at ``cap``, between them)."""
    problem: Exception | None = None
    for attempt in range(1, tries + 1):
        try:
            outcome = write(*args)
            if inspect.isawaitable(outcome):  # the async store (a sync journal's write is done already)
                outcome = await outcome
            return outcome if isinstance(outcome, asyncio.Future) else None
        except (KeyError, ValueError):
            raise  # the journal's own refusals are bugs, not storage trouble
        except Exception as exc:  # any storage failure: the paid job must not be dropped
            problem = exc
            if attempt < tries:
                await clock.sleep(min(cap, backoff * 2 ** (attempt - 1)))
    return problem


async def write_paid(clock: Clock, job: FollowedJob, what: str, write: Callable[..., Any], args: tuple[Any, ...],
                     *, keep: bool, cap: float) -> None:
    """Write ``what`` about ``job``. ``keep``: on lasting failure keep it for ``flush`` (the job goes on);
    else raise ``JobUnresolved``. A kept write queues every later kept write behind it (order matters)."""
    if keep and job.unwritten:
        _unwritten(job).append((what, write, args))
        return
    problem: Exception | asyncio.Future[Any] | None
    try:
        try:  # the first try here, not in ``_attempt``: one coroutine less per write of every job
            outcome = write(*args)
            if inspect.isawaitable(outcome):  # the async store (a sync journal's write is done already)
                outcome = await outcome
            problem = outcome if isinstance(outcome, asyncio.Future) else None
        except (KeyError, ValueError):
            raise  # the journal's own refusals are bugs, not storage trouble
        except Exception:  # storage trouble: the remaining tries, with the same backoff as from the first
            await clock.sleep(min(cap, 0.5))
            problem = await _attempt(clock, write, args, JOURNAL_WRITE_TRIES - 1, cap, backoff=1.0)
    except (KeyError, ValueError) as refusal:
        raise _refused(job, what, refusal) from refusal
    if isinstance(problem, asyncio.Future):  # watched, not waited for: it keeps its group commit
        watch(problem, functools.partial(_kept_if_failed, job, what, write, args))
        _pending(job).append(problem)
        return
    if problem is None:
        return
    if keep:
        _log.warning("%s job %s: the journal could not record its %s (%s); following it with the handle in "
                     "memory and trying again before every check", job.name, job.handle.job_id, what,
                     type(problem).__name__, extra={"vendor": job.name, "job_id": job.handle.job_id,
                                                    "idempotency_key": job.submit_key})
        _unwritten(job).append((what, write, args))
        return
    raise JobUnresolved(
        f"job {job.handle.job_id or '(no id yet)'} on {job.name} is paid for, but the journal could not "
        f"record its {what} ({type(problem).__name__}: {problem}); the job is {job.handle.to_json()}. Free the "
        "journal's storage, then run `ovi-gateway jobs resume` (or call the same idempotency key again)",
        provider=job.name, job=job.handle) from problem


async def flush(clock: Clock, job: FollowedJob, *, tries: int = 1, cap: float = 0.0, settle: bool = True) -> None:
    """Try the writes kept on ``job`` again, in order, stopping at the first that still fails. ``settle``:
    first wait for its batched writes in flight (long committed, in real time), so one its group commit
    refused is kept and tried here — not one check later."""
    if settle and job.pending:
        await asyncio.wait(job.pending)
        job.pending.clear()
    if job.refused is not None:
        what, refusal = job.refused
        raise _refused(job, what, refusal) from refusal
    while job.unwritten:
        what, write, args = job.unwritten[0]
        try:
            outcome = await _attempt(clock, write, args, tries, cap)
        except (KeyError, ValueError) as refusal:
            raise _refused(job, what, refusal) from refusal
        if isinstance(outcome, Exception):
            return
        job.unwritten.pop(0)
        if isinstance(outcome, asyncio.Future):
            watch(outcome, functools.partial(_kept_if_failed, job, what, write, args))
            _pending(job).append(outcome)


def _unwritten(job: FollowedJob) -> list[Write]:
    if job.unwritten is None:
        job.unwritten = []
    return job.unwritten


def _pending(job: FollowedJob) -> list[asyncio.Future[Any]]:
    if job.pending is None:
        job.pending = []
    return job.pending


def _refused(job: FollowedJob, what: str, refusal: Exception) -> JobUnresolved:
    return JobUnresolved(
        f"stopped following job {job.handle.job_id or '(no id yet)'} on {job.name}: the journal refused to record "
        f"its {what} ({type(refusal).__name__}: {refusal}), so another process has ended or taken this submit; "
        f"the job is {job.handle.to_json()} and may be billed (no verdict, failover or new submit was made "
        "here; look the clip up in the journal, e.g. `ovi-gateway jobs`)",
        provider=job.name, job=job.handle, held_by=REFUSED_BY)


def _kept_if_failed(job: FollowedJob, what: str, write: Callable[..., Any], args: tuple[Any, ...],
                    done: asyncio.Future[Any]) -> None:
    """A batched write (only ever a ``keep`` one: progress the job can be followed without) that its
    group commit refused: kept on the job like any refused write, tried again before the next check."""
    if done.cancelled() or done.exception() is None:
        return
    problem = done.exception()
    if isinstance(problem, (KeyError, ValueError)):  # the journal's refusal: retrying cannot help
        if job.refused is None:
            job.refused = (what, problem)
        return
    _log.warning("%s job %s: the journal could not record its %s (%s); trying again before the next check",
                 job.name, job.handle.job_id, what, type(done.exception()).__name__,
                 extra={"vendor": job.name, "job_id": job.handle.job_id, "idempotency_key": job.submit_key})
    _unwritten(job).append((what, write, args))
