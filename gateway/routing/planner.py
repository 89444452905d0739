"""Pure route planning: request + ``Route`` + quotes + health → ordered candidates, and why the rest are out.

The vocabulary follows OpenRouter's provider routing: ``provider``, ``order``, ``only``, ``ignore``,
``sort``, ``max_price``, ``allow_fallbacks``; plus ``allow_degrade`` (may a vendor ignore fields the
caller set?) and ``deadline`` (seconds for the whole generation, backoff included).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from types import MappingProxyType
from typing import TYPE_CHECKING, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from gateway.routing.pricing import Money, Quote, to_money

__all__ = ["Candidate", "Plan", "Route", "pinned", "plan"]


class Route(BaseModel):
    """How to choose and fail over between vendors.

    Args:
        provider: run on this vendor only (no failover).
        order: try these vendors first, in this order; then, if ``allow_fallbacks``, the rest by price.
        only: consider these vendors only.
        ignore: never use these vendors.
        sort: ``"price"`` (cheapest first).
        max_price: USD per clip; vendors quoting more, or with no known price, are left out.
        allow_fallbacks: move to the next vendor when one fails (default True).
        allow_degrade: let a vendor ignore fields it cannot honor; the result lists them (default False).
        deadline: seconds for the whole generation, polling and backoff included.
        failover_on_unknown: after a submit whose outcome cannot be settled, or a job stuck past
            ``PollPolicy.max_wait`` (cancelled first), fail over anyway and record the possible extra
            charge (default False: raise ``SubmitOutcomeUnknown`` / ``JobUnresolved``).
        max_tries: submits per vendor for retryable errors (429, 5xx before acceptance).
        failover_on_content_rejection: when a vendor's safety check refuses the clip, try the next
            vendor (default False: stop, since another vendor will usually refuse it too).
        job_retries: new jobs per vendor after a job failed there (default 1), tried once every
            other candidate has had its turn. A failed job is usually not billed.
        failover_on_defective: download and verify each finished clip before returning it, and when
            it is defective (``DefectiveClip``: does not parse, no audio, wrong length or frame rate)
            try the next vendor. The defective clip was paid: a deliberate pay-twice path, reported
            in ``result.possible_extra_charges`` (default False: raise ``DefectiveClip``, when the
            clip is downloaded).
    """

    # defer_build: the validator is built on first use, once, not at import (start-up, issue 14)
    model_config: ClassVar[ConfigDict] = ConfigDict(frozen=True, extra="forbid", defer_build=True)

    provider: str | None = Field(default=None, description="Run on this vendor only (no failover).")
    order: list[str] | None = Field(default=None, description=(
        "Vendor names to try first, in this order; then, if allow_fallbacks, the rest by price."))
    only: list[str] | None = Field(default=None, description="Consider these vendors only (names).")
    ignore: list[str] = Field(default_factory=list, description="Never use these vendors (names).")
    sort: Literal["price"] = Field(default="price", description='"price": cheapest quote (USD per clip) first.')
    max_price: Decimal | None = Field(default=None, ge=0, description=(
        "USD per clip (a Decimal, str or int; never float); vendors quoting more, or with no known price, "
        "are left out."))
    allow_fallbacks: bool = Field(default=True, description="Move to the next vendor when one fails.")
    allow_degrade: bool = Field(default=False, description=(
        "Let a vendor ignore fields it cannot honor; the result lists them in dropped_fields."))
    deadline: float | None = Field(default=None, gt=0, description=(
        "Seconds for the whole generation, polling and backoff included (None: no deadline)."))
    failover_on_unknown: bool = Field(default=False, description=(
        "After a submit whose outcome cannot be settled, or a job stuck past PollPolicy.max_wait seconds, "
        "fail over anyway and record the possible extra charge (USD) instead of raising."))
    max_tries: int = Field(default=3, ge=1, le=10, description="Submits per vendor for retryable errors (1–10).")
    failover_on_content_rejection: bool = Field(default=False, description=(
        "Try the next vendor when one's safety check refuses the clip."))
    job_retries: int = Field(default=1, ge=0, le=5, description=(
        "New jobs per vendor after a job failed there (0–5), tried once the other candidates had their turn."))
    failover_on_defective: bool = Field(default=False, description=(
        "Download and verify each finished clip before returning it, and try the next vendor when it is "
        "defective (DefectiveClip); the defective clip was paid: counted in possible_extra_charges."))

    if TYPE_CHECKING:
        # What type checkers see: money as Money (Decimal | str | int, never float); attributes stay precise.
        def __init__(self, *, provider: str | None = None, order: list[str] | None = None,
                     only: list[str] | None = None, ignore: list[str] = ..., sort: Literal["price"] = "price",
                     max_price: Money | None = None, allow_fallbacks: bool = True, allow_degrade: bool = False,
                     deadline: float | None = None, failover_on_unknown: bool = False, max_tries: int = 3,
                     failover_on_content_rejection: bool = False, job_retries: int = 1,
                     failover_on_defective: bool = False) -> None: ...

    @field_validator("max_price", mode="before")
    @classmethod
    def _money(cls, value: object) -> object:
        return to_money(value, "max_price")


_PINNED: dict[tuple[int, str], tuple[Route, Route]] = {}


def pinned(route: Route, provider: str) -> Route:
    """``route`` with ``provider`` set, made once per route object and vendor: ``Route`` is frozen (and
    ``model_copy`` shallow either way), so every ``generate(..., provider=V)`` call shares one copy instead
    of each in-flight job keeping its own."""
    found = _PINNED.get((id(route), provider))
    if found is None or found[0] is not route:  # the route itself is held, so its id cannot be reused
        if len(_PINNED) >= 64:
            _PINNED.clear()
        found = _PINNED[(id(route), provider)] = (route, route.model_copy(update={"provider": provider}))
    return found[1]


@dataclass(frozen=True, slots=True)
class Candidate:
    """A vendor to try, with its quote and the fields it would drop."""

    provider: str
    quote: Quote
    dropped: tuple[str, ...] = ()


@dataclass
class Plan:
    """Vendors to try in order, and for every other vendor the reasons it is out."""

    candidates: list[Candidate]
    excluded: dict[str, list[str]] = field(default_factory=dict)

    @property
    def names(self) -> list[str]:
        return [c.provider for c in self.candidates]


def plan(route: Route, quotes: Mapping[str, Quote], *, unhealthy: Mapping[str, str] | None = None,
         unconfigured: Mapping[str, str] | None = None) -> Plan:
    """Order the vendors for one request.

    Args:
        route: the caller's routing choices.
        quotes: one ``Quote`` per installed vendor (feasibility and price for this request).
        unhealthy: vendor → why it is skipped now (an open breaker), from ``health``.
        unconfigured: vendor → why it cannot be used at all (no API key, failed to load).
    """
    unhealthy, unconfigured = unhealthy or _NONE, unconfigured or _NONE  # read only: no copies per call
    excluded: dict[str, list[str]] = {}
    named = _named(route)
    kept: list[Candidate] = []
    for name, quote in quotes.items():
        why = _exclusion(name, quote, route, named, unhealthy, unconfigured)
        if why:
            excluded[name] = why
        else:
            kept.append(Candidate(name, quote, tuple(quote.dropped) if route.allow_degrade else ()))
    for name in named - set(quotes):
        excluded[name] = ["not installed"]

    if len(kept) > 1:
        kept.sort(key=_price_key)
    if route.provider is not None:
        ordered = kept
    elif route.order:
        rank = {name: i for i, name in enumerate(route.order)}
        first = sorted((c for c in kept if c.provider in rank), key=lambda c: rank[c.provider])
        rest = [c for c in kept if c.provider not in rank]
        ordered = first + (rest if route.allow_fallbacks else [])
        for c in ([] if route.allow_fallbacks else [c for c in kept if c.provider not in rank]):
            excluded[c.provider] = ["not in order and fallbacks are off"]
    else:
        ordered = kept
    if not route.allow_fallbacks and len(ordered) > 1:
        for c in ordered[1:]:
            excluded[c.provider] = ["fallbacks are off"]
        ordered = ordered[:1]
    return Plan(ordered, excluded)


_NONE: Mapping[str, str] = MappingProxyType({})
_INFINITY = Decimal("Infinity")


def _price_key(c: Candidate) -> tuple[Decimal, int]:
    return (c.quote.price_usd if c.quote.price_usd is not None else _INFINITY, len(c.dropped))


def _named(route: Route) -> set[str]:
    if route.provider is not None:
        return {route.provider}
    return set(route.order or ()) | set(route.only or ())


def _exclusion(name: str, quote: Quote, route: Route, named: set[str],
               unhealthy: Mapping[str, str], unconfigured: Mapping[str, str]) -> list[str]:
    if route.provider is not None and name != route.provider:
        return [f"the caller chose {route.provider}"]
    if route.only is not None and name not in route.only:
        return ["not in only"]
    if name in route.ignore:
        return ["ignored by the caller"]
    if name in unconfigured:
        return [unconfigured[name]]
    reasons = []
    if not quote.feasible and not (route.allow_degrade and quote.dropped and _only_droppable(quote)):
        reasons += quote.reasons
    if quote.price_usd is None and name not in named:
        reasons.append("price unknown (excluded from cheapest routing; choose it by name)")
    if route.max_price is not None:
        if quote.price_usd is None:
            reasons.append(f"price unknown, cannot honor max_price ${route.max_price}")
        elif quote.price_usd > route.max_price:
            reasons.append(f"${quote.price_usd} is over max_price ${route.max_price}")
    if name in unhealthy and route.provider is None:
        reasons.append(unhealthy[name])
    return reasons


def _only_droppable(quote: Quote) -> bool:
    """Infeasible only because of fields that degrading may drop (not, e.g., a missing mode)."""
    return len(quote.reasons) == len(quote.dropped)
