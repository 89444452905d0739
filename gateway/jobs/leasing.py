"""A call that lost its clip's lease stops following it (issue 13, the paid-job lease rule).

A stale-takeover (another call took the clip after this one missed ``STALE_BEATS`` heartbeats, e.g. a
live but starved process) leaves two calls following one job. The loser must step aside: it records no
verdict, fails over nowhere and submits nothing new — the holder does all of that now — and ends with
``JobUnresolved`` carrying the vendor job id and the new holder (the job may be billed; it is not lost:
the holder follows it). ``ClipLease`` is what the runner checks: cheaply before every poll (the
heartbeat's own finding) and right before anything that acts on the clip (a verdict, a result, a new
submit) by a renewal — unless this call's last beat (its claim, a heartbeat or an earlier renewal) is
younger than ``FRESH_BEATS`` of a heartbeat in the store's wall time (the ack's transaction renews
the lease too, ``SqlStore.accepted``, unless the last beat is younger than ``ACK_RENEWS_AFTER`` of a
heartbeat: a beat as good as a heartbeat's). A takeover needs ``STALE_BEATS``
(3) missed beats, so a beat that fresh leaves the lease at least 2.5 beats of life: no other call can
hold the clip yet, and the renewal would only cost a transaction (it did, twice per job). The window
between a takeover and the next beat still cannot slip a verdict in.
"""

from __future__ import annotations

import inspect
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from gateway.errors import ClipInProgress, JobUnresolved

if TYPE_CHECKING:
    from gateway.jobs.followed import FollowedJob
    from gateway.store.lease import Heartbeat
    from gateway.store.records import ClipOpening

__all__ = ["FRESH_BEATS", "ClipLease", "check_lease"]

FRESH_BEATS = 0.5
"""A beat younger than this many heartbeat intervals is trusted before a verdict or a new submit."""


