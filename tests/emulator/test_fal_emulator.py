"""The real fal adapter (fal-client underneath) against the emulated fal queue, on virtual time."""

from __future__ import annotations

import time
from decimal import Decimal
from pathlib import Path

import httpx
import pytest
from pydantic import SecretStr

from gateway.clock import VirtualClock
from gateway.contract import JobState, ProviderContext, SubmitContext
from gateway.emulator import Emulator, FaultScript
from gateway.emulator.clips import ClipStore
from gateway.errors import (
    AuthError,
    ContentRejected,
    GatewayError,
    GenerationFailed,
    InsufficientFunds,
    MalformedResponse,
    ProviderRejected,
    ProviderUnavailable,
    RateLimited,
    SubmitOutcomeUnknown,
)
from gateway.jobs.fate import is_verdict
from gateway.request import OviRequest
from providers.fal import FalProvider
from providers.fal.queue import FalQueueClient, FalRequest
from tests.conftest import PNG_BYTES

pytestmark = pytest.mark.anyio

PROMPT = "A knight in the rain. <S>I will defend this land.<E> <AUDCAP>Thunder, war drums.<ENDAUDCAP>"
IMAGE = "https://example.com/knight.png"
CTX = SubmitContext(idempotency_key="9f1c2b7e-0000-4000-8000-000000000001")


def make(clock: VirtualClock, *, faults: FaultScript | None = None, queue_time: float = 0.0,
         key: str = "fal-test-key", api_keys: dict[str, str] | None = None) -> tuple[Emulator, FalProvider]:
    emulator = Emulator(clock=clock, faults={"fal": faults} if faults else None, queue_time=queue_time,
                        job_time=lambda rng: 60.0, api_keys=api_keys)
    transport = emulator.transport()
    ctx = ProviderContext(api_key=SecretStr(key), http=httpx.AsyncClient(transport=transport), transport=transport)
    return emulator, FalProvider(ctx)


async def run_to_end(fal: FalProvider, clock: VirtualClock, request: OviRequest):
    handle = await fal.submit(request, CTX)
    first = await fal.status(handle)
    clock.advance(61)
    last = await fal.status(handle)
    return handle, first, last


async def test_image_to_video_happy_path(clock: VirtualClock) -> None:
    emulator, fal = make(clock)
    request = OviRequest(prompt=PROMPT, image=IMAGE, seed=0, steps=30, negative_prompt="",
                         audio_negative_prompt="robotic")
    handle, first, last = await run_to_end(fal, clock, request)
    assert handle.data["endpoint"] == "fal-ai/ovi/image-to-video"
    assert handle.data["status_url"] == f"https://queue.fal.run/fal-ai/ovi/requests/{handle.job_id}/status"
    assert first.state is JobState.RUNNING
    assert last.state is JobState.SUCCEEDED
    out = await fal.result(handle, last)
    assert out.seed == 0 and out.cost_usd is None and out.inference_s == 60.0
    assert out.video_url.startswith("https://v3.fal.media/files/")
    job = emulator["fal"].jobs[handle.job_id]
    assert job.payload == {"prompt": PROMPT, "image_url": IMAGE, "seed": 0, "num_inference_steps": 30,
                           "negative_prompt": "", "audio_negative_prompt": "robotic"}
    async with httpx.AsyncClient(transport=emulator.transport()) as client:
        video = await client.get(out.video_url)
    assert video.content == ClipStore.asset("mp4") and video.headers["content-type"] == "video/mp4"
    assert emulator.ledger.calls("fal", "submit") == 1
    assert [j.job_id for j in emulator.ledger.billable("fal")] == [handle.job_id]
    assert emulator.ledger.total("fal") == Decimal("0.20")
    assert list(emulator.ledger.billed_per_clip().values()) == [1]


async def test_text_to_video_with_resolution(clock: VirtualClock) -> None:
    emulator, fal = make(clock)
    handle, _, last = await run_to_end(fal, clock, OviRequest(prompt=PROMPT, size="720x720"))
    assert handle.data["endpoint"] == "fal-ai/ovi"
    assert "/fal-ai/ovi/requests/" in handle.data["response_url"]
    assert emulator["fal"].jobs[handle.job_id].payload == {"prompt": PROMPT, "resolution": "720x720"}
    out = await fal.result(handle, last)
    assert isinstance(out.seed, int)


