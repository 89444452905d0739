"""Routing, retries, failover, breakers, deadlines and reconciliation against the emulator, in virtual time.

Every scenario also checks the emulator's ledger: each clip billed exactly once, or the result (or the
error) honestly reports the possible extra charge.
"""

from __future__ import annotations

import threading
from decimal import Decimal

import pytest

from gateway import (
    AllProvidersFailed,
    ContentRejected,
    DeadlineExceeded,
    Gateway,
    InvalidRequest,
    JobUnresolved,
    NoRoute,
    OviRequest,
    Route,
    SubmitOutcomeUnknown,
)
from gateway.clock import VirtualClock
from gateway.emulator import Emulator

pytestmark = pytest.mark.anyio

IMAGE = "https://example.com/knight.png"


def _request(prompt: str = "A knight in the rain. <S>I will defend this land.<E>", **fields) -> OviRequest:
    fields.setdefault("image", IMAGE)
    return OviRequest(prompt=prompt, **fields)


def _setup(faults: str | None = None, *, journal: str = ":memory:", **options):
    clock = VirtualClock()
    emulator = Emulator(clock=clock, faults=faults, seed=7)
    gateway = Gateway(emulator=emulator, clock=clock, journal=journal, jitter_seed=7, **options)
    return gateway, emulator, clock


def _billed_once(emulator: Emulator) -> None:
    counts = emulator.ledger.billed_per_clip()
    assert counts and set(counts.values()) == {1}, counts


async def test_default_steps_go_to_runware_the_cheapest() -> None:
    gateway, emulator, _ = _setup()
    quotes = gateway.quote(_request())
    assert [q.provider for q in quotes] == ["runware", "wavespeed", "fal"]
    assert quotes[0].price_usd == Decimal("0.1171") and quotes[0].estimated
    result = await gateway.agenerate(_request())
    assert result.provider == "runware"
    assert result.cost_source == "reported" and result.cost_usd == Decimal("0.1171")
    assert result.video_url.endswith(".mp4")
    assert [a.outcome for a in result.attempts] == ["succeeded"]
    _billed_once(emulator)
    await gateway.aclose()


async def test_fifty_steps_skip_wavespeed_unless_degrading_is_allowed() -> None:
    gateway, emulator, _ = _setup()
    strict = await gateway.agenerate(_request(steps=50))
    assert strict.provider == "runware" and strict.dropped == []
    degraded = await gateway.agenerate(_request("A second clip. <S>Again.<E>", steps=50),
                                       route=Route(allow_degrade=True))
    assert degraded.provider == "wavespeed" and degraded.dropped == ["steps"]
    _billed_once(emulator)
    await gateway.aclose()


async def test_eighty_steps_only_runware_can_honor() -> None:
    gateway, emulator, _ = _setup()
    quotes = {q.provider: q for q in gateway.quote(_request(steps=80))}
    assert quotes["runware"].feasible
    assert any("steps=80" in reason and "1–50" in reason for reason in quotes["fal"].reasons)
    assert any("steps" in reason for reason in quotes["wavespeed"].reasons)
    result = await gateway.agenerate(_request(steps=80))
    assert result.provider == "runware"
    _billed_once(emulator)
    await gateway.aclose()


async def test_text_to_video_never_goes_to_runware() -> None:
    gateway, emulator, _ = _setup()
    request = OviRequest(prompt="A lighthouse at night. <AUDCAP>Waves, wind.<ENDAUDCAP>")
    quotes = {q.provider: q for q in gateway.quote(request)}
    assert not quotes["runware"].feasible
    result = await gateway.agenerate(request)
    assert result.provider == "wavespeed"
    assert emulator.ledger.calls("runware") == 0
    _billed_once(emulator)
    await gateway.aclose()


async def test_max_price_excludes_vendors_and_can_leave_no_route() -> None:
    gateway, emulator, _ = _setup()
    with pytest.raises(NoRoute) as caught:
        await gateway.agenerate(_request(steps=50), route=Route(max_price="0.16"))
    assert "over max_price" in caught.value.reasons["runware"][0]
    assert emulator.ledger.calls() == 0
    result = await gateway.agenerate(_request(), route=Route(max_price=Decimal("0.12")))
    assert result.provider == "runware"
    await gateway.aclose()


async def test_explicit_order_and_explicit_provider() -> None:
    gateway, emulator, _ = _setup()
    ordered = await gateway.agenerate(_request(), route=Route(order=["wavespeed", "fal"]))
    assert ordered.provider == "wavespeed"
    chosen = await gateway.agenerate(_request("Another. <S>Yes.<E>"), provider="fal")
    assert chosen.provider == "fal" and chosen.cost_source == "estimated" and chosen.cost_usd == Decimal("0.20")
    _billed_once(emulator)
    await gateway.aclose()


