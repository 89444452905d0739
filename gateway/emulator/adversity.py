"""The emulator's misbehaviours beyond clean errors: what real vendors and networks do to a paid job.

``FaultScript`` kinds name *what* goes wrong; this module holds *how* for the kinds that need more than
an error status: a body that trickles in (in the emulator's clock, so virtual time stays virtual), a
submit that reaches the vendor after the client gave up on it, status answers that flap, and the
``kind:option`` syntax (``429:7`` is a 429 with ``Retry-After: 7``; ``trickle:4`` a body at 4 bytes
per second; ``late:60`` a submit that arrives 60 s late).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass

import httpx

from gateway.clock import Clock

__all__ = ["LATE_S", "TRICKLE_BYTES_PER_S", "LateRequest", "TrickleBody", "check_option", "flapped",
           "retry_after_header", "split_kind"]

LATE_S = 20.0
"""Default seconds a ``late`` submit takes to reach the vendor after the client timed out."""
TRICKLE_BYTES_PER_S = 32.0
"""Default speed of a ``trickle`` body (a few hundred bytes take seconds, in the emulator's clock)."""
RETRY_AFTER_S = "2"
"""The ``Retry-After`` of a plain ``429`` (``429:N`` sets N; ``429:none`` sends no header)."""


def split_kind(fault: str) -> tuple[str, str | None]:
    """``"429:7"`` → ``("429", "7")``; ``"drop"`` → ``("drop", None)``."""
    kind, sep, option = fault.partition(":")
    return kind, (option if sep else None)


def check_option(kind: str, option: str | None) -> None:
    """Refuse an option a kind does not take, or one that is not a number (``none`` for 429)."""
    if option is None:
        return
    if kind not in ("429", "trickle", "late"):
        raise ValueError(f"fault {kind!r} takes no option (got {kind}:{option})")
    if kind == "429" and option == "none":
        return
    try:
        value = float(option)
    except ValueError:
        raise ValueError(f"fault {kind}:{option}: the option must be a number of seconds or bytes/s") from None
    if value < 0 or (kind == "trickle" and value == 0):
        raise ValueError(f"fault {kind}:{option}: the option must be positive")


def retry_after_header(option: str | None) -> dict[str, str]:
    """The ``Retry-After`` header for a ``429`` fault with ``option``."""
    if option == "none":
        return {}
    return {"Retry-After": option or RETRY_AFTER_S}


@dataclass
class LateRequest:
    """A submit the client gave up on (it saw a timeout) that reaches the vendor at ``arrives_at``."""

    arrives_at: float
    request: httpx.Request


class TrickleBody(httpx.SyncByteStream, httpx.AsyncByteStream):
    """A response body that arrives a few bytes at a time, ``bytes_per_s`` in the emulator's clock.

    Async readers sleep on the clock between chunks (a ``VirtualClock`` makes that instant in real
    time but costs virtual seconds, so deadlines can be tested); sync readers get it at once.
    """

    def __init__(self, content: bytes, clock: Clock, bytes_per_s: float = TRICKLE_BYTES_PER_S) -> None:
        self._content = content
        self._clock = clock
        self._rate = bytes_per_s
        self._chunk = max(1, int(bytes_per_s))

    def __iter__(self) -> Iterator[bytes]:
        yield self._content

    async def __aiter__(self) -> AsyncIterator[bytes]:
        for start in range(0, len(self._content), self._chunk):
            piece = self._content[start:start + self._chunk]
            await self._clock.sleep(len(piece) / self._rate)
            yield piece


_EARLIER = {"succeeded": "running", "failed": "running", "nsfw": "running", "running": "queued"}


def flapped(state: str) -> str:
    """What a flapping status check answers: the state the job was in before (done → running,
    running → queued), as a replica that lags behind would."""
    return _EARLIER.get(state, state)
