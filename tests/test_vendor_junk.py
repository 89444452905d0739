"""Whatever a vendor sends back — truncated, wrong types, missing fields, odd statuses — the adapters
answer with the gateway's own errors, never a crash from underneath (hypothesis-driven)."""

from __future__ import annotations

import asyncio
import json

import httpx
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import SecretStr

from gateway import GatewayError, OviRequest
from gateway.clock import VirtualClock
from gateway.contract import JobState, ProviderContext, SubmitContext
from gateway.emulator import Emulator
from gateway.registry import Registry

PROVIDERS = Registry.load().classes
REQUEST = OviRequest(prompt="A knight. <S>Hold.<E>", image="https://example.com/k.png")
CTX = SubmitContext(idempotency_key="5b0b9d3e-0d7c-4a43-9d1a-2f8e1c7a9b10")

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-2**40, 2**40) | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=5),
    max_leaves=20)
# Bodies shaped a little like each vendor's, so parsing gets past the first check.
vendorish = st.fixed_dictionaries({}, optional={
    "data": json_values | st.lists(st.dictionaries(
        st.sampled_from(["taskType", "taskUUID", "status", "videoURL", "videoUUID", "cost", "seed", "id",
                         "outputs", "error", "code", "progress"]), json_values, max_size=6), max_size=2),
    "errors": st.lists(st.dictionaries(st.sampled_from(["code", "message", "parameter", "taskUUID"]),
                                       json_values, max_size=4), max_size=2),
    "status": st.sampled_from(["IN_QUEUE", "IN_PROGRESS", "COMPLETED", "created", "processing", "completed",
                               "failed", "success", "error", "weird"]) | json_values,
    "code": st.integers(0, 6000) | json_values, "message": json_values, "detail": json_values,
    "video": json_values, "seed": json_values, "request_id": json_values, "queue_position": json_values,
    "response_url": json_values, "status_url": json_values, "cancel_url": json_values})
bodies = st.one_of(
    vendorish.map(lambda d: json.dumps(d).encode()),
    json_values.map(lambda v: json.dumps(v).encode()),
    st.binary(max_size=64),
    vendorish.map(lambda d: json.dumps(d).encode()[: max(1, len(json.dumps(d)) // 2)]),  # truncated
)
statuses = st.sampled_from([200, 200, 200, 201, 202, 204, 301, 400, 401, 402, 404, 409, 422, 429, 500, 503])


def _handles() -> dict:
    """A real handle per vendor, from a submit to the emulator."""
    async def collect() -> dict:
        emulator = Emulator(clock=VirtualClock(), seed=5)
        handles = {}
        async with httpx.AsyncClient(transport=emulator.transport()) as http:
            for name, cls in PROVIDERS.items():
                if name not in ("runware", "fal", "wavespeed"):
                    continue
                provider = cls(ProviderContext(api_key=SecretStr("k"), http=http, transport=emulator.transport()))
                handles[name] = await provider.submit(REQUEST, CTX)
        return handles
    return asyncio.run(collect())


HANDLES = _handles()


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(name=st.sampled_from(sorted(HANDLES)), status=statuses, body=bodies,
       call=st.sampled_from(["submit", "status", "result"]))
def test_junk_from_a_vendor_becomes_a_gateway_error(name: str, status: int, body: bytes, call: str) -> None:
    transport = httpx.MockTransport(lambda request: httpx.Response(status, content=body,
                                                                   headers={"content-type": "application/json"}))

    async def run() -> None:
        async with httpx.AsyncClient(transport=transport) as http:
            provider = PROVIDERS[name](ProviderContext(api_key=SecretStr("k"), http=http, transport=transport))
            handle = HANDLES[name]
            try:
                if call == "submit":
                    await provider.submit(REQUEST, CTX)
                elif call == "status":
                    answer = await provider.status(handle)
                    assert isinstance(answer.state, JobState)
                else:
                    last = await provider.status(handle)
                    if last.state == JobState.SUCCEEDED:
                        output = await provider.result(handle, last)
                        assert isinstance(output.video_url, str) and output.video_url
            except GatewayError:
                pass
            finally:
                closer = getattr(provider, "aclose", None)
                if closer is not None:
                    await closer()

    asyncio.run(run())


def test_every_vendor_is_covered() -> None:
    assert sorted(HANDLES) == ["fal", "runware", "wavespeed"]