async def test_429_is_retried_after_retry_after_then_succeeds() -> None:
    gateway, emulator, clock = _setup("runware.submit=429,ok")
    result = await gateway.agenerate(_request())
    assert result.provider == "runware"
    assert [a.outcome for a in result.attempts] == ["retried", "succeeded"]
    assert result.attempts[0].error_type == "RateLimited"
    assert clock.slept >= 2.0  # the emulator's Retry-After
    assert emulator.ledger.calls("runware", "submit") == 2
    _billed_once(emulator)
    await gateway.aclose()


async def test_a_vendor_refusing_every_submit_fails_over_to_the_next_cheapest() -> None:
    gateway, emulator, _ = _setup("runware.submit=429*3")
    result = await gateway.agenerate(_request())
    assert result.provider == "wavespeed"
    assert [(a.provider, a.outcome) for a in result.attempts] == [
        ("runware", "retried"), ("runware", "retried"), ("runware", "failed"), ("wavespeed", "succeeded")]
    assert not emulator.ledger.billable("runware")
    _billed_once(emulator)
    await gateway.aclose()


async def test_open_breaker_skips_a_dead_vendor_with_zero_calls() -> None:
    gateway, emulator, _ = _setup("runware.submit=429*3", breaker={"threshold": 3, "cooldown": 300})
    await gateway.agenerate(_request())
    calls = emulator.ledger.calls("runware")
    assert {b.provider: b.state for b in gateway.health()}["runware"] == "open"
    second = await gateway.agenerate(_request("Clip two. <S>Onward.<E>"))
    assert second.provider == "wavespeed"
    assert emulator.ledger.calls("runware") == calls
    _billed_once(emulator)
    await gateway.aclose()


async def test_when_only_a_cooling_vendor_can_take_the_clip_the_gateway_waits_for_it() -> None:
    gateway, _emulator, clock = _setup("runware.submit=429*3", breaker={"threshold": 3, "cooldown": 300})
    await gateway.agenerate(_request())  # opens runware's breaker
    with pytest.raises(NoRoute, match="cooling down"):
        await gateway.agenerate(_request("Eighty. <S>Steps.<E>", steps=80), route=Route(deadline=100))
    before = clock.now()
    result = await gateway.agenerate(_request("Eighty. <S>Steps.<E>", steps=80))
    assert result.provider == "runware"
    assert clock.now() - before >= 299  # waited out the cooldown, then probed
    await gateway.aclose()


async def test_deadline_bounds_the_whole_generation_and_keeps_the_paid_job() -> None:
    gateway, emulator, clock = _setup()
    with pytest.raises(DeadlineExceeded) as caught:
        await gateway.agenerate(_request(), route=Route(deadline=20))
    assert caught.value.job is not None and caught.value.may_be_billed
    assert clock.now() == pytest.approx(20)  # checked once more at the deadline, then gave up waiting
    assert [r.state for r in gateway.journal.unfinished()] == ["running"]
    assert len(emulator.ledger.billable()) == 1
    await gateway.aclose()


async def test_accept_then_drop_on_runware_is_settled_by_sending_the_same_task_uuid() -> None:
    gateway, emulator, _ = _setup("runware.submit=drop")
    result = await gateway.agenerate(_request())
    assert result.provider == "runware"
    # the SDK's way: the same taskUUID again; Runware answers conflictTaskUUID and the task is followed
    assert emulator.ledger.calls("runware", "submit") == 2
    assert [j.job_id for j in emulator.ledger.billable()] == [result.job_id]
    _billed_once(emulator)
    await gateway.aclose()


async def test_lost_runware_submit_is_sent_again_with_the_same_task_uuid() -> None:
    gateway, emulator, _ = _setup("runware.submit=timeout")
    result = await gateway.agenerate(_request())
    assert result.provider == "runware"
    assert emulator.ledger.calls("runware", "submit") == 2
    _billed_once(emulator)
    await gateway.aclose()


@pytest.mark.parametrize("vendor", ["fal", "wavespeed"])
async def test_accept_then_drop_without_lookup_stops_instead_of_paying_twice(vendor: str) -> None:
    gateway, emulator, _ = _setup(f"{vendor}.submit=drop")
    with pytest.raises(SubmitOutcomeUnknown) as caught:
        await gateway.agenerate(_request(), provider=vendor)
    assert caught.value.job_hint["provider"] == vendor
    assert [j.vendor for j in emulator.ledger.billable()] == [vendor]
    assert [r.state for r in gateway.journal.unfinished()] == ["unknown"]
    await gateway.aclose()


@pytest.mark.parametrize("vendor", ["fal", "wavespeed"])
async def test_opting_in_to_failover_after_a_drop_reports_the_possible_extra_charge(vendor: str) -> None:
    gateway, emulator, _ = _setup(f"{vendor}.submit=drop")
    result = await gateway.agenerate(_request(), route=Route(order=[vendor], failover_on_unknown=True))
    assert result.provider != vendor
    assert result.possible_extra_charges == 1
    assert len(emulator.ledger.billable()) == 2  # honestly reported above
    await gateway.aclose()


