"""The error taxonomy (gateway/errors.py) and the shared HTTP plumbing (gateway/http.py)."""

from __future__ import annotations

import email.utils
import re
import time

import httpx
import pytest

import gateway.errors as errors_module
from gateway import errors as E
from gateway.http import classify_status, classify_transport, redact, retry_after
from gateway.result import Attempt


def _tree() -> dict[str, tuple[bool, bool]]:
    """Flags as drawn in the errors module docstring: name -> (retry, failover)."""
    found = {}
    for m in re.finditer(r"── (\w+)\s.*?retry: (yes|no)\s+failover: (yes|no)", errors_module.__doc__ or ""):
        found[m.group(1)] = (m.group(2) == "yes", m.group(3) == "yes")
    return found


TREE = _tree()


def test_docstring_tree_covers_every_exported_error() -> None:
    leaves = set(E.__all__) - {"GatewayError", "ProviderError"}
    assert set(TREE) == leaves
    assert len(TREE) == 22


@pytest.mark.parametrize("name", sorted(TREE))
def test_flags_match_docstring_tree(name: str) -> None:
    cls = getattr(E, name)
    assert (cls.retryable, cls.failover) == TREE[name]


@pytest.mark.parametrize(("child", "parent"), [
    ("NoRoute", "InvalidRequest"), ("InvalidRequest", "GatewayError"), ("UnsupportedByProvider", "GatewayError"),
    ("AuthError", "ProviderError"), ("InsufficientFunds", "ProviderError"), ("RateLimited", "ProviderError"),
    ("ProviderUnavailable", "ProviderError"), ("ProviderRejected", "ProviderError"),
    ("GenerationFailed", "ProviderError"), ("ContentRejected", "ProviderError"),
    ("MalformedResponse", "ProviderError"), ("ResultExpired", "ProviderError"), ("DefectiveClip", "ProviderError"),
    ("SubmitOutcomeUnknown", "GatewayError"), ("AllProvidersFailed", "GatewayError"),
])
def test_hierarchy(child: str, parent: str) -> None:
    assert issubclass(getattr(E, child), getattr(E, parent))


def test_not_provider_errors() -> None:
    for name in ("SubmitOutcomeUnknown", "JobUnresolved", "DeadlineExceeded", "BudgetExceeded",
                 "AllProvidersFailed", "ConfigurationError", "UnsupportedByProvider"):
        assert not issubclass(getattr(E, name), E.ProviderError), name
    assert issubclass(E.InvalidRequest, ValueError)


def test_base_attributes_and_str() -> None:
    err = E.ProviderRejected("HTTP 400: nope", provider="fal", status_code=400, vendor_code="bad")
    assert str(err) == "[fal] HTTP 400: nope"
    assert repr(err) == "ProviderRejected('[fal] HTTP 400: nope')"
    assert (err.provider, err.status_code, err.vendor_code, err.may_be_billed, err.attempts) == \
        ("fal", 400, "bad", False, [])
    assert str(E.GatewayError("plain")) == "plain"


def test_special_constructors() -> None:
    sou = E.SubmitOutcomeUnknown("lost", provider="fal", job_hint={"key": "k"})
    assert sou.may_be_billed is True and sou.job_hint == {"key": "k"}
    assert E.JobUnresolved("?", provider="runware", job="h").may_be_billed is True
    assert E.DeadlineExceeded("late").may_be_billed is False
    assert E.DeadlineExceeded("late", provider="fal", job="h").may_be_billed is True
    assert E.RateLimited("slow", retry_after=3.0).retry_after == 3.0
    nr = E.NoRoute("no vendor", reasons={"fal": ["steps", "fps"], "runware": ["down"]})
    assert str(nr) == "no vendor (fal: steps, fps; runware: down)"
    assert nr.reasons == {"fal": ["steps", "fps"], "runware": ["down"]}
    ub = E.UnsupportedByProvider("no", provider="fal", violations=("v",))
    assert ub.violations == ["v"] and ub.failover is True


def test_all_providers_failed_carries_attempts() -> None:
    attempts = [
        Attempt(provider="runware", outcome="failed", error_type="ProviderUnavailable", error="503"),
        Attempt(provider="fal", outcome="unknown", error_type="SubmitOutcomeUnknown", error="timeout",
                may_be_billed=True),
    ]
    err = E.AllProvidersFailed("all failed", attempts=attempts)
    assert err.attempts == attempts
    assert err.may_be_billed is True
    assert str(err) == ("all failed — runware: failed (ProviderUnavailable: 503); "
                        "fal: unknown (SubmitOutcomeUnknown: timeout)")
    clean = E.AllProvidersFailed("all failed", attempts=attempts[:1])
    assert clean.may_be_billed is False
    assert str(E.AllProvidersFailed("none", attempts=[])) == "none"