async def test_local_file_is_uploaded_to_the_cdn_first(clock: VirtualClock, png_file: Path) -> None:
    emulator, fal = make(clock)
    handle, _, last = await run_to_end(fal, clock, OviRequest(prompt=PROMPT, image=png_file))
    sent = emulator["fal"].jobs[handle.job_id].payload["image_url"]
    assert sent.startswith("https://v3.fal.media/files/") and sent.endswith("/image.png")
    assert emulator.ledger.calls("fal", "upload") == 2  # CDN token + file POST
    async with httpx.AsyncClient(transport=emulator.transport()) as client:
        assert (await client.get(sent)).content == PNG_BYTES
    assert (await fal.result(handle, last)).video_url
    # A second upload reuses fal-client's cached CDN token.
    await fal.submit(OviRequest(prompt=PROMPT, image=png_file), CTX)
    assert emulator.ledger.calls("fal", "upload") == 3


async def test_queue_position_while_queued(clock: VirtualClock) -> None:
    _, fal = make(clock, queue_time=30.0)
    first = await fal.submit(OviRequest(prompt=PROMPT, image=IMAGE), CTX)
    second = await fal.submit(OviRequest(prompt=PROMPT, image=IMAGE), CTX)
    assert (await fal.status(first)).state is JobState.QUEUED
    status = await fal.status(second)
    assert status.state is JobState.QUEUED and status.queue_position == 1


# ---- faults on submit: exactly one POST each, never re-sent by fal-client ----------------------
@pytest.mark.parametrize(("fault", "cls", "billed_jobs"), [
    ("429", RateLimited, 0),
    # a 500 with no request id is not ingress: fal-client does not retry it, a job may be queued
    ("500", ProviderUnavailable, 0),
    ("502", ProviderUnavailable, 0),  # nginx ingress error: fal-client itself would retry it
    ("503", ProviderUnavailable, 0),
    ("401", AuthError, 0),
    ("402", InsufficientFunds, 0),
    ("refuse", ProviderUnavailable, 0),
    ("timeout", SubmitOutcomeUnknown, 0),
    ("drop", SubmitOutcomeUnknown, 1),
    ("drop_body", SubmitOutcomeUnknown, 1),  # the 2xx's body is lost: fal-client must not re-POST
    ("bad_json", SubmitOutcomeUnknown, 1),
])
async def test_submit_faults(clock: VirtualClock, fault: str, cls: type, billed_jobs: int) -> None:
    emulator, fal = make(clock, faults=FaultScript().add("submit", fault))
    started = time.monotonic()
    with pytest.raises(cls) as info:
        await fal.submit(OviRequest(prompt=PROMPT, image=IMAGE), CTX)
    assert time.monotonic() - started < 0.5  # no backoff sleeps inside fal-client
    assert emulator.ledger.calls("fal", "submit") == 1
    assert len(emulator.ledger.billable("fal")) == billed_jobs
    error = info.value
    assert error.provider == "fal"
    assert error.may_be_billed == (cls is SubmitOutcomeUnknown or fault == "500")
    if fault == "429":
        assert error.retry_after == 2.0
    if cls is SubmitOutcomeUnknown:
        assert error.job_hint["idempotency_key"] == CTX.idempotency_key


async def test_transport_error_on_submit_is_one_post(clock: VirtualClock) -> None:
    emulator, fal = make(clock, faults=FaultScript().add("submit", "drop"))
    with pytest.raises(SubmitOutcomeUnknown):
        await fal.submit(OviRequest(prompt=PROMPT, image=IMAGE), CTX)
    assert emulator.ledger.calls("fal", "submit") == 1
    assert emulator.ledger.calls("fal") == 1


# ---- faults on status / result / upload ------------------------------------------------------------
@pytest.mark.parametrize(("fault", "cls"), [
    ("429", RateLimited), ("500", ProviderUnavailable), ("502", ProviderUnavailable),
    ("503", ProviderUnavailable), ("401", AuthError), ("402", InsufficientFunds),
    ("refuse", ProviderUnavailable), ("timeout", ProviderUnavailable), ("drop", ProviderUnavailable),
    ("drop_body", ProviderUnavailable), ("bad_json", MalformedResponse),
])
async def test_status_faults_are_one_get_and_recoverable(clock: VirtualClock, fault: str, cls: type) -> None:
    emulator, fal = make(clock, faults=FaultScript().add("status", fault))
    handle = await fal.submit(OviRequest(prompt=PROMPT, image=IMAGE), CTX)
    started = time.monotonic()
    with pytest.raises(cls) as info:
        await fal.status(handle)
    assert time.monotonic() - started < 0.5
    assert emulator.ledger.calls("fal", "status") == 1
    assert info.value.may_be_billed  # the job exists; only this read failed
    if fault == "429":
        assert info.value.retry_after == 2.0 and info.value.retryable
    assert (await fal.status(handle)).state is JobState.RUNNING


