"""Per-vendor circuit breakers tuned for slow, low-volume jobs.

Clips take a minute and a busy caller sends a few per minute, so rates per window say little: a
breaker opens after ``threshold`` consecutive failures, stays open for a cooldown that doubles each
time it reopens (or for the vendor's ``Retry-After`` when longer), then lets exactly one probe
through (half-open). A success closes it. Hand-written rather than a library because it must run on
the gateway's injected clock and honor ``Retry-After``; the common breaker packages read the wall clock.

With a store (``Health.attach``), breakers are shared: every change is written with wall-clock times
(``BreakerRecord``), and what other processes — or an earlier CLI run — wrote is adopted, read at
most once per ``refresh`` seconds (LiteLLM shares cooldowns the same way, with a 1 s cache). One
process's failures cool the vendor for all, and only one process at a time sends the half-open probe
(a short probe lease in the store, ``Queries.take_probe``). An emulator's gateway shares only
emulated breakers.

The breakers live in memory; a call never waits for the store to read them. On an event loop, once
``refresh`` seconds have passed, the next look at a breaker starts ONE background read through the
journal's async store and goes on with what is in memory; the read adopts what it finds when it
returns. Staleness bound: another process's change is seen here at most ``refresh`` seconds (gateway
clock) plus one store read after it is committed (a batched write commits within
``gateway.store.sqlite.BATCH_DELAY_S``); the call that starts the read still plans on the older state.
Without an event loop (the CLI, sync code) the read is made at once, as before. Changes made here are
written in the background on a loop (a ``BATCHED`` write: never awaited).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from gateway.clock import Clock
from gateway.errors import (
    AuthError,
    GatewayError,
    GenerationFailed,
    InsufficientFunds,
    MalformedResponse,
    ProviderUnavailable,
    RateLimited,
    SubmitOutcomeUnknown,
)
from gateway.lazy import LazyModule
from gateway.store.lease import lease_owner
from gateway.store.records import BreakerRecord

if TYPE_CHECKING:
    import asyncio
else:  # asyncio loads on first use: a new gateway needs no event loop (gateway.lazy)
    asyncio = LazyModule("asyncio", globals())

__all__ = ["Breaker", "BreakerState", "Health"]

_COUNTED = (ProviderUnavailable, RateLimited, SubmitOutcomeUnknown, MalformedResponse, GenerationFailed)
_ACCOUNT = (AuthError, InsufficientFunds)  # no retry fixes these: open at once, for the longest cooldown
PROBE_TTL_S = 300.0
"""Seconds a process's half-open probe lease lasts in the store: a probe is one submit and its job
(about a minute); a process that dies mid-probe blocks others' probes at most this long."""


@dataclass(frozen=True, slots=True)
class BreakerState:
    """A breaker as ``Gateway.health()`` shows it. ``open_until`` is on the gateway clock (seconds)."""

    provider: str
    state: Literal["closed", "open", "half-open"]
    consecutive_failures: int
    open_until: float | None
    last_error: str | None


