"""A clip under an idempotency key, on the async store: open and claim it, finish what an earlier call
left open, run it, give it back — and ``resume()`` for every unfinished paid job.

Every database call here is ``await store.x(...)`` on ``gateway.store.base.SqlStore``: none blocks the
event loop (SQLite's run on its writer thread, PostgreSQL's on a pooled connection in a worker thread).
A call without an idempotency key makes its own, which no other call can know before the key's first
intent: that intent's flushed transaction creates the clip leased to this call (``ClipOpening``), and
until then the lease has nothing to renew or release. A caller's key may name a clip already on
record, so its call pays one committed round trip first to open and claim it
(``SqlStore.open_and_claim``, which also returns its submits, to recover). Then: the intent and the
ack flushed, the result committed, and batched writes for the rest.
"""

from __future__ import annotations

import dataclasses
import functools
import time
from collections import deque
from collections.abc import Callable
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from gateway.errors import ClipInProgress, GatewayError
from gateway.jobs.events import Event
from gateway.jobs.leasing import ClipLease
from gateway.lazy import LazyModule
from gateway.request import OviRequest
from gateway.result import Attempt, OviResult
from gateway.routing.planner import Route
from gateway.routing.quoting import CALIBRATION_WINDOW
from gateway.store.intake import CallOptions, stored_request
from gateway.store.lease import Heartbeat, alive, lease_owner
from gateway.store.records import ClipOpening, SubmitRecord, request_hash

if TYPE_CHECKING:
    import asyncio

    from gateway.clock import Clock
    from gateway.contract import Provider
    from gateway.jobs.recovery import Recovery, ResumeOutcome
    from gateway.jobs.runner import Runner
    from gateway.routing.pricing import PriceBook
    from gateway.store.base import SqlStore
    from gateway.store.journal import Journal
else:  # asyncio loads on first use: a new gateway needs no event loop (gateway.lazy)
    asyncio = LazyModule("asyncio", globals())

__all__ = ["ClipsMixin"]

_CALIBRATION_WINDOW = CALIBRATION_WINDOW
"""Newest reported costs per vendor a compute-billed estimate is calibrated from (``Journal.reported_costs``)."""


_OPTIONS: dict[tuple[int, str | None], tuple[Route, tuple[Any, ...], str]] = {}
"""``CallOptions.to_json`` per route object and caller (the route kept: its id is never reused meanwhile),
with the route's list fields as they were: ``Route`` is frozen, but its ``order``/``only``/``ignore``
lists can change in place, and a call must never store options other than those it runs with (a later
call of the key adopts them, ``CallOptions.adopt``)."""


def _lists(route: Route) -> tuple[Any, ...]:
    return (None if route.order is None else tuple(route.order), None if route.only is None else tuple(route.only),
            tuple(route.ignore))


def _options_json(route: Route, caller: str | None) -> str:
    found = _OPTIONS.get((id(route), caller))
    lists = _lists(route)
    if found is not None and found[0] is route and found[1] == lists:
        return found[2]
    text = CallOptions(route, caller).to_json()
    if len(_OPTIONS) >= 256:  # bounded: a caller making a route per call keeps none of them alive
        _OPTIONS.clear()
    _OPTIONS[(id(route), caller)] = (route, lists, text)
    return text