@pytest.mark.parametrize(("fault", "cls"), [
    ("503", ProviderUnavailable), ("500", ProviderUnavailable), ("timeout", ProviderUnavailable),
    ("bad_json", MalformedResponse), ("429", RateLimited), ("drop_body", ProviderUnavailable),
])
async def test_result_faults_then_the_result(clock: VirtualClock, fault: str, cls: type) -> None:
    emulator, fal = make(clock, faults=FaultScript().add("result", fault))
    handle, _, last = await run_to_end(fal, clock, OviRequest(prompt=PROMPT, image=IMAGE))
    started = time.monotonic()
    with pytest.raises(cls):
        await fal.result(handle, last)
    assert time.monotonic() - started < 0.5
    assert emulator.ledger.calls("fal", "result") == 1
    assert (await fal.result(handle, last)).video_url


@pytest.mark.parametrize(("fault", "cls"), [("503", ProviderUnavailable), ("refuse", ProviderUnavailable),
                                            ("401", AuthError), ("timeout", ProviderUnavailable),
                                            ("drop_body", ProviderUnavailable)])
async def test_upload_faults_stop_before_submit(clock: VirtualClock, png_file: Path, fault: str, cls: type) -> None:
    emulator, fal = make(clock, faults=FaultScript().add("upload", fault))
    with pytest.raises(cls) as info:
        await fal.submit(OviRequest(prompt=PROMPT, image=png_file), CTX)
    assert not info.value.may_be_billed
    assert emulator.ledger.calls("fal", "upload") == 1  # no fallback repository, no retry
    assert emulator.ledger.calls("fal", "submit") == 0


# ---- job fates ---------------------------------------------------------------------------------
async def test_failed_job_completes_then_result_is_generation_failed(clock: VirtualClock) -> None:
    emulator, fal = make(clock, faults=FaultScript().add("job", "fail"))
    handle, _, last = await run_to_end(fal, clock, OviRequest(prompt=PROMPT, image=IMAGE))
    assert last.state is JobState.SUCCEEDED  # fal: a failed request reaches COMPLETED too
    with pytest.raises(GenerationFailed) as info:
        await fal.result(handle, last)
    # fal FAQ: "server errors (5xx) are never charged", and the emulator bills it that way too
    assert not info.value.may_be_billed and info.value.vendor_code == "runner_server_error"
    assert emulator.ledger.billable("fal") == []


async def test_nsfw_job_is_content_rejected(clock: VirtualClock) -> None:
    emulator, fal = make(clock, faults=FaultScript().add("job", "nsfw"))
    handle, _, last = await run_to_end(fal, clock, OviRequest(prompt=PROMPT, image=IMAGE))
    with pytest.raises(ContentRejected) as info:
        await fal.result(handle, last)
    assert not info.value.failover and info.value.may_be_billed
    assert len(emulator.ledger.billable("fal")) == 1  # a 422 that used GPU time may be charged


async def test_stuck_job_keeps_running(clock: VirtualClock) -> None:
    _, fal = make(clock, faults=FaultScript().add("job", "stuck"))
    handle = await fal.submit(OviRequest(prompt=PROMPT, image=IMAGE), CTX)
    clock.advance(3600)
    assert (await fal.status(handle)).state is JobState.RUNNING


async def test_a_result_past_retention_is_a_failed_check_not_a_verdict(clock: VirtualClock) -> None:
    _, fal = make(clock)
    handle, _, last = await run_to_end(fal, clock, OviRequest(prompt=PROMPT, image=IMAGE))
    clock.advance(3601)
    with pytest.raises(GatewayError) as info:  # 404: fal said nothing about the job itself
        await fal.result(handle, last)
    assert info.value.status_code == 404 and not is_verdict(info.value)


async def test_wrong_key_is_auth_error(clock: VirtualClock) -> None:
    emulator, fal = make(clock, key="wrong-key", api_keys={"fal": "right-key"})
    with pytest.raises(AuthError) as info:
        await fal.submit(OviRequest(prompt=PROMPT, image=IMAGE), CTX)
    assert "wrong-key" not in str(info.value)
    assert emulator.ledger.jobs == []


async def test_bad_payload_is_rejected_with_fastapi_detail(clock: VirtualClock) -> None:
    emulator, fal = make(clock)
    async with httpx.AsyncClient(transport=emulator.transport()) as client:
        response = await client.post("https://queue.fal.run/fal-ai/ovi/image-to-video",
                                     headers={"Authorization": "Key k"},
                                     json={"num_inference_steps": 51, "seed": "x"})
        enum = await client.post("https://queue.fal.run/fal-ai/ovi", headers={"Authorization": "Key k"},
                                 json={"prompt": "p", "resolution": "1024x1024"})
    assert response.status_code == 422
    locs = {tuple(item["loc"]) for item in response.json()["detail"]}
    assert locs == {("body", "prompt"), ("body", "image_url"), ("body", "seed"), ("body", "num_inference_steps")}
    error = fal.classify(response)
    assert isinstance(error, ProviderRejected) and "body.prompt: field required" in str(error)
    assert enum.status_code == 422 and enum.json()["detail"][0]["type"] == "type_error.enum"
    assert emulator.ledger.jobs == []


