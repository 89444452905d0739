"""The price book, its rules and calibration (gateway/pricing.py, gateway/prices.toml)."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pydantic
import pytest

from gateway.request import Mode, OviRequest
from gateway.routing.pricing import Compute, PerClip, PerSecond, PriceBook, Quote
from tests.conftest import PNG_BYTES

I2V, T2V = Mode.IMAGE_TO_VIDEO, Mode.TEXT_TO_VIDEO
PROMPT = "A knight. <S>Hi.<E>"


def i2v(**fields: object) -> OviRequest:
    return OviRequest(prompt=PROMPT, image=PNG_BYTES, **fields)


def t2v(**fields: object) -> OviRequest:
    return OviRequest(prompt=PROMPT, **fields)


@pytest.fixture
def book(monkeypatch: pytest.MonkeyPatch) -> PriceBook:
    monkeypatch.delenv("OVI_GATEWAY_PRICES", raising=False)
    return PriceBook.load()


# ---------------------------------------------------------------- packaged book

def test_runware_compute_default_steps(book: PriceBook) -> None:
    price, estimated, source = book.price("runware", i2v())
    assert price == Decimal("0.1171")
    assert isinstance(price, Decimal)
    assert estimated is True
    assert abs(price - Decimal("0.1171")) <= Decimal("0.001")
    assert "Runware" in source
    assert book.price("runware", i2v(steps=30))[0] == Decimal("0.1171")


def test_runware_compute_40_steps(book: PriceBook) -> None:
    price, estimated, _ = book.price("runware", i2v(steps=40))
    assert price == Decimal("0.1466")  # 0.02869 + 0.002947 * 40 = 0.14657 -> 0.1466
    assert price.as_tuple().exponent == -4
    assert abs(price - Decimal("0.1466")) <= Decimal("0.001")
    assert estimated is True


def test_runware_rule_shape(book: PriceBook) -> None:
    rule = book.rule("runware", I2V)
    assert isinstance(rule, Compute)
    assert rule.default_steps == 30 and rule.scale == Decimal(1)
    assert rule.estimate_at(None) == Decimal("0.11710")
    assert rule.estimate_at(100) == Decimal("0.32339")


@pytest.mark.parametrize("mode", [I2V, T2V])
def test_fal_per_clip(book: PriceBook, mode: Mode) -> None:
    req = i2v(steps=50) if mode is I2V else t2v()
    price, estimated, source = book.price("fal", req)
    assert price == Decimal("0.20") and isinstance(price, Decimal)
    assert estimated is False
    assert "fal" in source
    assert isinstance(book.rule("fal", mode), PerClip)


@pytest.mark.parametrize("mode", [I2V, T2V])
def test_wavespeed_per_second(book: PriceBook, mode: Mode) -> None:
    req = i2v() if mode is I2V else t2v()
    price, estimated, _ = book.price("wavespeed", req)
    assert price == Decimal("0.15") and isinstance(price, Decimal)
    assert estimated is False
    assert isinstance(book.rule("wavespeed", mode), PerSecond)


def test_runware_text_to_video_unknown(book: PriceBook) -> None:
    assert book.rule("runware", T2V) is None
    assert book.price("runware", t2v()) == (None, False, None)


def test_unknown_vendor(book: PriceBook) -> None:
    assert book.price("nobody", i2v()) == (None, False, None)


def test_per_second_minimum() -> None:
    rule = PerSecond(rule="per_second", usd_per_second=Decimal("0.02"), minimum_seconds=Decimal(8),
                     clip_seconds=Decimal(5), as_of="x", source="y")
    assert rule.price(i2v()) == (Decimal("0.16"), False)


# ---------------------------------------------------------------- overrides

def test_override_with_toml_file(tmp_path: Path, book: PriceBook) -> None:
    f = tmp_path / "prices.toml"
    f.write_text('[fal."image-to-video"]\nrule = "per_clip"\nusd = "0.25"\nas_of = "2026-01-01"\nsource = "mine"\n')
    over = PriceBook.load(f)
    assert over.price("fal", i2v()) == (Decimal("0.25"), False, "mine")
    assert over.price("fal", t2v())[0] == Decimal("0.20")  # other mode untouched
    assert over.price("wavespeed", i2v())[0] == Decimal("0.15")
    assert PriceBook.load(str(f)).price("fal", i2v())[0] == Decimal("0.25")


def test_override_with_mapping_adds_and_replaces(book: PriceBook) -> None:
    over = PriceBook.load({
        "runware": {"text-to-video": {"rule": "per_clip", "usd": "0.09", "as_of": "a", "source": "b"}},
        "acme": {"image-to-video": {"rule": "compute", "base_usd": "0.01", "per_step_usd": "0.001",
                                    "default_steps": 10, "as_of": "a", "source": "b"}},
    })
    assert over.price("runware", t2v())[0] == Decimal("0.09")
    assert over.price("runware", i2v())[0] == Decimal("0.1171")
    assert over.price("acme", i2v(steps=20)) == (Decimal("0.0300"), True, "b")


def test_float_in_mapping_becomes_exact_decimal() -> None:
    over = PriceBook.load({"x": {"image-to-video": {"rule": "per_clip", "usd": 0.1, "as_of": "a", "source": "b"}}})
    assert over.price("x", i2v())[0] == Decimal("0.1")


def test_env_var_override(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    f = tmp_path / "env.toml"
    f.write_text('[wavespeed."image-to-video"]\nrule = "per_clip"\nusd = "0.11"\nas_of = "a"\nsource = "env"\n')
    monkeypatch.setenv("OVI_GATEWAY_PRICES", str(f))
    assert PriceBook.load().price("wavespeed", i2v()) == (Decimal("0.11"), False, "env")
    # an explicit override wins over the environment
    explicit = PriceBook.load({"fal": {}})
    assert explicit.price("wavespeed", i2v())[0] == Decimal("0.15")


@pytest.mark.parametrize("rule", [
    {"rule": "per_clip", "usd": "abc", "as_of": "a", "source": "b"},
    {"rule": "per_clip", "as_of": "a", "source": "b"},
    {"rule": "per_clip", "usd": "0.1", "as_of": "a", "source": "b", "extra": 1},
    {"rule": "per_minute", "usd": "0.1", "as_of": "a", "source": "b"},
    {"rule": "compute", "base_usd": "0.1", "per_step_usd": "0.1", "as_of": "a", "source": "b"},
])
def test_invalid_override_rule(rule: dict[str, object]) -> None:
    with pytest.raises(pydantic.ValidationError):
        PriceBook.load({"fal": {"image-to-video": rule}})


# ---------------------------------------------------------------- calibration

def test_calibrate_moves_toward_reported(book: PriceBook) -> None:
    # estimates at 30 steps: 0.1171; reported 10 % more on average
    scale = book.calibrate("runware", I2V, [(Decimal("0.12881"), 30), (Decimal("0.12881"), None)])
    assert scale == Decimal("1.1")
    assert isinstance(scale, Decimal)
    rule = book.rule("runware", I2V)
    assert rule.scale == Decimal("1.1000")
    assert book.price("runware", i2v())[0] == Decimal("0.1288")  # 0.11710 * 1.1 = 0.128810


def test_calibrate_mean_of_ratios(book: PriceBook) -> None:
    est40 = book.rule("runware", I2V).estimate_at(40)
    scale = book.calibrate("runware", I2V, [(est40 * Decimal("0.8"), 40), (Decimal("0.1171") * Decimal("1.0"), 30)])
    assert scale == Decimal("0.9")


@pytest.mark.parametrize(("reported", "expected"), [("10", Decimal(2)), ("0.001", Decimal("0.5"))])
def test_calibrate_clamped(book: PriceBook, reported: str, expected: Decimal) -> None:
    assert book.calibrate("runware", I2V, [(Decimal(reported), 30)]) == expected
    assert book.rule("runware", I2V).scale == expected


def test_calibrate_ignores_missing_costs(book: PriceBook) -> None:
    assert book.calibrate("runware", I2V, [(None, 30)]) is None  # type: ignore[list-item]
    assert book.calibrate("runware", I2V, []) is None
    assert book.rule("runware", I2V).scale == Decimal(1)


@pytest.mark.parametrize(("provider", "mode"), [("fal", I2V), ("wavespeed", T2V), ("runware", T2V), ("none", I2V)])
def test_calibrate_noop_for_non_compute(book: PriceBook, provider: str, mode: Mode) -> None:
    before = book.rule(provider, mode)
    assert book.calibrate(provider, mode, [(Decimal("9"), 30)]) is None
    assert book.rule(provider, mode) is before


# ---------------------------------------------------------------- quote

def test_quote_describe() -> None:
    q = Quote(provider="runware", price_usd=Decimal("0.1171"), estimated=True)
    assert q.describe() == "runware: $0.1171 (estimated) — ok"
    bad = Quote(provider="fal", price_usd=None, feasible=False, reasons=["steps=80 not honored (1–50)", "x"])
    assert bad.describe() == "fal: unknown — steps=80 not honored (1–50); x"


def test_quote_float_price_is_decimal() -> None:
    q = Quote(provider="p", price_usd=0.2)  # type: ignore[arg-type]
    assert isinstance(q.price_usd, Decimal)
    assert q.price_usd == Decimal("0.2")
