"""Budgets, spend, price recalibration, and a canary API key that must show up nowhere."""

from __future__ import annotations

import logging
import sqlite3
from decimal import Decimal

import pytest

from gateway import AuthError, Budget, BudgetExceeded, Gateway, OviRequest
from gateway.clock import VirtualClock
from gateway.emulator import Emulator

pytestmark = pytest.mark.anyio
CANARY = "sk-canary-7f3a9c1e5b2d4680"


def _request(text: str = "A knight. <S>Hold the line.<E>", **fields) -> OviRequest:
    return OviRequest(prompt=text, image="https://example.com/k.png", **fields)


async def test_budget_refuses_the_submit_that_would_pass_it() -> None:
    clock = VirtualClock()
    emulator = Emulator(clock=clock, seed=1)
    gateway = Gateway(emulator=emulator, clock=clock, journal=":memory:", jitter_seed=1,
                      budget=Budget(limit_usd=Decimal("0.25")))
    first = await gateway.agenerate(_request(), provider="runware")
    assert first.cost_usd == Decimal("0.1171")
    with pytest.raises(BudgetExceeded, match=r"over the \$0\.25 budget"):
        await gateway.agenerate(_request("Two. <S>More.<E>"), provider="fal")
    assert emulator.ledger.calls("fal") == 0
    await gateway.aclose()


async def test_spend_rows_and_runware_recalibration_from_reported_costs() -> None:
    clock = VirtualClock()
    gateway = Gateway(emulator=Emulator(clock=clock, seed=2), clock=clock, journal=":memory:", jitter_seed=2,
                      prices={"runware": {"image-to-video": {
                          "rule": "compute", "base_usd": "0.05", "per_step_usd": "0.004", "default_steps": 30,
                          "as_of": "test", "source": "a deliberately high estimate"}}})
    before = {q.provider: q for q in gateway.quote(_request())}["runware"]
    assert before.price_usd == Decimal("0.1700")
    await gateway.agenerate(_request(), provider="runware")
    after = {q.provider: q for q in gateway.quote(_request())}["runware"]
    assert after.price_usd == Decimal("0.1171")  # moved to what the emulated Runware billed
    rows = gateway.journal.spend()
    assert [(r.provider, r.clips, r.reported_usd) for r in rows] == [("runware", 1, Decimal("0.1171"))]
    await gateway.aclose()


async def test_a_reported_cost_that_changes_no_observation_costs_no_recalibration() -> None:
    """Once the window of reported costs is full, a job that reports the cost the window drops leaves
    the mean (the scale) as it was: the rule is not rebuilt and cached quotes stay. A rule changed by
    anyone else since is calibrated again from the window."""
    from gateway.request import Mode
    from gateway.routing.quoting import CALIBRATION_WINDOW

    clock = VirtualClock()
    gateway = Gateway(emulator=Emulator(clock=clock, seed=2), clock=clock, journal=":memory:", jitter_seed=2)
    for i in range(CALIBRATION_WINDOW):
        await gateway.agenerate(_request(f"Shot {i}. <S>Go.<E>"), provider="runware")
    rule = gateway.book.rule("runware", Mode.IMAGE_TO_VIDEO)
    await gateway.agenerate(_request("One more. <S>Go.<E>"), provider="runware")
    assert gateway.book.rule("runware", Mode.IMAGE_TO_VIDEO) is rule
    assert gateway.book.quotes  # the quote this job was routed by is still cached
    gateway.book.calibrate("runware", Mode.IMAGE_TO_VIDEO, [(Decimal("0.5"), 30)])  # someone else moved it
    moved = gateway.book.rule("runware", Mode.IMAGE_TO_VIDEO)
    assert moved is not rule and moved.scale != rule.scale
    await gateway.agenerate(_request("And one. <S>Go.<E>"), provider="runware")
    assert gateway.book.rule("runware", Mode.IMAGE_TO_VIDEO).scale == rule.scale  # the window's mean again
    await gateway.aclose()


async def test_canary_key_appears_in_no_log_repr_error_or_journal_row(caplog, tmp_path) -> None:
    caplog.set_level(logging.DEBUG)
    clock = VirtualClock()
    emulator = Emulator(clock=clock, seed=3, api_keys={"runware": "the-right-key"})
    journal = tmp_path / "journal.sqlite3"
    gateway = Gateway(emulator=emulator, clock=clock, journal=str(journal), jitter_seed=3,
                      keys={"runware": CANARY, "fal": CANARY, "wavespeed": CANARY})
    seen = [repr(gateway), str(gateway.configured())]
    with pytest.raises(AuthError) as caught:
        await gateway.agenerate(_request(), provider="runware")
    seen += [str(caught.value), repr(caught.value), repr(caught.value.attempts)]
    result = await gateway.agenerate(_request("Other. <S>Yes.<E>"), provider="fal")
    seen += [repr(result), result.model_dump_json()]
    seen += [repr(p) for p in gateway._providers().values()]
    await gateway.aclose()
    rows = sqlite3.connect(journal).execute("SELECT * FROM submits").fetchall()
    rows += sqlite3.connect(journal).execute("SELECT * FROM clips").fetchall()
    seen += [repr(rows), caplog.text]
    for text in seen:
        assert CANARY not in text
    assert rows  # the journal did record the attempts
