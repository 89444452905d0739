"""A vendor job being followed (``FollowedJob``)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from gateway.contract import JobHandle, Provider
from gateway.result import Attempt
from gateway.routing.planner import Candidate

if TYPE_CHECKING:
    from gateway.jobs.writes import Write

__all__ = ["FollowedJob"]


@dataclass(slots=True)  # one per job in flight: no per-instance __dict__ (10,000 in flight, one process)
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
    unwritten: list[Write] | None = None
    """Journal writes a storage failure refused, retried before every check (``gateway.jobs.writes``); made
    at the first (a job without a journal never has a list: one fewer object per job in flight)."""
    pending: list[asyncio.Future[Any]] | None = None
    """Batched writes queued for a group commit and not waited for; settled before the next check."""
    refused: tuple[str, Exception] | None = None
    """A batched write the journal itself refused (what, why): raised by the next flush (``gateway.jobs.writes``)."""

    @property
    def name(self) -> str:
        return self.provider.name
