"""The real WaveSpeed adapter against the emulated vendor: happy paths, uploads, every fault kind, billing."""

from __future__ import annotations

import base64
import time
from decimal import Decimal

import httpx
import pytest
from pydantic import SecretStr

from gateway.clock import VirtualClock
from gateway.contract import JobHandle, JobState, JobStatus, ProviderContext, SubmitContext
from gateway.emulator import FAULT_KINDS, Emulator
from gateway.emulator.clips import DEFECTIVE_FATES, ClipStore
from gateway.errors import (
    AuthError,
    ConfigurationError,
    ContentRejected,
    GatewayError,
    GenerationFailed,
    InsufficientFunds,
    MalformedResponse,
    ProviderRejected,
    ProviderUnavailable,
    RateLimited,
    SubmitOutcomeUnknown,
    UnsupportedByProvider,
)
from gateway.jobs.fate import is_verdict
from gateway.request import OviRequest
from providers.wavespeed import WaveSpeedProvider
from tests.conftest import PNG_BYTES

pytestmark = pytest.mark.anyio

PROMPT = "A knight in the rain. <S>I will defend this land.<E> <AUDCAP>Thunder, war drums.<ENDAUDCAP>"
IMAGE = "https://example.com/knight.jpg"
CTX = SubmitContext(idempotency_key="0b6f3c1e-5d2a-4c8b-9e7f-123456789abc")
JOB_TIME = 60.0


def setup(clock: VirtualClock, *, faults: str | None = None, key: str | None = "test-key",
          api_keys: dict | None = None, queue_time: float = 0.0):
    emulator = Emulator(clock=clock, faults=faults, job_time=lambda rng: JOB_TIME, queue_time=queue_time,
                        api_keys=api_keys)
    http = httpx.AsyncClient(transport=emulator.transport())
    provider = WaveSpeedProvider(ProviderContext(api_key=None if key is None else SecretStr(key), http=http))
    return emulator, provider, http


async def run_to_end(provider: WaveSpeedProvider, clock: VirtualClock, handle: JobHandle):
    status = await provider.status(handle)
    for _ in range(5):
        if status.state.final:
            break
        clock.advance(JOB_TIME / 2 + 1)
        status = await provider.status(handle)
    return status


async def test_image_to_video_happy_path(clock: VirtualClock) -> None:
    emulator, provider, http = setup(clock)
    handle = await provider.submit(OviRequest(prompt=PROMPT, image=IMAGE, seed=0), CTX)
    assert handle.provider == "wavespeed"
    assert handle.data["result_url"] == f"https://api.wavespeed.ai/api/v3/predictions/{handle.job_id}/result"
    assert handle.data["urls_get"] == handle.data["result_url"]
    assert handle.data["endpoint"] == "character-ai/ovi/image-to-video"
    assert JobHandle.from_json(handle.to_json()) == handle

    first = await provider.status(handle)
    assert first.state is JobState.RUNNING
    clock.advance(JOB_TIME + 1)
    done = await provider.status(handle)
    assert done.state is JobState.SUCCEEDED
    out = await provider.result(handle, done)
    assert out.video_url.startswith("https://cdn.wavespeed.ai/")
    assert out.nsfw is False and out.inference_s == pytest.approx(JOB_TIME) and out.cost_usd is None
    assert out.raw["data"]["status"] == "completed"

    video = await http.get(out.video_url)
    assert video.content == ClipStore.asset("mp4") and video.headers["content-type"] == "video/mp4"
    ledger = emulator.ledger
    assert [j.price for j in ledger.billable("wavespeed")] == [Decimal("0.15")]
    assert list(ledger.billed_per_clip().values()) == [1]
    assert ledger.calls("wavespeed", "submit") == 1 and ledger.calls("wavespeed", "result") == 0
    assert emulator["wavespeed"].jobs[handle.job_id].payload == {"image": IMAGE, "prompt": PROMPT, "seed": 0}


async def test_queued_then_result_fetched_when_last_status_lacks_it(clock: VirtualClock) -> None:
    emulator, provider, _ = setup(clock, queue_time=10.0)
    handle = await provider.submit(OviRequest(prompt=PROMPT, image=IMAGE), CTX)
    assert (await provider.status(handle)).state is JobState.QUEUED
    clock.advance(10.0 + JOB_TIME)
    out = await provider.result(handle, JobStatus(JobState.SUCCEEDED))  # no raw: one GET
    assert out.video_url.endswith(f"{handle.job_id}.mp4")
    assert emulator["wavespeed"].jobs[handle.job_id].payload["seed"] == -1


