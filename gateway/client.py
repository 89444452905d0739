"""``Gateway``: the public client. Quotes, plans, runs and resumes clips; async at the core, sync on top."""

from __future__ import annotations

import concurrent.futures
import os
import random
import time
import warnings
from collections.abc import AsyncIterator, Callable, Coroutine, Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar, Unpack

from pydantic import SecretStr

import gateway.telemetry as telemetry
from gateway.client_media import MediaMixin
from gateway.client_setup import UNSET, check_base_urls, keys_for, random_key, recovery_for
from gateway.clock import Clock, RealClock
from gateway.contract import Provider, ProviderContext
from gateway.errors import (
    PAID_JOB_ALIVE,
    ClipInProgress,
    ConfigurationError,
    GatewayError,
    InvalidRequest,
    NoRoute,
)
from gateway.http import USER_AGENT
from gateway.jobs.clips import ClipsMixin
from gateway.jobs.events import Event
from gateway.jobs.polling import PollPolicy
from gateway.jobs.submitting import HandlesMixin
from gateway.lazy import LazyModule
from gateway.offline import GatewayOptions, open_journal
from gateway.registry import Registry
from gateway.request import OviRequest, check_idempotency_key
from gateway.result import Attempt, OviResult
from gateway.routing.health import BreakerState, Health
from gateway.routing.planner import Plan, Route, pinned, plan
from gateway.routing.pricing import Budget, PriceBook, Quote, scope_id
from gateway.routing.quoting import quotes_for, ranked
from gateway.secrets import register_api_key, scrub, scrubbing
from gateway.store.records import HEARTBEAT_S

# Runner, recovery, journal, limits and many load on first use: Gateway(journal=None) needs none (issue 14).
if TYPE_CHECKING:
    import asyncio

    import httpx

    from gateway.emulator import Emulator
    from gateway.jobs.limits import VendorLimits
    from gateway.jobs.many import ManyOutcome
    from gateway.jobs.recovery import Recovery, ResumeOutcome
    from gateway.jobs.runner import Runner
    from gateway.store.base import SqlStore
    from gateway.store.journal import Journal
else:  # asyncio and httpx load on first use, not with the module (gateway.lazy)
    asyncio = LazyModule("asyncio", globals())
    httpx = LazyModule("httpx", globals())

__all__ = ["Gateway", "GatewayOptions", "ResumeOutcome"]

_T = TypeVar("_T")


def __getattr__(name: str) -> Any:  # ``gateway.client.ResumeOutcome``, loaded on first use
    if name == "ResumeOutcome":
        from gateway.jobs.recovery import ResumeOutcome
        return ResumeOutcome
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