# ---------------------------------------------------------------- classify_status

@pytest.mark.parametrize(("status", "cls"), [
    (401, E.AuthError), (403, E.AuthError), (402, E.InsufficientFunds), (408, E.ProviderUnavailable),
    (409, E.ProviderUnavailable), (429, E.RateLimited), (400, E.ProviderRejected), (404, E.ProviderRejected),
    (422, E.ProviderRejected), (500, E.ProviderUnavailable), (503, E.ProviderUnavailable),
])
def test_classify_status(status: int, cls: type) -> None:
    err = classify_status("fal", status, "boom", vendor_code="c", may_be_billed=True)
    assert type(err) is cls
    assert (err.provider, err.status_code, err.vendor_code, err.may_be_billed) == ("fal", status, "c", True)
    assert err.message == f"HTTP {status}: boom"


def test_429_retry_after_seconds() -> None:
    err = classify_status("wavespeed", 429, "slow", headers=httpx.Headers({"Retry-After": "7"}))
    assert isinstance(err, E.RateLimited) and err.retry_after == 7.0
    assert classify_status("x", 429, "slow").retry_after is None
    assert classify_status("x", 429, "slow", headers={"retry-after": "1.5"}).retry_after == 1.5


def test_429_retry_after_http_date() -> None:
    when = email.utils.formatdate(time.time() + 120, usegmt=True)
    err = classify_status("fal", 429, "slow", headers=httpx.Headers({"Retry-After": when}))
    assert 117.0 <= err.retry_after <= 121.0


def test_retry_after_parsing() -> None:
    date = "Wed, 21 Oct 2015 07:28:00 GMT"
    epoch = email.utils.parsedate_to_datetime(date).timestamp()
    assert retry_after({"retry-after": date}, now=epoch - 30) == 30.0
    assert retry_after({"retry-after": date}, now=epoch + 30) == 0.0  # in the past
    assert retry_after({"retry-after": "-4"}) == 0.0
    assert retry_after({"retry-after": "soon"}) is None
    assert retry_after({"retry-after": ""}) is None
    assert retry_after({}) is None


def test_retry_after_plain_mapping_is_case_insensitive() -> None:
    assert retry_after({"Retry-After": "5"}) == 5.0


# ---------------------------------------------------------------- classify_transport

REQ = httpx.Request("POST", "https://api.example.com/submit")


def test_connect_error_not_billed() -> None:
    err = classify_transport("runware", httpx.ConnectError("refused", request=REQ), submitting=True,
                             job_hint={"key": "k"})
    assert type(err) is E.ProviderUnavailable
    assert err.may_be_billed is False and err.retryable and err.failover
    assert err.message == "not sent (ConnectError: refused)"


def test_read_timeout_on_submit_is_unknown_outcome() -> None:
    err = classify_transport("fal", httpx.ReadTimeout("timed out", request=REQ), submitting=True,
                             job_hint={"idempotency_key": "abc"})
    assert type(err) is E.SubmitOutcomeUnknown
    assert err.may_be_billed is True
    assert err.job_hint == {"idempotency_key": "abc"}
    assert not err.retryable and not err.failover
    assert err.provider == "fal"


def test_read_timeout_on_status_is_unavailable() -> None:
    err = classify_transport("fal", httpx.ReadTimeout("timed out", request=REQ), submitting=False)
    assert type(err) is E.ProviderUnavailable
    assert err.may_be_billed is False
    assert err.message == "ReadTimeout: timed out"


def test_remote_protocol_error_on_submit_is_unknown() -> None:
    err = classify_transport("wavespeed", httpx.RemoteProtocolError("reset", request=REQ), submitting=True)
    assert type(err) is E.SubmitOutcomeUnknown and err.job_hint == {}


# ---------------------------------------------------------------- redact

def test_redact_removes_secrets() -> None:
    text = "auth failed for key sk-live-12345 (Bearer sk-live-12345)"
    assert redact(text, ["sk-live-12345", None]) == "auth failed for key *** (Bearer ***)"


def test_redact_skips_short_secrets() -> None:
    assert redact("abc and xyz", ["abc", "", None]) == "abc and xyz"


def test_redact_truncates() -> None:
    out = redact("x" * 600, [])
    assert len(out) == 500 and out.endswith("…") and out[:499] == "x" * 499
    assert redact("y" * 20, [], limit=10) == "y" * 9 + "…"
    assert redact("short", [], limit=5) == "short"


def test_redact_before_truncate() -> None:
    secret = "SECRETKEY"
    out = redact("a" * 5 + secret + "bb", [secret], limit=8)
    assert secret[:3] not in out
    assert out == "aaaaa**…"