async def test_text_to_video(clock: VirtualClock) -> None:
    emulator, provider, _ = setup(clock)
    handle = await provider.submit(OviRequest(prompt=PROMPT, size="540x960", seed=9), CTX)
    assert handle.data["endpoint"] == "character-ai/ovi/text-to-video"
    status = await run_to_end(provider, clock, handle)
    assert status.state is JobState.SUCCEEDED
    assert (await provider.result(handle, status)).video_url
    assert emulator["wavespeed"].jobs[handle.job_id].payload == {"prompt": PROMPT, "size": "540*960", "seed": 9}


@pytest.mark.parametrize("form", ["file", "base64", "data_uri"])
async def test_local_image_is_uploaded_first(clock: VirtualClock, png_file, form: str) -> None:
    image = {"file": png_file, "base64": base64.b64encode(PNG_BYTES).decode(),
             "data_uri": "data:image/png;base64," + base64.b64encode(PNG_BYTES).decode()}[form]
    emulator, provider, http = setup(clock)
    handle = await provider.submit(OviRequest(prompt=PROMPT, image=image), CTX)
    sent = emulator["wavespeed"].jobs[handle.job_id].payload["image"]
    assert sent.startswith("https://cdn.wavespeed.ai/")
    assert (await http.get(sent)).content == PNG_BYTES  # the vendor can fetch what we uploaded
    assert emulator.ledger.calls("wavespeed", "upload") == 1
    assert (await run_to_end(provider, clock, handle)).state is JobState.SUCCEEDED


async def test_missing_key_fails_before_any_request(clock: VirtualClock) -> None:
    emulator, provider, _ = setup(clock, key=None)
    with pytest.raises(ConfigurationError, match="WAVESPEED_API_KEY"):
        await provider.submit(OviRequest(prompt=PROMPT, image=IMAGE), CTX)
    assert emulator.ledger.requests == []


async def test_wrong_key_is_auth_error_and_not_echoed(clock: VirtualClock) -> None:
    emulator, provider, _ = setup(clock, key="wrong-key-123", api_keys={"wavespeed": "right-key"})
    with pytest.raises(AuthError) as info:
        await provider.submit(OviRequest(prompt=PROMPT, image=IMAGE), CTX)
    assert info.value.status_code == 401 and "wrong-key-123" not in repr(info.value)
    assert emulator.ledger.jobs == []


# ---- faults ---------------------------------------------------------------------------------------
SUBMIT_FAULTS = {
    "429": (RateLimited, False, 0),
    "500": (ProviderUnavailable, True, 0),   # ambiguous: WaveSpeed cannot be reconciled
    # never re-sent: the official SDK treats every submit without a 200 as possibly created (L196-208)
    "502": (ProviderUnavailable, True, 0),
    "503": (ProviderUnavailable, True, 0),
    "401": (AuthError, False, 0),
    "402": (InsufficientFunds, False, 0),
    "refuse": (ProviderUnavailable, False, 0),
    "timeout": (SubmitOutcomeUnknown, True, 0),
    "drop": (SubmitOutcomeUnknown, True, 1),  # the vendor made (and bills) the job
    "drop_body": (SubmitOutcomeUnknown, True, 1),  # the same, the answer's headers came first
    "bad_json": (MalformedResponse, True, 1),
    "400": (ProviderRejected, False, 0),
    "404": (ProviderRejected, False, 0),
    "422": (ProviderRejected, False, 0),
    "504": (ProviderUnavailable, True, 0),
    "late": (SubmitOutcomeUnknown, True, 0),  # on its way: billed once it arrives, 20 s later
    "500_id": (ProviderUnavailable, True, 1),  # the task was created, then the answer failed
}
# Kinds that answer rather than fail a submit, or apply to checks or jobs only (tests/emulator/test_adversity.py)
NOT_SUBMIT_ERRORS = {"ok", "fail", "stuck", "nsfw", *DEFECTIVE_FATES, "trickle", "nulls", "flap", "unknown_status",
                     "media_url", "fail_item", "fail_completed"}


def test_every_transport_fault_kind_is_covered() -> None:
    assert set(FAULT_KINDS) - NOT_SUBMIT_ERRORS == set(SUBMIT_FAULTS)


@pytest.mark.parametrize("kind", sorted(SUBMIT_FAULTS))
async def test_submit_faults(clock: VirtualClock, kind: str) -> None:
    error_type, billed, jobs = SUBMIT_FAULTS[kind]
    emulator, provider, _ = setup(clock, faults=f"wavespeed.submit={kind}")
    with pytest.raises(error_type) as info:
        await provider.submit(OviRequest(prompt=PROMPT, image=IMAGE), CTX)
    assert type(info.value) is error_type
    assert info.value.may_be_billed is billed
    assert len(emulator.ledger.billable("wavespeed")) == jobs
    assert emulator.ledger.calls("wavespeed", "submit") == 1  # never re-sent
    if kind == "429":
        assert info.value.retry_after == 2.0
    if error_type is SubmitOutcomeUnknown:
        assert info.value.job_hint == {"idempotency_key": CTX.idempotency_key}


