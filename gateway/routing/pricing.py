"""Prices as data: the price book, its rules, and quotes.

Money is ``Decimal`` everywhere. An unknown price is ``None`` — never a made-up default — and keeps a
vendor out of cheapest routing (it can still be chosen by name).
"""

from __future__ import annotations

import hashlib
import os
import pkgutil
import tomllib
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, field_validator, model_validator

from gateway.errors import ConfigurationError, InvalidRequest
from gateway.request import Mode, OviRequest

__all__ = ["Budget", "Money", "PriceBook", "PriceRule", "Quote", "budget_holds", "scope_id", "to_money"]

_CENT_FRACTION = Decimal("0.0001")

Money = Decimal | str | int
"""What a USD amount may be given as: a ``Decimal``, its text (``"0.15"``) or a whole number — never a
``float``, which cannot hold cents exactly (0.1 + 0.2 != 0.3)."""


def to_money(value: object, field: str) -> object:
    """``value`` as a ``Decimal`` when it is a ``Money`` form; a ``float`` (or ``bool``) raises a
    ``ValueError`` naming ``field``. Anything else passes on for pydantic to refuse in its words."""
    if isinstance(value, (bool, float)):
        raise ValueError(f"{field} is USD as a Decimal, a string or an int (e.g. Decimal('0.15') or '0.15'), "
                         f"not {type(value).__name__} {value!r}: a float cannot hold cents exactly")
    if isinstance(value, (str, int)):
        try:
            return Decimal(str(value).strip())
        except ArithmeticError:
            raise ValueError(f"{field} {value!r} is not a USD amount (e.g. '0.15')") from None
    return value


class _Rule(BaseModel):
    # defer_build: the validator is built on first use, once, not at import (start-up, issue 14)
    model_config: ClassVar[ConfigDict] = ConfigDict(frozen=True, extra="forbid", defer_build=True)

    as_of: str
    source: str


class PerClip(_Rule):
    """A fixed price per clip (fal: $0.20)."""

    rule: Literal["per_clip"]
    usd: Decimal

    def price(self, request: OviRequest) -> tuple[Decimal, bool]:
        return self.usd, False


class PerSecond(_Rule):
    """Billed per second of video with a minimum (WaveSpeed: $0.15 per 5 s, minimum 5 s)."""

    rule: Literal["per_second"]
    usd_per_second: Decimal
    minimum_seconds: Decimal = Decimal(0)
    clip_seconds: Decimal = Decimal(5)

    def price(self, request: OviRequest) -> tuple[Decimal, bool]:
        return self.usd_per_second * max(self.clip_seconds, self.minimum_seconds), False


class Compute(_Rule):
    """Billed by compute time: estimated as ``(base + per_step × steps) × scale``.

    ``scale`` starts at 1 and is recalibrated from the costs the vendor reports.
    """

    rule: Literal["compute"]
    base_usd: Decimal
    per_step_usd: Decimal
    default_steps: int
    scale: Decimal = Decimal(1)

    def price(self, request: OviRequest) -> tuple[Decimal, bool]:
        steps = request.steps if request.steps is not None else self.default_steps
        raw = (self.base_usd + self.per_step_usd * steps) * self.scale
        return raw.quantize(_CENT_FRACTION), True

    def estimate_at(self, steps: int | None) -> Decimal:
        return self.base_usd + self.per_step_usd * (steps if steps is not None else self.default_steps)


PriceRule = Annotated[PerClip | PerSecond | Compute, Field(discriminator="rule")]
_RULES: TypeAdapter[dict[str, dict[str, PerClip | PerSecond | Compute]]] = TypeAdapter(
    dict[str, dict[str, PriceRule]], config=ConfigDict(defer_build=True))


class Quote(BaseModel):
    """What one vendor would charge for a request, and whether it can run it.

    ``price_usd`` is ``None`` when no price is known. ``estimated`` is true for compute-billed vendors.
    ``reasons`` says why the vendor is infeasible or excluded; ``dropped`` lists fields it would ignore
    if the route allows degrading.
    """

    model_config: ClassVar[ConfigDict] = ConfigDict(frozen=True, defer_build=True)

    provider: str
    price_usd: Decimal | None
    estimated: bool = False
    feasible: bool = True
    reasons: list[str] = Field(default_factory=list)
    dropped: list[str] = Field(default_factory=list)
    source: str | None = None

    def describe(self) -> str:
        price = "unknown" if self.price_usd is None else f"${self.price_usd}"
        kind = " (estimated)" if self.estimated else ""
        state = "ok" if self.feasible else "; ".join(self.reasons)
        return f"{self.provider}: {price}{kind} — {state}"