class ClipsMixin:
    """The journaled generation path and ``resume`` for ``Gateway`` (see the module docstring)."""

    # provided by Gateway
    journal: Journal | None
    store: SqlStore | None
    recovery: Recovery | None
    clock: Clock
    lease_heartbeat: float
    book: PriceBook
    classes: dict[str, type[Provider]]
    _new_key: Callable[[], str]
    _runner: Callable[..., Runner]
    _deliver: Callable[[OviResult], OviResult]
    _close_stale_emulated: Callable[[], None]
    _plan_and_run: Callable[..., Any]

    async def _journaled(self, request: OviRequest, route: Route, idempotency_key: str | None,
                         on_event: Callable[[Event], None] | None, started: float,
                         caller: str | None = None, explicit: bool = False) -> OviResult:
        store, recovery = self.store, self.recovery
        assert store is not None and recovery is not None  # built whenever the journal is
        request_json, image = stored_request(request)  # the image stored once, by content hash
        owner = lease_owner()
        options = _options_json(route, caller)
        opening: ClipOpening | None = None
        submits: list[SubmitRecord] = []
        if idempotency_key is None:
            # A key made here: no other call can know it before its first intent, which creates the clip
            # leased to this call in its own flushed transaction (``ClipOpening``) — one commit less.
            clip_key = self._new_key()
            opening = ClipOpening(request_json, request_hash(request_json), owner, self.lease_heartbeat, image=image,
                                  options_json=options)
        else:
            clip_key = idempotency_key
            clip, holder, submits = await store.open_and_claim(
                clip_key, request_json, request_hash(request_json), owner, heartbeat=self.lease_heartbeat,
                alive=alive, image=image, options_json=options)
            if clip.state == "succeeded" and clip.result_json:
                return OviResult.model_validate_json(clip.result_json)
            if clip.options_json != options:  # stored by an earlier call (the same text: this call's own options)
                route, caller = CallOptions.adopt(clip.options_json, route, caller, keep_route=explicit)
            if holder is not None:
                raise ClipInProgress(f"clip {clip_key!r} is being generated by another call ({holder}); "
                                     "call again with the same key when it is done")
        lease = ClipLease.on_journal(store, clip_key, owner, None, self.lease_heartbeat, opening=opening)
        beat = lease.heartbeat = self._heartbeat(clip_key, owner, lease)
        done = False
        try:
            runner = self._runner(on_event, request, route, caller)
            runner.lease = lease
            earlier: list[Attempt] = []
            if submits:  # an earlier call of this key left submits: finish its paid jobs first
                deadline_at = None if route.deadline is None else started + route.deadline
                for outcome in await recovery.clip(clip_key, runner, deadline_at):
                    if outcome.result is not None:
                        await self._settle(outcome.result)
                        done = True
                        return outcome.result
                earlier = await recovery.refuse_if_open(clip_key, route)
            result: OviResult = await self._plan_and_run(request, route, clip_key, runner, started, earlier)
            done = True
            return result
        finally:
            await beat.stop()
            # A delivered clip's lease went back with its result (``jobs.results.finish``); one delivered
            # otherwise (an earlier call's job, resumed) can go back in the next group commit, since callers
            # of its key get the committed result without claiming. Any other end gives it back before
            # returning. A clip still ``opening`` has none unless its first intent committed without
            # answering (cancelled during the flush, a lost commit answer): then give that lease back too,
            # or resume sees the clip held by this live process until it goes stale (a no-op UPDATE when no
            # intent was written).
            if not lease.released and (lease.opening is None or not done):
                await store.release_clip(clip_key, owner, wait=not done)

    async def _fail_clip(self, clip_key: str, error: str, lease: ClipLease | None) -> None:
        """Record clip ``clip_key`` failed with ``error``; a clip no intent created yet (``ClipLease.opening``)
        is created failed, as it would have been had it been opened first (no lease: the call ends)."""
        store = self.store
        assert store is not None
        opening = None if lease is None else lease.opening
        if opening is not None:
            await store.open_clip(clip_key, opening.request_json, opening.request_hash, tenant=opening.tenant,
                                  image=opening.image, options_json=opening.options_json)
        await store.fail_clip(clip_key, error)

    def _heartbeat(self, clip_key: str, owner: str, lease: ClipLease | None = None) -> Heartbeat:
        """Keep ``owner``'s lease on the clip live while this call runs (the lease rule: 3 missed beats
        make it stale), however long the vendor takes."""
        store = self.store
        assert store is not None
        # Beats are timed on the clock leases are judged by: the journal's wall clock (real time unless a
        # test gave the journal the virtual one). A virtual-clock sleeper would let virtual time jump
        # while the call waits on real I/O.
        judged_in_real_time = getattr(self.journal, "wall", time.time) is time.time
        sleep = asyncio.sleep if judged_in_real_time else self.clock.sleep
        renew = lease.beat if lease is not None else functools.partial(store.renew_clip, clip_key, owner,
                                                                        heartbeat=self.lease_heartbeat)
        return Heartbeat(renew, sleep, self.lease_heartbeat, wall=store.wall).start()

    # ---- resuming ---------------------------------------------------------------------------
    async def _resume_all(self) -> list[ResumeOutcome]:
        store, recovery = self.store, self.recovery
        if store is None or recovery is None:
            return []
        from gateway.jobs.recovery import ResumeOutcome  # loads the runner: only when resuming
        self._close_stale_emulated()
        outcomes: list[ResumeOutcome] = []
        runner = self._runner(None)
        for clip_key in dict.fromkeys(record.clip_key for record in await store.unfinished()):
            owner = lease_owner()
            holder = await store.claim_clip(clip_key, owner, heartbeat=self.lease_heartbeat, alive=alive)
            if holder is not None:
                outcomes.append(ResumeOutcome(clip_key, "", "in-progress", error=f"held by {holder}"))
                continue
            beat = self._heartbeat(clip_key, owner)
            runner.lease = ClipLease.on_journal(store, clip_key, owner, beat, self.lease_heartbeat)
            try:
                found = await recovery.clip(clip_key, runner)
            except GatewayError as error:  # one clip's trouble must not stop the others
                found = [ResumeOutcome(clip_key, error.provider or "", "unknown", error=str(error))]
            finally:
                await beat.stop()
                await store.release_clip(clip_key, owner)
            for outcome in found:
                if outcome.result is not None:
                    await self._settle(outcome.result)
            outcomes += [dataclasses.replace(o, result=self._deliver(o.result)) if o.result else o for o in found]
        return outcomes

    # ---- calibration from reported costs ----------------------------------------------------
    async def _settle(self, result: OviResult, steps: int | None = None, *, known_steps: bool = False) -> None:
        """Recalibrate the vendor's estimate after a reported cost. On the hot path (``known_steps``:
        the request is at hand) the cost joins this gateway's window in memory — no database read per
        job; a resumed job's window is read again from the store (its steps are recorded there)."""
        if result.cost_source != "reported" or result.cost_usd is None or self.store is None:
            return
        window = self._window(result.provider)
        if known_steps:
            full = len(window) == window.maxlen
            dropped = window[-1] if full else None
            window.appendleft((result.cost_usd, steps))
            if full and dropped == window[0]:  # the same observations, so the same scale (their mean)...
                self._calibrate_with(result.provider, unless_calibrated=True)  # unless the book changed
                return
        else:
            window.clear()
            window.extend((cost, s) for cost, _quote, s in await self.store.reported_costs(result.provider))
        self._calibrate_with(result.provider)

    def _window(self, provider: str) -> deque[tuple[Decimal, int | None]]:
        windows: dict[str, deque[tuple[Decimal, int | None]]] = self.__dict__.setdefault("_cost_windows", {})
        return windows.setdefault(provider, deque(maxlen=_CALIBRATION_WINDOW))

    def _calibrate_with(self, provider: str, *, unless_calibrated: bool = False) -> None:
        """Calibrate each of ``provider``'s modes from its window. ``unless_calibrated``: not a mode whose
        rule is still the one this gateway's last calibration made (the window holds the same costs), so
        a job whose cost changes nothing costs no recalibration, nor the book's quote cache."""
        observations = list(self._window(provider))
        made: dict[tuple[str, str], object] = self.__dict__.setdefault("_calibrated", {})
        for mode in self.classes[provider].capabilities.modes:
            if unless_calibrated and self.book.rule(provider, mode) is made.get((provider, str(mode))):
                continue
            self.book.calibrate(provider, mode, observations)
            made[(provider, str(mode))] = self.book.rule(provider, mode)

    def _calibrate_from_journal(self) -> None:
        """At start: each vendor's window from the journal (every process's reported costs so far)."""
        if self.journal is None:
            return
        for name in self.classes:
            window = self._window(name)
            window.extend((cost, steps) for cost, _quote, steps in self.journal.reported_costs(name,
                                                                                           _CALIBRATION_WINDOW))
            self._calibrate_with(name)