async def test_failed_job_fails_over_and_is_not_billed() -> None:
    gateway, emulator, _ = _setup("runware.job=fail")
    result = await gateway.agenerate(_request())
    assert result.provider == "wavespeed"
    assert result.attempts[0].error_type == "GenerationFailed"
    assert not emulator.ledger.billable("runware")
    _billed_once(emulator)
    await gateway.aclose()


async def test_content_rejection_stops_without_failover() -> None:
    gateway, emulator, _ = _setup("runware.job=nsfw")
    with pytest.raises(ContentRejected):
        await gateway.agenerate(_request())
    assert emulator.ledger.calls("wavespeed") == 0 and emulator.ledger.calls("fal") == 0
    await gateway.aclose()


async def test_content_rejection_may_fail_over_when_the_route_says_so() -> None:
    gateway, emulator, _ = _setup("runware.job=nsfw")
    result = await gateway.agenerate(_request(), route=Route(failover_on_content_rejection=True))
    assert result.provider == "wavespeed"
    assert result.attempts[0].error_type == "ContentRejected"
    _billed_once(emulator)
    await gateway.aclose()


def test_sync_generate_wraps_the_async_path() -> None:
    gateway, emulator, _ = _setup()
    result = gateway.generate(_request(), provider="wavespeed")
    again = gateway.generate(_request("Second. <S>Go.<E>"))  # a new event loop, a new HTTP client
    assert (result.provider, again.provider) == ("wavespeed", "runware")
    assert emulator.ledger.calls("wavespeed", "submit") == 1
    _billed_once(emulator)


async def test_sync_generate_inside_a_running_loop_runs_on_a_worker_thread() -> None:
    """Jupyter runs cells inside a loop: the sync API must still work there (on its own thread's loop)."""
    gateway, emulator, _ = _setup()
    threads: set[str] = set()
    result = gateway.generate(_request(), on_event=lambda event: threads.add(threading.current_thread().name))
    assert result.provider == "runware" and [j.vendor for j in emulator.ledger.billable()] == ["runware"]
    assert threads and all(name.startswith("ovi-gateway-sync") for name in threads)
    assert gateway.resume() == []  # and again, on a fresh worker


async def test_a_stuck_job_is_kept_for_resume_unless_the_route_accepts_a_second_charge() -> None:
    gateway, emulator, _ = _setup("runware.job=stuck")
    with pytest.raises(JobUnresolved):
        await gateway.agenerate(_request())
    assert [r.state for r in gateway.journal.unfinished()] == ["running"]
    assert [j.vendor for j in emulator.ledger.billable()] == ["runware"]
    gateway2, emulator2, _ = _setup("runware.job=stuck")
    result = await gateway2.agenerate(_request(), route=Route(failover_on_unknown=True))
    assert result.provider == "wavespeed" and result.possible_extra_charges == 1
    assert [j.vendor for j in emulator2.ledger.billable()] == ["runware", "wavespeed"]  # reported above
    await gateway.aclose()
    await gateway2.aclose()


async def test_flaky_status_calls_do_not_abandon_a_paid_job() -> None:
    gateway, emulator, _ = _setup("runware.status=503,503,500")
    result = await gateway.agenerate(_request())
    assert result.provider == "runware" and [a.outcome for a in result.attempts] == ["succeeded"]
    _billed_once(emulator)
    await gateway.aclose()


async def test_every_vendor_failing_raises_with_every_attempt() -> None:
    gateway, emulator, _ = _setup("runware.submit=401; wavespeed.submit=402; fal.submit=502*3")
    with pytest.raises(AllProvidersFailed) as caught:
        await gateway.agenerate(_request())
    assert [a.error_type for a in caught.value.attempts if a.outcome == "failed"] == [
        "AuthError", "InsufficientFunds", "ProviderUnavailable"]
    assert not emulator.ledger.billable()
    await gateway.aclose()


async def test_idempotency_key_returns_the_same_clip_and_refuses_a_different_request() -> None:
    gateway, emulator, _ = _setup()
    first = await gateway.agenerate(_request(), idempotency_key="clip-1")
    again = await gateway.agenerate(_request(), idempotency_key="clip-1")
    assert again.job_id == first.job_id and again.video_url == first.video_url
    with pytest.raises(InvalidRequest, match="different request"):
        await gateway.agenerate(_request(seed=5), idempotency_key="clip-1")
    _billed_once(emulator)
    await gateway.aclose()


async def test_resume_finishes_a_job_left_behind(tmp_path) -> None:
    journal = str(tmp_path / "journal.sqlite3")
    gateway, emulator, clock = _setup(journal=journal)
    with pytest.raises(DeadlineExceeded):
        await gateway.agenerate(_request(), route=Route(deadline=10), idempotency_key="left-behind")
    await gateway.aclose()
    later = Gateway(emulator=emulator, clock=clock, journal=journal, jitter_seed=8)
    outcomes = await later.aresume()
    assert [o.outcome for o in outcomes] == ["succeeded"]
    again = await later.agenerate(_request(), idempotency_key="left-behind")
    assert again.job_id == outcomes[0].result.job_id
    _billed_once(emulator)
    await later.aclose()
