"""Progress events of a generation, for displays (``Gateway.agenerate(on_event=)``)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

__all__ = ["Event", "EventKind", "no_event"]


EventKind = Literal["wait", "submit", "accepted", "status", "retry", "reconcile", "failover", "resubmit", "done"]
"""What an ``Event`` reports (see ``Event``)."""


@dataclass(frozen=True, slots=True)
class Event:
    """Progress for displays: ``kind`` is wait (every capable vendor cooling down), submit, accepted,
    status, retry, reconcile, failover, resubmit (a new job on the same vendor after its job failed)
    or done. ``provider`` is empty for ``wait``; ``elapsed`` is seconds since the generation began;
    ``state`` is the job's ``JobState`` value on status events."""

    kind: EventKind
    provider: str
    elapsed: float
    state: str | None = None
    queue_position: int | None = None
    message: str | None = None


def no_event(event: Event) -> None:
    """The ``on_event`` of a runner given none. The hot path checks for it and builds no ``Event`` at all
    (four a job, each a frozen dataclass) when nobody listens."""
