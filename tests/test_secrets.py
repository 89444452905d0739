"""Secrets: one registry, and no key in any text a vendor's echo can reach (gateway/secrets.py)."""

from __future__ import annotations

import json
import logging
import sqlite3
import traceback
from collections.abc import Callable

import httpx
import pytest

from gateway import Gateway, OviRequest, Route
from gateway import secrets as registry
from gateway.clock import VirtualClock
from gateway.emulator import Emulator
from gateway.errors import GatewayError, MalformedResponse
from gateway.result import Attempt

pytestmark = pytest.mark.anyio

FAL_ID = "5b0e3f6c-1d2e-4c8a-9f7e-aa11bb22cc33"
FAL_SECRET = "f0e1d2c3b4a5968778695a4b3c2d1e0f"
RUNWARE_KEY = "rw-echo-canary-0d9c8b7a6f5e4d3c"
WAVESPEED_KEY = "ws-echo-canary-1a2b3c4d5e6f7a8b9c0d"
KEYS = {"fal": f"{FAL_ID}:{FAL_SECRET}", "runware": RUNWARE_KEY, "wavespeed": WAVESPEED_KEY}
PIECES = (FAL_ID, FAL_SECRET, RUNWARE_KEY, WAVESPEED_KEY)


def _echo(request: httpx.Request) -> str:
    """What a careless proxy prints back: every request header, the Authorization one included."""
    return "; ".join(f"{k}: {v}" for k, v in request.headers.items())


def _chain_texts(error: BaseException) -> list[str]:
    texts, seen, todo = [], set(), [error]
    while todo:
        current = todo.pop()
        if current is None or id(current) in seen:
            continue
        seen.add(id(current))
        texts += [str(current), repr(current)]
        todo += [current.__cause__, current.__context__]
    return [*texts, "".join(traceback.format_exception(error))]


ECHOES: dict[str, Callable[[httpx.Request], httpx.Response]] = {
    # A proxy error page quoting the request.
    "502 text": lambda r: httpx.Response(502, text=f"Bad gateway. Request was: {_echo(r)}"),
    # An auth error whose JSON quotes the header (as some API gateways do).
    "401 json": lambda r: httpx.Response(401, json={"detail": f"invalid credentials {r.headers.get('authorization')}",
                                                    "errors": [{"message": _echo(r)}]}),
    # A 200 that is not the documented shape: the validation error's text holds the body.
    "200 junk": lambda r: httpx.Response(200, json={"echo": {"headers": dict(r.headers)}}),
    # The same, percent-encoded (a redirect-style echo), one half of the fal key at a time.
    "400 encoded": lambda r: httpx.Response(400, text="bad request for " + httpx.QueryParams(
        {"auth": r.headers.get("authorization", "")}).__str__()),
    # A 200 whose shape is wrong exactly where the echo sits: pydantic quotes the input value.
    "200 typed": lambda r: httpx.Response(200, json=[{"taskType": "videoInference", "status": 7, "data": {
        "status": 9, "id": r.headers.get("authorization")}, "request_id": [r.headers.get("authorization")]}]),
    # A proxy that drops the connection and says why, header included (a transport error, chained).
    "reset": lambda r: _raise(httpx.RemoteProtocolError(f"peer closed: {_echo(r)}", request=r)),
}


def _raise(error: Exception) -> httpx.Response:
    raise error


@pytest.mark.parametrize("echo", sorted(ECHOES))
@pytest.mark.parametrize("vendor", ["fal", "runware", "wavespeed"])
async def test_an_echoed_authorization_header_reaches_no_error_attempt_journal_or_log(
        echo: str, vendor: str, tmp_path, caplog) -> None:
    caplog.set_level(logging.DEBUG)
    journal = tmp_path / "journal.sqlite3"
    gateway = Gateway(transport=httpx.MockTransport(ECHOES[echo]), keys=KEYS, journal=str(journal),
                      clock=VirtualClock(), backoff_base=0.01)
    with pytest.raises(GatewayError) as caught:
        await gateway.agenerate(OviRequest(prompt="A knight. <S>Hold.<E>", image="https://example.com/k.png"),
                                route=Route(provider=vendor, max_tries=2))
    await gateway.aclose()
    error = caught.value
    logging.getLogger("gateway.test").error("generation failed: %s", error, exc_info=error)
    seen = [*_chain_texts(error), repr(error.attempts), json.dumps([a.model_dump() for a in error.attempts])]
    db = sqlite3.connect(journal)
    seen += [repr(db.execute("SELECT * FROM submits").fetchall()), repr(db.execute("SELECT * FROM clips").fetchall())]
    seen.append(caplog.text)
    for text in seen:
        for piece in PIECES:
            assert piece not in text
    assert db.execute("SELECT COUNT(*) FROM submits").fetchone()[0] >= 1  # the journal did record it