class PriceBook:
    """Price rules per vendor and mode, loaded from the packaged ``prices.toml`` and an optional override.

    Args:
        entries: ``{provider: {mode: rule}}`` as parsed from TOML.
    """

    def __init__(self, entries: Mapping[str, Mapping[str, Any]]) -> None:
        self._rules = _RULES.validate_python({name: dict(modes) for name, modes in entries.items()})
        self.quotes: dict[Any, Quote] = {}
        """Quotes made for the runner by request shape (``routing.quoting.quotes_for(cached=True)``);
        emptied whenever a rule changes (``calibrate``)."""

    @classmethod
    def load(cls, override: str | os.PathLike[str] | Mapping[str, Any] | None = None) -> PriceBook:
        """The packaged book, with ``override`` (a TOML path or a mapping) replacing whole entries.

        Without an override, ``$OVI_GATEWAY_PRICES`` is used when set.
        """
        # pkgutil reads through the package's loader (zip-safe, as importlib.resources) and imports in a fifth
        # of the time: every gateway and quote loads the book (start-up, issue 14)
        packaged = pkgutil.get_data("gateway.routing", "prices.toml")
        if packaged is None:
            raise ConfigurationError("the packaged price book (gateway/routing/prices.toml) cannot be read")
        entries: dict[str, dict[str, Any]] = tomllib.loads(packaged.decode("utf-8"))
        if override is None and os.environ.get("OVI_GATEWAY_PRICES"):
            override = os.environ["OVI_GATEWAY_PRICES"]
        if override is not None:
            extra = override if isinstance(override, Mapping) else tomllib.loads(Path(override).read_text("utf-8"))
            for name, modes in extra.items():
                entries.setdefault(name, {}).update(modes)
        return cls(entries)

    def rule(self, provider: str, mode: Mode) -> PerClip | PerSecond | Compute | None:
        return self._rules.get(provider, {}).get(str(mode))

    def price(self, provider: str, request: OviRequest) -> tuple[Decimal | None, bool, str | None]:
        """``(price_usd, estimated, source)`` for ``request`` on ``provider``; price ``None`` if unknown."""
        rule = self.rule(provider, request.mode)
        if rule is None:
            return None, False, None
        amount, estimated = rule.price(request)
        return amount, estimated, rule.source

    def calibrate(self, provider: str, mode: Mode,
                  observations: Iterable[tuple[Decimal, int | None]]) -> Decimal | None:
        """Move a compute rule's estimate toward what the vendor reported.

        ``observations`` are ``(reported_usd, steps)`` pairs, newest first. The new ``scale`` is the
        mean ratio of reported to estimated cost, clamped to 0.5–2 so one odd bill cannot run away.
        Returns the new scale, or ``None`` when there is nothing to calibrate.
        """
        rule = self.rule(provider, mode)
        pairs = [(cost, steps) for cost, steps in observations if cost is not None]
        if not isinstance(rule, Compute) or not pairs:
            return None
        ratios = [cost / rule.estimate_at(steps) for cost, steps in pairs]
        scale = min(Decimal(2), max(Decimal("0.5"), sum(ratios, Decimal(0)) / len(ratios)))
        self._rules[provider][str(mode)] = rule.model_copy(update={"scale": scale.quantize(Decimal("0.0001"))})
        self.quotes.clear()  # a cached quote of this rule's old price must not be used again
        return scale


