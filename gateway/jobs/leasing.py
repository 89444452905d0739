"""A call that lost its clip's lease stops following it (issue 13, the paid-job lease rule).

A stale-takeover (another call took the clip after this one missed ``STALE_BEATS`` heartbeats, e.g. a
live but starved process) leaves two calls following one job. The loser must step aside: it records no
verdict, fails over nowhere and submits nothing new — the holder does all of that now — and ends with
``JobUnresolved`` carrying the vendor job id and the new holder (the job may be billed; it is not lost:
the holder follows it). ``ClipLease`` is what the runner checks: cheaply before every poll (the
heartbeat's own finding) and by a renewal right before anything that acts on the clip (a verdict, a
result, a new submit), so the window between a takeover and the next beat cannot slip a verdict in.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from gateway.errors import ClipInProgress, JobUnresolved

if TYPE_CHECKING:
    from gateway.jobs.followed import FollowedJob
    from gateway.store.lease import Heartbeat

__all__ = ["ClipLease", "check_lease"]


async def _value(result: Any) -> Any:
    return await result if inspect.isawaitable(result) else result


class ClipLease:
    """This call's lease on clip ``key`` as ``owner``. ``renew()`` is one heartbeat (False: lost);
    ``holder()`` reads who holds the clip now; ``heartbeat`` sets ``lost`` when a beat found it lost."""

    def __init__(self, key: str, owner: str, renew: Callable[[], bool | Awaitable[bool]],
                 holder: Callable[[], str | Awaitable[str | None] | None], heartbeat: Heartbeat | None = None) -> None:
        self.key = key
        self.owner = owner
        self._renew = renew
        self._holder = holder
        self.heartbeat = heartbeat
        self.lost_to: str | None = None
        """Who took the clip over, once this call knows it lost the lease."""

    @classmethod
    def on_journal(cls, journal: Any, key: str, owner: str, heartbeat: Heartbeat, interval: float) -> ClipLease:
        """The lease ``owner`` holds on ``key`` in ``journal``, beaten every ``interval`` seconds by ``heartbeat``."""
        return cls(key, owner, lambda: journal.renew_clip(key, owner, heartbeat=interval),
                   lambda: journal.lease_holder(key), heartbeat)

    async def _lost(self) -> str:
        self.lost_to = await _value(self._holder()) or "no one (the lease went stale and was released)"
        return self.lost_to

    async def check(self, *, confirm: bool) -> str | None:
        """The new holder if the lease is lost, else None. ``confirm``: renew now rather than trust
        the last heartbeat (before a verdict or a new submit)."""
        if self.lost_to is not None:
            return self.lost_to
        if self.heartbeat is not None and self.heartbeat.lost:
            return await self._lost()
        if confirm and not await _value(self._renew()):
            return await self._lost()
        return None


async def check_lease(lease: ClipLease | None, job: FollowedJob | None, provider: str, *, confirm: bool) -> None:
    """Raise when this call lost the clip's lease: ``JobUnresolved`` (``held_by``: the new holder) for
    a job it was following, ``ClipInProgress`` before any job of this call exists."""
    if lease is None:
        return
    holder = await lease.check(confirm=confirm)
    if holder is None:
        return
    if job is None or not job.handle.job_id:
        raise ClipInProgress(f"clip {lease.key!r} was taken over by {holder} after this call missed its "
                             "heartbeats; nothing more was submitted here", provider=provider)
    error = JobUnresolved(f"stopped following job {job.handle.job_id} on {job.name}: clip {lease.key!r} was taken "
                          f"over by {holder} after this call missed its heartbeats, and that call follows the job "
                          "now (no verdict, failover or new submit was made here; the job may be billed)",
                          provider=job.name, job=job.handle, held_by=holder)
    raise error
