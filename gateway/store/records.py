"""What the store hands out: clip, submit, spend and breaker records, the lease rule, the write classes.

Money is Decimal (USD), never float. Times named ``*_at`` are wall-clock UTC ISO strings; lease and
breaker times are wall-clock epoch seconds, so every process and machine reads them alike.
"""

from __future__ import annotations

import enum
import hashlib
import json
from dataclasses import dataclass
from decimal import Decimal
from typing import TYPE_CHECKING, Any, NamedTuple

from gateway.errors import InvalidRequest

if TYPE_CHECKING:
    from gateway.store.intake import StoredImage

__all__ = ["FINAL", "HEARTBEAT_S", "OPEN", "STALE_BEATS", "STATES", "BreakerRecord", "ClipOpening", "ClipRecord",
           "Durability",
           "SpendRow", "SubmitRecord", "request_hash"]

FINAL = frozenset({"succeeded", "failed", "expired", "abandoned"})
"""``abandoned``: given up after retention or repeated fruitless resumes; may have been billed."""
OPEN = ("intent", "accepted", "queued", "running", "unknown")
"""In this order: the ``submits_open`` partial index (migration 0013) is written as ``state = …`` ORs in
this order, and SQLite uses it only for a query whose condition matches that text (``queries._OPEN``)."""
STATES = frozenset(OPEN) | FINAL

HEARTBEAT_S = 10.0
"""Seconds between lease heartbeats while a call works on a clip (procrastinate's worker default)."""
STALE_BEATS = 3
"""A lease whose holder missed this many heartbeats in a row is stale: another call may take it over."""


class Durability(enum.Enum):
    """The write classes. Each store method names its class; the backend honours it.

    ``FLUSHED``: committed and flushed to disk (fsync) before the caller goes on: the intent before the
    submit POST and the vendor's job id right after the ack — losing either to a power cut pays twice or
    loses a paid clip. ``COMMITTED``: committed (visible to every other process) before the caller goes
    on, not necessarily flushed: opening and claiming a clip (one whose key the call made itself is
    opened in its first intent's FLUSHED transaction instead: ``ClipOpening``), budget reservations,
    fates, the finished clip. ``BATCHED``: may be group-committed with other jobs' writes, off the event loop: progress
    states, a submit closed after its clip's result is on record, breaker counts.
    """

    FLUSHED = "flushed"
    COMMITTED = "committed"
    BATCHED = "batched"


class ClipOpening(NamedTuple):
    """A clip no other call can know yet (its key was made by this call), to create leased to ``owner``
    in its first intent's transaction (``Queries.intent``): ``open_clip``'s arguments, and the lease's
    ``heartbeat`` seconds and ``wall`` (epoch seconds of the claim, set by the store)."""

    request_json: str
    request_hash: str
    owner: str
    heartbeat: float
    tenant: str = ""
    image: StoredImage | None = None
    options_json: str | None = None
    wall: float = 0.0


@dataclass(frozen=True)
class ClipRecord:
    """One caller-visible generation, keyed by its idempotency key. ``state``: open/succeeded/failed."""

    key: str
    request_json: str
    request_hash: str
    state: str
    result_json: str | None
    error: str | None
    created_at: str
    media: dict[str, Any] | None = None
    """What was downloaded of the clip (``record_media``): ``sha256``, ``size`` (bytes), ``path``…"""
    options_json: str | None = None
    """How the caller asked for it (``store.intake.CallOptions``: route, budget scope); None before 0009."""
    image_sha256: str | None = None
    """The request image's content hash in the ``images`` table (None: a URL image, or none)."""


@dataclass(frozen=True)
class SubmitRecord:
    """One vendor attempt inside a clip. Money in USD as Decimal; ``request_json`` is the clip's."""

    submit_key: str
    clip_key: str
    provider: str
    state: str
    job_id: str | None
    handle: dict[str, Any] | None
    quote_usd: Decimal | None
    cost_usd: Decimal | None
    cost_source: str | None
    may_be_billed: bool
    error: str | None
    deadline: float | None
    steps: int | None
    dropped: tuple[str, ...]
    created_at: str
    updated_at: str
    request_json: str
    emulator_instance: str | None = None
    """The built-in emulator instance that wrote this submit; None for a real vendor."""


@dataclass(frozen=True)
class SpendRow:
    """Spend of one provider on one UTC day (by submit creation). ``clips``: succeeded submits;
    ``possibly_billed``: failed-maybe-billed, unknown, expired and abandoned submits."""

    provider: str
    day: str
    clips: int
    estimated_usd: Decimal
    reported_usd: Decimal
    possibly_billed: int


@dataclass(frozen=True)
class BreakerRecord:
    """A vendor breaker as stored: ``open_until`` and ``probe_until`` in wall-clock epoch seconds
    (``probe_until``: a half-open probe is out until then), ``opened``: times opened in a row."""

    provider: str
    failures: int
    opened: int
    open_until: float | None
    probe_until: float | None
    last_error: str | None


def request_hash(request_json: str) -> str:
    """SHA-256 hex of the canonical form of ``request_json`` (sorted keys, no spaces).

    A request is identified by its content: an image that carries a ``sha256`` (a local file, a data
    URI, base64) counts by its bytes alone — not its path or how it was encoded — so the same key with
    the same path and a changed file is a different request, and never returns the old clip.
    """
    try:
        value = json.loads(request_json)
    except ValueError as exc:
        raise InvalidRequest(f"request is not valid JSON: {exc}") from exc
    image = value.get("image") if isinstance(value, dict) else None
    if isinstance(image, dict) and image.get("sha256"):
        value["image"] = {"sha256": image["sha256"]}
    canonical = json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()