def test_each_half_of_an_id_secret_key_and_its_encodings_are_redacted() -> None:
    registry.register_api_key("3f1e2d4c-aaaa-bbbb-cccc-0123456789ab:deadbeefcafef00d1234")
    text = ("a=3f1e2d4c-aaaa-bbbb-cccc-0123456789ab b=deadbeefcafef00d1234 "
            "c=3f1e2d4c-aaaa-bbbb-cccc-0123456789ab%3Adeadbeefcafef00d1234")
    assert registry.redact(text) == "a=*** b=*** c=***"


def test_urls_register_their_password_and_print_masked() -> None:
    shown = registry.register_url("postgresql://app:Sw0rdf1sh-9@db.internal:5432/ovi")
    assert shown == "postgresql://app:***@db.internal:5432/ovi"
    assert registry.redact("connect failed: password Sw0rdf1sh-9 rejected") == "connect failed: password *** rejected"
    assert registry.register_url("https://tok-abcdef123456@hooks.example.com/x") == "https://***@hooks.example.com/x"
    assert registry.redact("token tok-abcdef123456") == "token ***"


def test_short_values_are_not_registered_but_explicit_ones_are_redacted() -> None:
    registry.register("abc")
    assert not registry.is_registered("abc")
    assert registry.redact("abc abcd", extra=["abcd"]) == "abc ***"


def test_scrub_replaces_chained_exceptions_whose_text_cannot_be_changed() -> None:
    secret = "scrub-canary-5e6f7a8b9c"
    registry.register(secret)

    class Stubborn(Exception):
        def __str__(self) -> str:
            return f"computed from state holding {secret}"

    try:
        try:
            raise Stubborn()
        except Stubborn as inner:
            raise MalformedResponse("answer does not match") from inner
    except MalformedResponse as outer:
        error = registry.scrub(outer)
    assert isinstance(error.__cause__, registry.RedactedError)
    assert "Stubborn" in str(error.__cause__)
    assert secret not in "".join(traceback.format_exception(error))


def test_errors_and_attempts_redact_registered_values_when_made() -> None:
    registry.register("made-canary-00112233")
    assert "made-canary" not in str(GatewayError("vendor said: made-canary-00112233"))
    assert Attempt(provider="fal", outcome="failed", error="x made-canary-00112233").error == "x ***"


async def test_emulated_clips_still_succeed_with_registered_keys() -> None:
    clock = VirtualClock()
    gateway = Gateway(emulator=Emulator(clock=clock, seed=4), clock=clock, journal=":memory:", keys=KEYS)
    result = await gateway.agenerate(OviRequest(prompt="A knight. <S>Hold.<E>", image="https://example.com/k.png"),
                                     provider="fal")
    assert result.video_url.startswith("https://")
    await gateway.aclose()


@pytest.mark.parametrize("vendor", ["fal", "runware", "wavespeed"])
async def test_job_handles_scrub_an_echoed_key_too(vendor: str, tmp_path) -> None:
    gateway = Gateway(transport=httpx.MockTransport(ECHOES["reset"]), keys=KEYS, journal=str(tmp_path / "j.sqlite3"),
                      clock=VirtualClock(), backoff_base=0.01)
    request = OviRequest(prompt="A knight. <S>Hold.<E>", image="https://example.com/k.png")
    try:
        job = await gateway.submit(request, route=Route(provider=vendor, max_tries=2))
        await job.wait()
    except GatewayError as error:
        caught: GatewayError = error
    else:
        raise AssertionError("the echoing proxy cannot have made a clip")
    finally:
        await gateway.aclose()
    for text in _chain_texts(caught):
        for piece in PIECES:
            assert piece not in text
