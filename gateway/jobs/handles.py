"""Job handles: submit a clip now, learn its outcome later, from this process or any other.

``Gateway.submit`` starts a *follower* — an asyncio task running the gateway's usual generation
(``agenerate``: lease, plan, submit, retries, failover, following) — and returns a ``Job`` as soon as
the first paid submit's intent is in the journal (the runner's ``submit`` event comes right after
``journal.intent``), or raises when the clip fails before any vendor is asked (no route, budget,
unsupported fields). ``Gateway.job(id)`` builds a handle for any clip in a shared journal; its
``wait()`` follows the clip here if no live process holds it, else watches the journal.

Lifecycle of followers:

* They live in the event loop that submitted them: ``async with Gateway() as gw`` (or ``serve``) keeps
  them; leaving the block (``aclose``) lets submits already on the wire get their answer (at most
  ``drain_seconds``), then cancels the followers. Cancelling releases each clip's lease; every open
  submit stays in the journal, so ``gw.job(id).wait()`` or ``resume()`` in any process finishes it.
* Process exit without ``aclose`` (a kill): the leases name a dead process and are free at once on
  this host (on other hosts when they expire); the jobs are resumable the same way.
* Sync code uses ``Gateway.submit_sync`` / ``Job.wait_sync``: the followers then run on one
  background event-loop thread owned by the gateway until ``Gateway.close()``.

Cancelling is honest: a vendor that documents a cancel (``Provider.can_cancel``) is asked, and the
follower keeps following until the vendor's own word ends the job; for a vendor without one,
``cancel()`` raises ``CannotCancel`` and the job keeps running (and billing) to its end. A cancel
never lets the follower fail over or resubmit to another vendor.
"""

from __future__ import annotations

import asyncio
import inspect
import threading
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, TypeVar

from gateway.clock import Clock
from gateway.contract import JobHandle, Provider
from gateway.errors import PAID_JOB_ALIVE, ClipInProgress, GatewayError
from gateway.jobs.events import Event
from gateway.result import OviResult
from gateway.secrets import scrub, scrubbing

__all__ = ["STATES", "BackgroundLoop", "CannotCancel", "Followers", "Job", "JobCancelled", "JobNotFinished",
           "JobView"]

STATES = ("submitting", "queued", "running", "succeeded", "failed", "cancelled", "unknown")
"""A job's states: ``submitting`` (intent written, no vendor answer yet), ``queued``/``running`` (a vendor
holds it), the final ``succeeded``/``failed``/``cancelled``, and ``unknown`` (a paid job may exist whose
outcome could not be read yet; it is still followed or resumable)."""
FINAL_STATES = frozenset({"succeeded", "failed", "cancelled"})
_SUBMIT_STATE = {"intent": "submitting", "accepted": "queued", "queued": "queued", "running": "running",
                 "unknown": "unknown", "succeeded": "running", "failed": "submitting", "expired": "failed",
                 "abandoned": "failed"}  # abandoned: given up, may have been billed (jobs/fate.py)
_CANCEL_EVENTS = frozenset({"failover", "resubmit", "wait"})
"""Runner events at which a cancelled clip stops: between vendor jobs, before a new paid submit (never
inside a vendor call, so a cancel is not counted against the vendor's breaker)."""
T = TypeVar("T")


class JobCancelled(GatewayError):
    """The caller cancelled the clip before a vendor job existed, or the vendor confirmed the cancel."""


class CannotCancel(GatewayError):
    """The vendor holding the job documents no cancel: it runs to its end (and is billed)."""


class JobNotFinished(GatewayError):
    """``Job.result()`` was called before the clip ended; ``await job.wait()`` first."""


@dataclass(frozen=True)
class JobView:
    """A job as the journal records it. Money in USD; ``attempts`` lists each vendor submit
    (provider, journal state, vendor job id)."""

    id: str
    state: str
    provider: str | None = None
    vendor_job_id: str | None = None
    cost_usd: Decimal | None = None
    cost_source: str | None = None
    error: str | None = None
    created_at: str | None = None
    attempts: tuple[dict[str, Any], ...] = ()
    result: OviResult | None = None

    @property
    def final(self) -> bool:
        return self.state in FINAL_STATES