class ClipLease:
    """This call's lease on clip ``key`` as ``owner``. ``renew()`` is one heartbeat (False: lost);
    ``holder()`` reads who holds the clip now; ``heartbeat`` sets ``lost`` when a beat found it lost.
    ``wall`` and ``interval`` (the store's epoch seconds, the heartbeat in seconds): with both, a
    confirming check trusts a beat younger than ``FRESH_BEATS`` intervals; ``beat_at`` starts as the
    claim's own wall time when the store knows it (``SqlStore.claimed_at``) — never the time the claim
    returned, which can be long after the lease's life began counting."""

    __slots__ = ("_fresh_s", "_holder", "_renew", "_wall", "beat_at", "heartbeat", "key", "lost_to", "opening",
                 "owner", "released", "renewals")

    def __init__(self, key: str, owner: str, renew: Callable[[], bool | Awaitable[bool]] | None,
                 holder: Callable[[], str | Awaitable[str | None] | None] | None, heartbeat: Heartbeat | None = None,
                 *, wall: Callable[[], float] | None = None, interval: float | None = None) -> None:
        self.key = key
        self.owner = owner
        self._renew = renew
        self._holder = holder
        self.heartbeat = heartbeat
        self._wall = wall
        self._fresh_s = None if interval is None else FRESH_BEATS * interval
        self.beat_at: float | None = None
        """Wall time of this call's last known beat (its claim, or a confirming renewal); None: none known."""
        self.renewals = 0
        """Confirming renewals made (a fresh beat spares one)."""
        self.lost_to: str | None = None
        """Who took the clip over, once this call knows it lost the lease."""
        self.released = False
        """The lease went back in the transaction that recorded the clip's result (``giving_back``)."""
        self.opening: ClipOpening | None = None
        """A clip not created yet (``on_journal(opening=…)``): nothing to lose, renew or release until its
        first intent creates it leased to this call (``opened``)."""

    @classmethod
    def on_journal(cls, journal: Any, key: str, owner: str, heartbeat: Heartbeat | None, interval: float, *,
                   opening: ClipOpening | None = None) -> ClipLease:
        """The lease ``owner`` holds on ``key`` in ``journal`` (just claimed), beaten every ``interval``
        seconds by ``heartbeat``, judged on the journal's wall clock. ``opening``: the clip is created and
        claimed by its first intent (``SqlStore.intent(opening=…)``) instead; until then the lease is
        quiet (no call can know the key, so none can hold it) and renewing it is a no-op."""
        lease = _OnJournal(key, owner, None, None, heartbeat, wall=getattr(journal, "wall", time.time),
                           interval=interval)
        lease._journal, lease._interval = journal, interval
        lease.opening = opening
        if opening is None:
            lease._claimed()
        return lease

    def giving_back(self) -> str | None:
        """The owner whose lease the clip's result may give back in its own transaction (None: none
        held), with the heartbeat retired first: a beat after that commit would find the lease gone."""
        if self.opening is not None or self.lost_to is not None:
            return None
        if self.heartbeat is not None:
            self.heartbeat.retire()
        return self.owner

    def opened(self) -> None:
        """After the intent that was to create the clip (``opening``), however it ended: when it claimed
        the clip, the lease is this call's from the claim's wall time on."""
        if self.opening is not None and self._claimed():
            self.opening = None

    def _claimed(self) -> bool:
        claimed_at = getattr(getattr(self, "_journal", None), "claimed_at", None)
        self.beat_at = claimed_at(self.key, self.owner) if claimed_at is not None else None
        return self.beat_at is not None

    def _last_beat(self) -> float | None:
        """Wall time of this call's last known beat (its claim, a heartbeat or a renewal); None: none known."""
        beats = [t for t in (self.beat_at, None if self.heartbeat is None else self.heartbeat.beat_at)
                 if t is not None]
        return max(beats) if beats else None

    def _fresh(self) -> bool:
        if self._wall is None or self._fresh_s is None:
            return False
        last = self._last_beat()
        return last is not None and self._wall() - last < self._fresh_s

    def _renewal(self) -> bool | Awaitable[bool]:
        assert self._renew is not None
        return self._renew()

    def beat(self) -> bool | Awaitable[bool] | None:
        """One heartbeat's renewal (``Heartbeat``'s ``renew``); None before the clip exists (``opening``:
        nothing to renew, nobody else can hold it, and no beat to count)."""
        return None if self.opening is not None else self._renewal()

    def _who(self) -> str | Awaitable[str | None] | None:
        assert self._holder is not None
        return self._holder()

    async def _lost(self) -> str:
        who = self._who()
        self.lost_to = (await who if inspect.isawaitable(who) else who) or \
            "no one (the lease went stale and was released)"
        return self.lost_to

    def quiet(self, *, confirm: bool) -> bool:
        """``check`` has nothing to do: the lease is not known lost and, for ``confirm``, the last beat is
        fresh (checked first, without a coroutine: the runner asks before every poll of every job)."""
        return self.opening is not None or (self.lost_to is None and not (
            self.heartbeat is not None and self.heartbeat.lost) and not (confirm and not self._fresh()))

    async def check(self, *, confirm: bool) -> str | None:
        """The new holder if the lease is lost, else None. ``confirm``: renew now rather than trust
        the last heartbeat (before a verdict or a new submit), unless the last beat is fresh (module
        docstring)."""
        if self.opening is not None:
            return None
        if self.lost_to is not None:
            return self.lost_to
        if self.heartbeat is not None and self.heartbeat.lost:
            return await self._lost()
        if confirm and not self._fresh():
            # The renewal awaited here, not in helper coroutines: ten thousand calls waiting at one
            # group commit keep one coroutine each for it.
            sent = None if self._wall is None else self._wall()
            renewal = self._renewal()
            kept = bool(await renewal if inspect.isawaitable(renewal) else renewal)
            self.renewals += 1
            if kept and sent is not None:
                self.beat_at = sent
            if not kept:
                return await self._lost()
        return None


class _OnJournal(ClipLease):
    """A lease renewed and looked up through a journal or store by method: no closures per call (ten
    thousand calls in flight keep ten thousand leases)."""

    __slots__ = ("_interval", "_journal")
    _journal: Any
    _interval: float

    def _last_beat(self) -> float | None:
        """Also a renewal that rode in the ack's transaction (``SqlStore.renewed_at``)."""
        last = super()._last_beat()
        renewed_at = getattr(self._journal, "renewed_at", None)
        renewed = None if renewed_at is None else renewed_at(self.key, self.owner)
        return last if renewed is None else renewed if last is None else max(last, renewed)

    def _renewal(self) -> bool | Awaitable[bool]:
        return self._journal.renew_clip(self.key, self.owner, heartbeat=self._interval)  # type: ignore[no-any-return]

    def _who(self) -> str | Awaitable[str | None] | None:
        return self._journal.lease_holder(self.key)  # type: ignore[no-any-return]


async def check_lease(lease: ClipLease | None, job: FollowedJob | None, provider: str, *, confirm: bool) -> None:
    """Raise when this call lost the clip's lease: ``JobUnresolved`` (``held_by``: the new holder) for
    a job it was following, ``ClipInProgress`` before any job of this call exists."""
    if lease is None or lease.quiet(confirm=confirm):
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