STATUS_FAULTS = {
    "429": RateLimited, "500": ProviderUnavailable, "502": ProviderUnavailable, "503": ProviderUnavailable,
    "401": AuthError, "402": InsufficientFunds, "refuse": ProviderUnavailable, "timeout": ProviderUnavailable,
    "drop": ProviderUnavailable, "drop_body": ProviderUnavailable, "bad_json": MalformedResponse,
}


@pytest.mark.parametrize("kind", sorted(STATUS_FAULTS))
async def test_status_faults_then_recovery(clock: VirtualClock, kind: str) -> None:
    emulator, provider, _ = setup(clock, faults=f"wavespeed.status={kind}")
    handle = await provider.submit(OviRequest(prompt=PROMPT, image=IMAGE), CTX)
    with pytest.raises(STATUS_FAULTS[kind]) as info:
        await provider.status(handle)
    assert info.value.may_be_billed is False
    clock.advance(JOB_TIME + 1)
    assert (await provider.status(handle)).state is JobState.SUCCEEDED  # the job survived the fault
    assert len(emulator.ledger.billable("wavespeed")) == 1


async def test_lost_answer_body_is_one_post_then_one_poll(clock: VirtualClock) -> None:
    """drop_body: WaveSpeed made (and bills) the job but the answer's body never arrived."""
    emulator, provider, _ = setup(clock, faults="wavespeed.submit=drop_body")
    started = time.monotonic()
    with pytest.raises(SubmitOutcomeUnknown):
        await provider.submit(OviRequest(prompt=PROMPT, image=IMAGE), CTX)
    assert emulator.ledger.calls("wavespeed", "submit") == 1 and len(emulator.ledger.billable("wavespeed")) == 1
    emulator["wavespeed"].faults.add("status", "drop_body")
    handle = await provider.submit(OviRequest(prompt=PROMPT, image=IMAGE), CTX)
    with pytest.raises(ProviderUnavailable) as polled:
        await provider.status(handle)
    assert polled.value.retryable and emulator.ledger.calls("wavespeed", "status") == 1
    assert time.monotonic() - started < 0.5  # no sleeps anywhere underneath


UPLOAD_FAULTS = {
    "429": RateLimited, "500": ProviderUnavailable, "502": ProviderUnavailable, "503": ProviderUnavailable,
    "401": AuthError, "402": InsufficientFunds, "refuse": ProviderUnavailable, "timeout": ProviderUnavailable,
    "drop": ProviderUnavailable, "drop_body": ProviderUnavailable, "bad_json": MalformedResponse,
}


@pytest.mark.parametrize("kind", sorted(UPLOAD_FAULTS))
async def test_upload_faults_are_pre_submit(clock: VirtualClock, png_file, kind: str) -> None:
    emulator, provider, _ = setup(clock, faults=f"wavespeed.upload={kind}")
    with pytest.raises(UPLOAD_FAULTS[kind]) as info:
        await provider.submit(OviRequest(prompt=PROMPT, image=png_file), CTX)
    assert info.value.may_be_billed is False
    assert emulator.ledger.calls("wavespeed", "submit") == 0 and emulator.ledger.jobs == []


@pytest.mark.parametrize(("fate", "error_type", "code"), [("fail", GenerationFailed, "1403"),
                                                          ("nsfw", ContentRejected, "1200")])
async def test_job_failures(clock: VirtualClock, fate: str, error_type: type[GatewayError], code: str) -> None:
    emulator, provider, _ = setup(clock, faults=f"wavespeed.job={fate}")
    handle = await provider.submit(OviRequest(prompt=PROMPT, image=IMAGE), CTX)
    status = await run_to_end(provider, clock, handle)
    assert status.state is JobState.FAILED
    assert type(status.error) is error_type and status.error.vendor_code == code
    assert status.raw["data"]["status"] == "failed" and status.raw["data"]["code"] == int(code)
    with pytest.raises(error_type):
        await provider.result(handle, status)
    assert emulator.ledger.billable("wavespeed") == []  # failed jobs are not billed


async def test_stuck_job_keeps_running(clock: VirtualClock) -> None:
    _, provider, _ = setup(clock, faults="wavespeed.job=stuck")
    handle = await provider.submit(OviRequest(prompt=PROMPT, image=IMAGE), CTX)
    clock.advance(100_000)
    assert (await provider.status(handle)).state is JobState.RUNNING


async def test_non_url_image_fails_with_media_access_code(clock: VirtualClock) -> None:
    _emulator, _, http = setup(clock)
    answer = await http.post("https://api.wavespeed.ai/api/v3/character-ai/ovi/image-to-video",
                             json={"image": "data:image/png;base64,AAAA", "prompt": "x"},
                             headers={"Authorization": "Bearer k"})
    job_id = answer.json()["data"]["id"]
    clock.advance(JOB_TIME + 1)
    data = (await http.get(f"https://api.wavespeed.ai/api/v3/predictions/{job_id}",
                           headers={"Authorization": "Bearer k"})).json()["data"]
    assert (data["status"], data["code"]) == ("failed", 1402)