@dataclass
class _Tracked:
    """What this process's follower of one clip has seen (from runner events)."""

    clip_key: str
    task: asyncio.Task[OviResult] | None = None
    intent: asyncio.Event = field(default_factory=asyncio.Event)
    in_flight: bool = False  # a submit is on the wire: drain waits for its answer
    settled: asyncio.Event = field(default_factory=asyncio.Event)
    cancel_requested: bool = False
    wake: asyncio.Event = field(default_factory=asyncio.Event)  # a webhook said the job may have changed

    def on_event(self, event: Event) -> None:
        if self.cancel_requested and event.kind in _CANCEL_EVENTS:
            raise JobCancelled(f"clip {self.clip_key} was cancelled before a new vendor job was made")
        if event.kind == "submit":
            self.in_flight = True
            self.settled.clear()
            self.intent.set()
        elif event.kind in ("accepted", "retry", "reconcile", "done"):
            self.in_flight = event.kind == "reconcile"
            if not self.in_flight:
                self.settled.set()


class Followers:
    """The follower tasks of one gateway in one event loop.

    Args:
        journal: the shared journal (``Gateway.journal``).
        providers: the gateway's adapters for the running loop.
        clock: for the journal-watching interval.
        watch_interval: seconds between journal reads while another process follows a clip.
    """

    def __init__(self, journal: Any, providers: Callable[[], dict[str, Provider]], clock: Clock,
                 watch_interval: float = 2.0) -> None:
        self.journal = journal
        self.providers = providers
        self.clock = clock
        self.watch_interval = watch_interval
        self.tracked: dict[str, _Tracked] = {}
        self.closing: bool = False

    def track(self, clip_key: str) -> _Tracked:
        found = self.tracked.get(clip_key)
        if found is None:
            found = self.tracked[clip_key] = _Tracked(clip_key)
        return found

    def running(self, clip_key: str) -> bool:
        tracked = self.tracked.get(clip_key)
        return tracked is not None and tracked.task is not None and not tracked.task.done()

    def start(self, clip_key: str, run: Callable[[Callable[[Event], None]], Coroutine[Any, Any, OviResult]]
              ) -> _Tracked:
        """Run ``run(on_event)`` as the clip's follower (once per clip and process)."""
        if self.closing:
            raise ClipInProgress("the gateway is shutting down; submit to another instance")
        tracked = self.track(clip_key)
        if tracked.task is None or tracked.task.done():
            tracked.task = asyncio.get_running_loop().create_task(run(tracked.on_event), name=f"follow:{clip_key}")
            tracked.task.add_done_callback(_consume)
        return tracked

    async def aclose(self, drain_seconds: float = 30.0) -> None:
        """Stop following: wait up to ``drain_seconds`` (real time) for submits on the wire to be
        answered, then cancel every follower (their leases are released; the journal keeps the jobs)."""
        self.closing = True
        live = [t for t in self.tracked.values() if t.task is not None and not t.task.done()]
        on_wire = [t.settled.wait() for t in live if t.in_flight]
        if on_wire:
            await asyncio.wait([asyncio.ensure_future(w) for w in on_wire], timeout=drain_seconds)
        for tracked in live:
            assert tracked.task is not None
            tracked.task.cancel()
        if live:
            await asyncio.wait([t.task for t in live if t.task is not None])

    # ---- reading the journal ------------------------------------------------------------------
    async def view(self, clip_key: str) -> JobView | None:
        """The clip as recorded, or ``None`` when the journal has no such clip."""
        clip = await _maybe(self.journal.get_clip(clip_key))
        if clip is None:
            return None
        submits = list(await _maybe(self.journal.submits(clip_key)))
        last = submits[-1] if submits else None
        attempts = tuple({"provider": s.provider, "state": s.state, "job_id": s.job_id,
                          "may_be_billed": s.may_be_billed} for s in submits)
        result = OviResult.model_validate_json(clip.result_json) if clip.result_json else None
        if clip.state == "succeeded":
            state = "succeeded"
        elif clip.state == "failed":
            state = "cancelled" if (clip.error or "").startswith(JobCancelled.__name__) else "failed"
            if any(s.state in ("intent", "accepted", "queued", "running", "unknown") for s in submits):
                state = "unknown"  # a paid job of this clip is still open: not over until settled
        else:
            state = _SUBMIT_STATE.get(last.state, "submitting") if last else "submitting"
        chosen = result.provider if result else (last.provider if last else None)
        vendor_id = result.job_id if result else (last.job_id if last else None)
        return JobView(id=clip_key, state=state, provider=chosen, vendor_job_id=vendor_id,
                       cost_usd=result.cost_usd if result else None,
                       cost_source=result.cost_source if result else None,
                       error=clip.error if state in ("failed", "cancelled", "unknown") else None,
                       created_at=clip.created_at, attempts=attempts, result=result)

    async def open_handle(self, clip_key: str) -> tuple[Provider, JobHandle] | None:
        """The adapter and handle of the clip's newest open vendor job, if one was accepted."""
        for record in reversed(list(await _maybe(self.journal.submits(clip_key)))):
            if record.handle and record.state in ("accepted", "queued", "running", "unknown"):
                provider = self.providers().get(record.provider)
                if provider is not None:
                    return provider, JobHandle.from_json(record.handle)
        return None


