"""``Gateway.submit`` / ``Gateway.job``: the gateway's side of job handles (see ``gateway.jobs.handles``).

A mixin, so the ``Gateway`` class keeps one place for generation (``agenerate``) and this module only
decides when to start a follower, when ``submit`` may return, and how a handle re-attaches.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from gateway.errors import ClipInProgress, ConfigurationError, GatewayError, InvalidRequest
from gateway.jobs.events import Event
from gateway.lazy import LazyModule
from gateway.request import OviRequest, check_idempotency_key
from gateway.result import OviResult
from gateway.secrets import scrubbing
from gateway.store.intake import load_request
from gateway.store.records import request_hash

# The handles and webhook modules load when a handle, a follower or a push is first used:
# Gateway(journal=None) needs neither (start-up, issue 14).
if TYPE_CHECKING:
    import asyncio

    from gateway.jobs.handles import BackgroundLoop, Followers, Job
    from gateway.jobs.push import PushBox
    from gateway.routing.planner import Route
else:  # asyncio loads on first use: a new gateway needs no event loop (gateway.lazy)
    asyncio = LazyModule("asyncio", globals())

__all__ = ["HandlesMixin"]


class HandlesMixin:
    """Job handles for ``Gateway``: ``submit``, ``job``, their sync twins, and the followers' lifecycle."""

    journal: Any
    store: Any
    clock: Any
    follow_watch_interval: float = 2.0
    """Seconds between journal reads while another process follows a clip this handle waits on."""

    # provided by Gateway
    agenerate: Callable[..., Any]
    _providers: Callable[[], Any]
    _new_key: Callable[[], str]

    push: PushBox | None = None
    """Webhook settings and state (set by the server when vendors can reach it); ``None``: polling only."""

    def _pushing(self, providers: Mapping[str, Any]) -> dict[str, Any]:
        if self.push is None:  # as ``push.wrap`` does, without loading it
            return dict(providers)
        from gateway.jobs.push import wrap

        return wrap(providers, self.push)

    def _waking(self, clock: Any) -> Any:
        if self.push is None:
            return clock
        from gateway.jobs.push import WakeableClock

        return WakeableClock(clock, self.push)

    def _followers_here(self) -> Followers:
        from gateway.jobs.handles import Followers

        loop = asyncio.get_running_loop()
        table: dict[asyncio.AbstractEventLoop, Followers] = self.__dict__.setdefault("_followers_by_loop", {})
        for stale in [old for old in table if old.is_closed()]:
            del table[stale]
        found = table.get(loop)
        if found is None:
            found = table[loop] = Followers(self.store, self._providers, self.clock, self.follow_watch_interval)
        return found

    @scrubbing
    async def submit(self, request: OviRequest, *, provider: str | None = None, route: Route | None = None,
                     idempotency_key: str | None = None, budget_scope: str | None = None) -> Job:
        """Start making a clip and return its ``Job`` once the first paid submit's intent is durable.

        The clip is then followed in this event loop (retries, failover, following) until it ends or the
        gateway closes. A key already in the journal returns that clip's handle (the same request only).
        ``budget_scope``: who the call is for (``Gateway.agenerate``), for per-caller budgets.

        Raises:
            NoRoute, InvalidRequest, BudgetExceeded, ...: the clip failed before any vendor was asked.
            ConfigurationError: the gateway has no journal (handles live in it).
        """
        if self.journal is None:
            raise ConfigurationError("job handles need the journal; do not pass journal=None")
        if not isinstance(request, OviRequest):
            raise InvalidRequest("request must be an OviRequest")
        key = check_idempotency_key(idempotency_key) or self._new_key()
        followers = self._followers_here()
        if await self.store.get_clip(key) is not None:
            as_json = request.model_dump_json()
            await self.store.open_clip(key, as_json, request_hash(as_json))  # refuses a different request
            return self.job(key)

        def run(on_event: Callable[[Event], None]) -> Any:
            return self._followed(followers, key, self.agenerate(
                request, provider=provider, route=route, idempotency_key=key, on_event=on_event,
                budget_scope=budget_scope))

        tracked = followers.start(key, run)
        assert tracked.task is not None
        intent = asyncio.ensure_future(tracked.intent.wait())
        await asyncio.wait({intent, tracked.task}, return_when=asyncio.FIRST_COMPLETED)
        intent.cancel()
        if tracked.task.done() and not tracked.intent.is_set():
            tracked.task.result()  # the clip ended before any submit: raise why (no route, budget...)
        return self.job(key)

    def job(self, job_id: str) -> Job:
        """A handle on clip ``job_id`` (an idempotency key) of the journal, from any process sharing it.
        Nothing is read until a method is called; ``status()`` raises ``KeyError`` for an unknown id."""
        if self.journal is None:
            raise ConfigurationError("job handles need the journal; do not pass journal=None")
        followers = self._followers_here()
        from gateway.jobs.handles import Job

        return Job(job_id, followers, lambda: self._follow(job_id), lambda: self._start_follower(job_id),
                   lambda: self._claimable(job_id), loop=asyncio.get_running_loop())

    async def _followed(self, followers: Followers, key: str, generation: Any) -> OviResult:
        """The follower's body: the generation, and a cancel's verdict recorded as ``cancelled``."""
        from gateway.jobs.handles import JobCancelled, alive_error
        from gateway.jobs.push import CURRENT_CLIP

        CURRENT_CLIP.set(key)  # this task's context only: webhook URLs and wake-ups name the clip
        try:
            result: OviResult = await generation
            return result
        except GatewayError as error:
            tracked = followers.tracked.get(key)
            if tracked is not None and tracked.cancel_requested and not alive_error(error):
                if not isinstance(error, JobCancelled):
                    error = JobCancelled(f"clip {key} was cancelled: {error.message}", provider=error.provider)
                await self.store.fail_clip(key, f"{JobCancelled.__name__}: {error.message}")
                raise error from None
            raise

    def _start_follower(self, key: str) -> None:
        """Follow clip ``key`` here (resuming its open submits) unless a follower already runs here."""
        followers = self._followers_here()
        if followers.running(key):
            return
        clip = self.journal.get_clip(key)
        if clip is None:
            raise KeyError(f"no job {key!r} in the journal")
        request = load_request(clip.request_json, self.journal.get_image)  # its image from the store
        followers.start(key, lambda on_event: self._followed(followers, key, self.agenerate(
            request, idempotency_key=key, on_event=on_event)))

    async def _claimable(self, key: str) -> bool:
        """Whether no live process other than this one holds the clip's lease."""
        from gateway.store.lease import alive, lease_owner

        owner = lease_owner()
        # ``alive`` is the one rule every claim uses: a holder is dead early only when it provably is (this
        # boot and PID namespace, PID gone); a hostname and PID alone would take a live lease from a process
        # in another container that shares the hostname, while it still trusts a fresh beat.
        if await self.store.claim_clip(key, owner, heartbeat=1.0 / 3, alive=alive) is not None:
            return False
        await self.store.release_clip(key, owner)
        return True

    async def _follow(self, key: str) -> OviResult:
        """Wait for clip ``key``: on this process's follower, else on a new one here, else (another live
        process holds the clip) by reading the journal every ``follow_watch_interval`` seconds."""
        from gateway.jobs.handles import JobCancelled, alive_error

        followers = self._followers_here()
        while True:
            tracked = followers.tracked.get(key)
            task = tracked.task if tracked is not None else None
            held_elsewhere = False
            if task is not None:
                if not task.done():
                    await asyncio.wait([task])
                if task.cancelled():
                    raise ClipInProgress(f"the gateway stopped following job {key}; it stays resumable "
                                         "(gw.job(id).wait() in any process)")
                error = task.exception()
                if error is None:
                    return task.result()
                if not isinstance(error, ClipInProgress):
                    if alive_error(error) and tracked is not None:
                        tracked.task = None  # a paid job is still open: the next wait() follows it again
                    raise error
                held_elsewhere = True
            view = await followers.view(key)
            if view is None:
                raise KeyError(f"no job {key!r} in the journal")
            if view.state == "succeeded" and view.result is not None:
                return view.result
            if view.state in ("failed", "cancelled"):
                kind = JobCancelled if view.state == "cancelled" else GatewayError
                raise kind(view.error or f"job {key} {view.state}")
            if held_elsewhere:
                await self.clock.sleep(followers.watch_interval)
            self._start_follower(key)

    async def aclose_followers(self, drain_seconds: float = 30.0) -> None:
        """Stop this loop's followers (see ``Followers.aclose``); their jobs stay resumable."""
        table: dict[asyncio.AbstractEventLoop, Followers] = self.__dict__.get("_followers_by_loop", {})
        followers = table.pop(asyncio.get_running_loop(), None)
        if followers is not None:
            await followers.aclose(drain_seconds)

    # ---- for sync callers ----------------------------------------------------------------------
    def _background(self) -> BackgroundLoop:
        from gateway.jobs.handles import BackgroundLoop

        loop: BackgroundLoop | None = self.__dict__.get("_background_loop")
        if loop is None:
            loop = self.__dict__["_background_loop"] = BackgroundLoop()
        return loop

    def submit_sync(self, request: OviRequest, *, provider: str | None = None, route: Route | None = None,
                    idempotency_key: str | None = None, budget_scope: str | None = None) -> Job:
        """``submit`` from sync code: the follower runs on the gateway's background loop thread until
        ``close()``; use ``Job.wait_sync`` / ``status_sync`` / ``cancel_sync`` on the handle."""
        return self._background().run(self.submit(request, provider=provider, route=route,
                                                  idempotency_key=idempotency_key, budget_scope=budget_scope))

    def job_sync(self, job_id: str) -> Job:
        """``job`` for sync code (the handle's ``*_sync`` methods run on the background loop)."""
        job: Job = self._background().run(_call(self.job, job_id))
        return job

    def close(self, drain_seconds: float = 30.0) -> None:
        """Stop the background loop's followers (jobs stay resumable) and its HTTP clients."""
        loop: BackgroundLoop | None = self.__dict__.pop("_background_loop", None)
        if loop is None:
            return
        loop.run(_call_async(self.aclose_followers, drain_seconds))
        loop.run(_call_async(getattr(self, "aclose")))  # noqa: B009 - provided by Gateway
        loop.stop()


async def _call(function: Callable[..., Any], *args: Any) -> Any:
    return function(*args)


async def _call_async(function: Callable[..., Any], *args: Any) -> Any:
    return await function(*args)