class Breaker:
    """One vendor's breaker. ``threshold`` consecutive failures open it for ``cooldown`` seconds,
    doubling on each reopening up to ``max_cooldown``."""

    def __init__(self, provider: str, clock: Clock, *, threshold: int = 3, cooldown: float = 30.0,
                 max_cooldown: float = 600.0) -> None:
        self.provider: str = provider
        self.clock: Clock = clock
        self.threshold: int = threshold
        self.base_cooldown: float = cooldown
        self.max_cooldown: float = max_cooldown
        self.failures: int = 0
        self.opened: int = 0
        self.open_until: float | None = None
        self.probing: bool = False
        self.last_error: str | None = None
        self.on_change: Callable[[Breaker], None] = lambda breaker: None
        """Called after every change of the counted state (the shared store listens)."""
        self.take_probe: Callable[[Breaker], bool] = lambda breaker: True
        """Asked before a half-open probe: False when another process's probe is out (the shared store)."""
        self.on_release: Callable[[Breaker], None] = lambda breaker: None
        """Called when a probe ends with no verdict."""

    @property
    def state(self) -> Literal["closed", "open", "half-open"]:
        if self.open_until is None:
            return "closed"
        return "open" if self.clock.now() < self.open_until else "half-open"

    def allow(self) -> bool:
        """May a call go to this vendor now? In half-open, only the one probe may."""
        state = self.state
        if state == "closed":
            return True
        if state == "half-open" and not self.probing and self.take_probe(self):
            self.probing = True
            return True
        return False

    def release(self) -> None:
        """End a half-open probe that finished with neither a success nor a counted failure."""
        if self.probing:
            self.probing = False
            self.on_release(self)

    def success(self) -> None:
        changed = (self.failures, self.opened, self.open_until) != (0, 0, None)
        self.failures, self.opened, self.open_until, self.probing = 0, 0, None, False
        if changed:
            self.on_change(self)

    def failure(self, error: GatewayError) -> None:
        """Count a failure that says something about the vendor's health (not the caller's request)."""
        if not isinstance(error, _COUNTED + _ACCOUNT):
            self.probing = False
            return
        self.last_error = f"{type(error).__name__}: {error.message}"
        self.failures += 1
        was_probe, self.probing = self.probing, False
        if isinstance(error, _ACCOUNT):
            self._open(self.max_cooldown)
        elif was_probe or self.failures >= self.threshold:
            cooldown = min(self.max_cooldown, self.base_cooldown * 2 ** self.opened)
            hinted = error.retry_after if isinstance(error, RateLimited) and error.retry_after else 0.0
            self._open(max(cooldown, hinted))
        self.on_change(self)

    def _open(self, seconds: float) -> None:
        self.opened += 1
        self.open_until = self.clock.now() + seconds

    def snapshot(self) -> BreakerState:
        return BreakerState(self.provider, self.state, self.failures, self.open_until, self.last_error)

    def reason(self) -> str:
        if self.state == "half-open":
            return f"half-open after {self.failures} failures ({self.last_error}): another call's probe is out"
        wait = max(0.0, (self.open_until or 0.0) - self.clock.now())
        return f"cooling down for {wait:.0f} s more after {self.failures} failures ({self.last_error})"


