"""Per-vendor concurrency caps and request-rate limits, shared by every process on the journal.

Batches, servers and fleets must not storm a vendor into 429s (LiteLLM has ``rpm`` and
``max_parallel_requests`` per deployment for the same reason). ``VendorLimits`` says how many requests
may be in flight at once (``max_parallel``) and how many may start per minute (``rpm``); the counts
live in the store (``vendor_slots``, ``rate_buckets``), so every process sharing the journal — one
SQLite file or one PostgreSQL — draws from the same slots and the same token bucket. A slot whose
holder died is freed after ``slot_ttl`` seconds.

``LimitedProvider`` wraps an adapter: each vendor call (submit, status, result, find, cancel) first
takes a token and a slot, and gives the slot back when the call ends. Waiting uses the gateway clock.
"""

from __future__ import annotations

import inspect
import uuid
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

from gateway.clock import Clock
from gateway.contract import JobHandle, JobStatus, Provider, ProviderOutput, SubmitContext
from gateway.request import OviRequest

__all__ = ["LimitedProvider", "VendorLimits", "limited"]

_T = TypeVar("_T")
_SLOT_POLL_S = 0.05


@dataclass(frozen=True)
class VendorLimits:
    """Limits for one vendor, across every process sharing the journal.

    ``max_parallel``: requests in flight at once (None: no cap); ``rpm``: requests started per minute
    (None: no limit), with bursts up to ``burst`` requests; ``slot_ttl``: seconds after which a slot
    held by a process that died is reclaimed (longer than any one request).
    """

    max_parallel: int | None = None
    rpm: float | None = None
    burst: float = 1.0
    slot_ttl: float = 300.0


class LimitedProvider:
    """``provider`` with every vendor call gated by ``limits`` through ``journal``'s shared counters
    (the async store, or a sync ``Journal``)."""

    def __init__(self, provider: Provider, limits: VendorLimits, journal: Any, clock: Clock) -> None:
        self._provider = provider
        self._limits = limits
        self._journal = journal
        self._clock = clock
        self._prefix = uuid.uuid4().hex

    def __getattr__(self, name: str) -> Any:  # everything else is the adapter's own
        return getattr(self._provider, name)

    async def _gated(self, call: Callable[[], Awaitable[_T]]) -> _T:
        name, limits = self._provider.name, self._limits
        if limits.rpm:
            while (wait := await _done(self._journal.take_token(name, per_second=limits.rpm / 60.0,
                                                                burst=limits.burst))) > 0:
                await self._clock.sleep(wait)
        holder = None
        if limits.max_parallel:
            holder = f"{self._prefix}:{uuid.uuid4().hex}"
            while not await _done(self._journal.take_slot(name, holder, cap=limits.max_parallel,
                                                          ttl=limits.slot_ttl)):
                await self._clock.sleep(_SLOT_POLL_S)
        try:
            return await call()
        finally:
            if holder is not None:
                await _done(self._journal.free_slot(name, holder))

    async def submit(self, request: OviRequest, ctx: SubmitContext) -> JobHandle:
        return await self._gated(lambda: self._provider.submit(request, ctx))

    async def status(self, handle: JobHandle) -> JobStatus:
        return await self._gated(lambda: self._provider.status(handle))

    async def result(self, handle: JobHandle, last: JobStatus) -> ProviderOutput:
        return await self._gated(lambda: self._provider.result(handle, last))

    async def cancel(self, handle: JobHandle) -> None:
        await self._gated(lambda: self._provider.cancel(handle))

    async def find(self, ctx: SubmitContext) -> JobHandle | None:
        return await self._gated(lambda: self._provider.find(ctx))


async def _done(outcome: Any) -> Any:
    """The value of a store call: awaited on the async store, as is from a sync journal."""
    return await outcome if inspect.isawaitable(outcome) else outcome


def limited(providers: Mapping[str, Any], limits: Mapping[str, VendorLimits], store: Any,
            clock: Clock) -> dict[str, Any]:
    """The adapters, each vendor's calls gated by its ``VendorLimits`` (shared through ``store``); the
    others as they are."""
    return {name: LimitedProvider(p, limits[name], store, clock) if name in limits else p
            for name, p in providers.items()}