class Budget(BaseModel):
    """A spend cap: no submit is sent whose quote would take spend in the period past ``limit_usd``.

    Spend comes from the journal's running totals: reported costs where known, else each submit's
    reserved quote. ``period`` is a UTC ``"day"``, a UTC ``"month"``, or ``"total"`` (all time).

    Scopes (what spend a cap counts), all through the store's one reservation path
    (``Queries.intent``: checked and reserved in the submit's own transaction, so racing processes
    never overspend any scope):

    * ``Budget(limit_usd="50", period="day")`` — all spend of the journal.
    * ``Budget(limit_usd="5", period="total", scope="batch-3f2a")`` — a named scope (a batch's own cap):
      counts only the submits made while this budget applied.
    * ``Budget(limit_usd="20", period="month", per_caller=True)`` — each caller its own cap: a call made
      with ``gw.agenerate(..., budget_scope=api_key)`` (or ``gw.submit``) counts against that caller's
      total only; calls without a ``budget_scope`` share one anonymous caller's cap. The scope text
      (often an API key) is stored only as a SHA-256 digest (``scope_id``).

    ``Gateway(budget=[...])`` takes several: a submit must fit every one. Read a scope's spend with
    ``journal.reserved_and_spent(since=b.since(), scope=b.scope_for(api_key))``.
    """

    model_config: ClassVar[ConfigDict] = ConfigDict(frozen=True, extra="forbid", defer_build=True)

    limit_usd: Decimal = Field(ge=0, description="The cap in USD for one period (a Decimal, str or int).")
    period: Literal["day", "month", "total"] = Field(
        default="day", description='The window spend is summed over: UTC "day", UTC "month" or "total".')
    scope: str | None = Field(default=None, min_length=1, description=(
        "A named scope (e.g. a batch id): the cap counts only submits made under this budget; None: all spend."))
    per_caller: bool = Field(default=False, description=(
        "Each call's budget_scope (e.g. the caller's API key) has its own cap of limit_usd."))
    clip_prefix: str | None = Field(default=None, min_length=1, description=(
        "Deprecated: the same as scope (a batch's own cap)."))

    if TYPE_CHECKING:
        def __init__(self, *, limit_usd: Money, period: Literal["day", "month", "total"] = "day",
                     scope: str | None = None, per_caller: bool = False, clip_prefix: str | None = None) -> None: ...

    @field_validator("limit_usd", mode="before")
    @classmethod
    def _money(cls, value: object) -> object:
        return to_money(value, "limit_usd")

    @model_validator(mode="after")
    def _one_scope(self) -> Budget:
        if sum((self.scope is not None, self.per_caller, self.clip_prefix is not None)) > 1:
            raise ValueError("a budget has one scope: pass scope=, per_caller=True or clip_prefix=, not several")
        return self

    def since(self, now: datetime | None = None) -> datetime | None:
        """Start of the current period (UTC), or ``None`` for all time."""
        now = now or datetime.now(UTC)
        if self.period == "day":
            return now.replace(hour=0, minute=0, second=0, microsecond=0)
        if self.period == "month":
            return now.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
        return None

    def scope_for(self, caller: str | None = None) -> str:
        """The stored scope this budget counts for a call made with ``budget_scope=caller`` ("": all spend)."""
        return self.stored_scope(None if caller is None else scope_id(caller))

    def stored_scope(self, caller_id: str | None) -> str:
        """Like ``scope_for``, from the caller's digest (``scope_id``) as the runner carries it."""
        if self.per_caller:
            return "caller:" + (caller_id or scope_id(""))
        named = self.scope if self.scope is not None else self.clip_prefix
        return "" if named is None else "named:" + scope_id(named)


def scope_id(text: str) -> str:
    """The digest a budget scope text is stored as (SHA-256, 32 hex digits): the journal never holds
    the text itself, which may be an API key."""
    if not isinstance(text, str):
        raise InvalidRequest(f"budget_scope must be a string (e.g. an API key), not {type(text).__name__}")
    return hashlib.sha256(b"ovi-gateway/budget-scope\0" + text.encode("utf-8")).hexdigest()[:32]


def budget_holds(budgets: Budget | Sequence[Budget] | None, caller_id: str | None
                 ) -> tuple[list[tuple[Decimal, str, str]], list[str]]:
    """What the store's reservation path takes for one submit: the (limit USD, period, scope) checks of
    every budget, and the scopes the submit is counted under (each budget's, and the caller's own)."""
    listed = [] if budgets is None else [budgets] if isinstance(budgets, Budget) else list(budgets)
    checks: list[tuple[Decimal, str, str]] = [(b.limit_usd, b.period, b.stored_scope(caller_id)) for b in listed]
    tags = {scope for _, _, scope in checks if scope}
    if caller_id is not None:
        tags.add("caller:" + caller_id)
    return checks, sorted(tags)