async def test_cancel_queued_running_and_completed(clock: VirtualClock) -> None:
    emulator, fal = make(clock, queue_time=10.0)
    queued = await fal.submit(OviRequest(prompt=PROMPT, image=IMAGE), CTX)
    await fal.cancel(queued)
    status = await fal.status(queued)
    assert status.state is JobState.FAILED and status.error.vendor_code == "client_cancelled"
    running = await fal.submit(OviRequest(prompt=PROMPT, image=IMAGE), CTX)
    clock.advance(15)
    await fal.cancel(running)  # a signal to the runner; Ovi finishes and is charged
    clock.advance(61)
    done = await fal.status(running)
    assert done.state is JobState.SUCCEEDED
    await fal.cancel(running)  # already completed: not an error
    assert [j.job_id for j in emulator.ledger.billable("fal")] == [running.job_id]
    assert emulator.ledger.calls("fal", "cancel") == 3


# ---- raw httpx errors never escape, and never reach fal-client's retry loop ------------------------
def _counting(handler) -> tuple[list[httpx.Request], FalProvider]:
    seen: list[httpx.Request] = []

    def record(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return handler(request)

    transport = httpx.MockTransport(record)
    return seen, FalProvider(ProviderContext(api_key=SecretStr("k"), http=httpx.AsyncClient(transport=transport),
                                             transport=transport))


async def test_undecodable_2xx_submit_body_is_one_post() -> None:
    seen, fal = _counting(lambda request: httpx.Response(200, stream=httpx.ByteStream(b"not gzip at all"),
                                                         headers={"content-encoding": "gzip"}))
    started = time.monotonic()
    with pytest.raises(SubmitOutcomeUnknown) as info:
        await fal.submit(OviRequest(prompt=PROMPT, image=IMAGE), CTX)
    assert len(seen) == 1 and time.monotonic() - started < 0.5
    assert info.value.job_hint["idempotency_key"] == CTX.idempotency_key


@pytest.mark.parametrize(("target", "exc", "call", "cls"), [
    ("submit", httpx.ReadTimeout, "submit", SubmitOutcomeUnknown),
    ("submit", httpx.ConnectError, "submit", ProviderUnavailable),
    ("upload_bytes", httpx.ReadError, "upload", ProviderUnavailable),
])
async def test_raw_transport_errors_become_gateway_errors(clock: VirtualClock, png_file: Path,
                                                          monkeypatch: pytest.MonkeyPatch, target: str,
                                                          exc: type[httpx.TransportError], call: str,
                                                          cls: type) -> None:
    """Should anything bypass the single-shot transport, a raw httpx error still comes out classified."""
    _, fal = make(clock)

    async def boom(*args, **kwargs):
        raise exc("[test] raw", request=httpx.Request("POST", "https://queue.fal.run/fal-ai/ovi"))

    monkeypatch.setattr(FalQueueClient, target, boom)
    with pytest.raises(cls) as info:
        await fal.submit(OviRequest(prompt=PROMPT, image=png_file if call == "upload" else IMAGE), CTX)
    assert info.value.may_be_billed is (cls is SubmitOutcomeUnknown)


async def test_raw_transport_error_on_cancel_is_classified(clock: VirtualClock,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    _, fal = make(clock)
    handle = await fal.submit(OviRequest(prompt=PROMPT, image=IMAGE), CTX)

    async def boom(self):
        raise httpx.ReadError("[test] raw", request=httpx.Request("PUT", self.cancel_url))

    monkeypatch.setattr(FalRequest, "request_cancel", boom)
    with pytest.raises(ProviderUnavailable) as info:
        await fal.cancel(handle)
    assert info.value.retryable


async def test_submit_disables_fal_model_fallbacks() -> None:
    """fal may reroute a request to another model after retries (providers.md 1.3): we run Ovi or nothing."""
    emulator = Emulator(clock=VirtualClock())
    inner = emulator.transport()
    seen: list[httpx.Request] = []

    def record(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return emulator.handle(request)

    transport = httpx.MockTransport(record)
    fal = FalProvider(ProviderContext(api_key=SecretStr("k"), http=httpx.AsyncClient(transport=inner),
                                      transport=transport))
    handle = await fal.submit(OviRequest(prompt=PROMPT, image=IMAGE), CTX)
    await fal.status(handle)
    submit, status = seen
    assert submit.method == "POST" and submit.headers["x-fal-disable-fallbacks"] == "true"
    assert "x-fal-disable-fallbacks" not in status.headers