class Health:
    """The breakers of every vendor, created on first use; shared through a store once attached."""

    def __init__(self, clock: Clock, **breaker_options: float) -> None:
        self.clock = clock
        self.options = breaker_options
        self.breakers: dict[str, Breaker] = {}
        self.store: Any = None
        self.wall: Callable[[], float] = time.time
        self.refresh = 1.0
        self._seen: dict[str, BreakerRecord] = {}
        self._loaded_at: float | None = None
        self._reading: asyncio.Task[None] | None = None
        self._changes: dict[str, int] = {}
        """Changes made here per vendor: a background read started before one must not undo it."""
        self._saving: dict[str, int] = {}
        """Saves of this process in flight per vendor: a read may run beside one and miss it."""
        self.reads = 0
        """Breaker reads made from the store (sync and background)."""
        self.holder = lease_owner()
        """Names this process's half-open probes in the store."""
        self.probe_ttl = PROBE_TTL_S

    def attach(self, store: Any, *, wall: Callable[[], float] = time.time, refresh: float = 1.0) -> None:
        """Share breakers through ``store`` (a ``Journal``: ``load_breakers()``/``save_breaker()``).
        ``wall``: epoch seconds, the time stored records are in; ``refresh``: seconds between reads."""
        self.store, self.wall, self.refresh = store, wall, refresh
        self._load()

    def __getitem__(self, provider: str) -> Breaker:
        self._maybe_load()
        return self._breaker(provider)

    def _breaker(self, provider: str) -> Breaker:
        if provider not in self.breakers:
            breaker = self.breakers[provider] = Breaker(provider, self.clock, **self.options)  # type: ignore[arg-type]
            breaker.on_change = self._save
            breaker.take_probe, breaker.on_release = self._take_probe, self._end_probe
        return self.breakers[provider]

    def unhealthy(self) -> dict[str, str]:
        """Vendors whose breaker is open now, with the reason (half-open ones may take a probe)."""
        self._maybe_load()
        return {name: b.reason() for name, b in self.breakers.items() if b.state == "open"}

    # ---- sharing ------------------------------------------------------------------------------
    def _maybe_load(self) -> None:
        if self.store is None:
            return
        now = self.clock.now()
        if self._loaded_at is not None and now - self._loaded_at < self.refresh:
            return
        face, loop = self._async_face()
        if face is None or loop is None:
            self._load()
            return
        if self._reading is None or self._reading.done():  # one background read at a time
            self._loaded_at = now
            busy = {name for name, count in self._saving.items() if count}
            self._reading = loop.create_task(self._read(face, dict(self._changes), busy))

    def _async_face(self) -> tuple[Any, asyncio.AbstractEventLoop | None]:
        """The journal's async store (once made) and this thread's running loop, if any."""
        face = getattr(self.store, "async_store", None)
        try:
            return face, asyncio.get_running_loop()
        except RuntimeError:
            return face, None

    async def _read(self, face: Any, changes: dict[str, int], busy: set[str]) -> None:
        """Read the stored breakers; ``changes``: this process's change counts when the read was asked for;
        ``busy``: vendors with a save of this process in flight then."""
        try:
            records = await face.load_breakers()
        except Exception:  # a breaker is advice: a failed read keeps what is in memory
            return
        # A vendor changed here while the read was out keeps its newer state (the read may predate it), and
        # so does one whose save was in flight at any time during the read: on PostgreSQL the read runs on
        # another connection and may not see that save yet.
        self._adopt({name: record for name, record in records.items()
                     if self._changes.get(name) == changes.get(name) and name not in busy
                     and not self._saving.get(name)})

    def _load(self) -> None:
        self._loaded_at = self.clock.now()
        self._adopt(self.store.load_breakers())

    def _adopt(self, records: dict[str, BreakerRecord]) -> None:
        self.reads += 1
        for name, record in records.items():
            if self._seen.get(name) == record:
                continue  # nothing new since this process last wrote or read it
            self._seen[name] = record
            breaker = self._breaker(name)
            breaker.failures, breaker.opened, breaker.last_error = record.failures, record.opened, record.last_error
            breaker.open_until = (None if record.open_until is None
                                  else self.clock.now() + (record.open_until - self.wall()))

    def _save(self, breaker: Breaker) -> None:
        if self.store is None:
            return
        until = None if breaker.open_until is None else self.wall() + (breaker.open_until - self.clock.now())
        record = BreakerRecord(breaker.provider, breaker.failures, breaker.opened, until, None, breaker.last_error)
        self._seen[breaker.provider] = record
        self._changes[breaker.provider] = self._changes.get(breaker.provider, 0) + 1
        face, loop = self._async_face()
        try:
            if face is not None and loop is not None:
                name = breaker.provider
                self._saving[name] = self._saving.get(name, 0) + 1
                task = loop.create_task(_quietly(face.save_breaker(record)))
                task.add_done_callback(lambda _task: self._saving.__setitem__(name, self._saving[name] - 1))
            else:
                self.store.save_breaker(record)
        except Exception:  # a breaker is advice: failing to share it must not fail the call
            pass

    def _take_probe(self, breaker: Breaker) -> bool:
        if self.store is None:
            return True
        try:
            return bool(self.store.take_probe(breaker.provider, self.holder, ttl=self.probe_ttl))
        except Exception:  # the store is unreachable: probe as a lone process would
            return True

    def _end_probe(self, breaker: Breaker) -> None:
        if self.store is None:
            return
        try:
            self.store.end_probe(breaker.provider, self.holder)
        except Exception:  # the lease runs out by itself
            pass

    def snapshot(self) -> list[BreakerState]:
        return [b.snapshot() for b in self.breakers.values()]


async def _quietly(write: Any) -> None:
    try:
        await write
    except Exception:  # a breaker is advice: failing to share it must not fail the call
        pass