# ---- validation -------------------------------------------------------------------------------------
I2V_URL = "https://api.wavespeed.ai/api/v3/character-ai/ovi/image-to-video"
T2V_URL = "https://api.wavespeed.ai/api/v3/character-ai/ovi/text-to-video"


@pytest.mark.parametrize(("url", "body", "needle"), [
    (I2V_URL, {"prompt": "x"}, "image is required"),
    (I2V_URL, {"image": IMAGE}, "prompt is required"),
    (I2V_URL, {"image": IMAGE, "prompt": ""}, "prompt must be"),
    (I2V_URL, {"image": IMAGE, "prompt": "x", "seed": -2}, "seed"),
    (I2V_URL, {"image": IMAGE, "prompt": "x", "seed": 2147483648}, "seed"),
    (I2V_URL, {"image": IMAGE, "prompt": "x", "seed": "1"}, "seed"),
    (I2V_URL, {"image": IMAGE, "prompt": "x", "steps": 30}, "unknown parameter(s): steps"),
    (I2V_URL, {"image": IMAGE, "prompt": "x", "size": "960*540"}, "unknown parameter(s): size"),
    (T2V_URL, {"prompt": "x", "size": "960x540"}, "size must be one of"),
    (T2V_URL, {"prompt": "x", "image": IMAGE}, "unknown parameter(s): image"),
    (T2V_URL, ["prompt"], "JSON object"),
])
async def test_emulator_rejects_bad_payloads(clock: VirtualClock, url: str, body, needle: str) -> None:
    emulator, provider, http = setup(clock)
    answer = await http.post(url, json=body, headers={"Authorization": "Bearer k"})
    assert answer.status_code == 400
    assert answer.json()["code"] == 400 and needle in answer.json()["message"]
    assert isinstance(provider.classify(answer), ProviderRejected)
    assert emulator.ledger.jobs == []


@pytest.mark.parametrize("body", [{"image": IMAGE, "prompt": "x"}, {"image": IMAGE, "prompt": "x", "seed": -1},
                                  {"image": IMAGE, "prompt": "x", "seed": 2147483647}])
async def test_emulator_accepts_documented_payloads(clock: VirtualClock, body: dict) -> None:
    _, _, http = setup(clock)
    answer = await http.post(I2V_URL, json=body, headers={"Authorization": "Bearer k"})
    assert answer.status_code == 200 and answer.json()["data"]["status"] == "created"


@pytest.mark.parametrize("headers", [{}, {"Authorization": "Key k"}, {"Authorization": "Bearer "}])
async def test_emulator_requires_bearer(clock: VirtualClock, headers: dict) -> None:
    _, _, http = setup(clock)
    answer = await http.post(I2V_URL, json={"image": IMAGE, "prompt": "x"}, headers=headers)
    assert answer.status_code == 401 and answer.json()["code"] == 401
    assert answer.json()["message"].startswith("Unauthorized")


async def test_both_documented_result_paths_and_unknown_ids(clock: VirtualClock) -> None:
    _, provider, http = setup(clock)
    handle = await provider.submit(OviRequest(prompt=PROMPT, image=IMAGE), CTX)
    auth = {"Authorization": "Bearer k"}
    short = (await http.get(f"https://api.wavespeed.ai/api/v3/predictions/{handle.job_id}", headers=auth)).json()
    assert short["data"]["id"] == handle.job_id and short["data"]["status"] == "processing"
    with pytest.raises(GatewayError) as info:  # a failed check, never "expired": 404 says nothing of the job
        await provider.status(JobHandle("wavespeed", "no-such-task", {}))
    assert info.value.status_code == 404 and not is_verdict(info.value)


async def test_cancel_is_a_documented_no_op(clock: VirtualClock) -> None:
    emulator, provider, _ = setup(clock)
    handle = await provider.submit(OviRequest(prompt=PROMPT, image=IMAGE), CTX)
    before = len(emulator.ledger.requests)
    assert await provider.cancel(handle) is None
    assert len(emulator.ledger.requests) == before  # no endpoint exists: nothing is sent
    assert await provider.find(CTX) is None
    clock.advance(JOB_TIME + 1)
    assert (await provider.status(handle)).state is JobState.SUCCEEDED


async def test_unsupported_field_is_refused_before_any_request(clock: VirtualClock) -> None:
    emulator, provider, _ = setup(clock)
    with pytest.raises(UnsupportedByProvider):
        await provider.submit(OviRequest(prompt=PROMPT, image=IMAGE, steps=50), CTX)
    assert emulator.ledger.requests == []
