"""The emulator's adversarial fault kinds (issue 9 §10), on every vendor, through the whole gateway:
each kind behaves as documented, and the gateway still delivers every clip at most once or stops
honestly with ``may_be_billed``."""

from __future__ import annotations

import pytest

from gateway import Gateway, GatewayError, OviRequest
from gateway.clock import VirtualClock
from gateway.emulator import Emulator, FaultScript, parse_faults
from gateway.emulator.adversity import TrickleBody, flapped, split_kind

pytestmark = pytest.mark.anyio

VENDORS = ("runware", "fal", "wavespeed")
REQUEST = OviRequest(prompt="A knight. <S>Hold the line.<E>", image="https://example.com/k.png")
OK = ("ok", 1)

# (operation, kind) -> (outcome, billable jobs) per vendor (runware, fal, wavespeed)
CASES: dict[tuple[str, str], tuple[tuple[str, int], ...]] = {
    **{("status", k): (OK, OK, OK) for k in ("400", "404", "422", "504", "trickle", "flap", "nulls",
                                             "unknown_status", "media_url")},
    **{("result", k): (OK, OK, OK) for k in ("400", "404", "422", "504", "trickle", "nulls", "media_url")},
    **{("submit", k): (("ProviderRejected", 0),) * 3 for k in ("400", "404", "422")},
    ("submit", "trickle"): (OK, OK, OK),
    ("submit", "nulls"): (OK, OK, OK),
    # Runware: the same taskUUID again; fal: an nginx 504 is ingress; WaveSpeed never re-sends a submit
    ("submit", "504"): (OK, OK, ("SubmitOutcomeUnknown", 0)),
    # late: Runware's resubmit creates the task and the late copy meets conflictTaskUUID; the others
    # cannot ask or resend, so they stop — and the late request is billed when it lands
    ("submit", "late"): (OK, ("SubmitOutcomeUnknown", 1), ("SubmitOutcomeUnknown", 1)),
    # 500_id: Runware resends and follows its (conflicting) task; fal follows x-fal-request-id
    ("submit", "500_id"): (OK, OK, ("SubmitOutcomeUnknown", 1)),
    ("job", "fail_item"): (OK, OK, OK),  # the vendor's verdict, then Route.job_retries' new job
    ("job", "fail_completed"): (OK, OK, OK),
}


@pytest.mark.parametrize("vendor", VENDORS)
@pytest.mark.parametrize(("operation", "kind"), sorted(CASES))
async def test_fault_kind_through_the_gateway(vendor: str, operation: str, kind: str) -> None:
    clock = VirtualClock()
    emulator = Emulator(clock=clock, faults=f"{vendor}.{operation}={kind}", seed=5)
    gateway = Gateway(emulator=emulator, clock=clock, journal=":memory:")
    outcome, error = "ok", None
    try:
        result = await gateway.agenerate(REQUEST, provider=vendor)
    except GatewayError as caught:
        outcome, error = type(caught).__name__, caught
    finally:
        await gateway.aclose()
    clock.advance(3600)
    emulator.deliver_late(everything=True)
    billed = emulator.ledger.billable(vendor)
    assert (outcome, len(billed)) == CASES[(operation, kind)][VENDORS.index(vendor)]
    if error is None:
        assert result.job_id == billed[-1].job_id
    elif billed:
        assert error.may_be_billed


@pytest.mark.parametrize("vendor", VENDORS)
async def test_retry_after_on_429_is_a_fault_option(vendor: str) -> None:
    clock = VirtualClock()
    emulator = Emulator(clock=clock, faults=f"{vendor}.submit=429:7", seed=5)
    gateway = Gateway(emulator=emulator, clock=clock, journal=None)
    result = await gateway.agenerate(REQUEST, provider=vendor)
    await gateway.aclose()
    assert result.attempts[0].error_type == "RateLimited" and clock.slept >= 7.0
    http = emulator.transport()
    spec = parse_faults(f"{vendor}.submit=429:none")[vendor]
    assert spec.next("submit") == "429:none"
    assert http is not None


def test_fault_options_are_checked() -> None:
    assert split_kind("trickle:4") == ("trickle", "4") and split_kind("drop") == ("drop", None)
    parse_faults("fal.submit=late:60; runware.status=trickle:8@0.5; wavespeed.submit=429:3*2")
    for bad, message in [("fal.submit=drop:3", "takes no option"), ("fal.submit=late:soon", "number"),
                         ("fal.status=late", "cannot apply to status"), ("fal.submit=flap", "cannot apply"),
                         ("fal.job=unknown_status", "cannot apply"), ("fal.status=trickle:0", "positive")]:
        with pytest.raises(ValueError, match=message):
            parse_faults(bad)
    FaultScript().add("status", "media_url").add("result", "media_url").add("job", "fail_item")


async def test_a_trickling_body_costs_virtual_time_not_real_time() -> None:
    clock = VirtualClock()
    body = TrickleBody(b"x" * 100, clock, bytes_per_s=10)
    chunks = [chunk async for chunk in body]
    assert b"".join(chunks) == b"x" * 100 and clock.now() == pytest.approx(10.0)
    assert list(body) == [b"x" * 100]  # sync readers get it at once


def test_flapping_answers_the_earlier_state() -> None:
    assert [flapped(s) for s in ("succeeded", "failed", "running", "queued")] == [
        "running", "running", "queued", "queued"]


async def test_a_late_submit_lands_later_and_bills_then() -> None:
    clock = VirtualClock()
    emulator = Emulator(clock=clock, faults="wavespeed.submit=late:30", seed=5)
    gateway = Gateway(emulator=emulator, clock=clock, journal=None)
    with pytest.raises(GatewayError) as caught:
        await gateway.agenerate(REQUEST, provider="wavespeed")
    await gateway.aclose()
    assert caught.value.may_be_billed and emulator.ledger.billable() == []
    clock.advance(29)
    assert emulator.deliver_late() == 0
    clock.advance(2)
    assert emulator.deliver_late() == 1 and len(emulator.ledger.billable("wavespeed")) == 1
