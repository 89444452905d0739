"""Pure route planning with hand-built quotes (gateway/routing.py)."""

from __future__ import annotations

from decimal import Decimal

import pydantic
import pytest

from gateway.routing.planner import Candidate, Route, plan
from gateway.routing.pricing import Budget, Quote

MODE_REASON = "image='omitted' not honored (text-to-video not offered; offers image-to-video)"
STEPS_REASON = "steps=80 not honored (1–50)"


def q(name: str, price: str | None, *, feasible: bool = True, reasons: list[str] | None = None,
      dropped: list[str] | None = None) -> Quote:
    return Quote(provider=name, price_usd=None if price is None else Decimal(price), feasible=feasible,
                 reasons=reasons or [], dropped=dropped or [])


def book(*quotes: Quote) -> dict[str, Quote]:
    return {quote.provider: quote for quote in quotes}


STANDARD = book(q("fal", "0.20"), q("runware", "0.1171"), q("wavespeed", "0.15"))


def test_cheapest_first() -> None:
    p = plan(Route(), STANDARD)
    assert p.names == ["runware", "wavespeed", "fal"]
    assert p.excluded == {}
    assert p.candidates[0] == Candidate("runware", STANDARD["runware"], ())


def test_unknown_price_excluded_from_cheapest() -> None:
    quotes = book(q("fal", "0.20"), q("mystery", None))
    p = plan(Route(), quotes)
    assert p.names == ["fal"]
    assert p.excluded["mystery"] == ["price unknown (excluded from cheapest routing; choose it by name)"]


@pytest.mark.parametrize("route", [
    Route(provider="mystery"),
    Route(order=["mystery"]),
    Route(only=["mystery", "fal"]),
])
def test_unknown_price_allowed_when_named(route: Route) -> None:
    p = plan(route, book(q("fal", "0.20"), q("mystery", None)))
    assert "mystery" in p.names
    assert "mystery" not in p.excluded


def test_unknown_price_sorts_last_when_named() -> None:
    p = plan(Route(only=["mystery", "fal"]), book(q("fal", "0.20"), q("mystery", None)))
    assert p.names == ["fal", "mystery"]


def test_max_price_excludes_with_reason() -> None:
    p = plan(Route(max_price="0.16"), STANDARD)
    assert p.names == ["runware", "wavespeed"]
    assert p.excluded == {"fal": ["$0.20 is over max_price $0.16"]}


def test_max_price_equal_is_kept() -> None:
    assert plan(Route(max_price="0.15"), STANDARD).names == ["runware", "wavespeed"]


def test_max_price_with_unknown_price_named() -> None:
    p = plan(Route(provider="mystery", max_price="1"), book(q("mystery", None)))
    assert p.names == []
    assert p.excluded["mystery"] == ["price unknown, cannot honor max_price $1"]


def test_order_then_fallbacks_by_price() -> None:
    p = plan(Route(order=["fal", "wavespeed"]), STANDARD)
    assert p.names == ["fal", "wavespeed", "runware"]
    extra = book(q("a", "0.30"), q("b", "0.05"), q("c", "0.10"), q("d", "0.50"))
    assert plan(Route(order=["d", "a"]), extra).names == ["d", "a", "b", "c"]


def test_order_without_fallbacks_keeps_first_only() -> None:
    p = plan(Route(order=["fal", "wavespeed"], allow_fallbacks=False), STANDARD)
    assert p.names == ["fal"]
    assert p.excluded == {"wavespeed": ["fallbacks are off"],
                          "runware": ["not in order and fallbacks are off"]}


def test_no_fallbacks_keeps_cheapest_only() -> None:
    p = plan(Route(allow_fallbacks=False), STANDARD)
    assert p.names == ["runware"]
    assert p.excluded == {"wavespeed": ["fallbacks are off"], "fal": ["fallbacks are off"]}


def test_only() -> None:
    p = plan(Route(only=["fal", "wavespeed"]), STANDARD)
    assert p.names == ["wavespeed", "fal"]
    assert p.excluded == {"runware": ["not in only"]}


def test_ignore() -> None:
    p = plan(Route(ignore=["runware"]), STANDARD)
    assert p.names == ["wavespeed", "fal"]
    assert p.excluded == {"runware": ["ignored by the caller"]}


def test_explicit_provider() -> None:
    p = plan(Route(provider="fal"), STANDARD)
    assert p.names == ["fal"]
    assert p.excluded == {"runware": ["the caller chose fal"], "wavespeed": ["the caller chose fal"]}


def test_explicit_provider_ignores_unhealthy() -> None:
    p = plan(Route(provider="fal"), STANDARD, unhealthy={"fal": "cooling down"})
    assert p.names == ["fal"]


def test_unhealthy_excluded_with_reason() -> None:
    p = plan(Route(), STANDARD, unhealthy={"runware": "cooling down for 30 s more"})
    assert p.names == ["wavespeed", "fal"]
    assert p.excluded == {"runware": ["cooling down for 30 s more"]}


def test_unconfigured_excluded_even_when_named() -> None:
    p = plan(Route(provider="fal"), STANDARD, unconfigured={"fal": "no API key (set FAL_KEY)"})
    assert p.names == []
    assert p.excluded["fal"] == ["no API key (set FAL_KEY)"]
    p = plan(Route(), STANDARD, unconfigured={"wavespeed": "failed to load"})
    assert p.names == ["runware", "fal"]
    assert p.excluded == {"wavespeed": ["failed to load"]}