class Job:
    """A handle on one clip. ``id`` (the clip's idempotency key) is a JSON-safe string: store it,
    and ``Gateway.job(id)`` gives the handle back in any process sharing the journal.

    Built by ``Gateway.submit`` and ``Gateway.job``, not directly.
    """

    def __init__(self, clip_key: str, followers: Followers, follow: Callable[[], Awaitable[OviResult]],
                 start: Callable[[], object], claimable: Callable[[], Awaitable[bool]],
                 loop: asyncio.AbstractEventLoop | None = None) -> None:
        self.id = clip_key
        self.idempotency_key = clip_key
        self._followers = followers
        self._follow = follow
        self._start = start
        self._claimable = claimable
        self._loop = loop
        self._last: JobView | None = None

    def __repr__(self) -> str:
        state = self._last.state if self._last else "?"
        return f"Job(id={self.id!r}, state={state})"

    def to_json(self) -> dict[str, str]:
        """``{"id": ..., "idempotency_key": ...}``."""
        return {"id": self.id, "idempotency_key": self.idempotency_key}

    async def status(self) -> JobView:
        """The job now, from the journal (any process's progress shows)."""
        view = await self._followers.view(self.id)
        if view is None:
            raise KeyError(f"no job {self.id!r} in the journal")
        self._last = view
        return view

    @scrubbing
    async def wait(self) -> OviResult:
        """The clip's result once it is made; raises its error when it failed or was cancelled.

        Follows the clip in this process when no live process holds it; otherwise watches the journal
        (every ``watch_interval`` seconds) while the holder follows it.
        """
        result = await self._follow()
        self._last = await self._followers.view(self.id)
        return result

    def result(self) -> OviResult:
        """The result, when the clip has ended as last seen here (``wait``/``status``); raises its error
        when it failed, ``JobNotFinished`` while it runs. The error is ``scrub``-bed first, as ``wait``'s
        is: the follower's exception may be re-raised long after it was made, when more secrets are known."""
        try:
            return self._result()
        except BaseException as exc:
            scrub(exc)
            raise

    def _result(self) -> OviResult:
        tracked = self._followers.tracked.get(self.id)
        if tracked is not None and tracked.task is not None and tracked.task.done():
            return tracked.task.result()
        if self._last is not None and self._last.result is not None:
            return self._last.result
        if self._last is not None and self._last.final:
            kind = JobCancelled if self._last.state == "cancelled" else GatewayError
            raise kind(self._last.error or f"job {self.id} {self._last.state}")
        raise JobNotFinished(f"job {self.id} has not finished; await job.wait() (or job.wait_sync())")

    async def cancel(self) -> JobView:
        """Ask for the clip to stop; returns the job as it then stands.

        Before any vendor job exists, no submit is made and the clip ends ``cancelled``. A vendor job is
        cancelled at the vendor when it documents a cancel, and the vendor's own answer, seen by the
        follower, ends it (``cancelled``, or ``succeeded`` when the cancel came too late); a vendor with no
        cancel raises ``CannotCancel`` and its job keeps running. A clip another process follows raises
        ``ClipInProgress``: cancel it there.
        """
        view = await self.status()
        if view.final:
            return view
        followers, tracked = self._followers, self._followers.track(self.id)
        here = followers.running(self.id)
        if here and tracked.in_flight:  # a submit is on the wire: its answer decides what to cancel
            await asyncio.wait([asyncio.ensure_future(tracked.settled.wait())], timeout=60.0)
        if not here and not await self._claimable():
            raise ClipInProgress(f"job {self.id} is followed by another process; cancel it there")
        held = await followers.open_handle(self.id)
        if held is not None:
            provider, handle = held
            if not getattr(provider, "can_cancel", False):
                raise CannotCancel(f"{provider.name} documents no way to cancel job {handle.job_id}; it runs to "
                                   "its end and is billed, and the gateway keeps following it", provider=provider.name)
            tracked.cancel_requested = True
            if not followers.running(self.id):
                self._start()
            await provider.cancel(handle)
        elif here:
            tracked.cancel_requested = True  # between vendor jobs: stops before the next submit
        elif any(a["state"] in ("intent", "unknown") for a in view.attempts):
            raise CannotCancel(f"job {self.id} may hold a paid vendor job whose id was never recorded; "
                               "it cannot be cancelled, only resumed")
        else:
            await _maybe(followers.journal.fail_clip(self.id, f"{JobCancelled.__name__}: cancelled by the caller"))
        return await self.status()

    # ---- for sync callers --------------------------------------------------------------------
    def wait_sync(self, timeout: float | None = None) -> OviResult:
        """``wait()`` from sync code (the follower runs on the gateway's background loop); ``timeout``
        in seconds raises ``TimeoutError`` and leaves the follower running."""
        return self._in_loop(self.wait(), timeout)

    def status_sync(self) -> JobView:
        """``status()`` from sync code."""
        return self._in_loop(self.status(), None)

    def cancel_sync(self) -> JobView:
        """``cancel()`` from sync code."""
        return self._in_loop(self.cancel(), None)

    def _in_loop(self, coroutine: Coroutine[Any, Any, T], timeout: float | None) -> T:
        if self._loop is None:
            coroutine.close()
            raise RuntimeError("this handle belongs to an async gateway loop; await its methods there")
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result(timeout)


class BackgroundLoop:
    """One event loop on a daemon thread, where a sync caller's followers live."""

    def __init__(self) -> None:
        self.loop: asyncio.AbstractEventLoop = asyncio.new_event_loop()
        self.thread: threading.Thread = threading.Thread(target=self.loop.run_forever, name="ovi-gateway-followers",
                                                         daemon=True)
        self.thread.start()

    def run(self, coroutine: Coroutine[Any, Any, T], timeout: float | None = None) -> T:
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(timeout)

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=10)
        if not self.thread.is_alive():
            self.loop.close()


def alive_error(error: BaseException) -> bool:
    """Whether a follower's error leaves a paid job open (the clip is not over)."""
    return isinstance(error, PAID_JOB_ALIVE)


async def _maybe(value: Any) -> Any:
    """The journal's answer, whether its methods are sync or async."""
    return await value if inspect.isawaitable(value) else value


def _consume(task: asyncio.Task[Any]) -> None:
    if not task.cancelled():
        task.exception()  # retrieved by wait(); marks it seen so asyncio does not log it