class Gateway(ClipsMixin, HandlesMixin, MediaMixin):
    """Runs Ovi clips on Runware, fal.ai or WaveSpeed, choosing and failing over per ``Route``.

    Args:
        keys: API keys by provider name; default from each provider's variable (``RUNWARE_API_KEY``,
            ``FAL_KEY``, ``WAVESPEED_API_KEY``).
        providers: only load these providers (default: every installed one).
        registry: where provider classes come from (default: the entry-point group).
        transport: an httpx transport for all vendor traffic (the emulator's, in tests).
        emulator: an ``Emulator`` to run against instead of the real vendors (sets the transport
            and a placeholder key per vendor; results say ``emulated=True``). ``Gateway.offline()``
            builds one with short jobs and matching polling.
        journal: a ``Journal``, a path, ``":memory:"``, a ``postgresql://`` URL (many processes and
            machines sharing one journal; ``StoreUnavailable`` at once if it cannot be reached), or
            ``None`` for no journal; default: ``$OVI_GATEWAY_DATABASE_URL`` if set, else the journal
            file under the user's data directory (with an emulator: the separate offline journal,
            ``gateway.offline.offline_journal_path()``). Breaker state is shared through it.
        prices: a ``PriceBook`` or a TOML file overriding the packaged prices.
        route: the default ``Route`` for ``generate`` calls that pass none.
        poll: when to check running jobs.
        clock: time and sleep (a ``VirtualClock`` in tests).
        breaker: options for each vendor's breaker (``threshold``, ``cooldown``, ``max_cooldown``).
        jitter_seed: seeds the retry-backoff jitter only, for repeatable timing. Clip and submit keys
            stay random (``uuid4``) whatever the seed: a key is the vendor's idempotency key, so two
            processes must never make the same one. (``seed=`` is the deprecated name.)
        budget: spend caps (one ``Budget`` or several) per UTC day, month or in total, over all spend,
            a named scope or each caller (``budget_scope=``); needs the journal.
        backoff_base: seconds before the first same-vendor retry (doubling, with jitter, up to 30 s)
            when the vendor gave no ``Retry-After``.
        timeout: seconds (or an ``httpx.Timeout``) for every vendor request, replacing each adapter's
            per-step defaults (10 s to connect; 30–120 s to read, by step). ``None`` keeps the defaults.
        http_client: an ``httpx.AsyncClient`` for all vendor traffic (its proxies, certificates, limits
            and event hooks apply; the gateway never closes it). An httpx client's connections belong
            to one event loop: use it with the ``a*`` methods. Without one, the gateway's own clients
            honor httpx's environment settings (``HTTPS_PROXY``, ``NO_PROXY``, ``SSL_CERT_FILE``).
        base_urls: an API root per vendor (``{"runware": "https://…/v1"}``), e.g. a relay or a
            loopback emulator; a vendor whose adapter takes no ``base_url`` is refused.
        key_factory: makes clip and submit keys (default: ``uuid4``); a seam for tests only.
        allow_local_media: the explicit emulator flag: let ``download`` fetch ``http://`` and
            loopback/private media URLs, and ``base_urls`` be ``http://`` (a loopback emulator). Off by
            default, and never inferred from a URL.
        keep_dir: download every finished clip into this folder as soon as it is done (as
            ``<clip key>.<ext>``, verified; ``result.saved_to``), so none is lost when the vendor's URL
            expires (``result.expires_at``).
        lease_heartbeat: seconds between renewals of a clip's lease while a call works on it; a lease
            whose holder missed 3 beats is stale and another call may take the clip over.
        limits: per-vendor ``VendorLimits`` (requests in flight, requests per minute), counted in the
            journal so every process sharing it shares them (needs the journal).
    """

    def __init__(self, *, keys: Mapping[str, str] | None = None, providers: Iterable[str] | None = None,
                 registry: Registry | None = None, transport: httpx.AsyncBaseTransport | None = None,
                 emulator: Emulator | None = None, journal: Any = UNSET, prices: PriceBook | str | None = None,
                 route: Route | None = None, poll: PollPolicy | None = None, clock: Clock | None = None,
                 breaker: Mapping[str, float] | None = None, jitter_seed: int | None = None,
                 budget: Budget | Sequence[Budget] | None = None, backoff_base: float = 1.0,
                 timeout: float | httpx.Timeout | None = None, http_client: httpx.AsyncClient | None = None,
                 base_urls: Mapping[str, str] | None = None, key_factory: Callable[[], str] | None = None,
                 seed: int | None = None, allow_local_media: bool = False,
                 keep_dir: str | os.PathLike[str] | None = None,
                 lease_heartbeat: float = HEARTBEAT_S, limits: Mapping[str, VendorLimits] | None = None) -> None:
        if seed is not None:
            warnings.warn("Gateway(seed=) is deprecated: use jitter_seed= (it seeds retry jitter only; "
                          "keys are always random)", DeprecationWarning, stacklevel=2)
            jitter_seed = seed if jitter_seed is None else jitter_seed
        self.registry: Registry = registry or Registry.load()
        wanted = set(providers) if providers is not None else None
        self.classes: dict[str, type[Provider]] = {
            name: cls for name, cls in self.registry.classes.items() if wanted is None or name in wanted}
        self.load_failures: dict[str, str] = {
            n: e for n, e in self.registry.failures.items() if wanted is None or n in wanted}
        if isinstance(emulator, bool):  # Gateway(emulator=True) would mean minute-long jobs and real polling
            raise ConfigurationError("emulator= takes an Emulator; for the built-in emulator with seconds-long "
                                     "jobs, its own journal and no network, use Gateway.offline()")
        self.emulator: Emulator | None = emulator
        self.emulated: bool = emulator is not None
        """True when every vendor is emulated: results say so, and the journal's rows are marked."""
        self.emulator_instance: str | None = getattr(emulator, "instance_id", None)
        self._stale_closed = False
        self._allow_local_media = allow_local_media
        if http_client is not None and (transport is not None or emulator is not None):
            raise ConfigurationError("pass http_client, or transport/emulator, not both")
        self.transport: httpx.AsyncBaseTransport | None = emulator.transport() if emulator is not None else transport
        self._http_client = http_client
        self._timeout = None if timeout is None else (
            timeout if isinstance(timeout, httpx.Timeout) else httpx.Timeout(timeout))
        self._base_urls = check_base_urls(self.classes, self.registry, base_urls,
                                           allow_http=allow_local_media or emulator is not None)
        self._key_factory = key_factory or random_key
        self._keys = {name: SecretStr(value) for name, value in keys_for(self.classes, keys, emulator).items()}
        for secret in self._keys.values():  # before any is sent: every text the gateway keeps is redacted
            register_api_key(secret)
        self.clock: Clock = clock or RealClock()
        self.book: PriceBook = prices if isinstance(prices, PriceBook) else PriceBook.load(prices)
        self.default_route: Route = route or Route()
        self.poll: PollPolicy = poll or PollPolicy()
        self.health_state: Health = Health(self.clock, **dict(breaker or {}))
        self.rng: random.Random = random.Random(jitter_seed)
        self.journal: Journal | None = open_journal(journal, self.emulator_instance)
        # The async face of the same connection: every call on the event loop goes through it. On a real
        # clock SQLite's SQL runs on its writer thread; a virtual clock (tests) keeps it inline, for
        # determinism, unless the journal was made with ``offload=True``.
        self.store: SqlStore | None = None if self.journal is None else self.journal.store(
            offload=isinstance(self.clock, RealClock))
        self.lease_heartbeat: float = lease_heartbeat
        if self.journal is not None:  # breakers shared with other processes and the next run, in wall time
            wall = time.time if isinstance(self.clock, RealClock) else self.clock.now
            self.health_state.attach(self.journal, wall=wall)
        self.limits: dict[str, VendorLimits] = dict(limits or {})
        if self.limits and self.journal is None:
            raise ConfigurationError("vendor limits are counted in the journal; do not pass journal=None")
        self.recovery: Recovery | None = None if self.store is None else recovery_for(self)
        if budget is not None and self.journal is None:
            raise ConfigurationError("a budget needs the journal (spend is read from it); do not pass journal=None")
        self.budget: Budget | Sequence[Budget] | None = budget
        self.backoff_base: float = backoff_base
        self.keep_dir: Path | None = None if keep_dir is None else Path(keep_dir)
        self._sessions: dict[asyncio.AbstractEventLoop, tuple[httpx.AsyncClient | None, dict[str, Provider]]] = {}
        self._calibrate_from_journal()

    def __repr__(self) -> str:
        keyed = sorted(self._keys)
        return f"Gateway(providers={sorted(self.classes)}, keys_set={keyed}, emulated={self.emulated})"

    # ---- offline ----------------------------------------------------------------------------
    @classmethod
    def offline(cls, *, emulator: Emulator | None = None, emulator_url: str | None = None,
                faults: str | None = None, job_seconds: tuple[float, float] | float | None = None,
                journal: Any = UNSET, seed: int | None = None, **options: Unpack[GatewayOptions]) -> Gateway:
        """A gateway sealed off from the real vendors: every vendor is the built-in emulator.

        Jobs take a few seconds (``gateway.offline.JOB_SECONDS``) and are polled on that scale; nothing
        leaves the process (no DNS lookup, no socket), ``result.download()`` included; results say
        ``emulated=True``; the journal is the separate offline one, its rows marked with the
        emulator's instance id (never counted as real spend, budgets or calibration).

        Args:
            emulator: run against this ``Emulator`` (default: a new one, seeded by ``seed``).
            emulator_url: a loopback emulator (``ovi-gateway emulate``), e.g. ``http://127.0.0.1:8765``;
                default from ``OVI_GATEWAY_EMULATOR_URL``. Its clips download from it over loopback.
            faults: a fault spec for the new emulator (``"fal.submit=503*3; runware.job=fail"``).
            job_seconds: a new emulator's job time in seconds: fixed, or a (low, high) range.
            journal: as for ``Gateway``; default ``offline_journal_path()``.
            seed: seeds the emulator's ids and the gateway's jitter.
            options: any other ``Gateway`` argument (``clock``, ``route``, ``poll``…), as ``GatewayOptions``.
        """
        from gateway.offline import build

        return build(cls, emulator=emulator, emulator_url=emulator_url, faults=faults, job_seconds=job_seconds,
                     journal=journal, seed=seed, **options)

    def _close_stale_emulated(self) -> None:
        """Offline: close open rows of emulator instances that are gone (see ``offline.close_stale``) —
        once per gateway (on its first call), not on every call: it reads every unfinished row."""
        if self.emulated and self.journal is not None and self.emulator_instance and not self._stale_closed:
            from gateway.offline import close_stale

            close_stale(self.journal, self.emulator_instance)
            self._stale_closed = True

    def _deliver(self, result: OviResult) -> OviResult:
        """The result as handed to the caller: its downloads are journaled; an emulated one says so and
        downloads from its emulator."""
        if self.journal is not None:  # journal=None: nothing to record a download in (no callback set)
            result.on_media(self._bound("_record_media"))
        if not self.emulated:
            return result
        if not result.emulated:
            result = result.model_copy(update={"emulated": True})
        return result.with_transport(self.transport if isinstance(self.transport, httpx.BaseTransport) else None)

    # ---- quotes -----------------------------------------------------------------------------
    def quote(self, request: OviRequest) -> list[Quote]:
        """One ``Quote`` per installed provider: feasible ones cheapest first, then the rest."""
        return ranked(self._quotes(request).values())

    def _quotes(self, request: OviRequest, only: str | None = None, cached: bool = False) -> dict[str, Quote]:
        return quotes_for(self.classes, self.book, request, only, cached=cached)

    def health(self) -> list[BreakerState]:
        """Each vendor's breaker: closed, open (and until when) or half-open."""
        return [self.health_state[name].snapshot() for name in self.classes]

    def configured(self) -> dict[str, bool]:
        """Whether each installed provider has an API key (never the key itself)."""
        return {name: name in self._keys for name in self.classes}

    # ---- generating -------------------------------------------------------------------------
    def generate(self, request: OviRequest, *, provider: str | None = None, route: Route | None = None,
                 idempotency_key: str | None = None, on_event: Callable[[Event], None] | None = None,
                 budget_scope: str | None = None) -> OviResult:
        """Synchronous ``agenerate`` (runs its own event loop; inside a running loop use ``agenerate``)."""
        return self._run_sync(self.agenerate(request, provider=provider, route=route, budget_scope=budget_scope,
                                             idempotency_key=idempotency_key, on_event=on_event))

    async def agenerate(self, request: OviRequest, *, provider: str | None = None, route: Route | None = None,
                        idempotency_key: str | None = None, on_event: Callable[[Event], None] | None = None,
                        budget_scope: str | None = None) -> OviResult:
        """Make one clip: plan the route, run it with retries and failover, return the result.

        Args:
            request: the clip to make.
            provider: shorthand for ``Route(provider=...)``: this vendor only, no failover.
            route: how to choose vendors (default: the gateway's default route).
            idempotency_key: a key already seen returns that clip's result (or finishes its paid job)
                instead of paying again; a different request under the same key is refused.
            on_event: called with progress ``Event``s.
            budget_scope: who the call is for (e.g. the caller's API key; stored only as a digest): its
                spend counts against ``Budget(per_caller=True)`` caps for that caller alone.

        Raises:
            NoRoute: no vendor can take the request (reasons per vendor).
            GatewayError: see ``gateway.errors``; ``error.attempts`` lists what was tried.
        """
        # ``scrubbing``'s work written in: a wrapper coroutine (and its args tuple) per job in flight is
        # what 10,000 jobs pay for in memory and garbage collection.
        try:
            self._close_stale_emulated()
            work = self._agenerate(request, provider=provider, route=route, caller=budget_scope,
                                   idempotency_key=idempotency_key, on_event=on_event)  # no span recorded: no wrapper
            return self._deliver(await (work if telemetry.live() is None else telemetry.clip(work, idempotency_key=(
                idempotency_key))))
        except BaseException as exc:
            scrub(exc)  # as every public entry point does (``gateway.secrets.scrubbing``)
            raise

    async def _agenerate(self, request: OviRequest, *, provider: str | None, route: Route | None,
                         idempotency_key: str | None, on_event: Callable[[Event], None] | None,
                         caller: str | None = None) -> OviResult:
        if not isinstance(request, OviRequest):
            raise InvalidRequest("request must be an OviRequest")
        caller = None if caller is None else scope_id(caller)  # the text may be an API key: never kept
        idempotency_key = check_idempotency_key(idempotency_key)  # before any vendor is asked
        explicit = route is not None or provider is not None
        route = route or self.default_route
        if provider is not None:
            route = pinned(route, provider)
        if route.provider is not None:
            self.registry.get(route.provider)
            if route.provider not in self.classes:
                raise ConfigurationError(f"provider {route.provider!r} is installed but not enabled here")
        started = self.clock.now()
        if self.journal is None:
            if idempotency_key is not None:
                raise ConfigurationError("idempotency keys need the journal; do not pass journal=None")
            return await self._plan_and_run(request, route, self._new_key(),
                                            self._runner(on_event, request, route, caller), started)
        return await self._journaled(request, route, idempotency_key, on_event, started, caller, explicit)

    async def _plan_and_run(self, request: OviRequest, route: Route, clip_key: str, runner: Runner,
                            started: float, earlier: list[Attempt] | None = None) -> OviResult:
        if route.deadline is not None:  # what resuming an earlier job used counts against the deadline
            route = route.model_copy(update={"deadline": max(1e-9, route.deadline - (self.clock.now() - started))})
        quotes = self._quotes(request, only=route.provider, cached=True)  # per request shape (routing.quoting)
        chosen = plan(route, quotes, unhealthy=self.health_state.unhealthy(), unconfigured=self._unconfigured())
        wait = None if chosen.candidates else self._cooldown_wait(route, quotes)
        if wait is not None:
            # Only cooling-down vendors can take this clip: wait for the first to half-open, within the deadline.
            message = f"every capable vendor is cooling down; waiting {wait:.0f} s"
            runner.on_event(Event("wait", "", 0.0, message=message))
            await self.clock.sleep(wait)
            route = route if route.deadline is None else route.model_copy(update={"deadline": route.deadline - wait})
            chosen = plan(route, quotes, unhealthy=self.health_state.unhealthy(), unconfigured=self._unconfigured())
        if not chosen.candidates:
            # A vendor whose plugin failed to load is no quote, so no plan entry: name it and why anyway.
            failed = {name: [f"failed to load: {error}"] for name, error in self.load_failures.items()}
            raise NoRoute("no vendor can take this request", reasons={**failed, **chosen.excluded})
        quotes, chosen = {}, Plan(chosen.candidates)  # in-flight jobs keep this frame: only what runs (~2.5 KB less)
        try:
            result = await runner.run(request, chosen, route, clip_key=clip_key, earlier=earlier)
        except GatewayError as error:
            if self.store is not None and not isinstance(error, (*PAID_JOB_ALIVE, ClipInProgress)):
                await self._fail_clip(clip_key, f"{type(error).__name__}: {error}", runner.lease)
            raise
        if self.store is not None:  # (``_settle`` needs a store: journal=None makes no coroutine for it)
            await self._settle(result, request.steps, known_steps=True)
        return result

    def _cooldown_wait(self, route: Route, quotes: Mapping[str, Quote]) -> float | None:
        """Seconds until the first vendor that could take the clip but for its open breaker half-opens;
        ``None`` when no such vendor exists or the deadline is shorter."""
        if_healthy = plan(route, quotes, unconfigured=self._unconfigured())
        reopen = [self.health_state[c.provider].open_until for c in if_healthy.candidates]
        waits = [at - self.clock.now() for at in reopen if at is not None]
        if not waits:
            return None
        wait = max(0.0, min(waits))
        return wait if route.deadline is None or wait < route.deadline else None

    # ---- many at once -----------------------------------------------------------------------
    def agenerate_many(self, requests: Iterable[OviRequest], *, concurrency: int = 8,
                       keys: Iterable[str | None] | None = None, provider: str | None = None,
                       route: Route | None = None, on_event: Callable[[Event], None] | None = None,
                       budget_scope: str | None = None) -> AsyncIterator[ManyOutcome]:
        """Make many clips, at most ``concurrency`` at a time, yielding a ``ManyOutcome`` (the result, or
        the ``GatewayError`` that ended it, with the request's index) as each finishes.

        ``keys`` (one per request, ``None`` for none) are idempotency keys: rerunning the same keys pays
        nothing again for clips already made and finishes jobs already paid for. ``provider``, ``route``,
        ``on_event`` and ``budget_scope`` apply to every request. Use inside ``async for``; leaving it
        early cancels the generations still running (their paid jobs stay in the journal for ``resume()``)."""
        async def one(request: OviRequest, key: str | None) -> OviResult:
            return await self.agenerate(request, provider=provider, route=route, idempotency_key=key,
                                        on_event=on_event, budget_scope=budget_scope)

        from gateway.jobs.many import run_many

        return run_many(one, requests, keys=keys, concurrency=concurrency)

    # ---- resuming ---------------------------------------------------------------------------
    def resume(self) -> list[ResumeOutcome]:
        """Synchronous ``aresume``."""
        return self._run_sync(self.aresume())

    @scrubbing
    async def aresume(self) -> list[ResumeOutcome]:
        """Re-attach to every unfinished paid job in the journal and finish it, instead of paying again.
        A clip another call is working on is left to it (outcome ``in-progress``)."""
        return await self._resume_all()

    # ---- plumbing ---------------------------------------------------------------------------
    def _new_key(self) -> str:
        # Never from the jitter rng: a seeded gateway in another process would make the same keys, and
        # a vendor answers a repeated key (Runware's taskUUID) with the first caller's clip.
        return self._key_factory()

    def _runner(self, on_event: Callable[[Event], None] | None, request: OviRequest | None = None,
                route: Route | None = None, caller: str | None = None) -> Runner:
        from gateway.jobs.delivery import Delivery
        from gateway.jobs.runner import Runner
        delivery = Delivery(journal=self.journal, request=request, keep_dir=self.keep_dir, emulated=self.emulated,
                            verify_now=bool(route and route.failover_on_defective), fetch=self._bound("_fetch_clip"))
        # With webhooks on (``self.push``), adapters ask for pushes and sleeps end when one arrives. With
        # neither pushes nor limits nothing wraps the adapters: the runner reads the session's own mapping
        # (it never changes it) instead of a copy per call.
        providers = self._providers()
        wrapped = providers if self.push is None and not self.limits else self._limited(self._pushing(providers))
        return Runner(wrapped, clock=self._waking(self.clock),
                      health=self.health_state, store=self.store,
                      poll=self.poll, rng=self.rng, on_event=on_event, budget=self.budget, budget_scope=caller,
                      backoff_base=self.backoff_base, new_key=self._bound("_new_key"), deliver=delivery)

    def _bound(self, name: str) -> Any:
        """``self.<name>`` as one bound method made once, not a new one held by every job in flight."""
        found = self.__dict__.get("_bound_" + name)
        if found is None:
            found = self.__dict__["_bound_" + name] = getattr(self, name)
        return found

    def _limited(self, providers: Mapping[str, Any]) -> dict[str, Any]:
        """The adapters, each vendor call gated by its ``VendorLimits`` (``gateway.jobs.limits.limited``)."""
        from gateway.jobs.limits import limited
        return limited(providers, self.limits, self.store, self.clock)

    def _unconfigured(self) -> dict[str, str]:
        missing = {name: f"no API key (set {cls.env_key})" for name, cls in self.classes.items()
                   if name not in self._keys}
        return {**missing, **{name: f"failed to load: {error}" for name, error in self.load_failures.items()}}

    def _providers(self) -> dict[str, Provider]:
        """The adapters for the running event loop (an httpx client cannot cross loops)."""
        loop = asyncio.get_running_loop()
        session = self._sessions.get(loop)
        if session is None:
            for stale in [old for old in self._sessions if old.is_closed()]:
                del self._sessions[stale]
            from gateway.transports import ClientTransport, VendorClient

            owned = self._http_client is None
            http = self._http_client or VendorClient(  # keeps no cookies (gateway.transports)
                transport=self.transport, headers={"user-agent": USER_AGENT},
                timeout=self._timeout or httpx.Timeout(60.0, connect=10.0),
                limits=httpx.Limits(max_connections=200, max_keepalive_connections=50))
            # Adapters that build their own client (fal-client) reach the caller's client through a transport.

            transport = self.transport if owned else ClientTransport(http)
            providers: dict[str, Provider] = {}
            for name, cls in self.classes.items():
                base_url = self._base_urls.get(name)
                options = {} if base_url is None else {"base_url": base_url}
                try:
                    providers[name] = cls(ProviderContext(api_key=self._keys.get(name), http=http,
                                                          transport=transport, timeout=self._timeout, options=options))
                except ImportError as error:  # a module it loads on first use is broken: that vendor alone is
                    self.load_failures[name] = f"{type(error).__name__}: {error}"  # out, as at registry load
            session = self._sessions[loop] = (http if owned else None, providers)
        return session[1]

    def _run_sync(self, coroutine: Coroutine[Any, Any, _T]) -> _T:
        async def main() -> _T:
            try:
                return await coroutine
            finally:
                await self.aclose()

        try:
            asyncio.get_running_loop()
        except RuntimeError:
            return asyncio.run(main())
        # Inside a running loop (Jupyter, an async framework): asyncio.run would refuse, so the call
        # runs on a worker thread's own loop while this thread waits (``on_event`` runs on that thread).
        with concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="ovi-gateway-sync") as worker:
            return worker.submit(asyncio.run, main()).result()

    async def aclose(self) -> None:
        """Stop the running loop's job followers (their jobs stay resumable), then close its HTTP clients."""
        await self.aclose_followers()
        if self.store is not None:  # batched writes committed: what this call did is visible to every process
            await self.store.drain()
        session = self._sessions.pop(asyncio.get_running_loop(), None)
        if session is not None:
            if session[0] is not None:  # never the caller's own http_client
                await session[0].aclose()
            for provider in session[1].values():
                closer = getattr(provider, "aclose", None)
                if closer is not None:
                    await closer()

    async def __aenter__(self) -> Gateway:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()