def test_infeasible_excluded_with_reasons() -> None:
    quotes = book(q("fal", "0.20", feasible=False, reasons=[STEPS_REASON], dropped=["steps"]),
                  q("runware", "0.2"))
    p = plan(Route(), quotes)
    assert p.names == ["runware"]
    assert p.excluded == {"fal": [STEPS_REASON]}


def test_degrade_keeps_droppable_and_records_dropped() -> None:
    quotes = book(q("fal", "0.20", feasible=False, reasons=[STEPS_REASON], dropped=["steps"]),
                  q("wavespeed", "0.15", feasible=False, reasons=["steps=80 not honored (not supported)",
                                                                  "slg_layer=9 not honored (not supported)"],
                    dropped=["steps", "slg_layer"]),
                  q("runware", "0.30"))
    p = plan(Route(allow_degrade=True), quotes)
    assert p.names == ["wavespeed", "fal", "runware"]
    assert [c.dropped for c in p.candidates] == [("steps", "slg_layer"), ("steps",), ()]
    assert p.excluded == {}


def test_degrade_tie_prefers_fewer_dropped() -> None:
    quotes = book(q("a", "0.10", feasible=False, reasons=["r1", "r2"], dropped=["steps", "fps"]),
                  q("b", "0.10", feasible=False, reasons=["r1"], dropped=["steps"]))
    assert plan(Route(allow_degrade=True), quotes).names == ["b", "a"]


def test_dropped_empty_without_degrade() -> None:
    quotes = book(q("fal", "0.20", dropped=["steps"]))  # feasible, but lists a field anyway
    p = plan(Route(), quotes)
    assert p.candidates == [Candidate("fal", quotes["fal"], ())]
    assert plan(Route(allow_degrade=True), quotes).candidates[0].dropped == ("steps",)


def test_missing_mode_never_droppable() -> None:
    # what the client builds: the "image" (mode) violation is never listed as droppable
    quotes = book(q("runware", "0.1", feasible=False, reasons=[MODE_REASON], dropped=[]),
                  q("fal", "0.20"))
    p = plan(Route(allow_degrade=True), quotes)
    assert p.names == ["fal"]
    assert p.excluded == {"runware": [MODE_REASON]}


def test_mixed_droppable_and_mode_violation_excluded() -> None:
    quotes = book(q("runware", "0.1", feasible=False, reasons=[MODE_REASON, STEPS_REASON], dropped=["steps"]))
    p = plan(Route(allow_degrade=True), quotes)
    assert p.names == []
    assert p.excluded == {"runware": [MODE_REASON, STEPS_REASON]}


def test_named_not_installed() -> None:
    p = plan(Route(order=["fal", "ghost"], only=["fal", "ghost", "phantom"]), STANDARD)
    assert p.names == ["fal"]
    assert p.excluded["ghost"] == ["not installed"]
    assert p.excluded["phantom"] == ["not installed"]
    p = plan(Route(provider="ghost"), STANDARD)
    assert p.names == []
    assert p.excluded["ghost"] == ["not installed"]


def test_reasons_accumulate() -> None:
    quotes = book(q("fal", "0.50", feasible=False, reasons=[STEPS_REASON]))
    p = plan(Route(max_price="0.2"), quotes, unhealthy={"fal": "down"})
    assert p.excluded == {"fal": [STEPS_REASON, "$0.50 is over max_price $0.2", "down"]}


# ---------------------------------------------------------------- Route validation

def test_route_defaults() -> None:
    r = Route()
    assert (r.provider, r.order, r.only, r.ignore, r.sort, r.max_price) == (None, None, None, [], "price", None)
    assert r.allow_fallbacks is True and r.allow_degrade is False and r.max_tries == 3


@pytest.mark.parametrize(("raw", "expected"), [(Decimal("0.16"), Decimal("0.16")), ("0.16", Decimal("0.16")),
                                               (" 0.16 ", Decimal("0.16")), (1, Decimal(1))])
def test_max_price_to_decimal(raw: object, expected: Decimal) -> None:
    r = Route(max_price=raw)
    assert isinstance(r.max_price, Decimal)
    assert r.max_price == expected


@pytest.mark.parametrize(("model", "field"), [(Route, "max_price"), (Budget, "limit_usd")])
@pytest.mark.parametrize("raw", [0.16, 0.1 + 0.2, True])
def test_money_refuses_float_naming_the_field(model: type, field: str, raw: object) -> None:
    """STYLE: money is Decimal. A float is refused (not silently rounded), with what to pass instead."""
    with pytest.raises(pydantic.ValidationError) as info:
        model(**{field: raw})
    message = str(info.value)
    assert field in message and "not " + type(raw).__name__ in message and "Decimal('0.15')" in message


@pytest.mark.parametrize("bad", [{"max_price": "-0.01"}, {"max_price": "-1"}, {"max_price": "abc"},
                                 {"deadline": 0}, {"max_tries": 0}, {"max_tries": 11}, {"sort": "latency"}])
def test_route_invalid_values(bad: dict[str, object]) -> None:
    with pytest.raises(pydantic.ValidationError) as info:
        Route(**bad)
    assert next(iter(bad)) in str(info.value)


def test_route_extra_field_refused() -> None:
    with pytest.raises(pydantic.ValidationError) as info:
        Route(providers=["fal"])
    assert "providers" in str(info.value)


def test_route_frozen() -> None:
    r = Route()
    with pytest.raises(pydantic.ValidationError):
        r.allow_degrade = True  # type: ignore[misc]
