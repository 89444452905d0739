"""Per-vendor circuit breakers on a virtual clock (gateway/health.py)."""

from __future__ import annotations

import pytest

from gateway.clock import VirtualClock
from gateway.errors import (
    AuthError,
    ContentRejected,
    GatewayError,
    GenerationFailed,
    InsufficientFunds,
    InvalidRequest,
    MalformedResponse,
    ProviderRejected,
    ProviderUnavailable,
    RateLimited,
    SubmitOutcomeUnknown,
)
from gateway.routing.health import Breaker, BreakerState, Health


def down() -> ProviderUnavailable:
    return ProviderUnavailable("HTTP 503: busy", provider="v")


def make(clock: VirtualClock, **kw: float) -> Breaker:
    options = {"threshold": 3, "cooldown": 10.0, "max_cooldown": 60.0} | kw
    return Breaker("v", clock, **options)  # type: ignore[arg-type]


def test_starts_closed(clock: VirtualClock) -> None:
    b = make(clock)
    assert b.state == "closed" and b.allow() and b.allow()
    assert b.snapshot() == BreakerState("v", "closed", 0, None, None)


def test_opens_after_threshold(clock: VirtualClock) -> None:
    b = make(clock)
    b.failure(down())
    b.failure(down())
    assert b.state == "closed" and b.allow()
    b.failure(down())
    assert b.state == "open"
    assert b.open_until == 10.0
    assert not b.allow()
    clock.advance(9.99)
    assert b.state == "open" and not b.allow()


@pytest.mark.parametrize("error", [
    ProviderUnavailable("x"), RateLimited("x"), SubmitOutcomeUnknown("x", provider="v"),
    MalformedResponse("x"), GenerationFailed("x"),
])
def test_counted_errors(clock: VirtualClock, error: GatewayError) -> None:
    b = make(clock, threshold=1)
    b.failure(error)
    assert b.state == "open"
    assert b.failures == 1
    assert b.last_error == f"{type(error).__name__}: x"


@pytest.mark.parametrize("error", [
    ProviderRejected("bad payload"), ContentRejected("nsfw"), InvalidRequest("bad request"),
])
def test_non_counted_errors(clock: VirtualClock, error: GatewayError) -> None:
    b = make(clock, threshold=1)
    for _ in range(5):
        b.failure(error)
    assert b.state == "closed"
    assert b.failures == 0 and b.last_error is None


def test_success_resets_consecutive_count(clock: VirtualClock) -> None:
    b = make(clock)
    b.failure(down())
    b.failure(down())
    b.success()
    b.failure(down())
    b.failure(down())
    assert b.state == "closed" and b.failures == 2


@pytest.mark.parametrize("error", [AuthError("HTTP 401: bad key"), InsufficientFunds("HTTP 402: broke")])
def test_account_errors_open_at_once_for_max_cooldown(clock: VirtualClock, error: GatewayError) -> None:
    b = make(clock)
    clock.advance(5)
    b.failure(error)
    assert b.state == "open"
    assert b.open_until == 65.0
    clock.advance(59.9)
    assert b.state == "open"
    clock.advance(0.2)
    assert b.state == "half-open"


def test_half_open_lets_exactly_one_probe(clock: VirtualClock) -> None:
    b = make(clock, threshold=1)
    b.failure(down())
    clock.advance(10)
    assert b.state == "half-open"
    assert b.allow() is True
    assert b.allow() is False
    assert b.allow() is False


def test_probe_success_closes_and_resets(clock: VirtualClock) -> None:
    b = make(clock, threshold=2)
    b.failure(down())
    b.failure(down())
    clock.advance(10)
    assert b.allow()
    b.success()
    assert b.state == "closed"
    assert (b.failures, b.opened, b.open_until, b.probing) == (0, 0, None, False)
    assert b.allow() and b.allow()
    # the cooldown starts over from the base after a success
    b.failure(down())
    b.failure(down())
    assert b.open_until == clock.now() + 10.0


def test_cooldown_doubles_on_reopen_and_is_capped(clock: VirtualClock) -> None:
    b = make(clock, threshold=1, cooldown=10.0, max_cooldown=60.0)
    seen = []
    b.failure(down())
    for _ in range(5):
        seen.append(b.open_until - clock.now())
        clock.advance(b.open_until - clock.now())
        assert b.state == "half-open" and b.allow()
        b.failure(down())  # the probe fails: reopen
    assert seen == [10.0, 20.0, 40.0, 60.0, 60.0]


def test_probe_failure_reopens_even_below_threshold(clock: VirtualClock) -> None:
    b = make(clock, threshold=3)
    for _ in range(3):
        b.failure(down())
    clock.advance(10)
    assert b.allow()
    b.failure(down())
    assert b.state == "open"
    assert b.open_until == clock.now() + 20.0


def test_non_counted_probe_failure_frees_the_probe(clock: VirtualClock) -> None:
    b = make(clock, threshold=1)
    b.failure(down())
    clock.advance(10)
    assert b.allow()
    b.failure(ProviderRejected("bad payload"))
    assert b.state == "half-open"
    assert b.allow() is True


def test_retry_after_longer_than_cooldown_honored(clock: VirtualClock) -> None:
    b = make(clock, threshold=1, cooldown=10.0)
    b.failure(RateLimited("429", retry_after=45.0))
    assert b.open_until == 45.0


def test_retry_after_shorter_than_cooldown_ignored(clock: VirtualClock) -> None:
    b = make(clock, threshold=1, cooldown=10.0)
    b.failure(RateLimited("429", retry_after=2.0))
    assert b.open_until == 10.0


def test_reason_text(clock: VirtualClock) -> None:
    b = make(clock, threshold=1)
    b.failure(down())
    clock.advance(3)
    assert b.reason() == "cooling down for 7 s more after 1 failures (ProviderUnavailable: HTTP 503: busy)"


def test_health_unhealthy_and_snapshot(clock: VirtualClock) -> None:
    h = Health(clock, threshold=1, cooldown=10.0)
    assert h.unhealthy() == {} and h.snapshot() == []
    assert h["fal"] is h["fal"]
    h["runware"].failure(down())
    h["wavespeed"].failure(AuthError("HTTP 401: nope"))
    assert h["wavespeed"].open_until == 600.0  # default max_cooldown
    assert h.unhealthy() == {
        "runware": "cooling down for 10 s more after 1 failures (ProviderUnavailable: HTTP 503: busy)",
        "wavespeed": "cooling down for 600 s more after 1 failures (AuthError: HTTP 401: nope)",
    }
    clock.advance(10)
    assert set(h.unhealthy()) == {"wavespeed"}  # runware is half-open: it may take a probe
    assert h.snapshot() == [
        BreakerState("fal", "closed", 0, None, None),
        BreakerState("runware", "half-open", 1, 10.0, "ProviderUnavailable: HTTP 503: busy"),
        BreakerState("wavespeed", "open", 1, 600.0, "AuthError: HTTP 401: nope"),
    ]
