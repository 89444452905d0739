"""OpenTelemetry spans (``gateway.telemetry``), read back through the SDK's in-memory exporter: one
``ovi.clip`` span per clip with one ``ovi.attempt`` child per vendor tried, their attributes, no API key in
any attribute or status, and nothing at all (no import either) without OpenTelemetry."""

from __future__ import annotations

import subprocess
import sys

import httpx
import pytest

import gateway.telemetry as telemetry
from gateway import Gateway, GatewayError, OviRequest, Route
from gateway.clock import VirtualClock
from gateway.emulator import Emulator
from tests.test_secrets import ECHOES, KEYS, PIECES

trace = pytest.importorskip("opentelemetry.trace")
sdk_trace = pytest.importorskip("opentelemetry.sdk.trace")
from opentelemetry.sdk.trace.export import SimpleSpanProcessor  # noqa: E402
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter  # noqa: E402

pytestmark = pytest.mark.anyio

_EXPORTER = InMemorySpanExporter()


@pytest.fixture
def spans(monkeypatch):
    """The finished spans of this test (a process-wide SDK provider, installed once)."""
    provider = trace.get_tracer_provider()
    if not isinstance(provider, sdk_trace.TracerProvider):
        provider = sdk_trace.TracerProvider()
        provider.add_span_processor(SimpleSpanProcessor(_EXPORTER))
        trace.set_tracer_provider(provider)
    monkeypatch.setattr(telemetry, "_trace", None)  # looked up again by this test
    _EXPORTER.clear()
    yield _EXPORTER
    _EXPORTER.clear()


def _request() -> OviRequest:
    return OviRequest(prompt="A knight in the rain. <S>I will defend this land.<E>", image="https://example.com/k.png")


async def test_a_clip_span_parents_one_attempt_span_per_vendor_tried(spans, tmp_path) -> None:
    clock = VirtualClock()
    emulator = Emulator(clock=clock, seed=2, job_time=lambda rng: 20.0)
    emulator["runware"].faults.add("job", "fail")
    async with Gateway(emulator=emulator, clock=clock, journal=str(tmp_path / "j.sqlite3")) as gw:
        result = await gw.agenerate(_request(), route=Route(order=["runware", "wavespeed"]),
                                    idempotency_key="clip-otel-1")
    finished = spans.get_finished_spans()
    clips = [s for s in finished if s.name == "ovi.clip"]
    attempts = [s for s in finished if s.name == "ovi.attempt"]
    assert len(clips) == 1 and [a.attributes["ovi.vendor"] for a in attempts] == ["runware", "wavespeed"]
    clip = clips[0]
    assert clip.parent is None and all(a.parent.span_id == clip.context.span_id for a in attempts)
    assert all(a.context.trace_id == clip.context.trace_id for a in attempts)
    assert clip.attributes["ovi.idempotency_key"] == "clip-otel-1"
    assert clip.attributes["ovi.outcome"] == "succeeded" and clip.attributes["ovi.vendor"] == "wavespeed"
    assert clip.attributes["ovi.cost_usd"] == str(result.cost_usd) == "0.15"
    failed, won = attempts
    assert failed.attributes["ovi.outcome"] == "GenerationFailed" and failed.status.status_code.name == "ERROR"
    assert failed.attributes["ovi.may_be_billed"] is True
    assert won.attributes["ovi.outcome"] == "succeeded" and won.attributes["ovi.job_id"] == result.job_id
    assert won.attributes["ovi.cost_usd"] == "0.15" and won.attributes["ovi.clip_key"] == "clip-otel-1"
    submit_keys = {a.attributes["ovi.idempotency_key"] for a in attempts}
    assert len(submit_keys) == 2 and "clip-otel-1" not in submit_keys  # each submit's own key
    assert failed.attributes["ovi.job_id"] == result.attempts[0].job_id


@pytest.mark.parametrize("vendor", ["fal", "runware", "wavespeed"])
async def test_no_api_key_reaches_an_attribute_or_a_status(spans, tmp_path, vendor) -> None:
    gateway = Gateway(transport=httpx.MockTransport(ECHOES["502 text"]), keys=KEYS, clock=VirtualClock(),
                      journal=str(tmp_path / "j.sqlite3"), backoff_base=0.01)
    with pytest.raises(GatewayError):
        await gateway.agenerate(_request(), route=Route(provider=vendor, max_tries=2))
    await gateway.aclose()
    finished = spans.get_finished_spans()
    assert {s.name for s in finished} == {"ovi.clip", "ovi.attempt"}
    shown = [str(v) for s in finished for v in s.attributes.values()]
    shown += [s.status.description or "" for s in finished]
    assert any("502" in text for text in shown)  # the echoing answer's text did reach the spans, redacted
    for text in shown:
        for piece in PIECES:
            assert piece not in text


async def test_note_redacts_a_registered_value(spans) -> None:
    import gateway.secrets as secrets

    secrets.register(KEYS["runware"])

    async def work() -> None:
        telemetry.note(job_id=f"job-{KEYS['runware']}")

    await telemetry.attempt(work(), vendor="runware", clip_key="c")
    (span,) = spans.get_finished_spans()
    assert span.attributes["ovi.job_id"] == "job-***" and span.attributes["ovi.outcome"] == "skipped"


async def test_with_the_api_but_no_tracer_provider_no_span_is_made(spans, monkeypatch) -> None:
    """The API's default provider (a proxy until one is set) records nothing, so no span, context or
    attribute is made for it on the hot path; a provider set afterwards is used from the next call on."""
    clock = VirtualClock()
    async with Gateway(emulator=Emulator(clock=clock, seed=1), clock=clock, journal=None) as gw:
        with monkeypatch.context() as unset:
            unset.setattr(trace, "get_tracer_provider", lambda: trace.ProxyTracerProvider())

            def no_tracer(*args, **kwargs):
                raise AssertionError("a tracer was asked for while no provider is set")

            unset.setattr(trace, "get_tracer", no_tracer)
            unset.setattr(trace, "get_current_span", no_tracer)
            assert telemetry.live() is None
            await gw.agenerate(_request(), provider="wavespeed")
            assert spans.get_finished_spans() == ()
        assert telemetry.live() is trace  # the SDK provider of this test's fixture
        await gw.agenerate(_request(), provider="wavespeed")
    assert sorted(s.name for s in spans.get_finished_spans()) == ["ovi.attempt", "ovi.clip"]


async def test_without_opentelemetry_nothing_is_recorded(spans, monkeypatch, tmp_path) -> None:
    monkeypatch.setitem(sys.modules, "opentelemetry", None)  # as if the package were not installed
    clock = VirtualClock()
    async with Gateway(emulator=Emulator(clock=clock, seed=1), clock=clock, journal=str(tmp_path / "j.sqlite3")) as gw:
        await gw.agenerate(_request())
    assert telemetry._trace is False and spans.get_finished_spans() == ()


def test_importing_the_gateway_does_not_import_opentelemetry() -> None:
    code = "import gateway, gateway.client, gateway.telemetry"
    found = subprocess.run([sys.executable, "-X", "importtime", "-c", code], capture_output=True, text=True, check=True)
    assert "gateway.telemetry" in found.stderr  # the trace did list our imports
    assert "opentelemetry" not in found.stderr
