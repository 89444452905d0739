"""A vendor job being followed (``FollowedJob``), and the store of a gateway without one (``NullJournal``)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from gateway.contract import JobHandle, Provider
from gateway.result import Attempt
from gateway.routing.planner import Candidate

if TYPE_CHECKING:
    from gateway.jobs.writes import Write

__all__ = ["FollowedJob", "NullJournal"]


class NullJournal:
    """Records nothing: the store of gateways built with ``journal=None`` (no durability, no idempotency
    keys). Async, like ``gateway.store.base.SqlStore``, whose write methods it mirrors."""

    async def intent(self, **fields: Any) -> None: ...
    async def accepted(self, submit_key: str, handle_json: dict[str, Any]) -> None: ...
    async def state(self, submit_key: str, state: str) -> None: ...
    async def finished(self, submit_key: str, *, cost_usd: Decimal | None, cost_source: str) -> None: ...
    async def finish(self, clip_key: str, result_json: str, submit_key: str, *, cost_usd: Decimal | None,
                     cost_source: str) -> None: ...
    async def failed(self, submit_key: str, *, error: str, may_be_billed: bool) -> None: ...
    async def unknown(self, submit_key: str, *, error: str) -> None: ...
    async def expired(self, submit_key: str, error: str) -> None: ...
    async def finish_clip(self, key: str, result_json: str) -> None: ...


@dataclass
class FollowedJob:
    """One vendor job being followed to its end, and where its outcome is recorded.

    ``started`` is when the whole generation began; ``vendor_started`` when this vendor took the job
    (or, for a resumed job, when following it resumed). ``resumed`` jobs teach the poll policy nothing.
    """

    provider: Provider
    handle: JobHandle
    candidate: Candidate
    clip_key: str
    submit_key: str
    started: float
    vendor_started: float
    deadline_at: float | None
    attempts: list[Attempt] = field(default_factory=list)
    abandon_stuck: bool = False
    resumed: bool = False
    seen_unfinished_at: float | None = None
    """Age (s after the vendor took the job) at the last check that saw it unfinished."""
    unwritten: list[Write] = field(default_factory=list)
    """Journal writes a storage failure refused, retried before every check (``gateway.jobs.writes``)."""
    pending: list[asyncio.Future[Any]] = field(default_factory=list)
    """Batched writes queued for a group commit and not waited for; settled before the next check."""
    refused: tuple[str, Exception] | None = None
    """A batched write the journal itself refused (what, why): raised by the next flush (``gateway.jobs.writes``)."""

    @property
    def name(self) -> str:
        return self.provider.name
