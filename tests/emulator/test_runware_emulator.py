"""The real Runware adapter against the emulated vendor: happy paths, uploads, every fault kind, billing."""

from __future__ import annotations

import json
import threading
import time
from decimal import Decimal
from pathlib import Path

import httpx
import pytest
from pydantic import SecretStr

from gateway.clock import VirtualClock
from gateway.contract import JobHandle, JobState, ProviderContext, SubmitContext
from gateway.emulator import FAULT_KINDS, Emulator
from gateway.emulator.clips import DEFECTIVE_FATES, ClipStore
from gateway.emulator.runware import TASK_SCHEMA, hand_check, price_for, validate_task
from gateway.errors import (
    AuthError,
    ConfigurationError,
    ContentRejected,
    GenerationFailed,
    InsufficientFunds,
    MalformedResponse,
    ProviderRejected,
    ProviderUnavailable,
    RateLimited,
    SubmitOutcomeUnknown,
    UnsupportedByProvider,
)
from gateway.request import OviRequest
from providers.runware import RunwareProvider
from tests.conftest import PNG_BYTES

pytestmark = pytest.mark.anyio

PROMPT = "A knight in the rain. <S>I will defend this land.<E> <AUDCAP>Thunder, war drums.<ENDAUDCAP>"
IMAGE = "https://example.com/knight.jpg"
TASK = "0b6f3c1e-5d2a-4c8b-9e7f-123456789abc"
CTX = SubmitContext(idempotency_key=TASK)
JOB_TIME = 60.0
UPLOAD_ID = "7c9e6679-7425-40de-944b-e07fc1f90ae7"


def setup(clock: VirtualClock, *, faults: str | None = None, key: str | None = "test-key",
          api_keys: dict | None = None):
    emulator = Emulator(clock=clock, faults=faults, job_time=lambda rng: JOB_TIME, api_keys=api_keys)
    http = httpx.AsyncClient(transport=emulator.transport())
    ctx = ProviderContext(api_key=None if key is None else SecretStr(key), http=http, new_id=lambda: UPLOAD_ID)
    return emulator, RunwareProvider(ctx), http


async def run_to_end(provider: RunwareProvider, clock: VirtualClock, handle: JobHandle):
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
    assert handle == JobHandle("runware", TASK, {"endpoint": "runware:190@1"})
    assert JobHandle.from_json(handle.to_json()) == handle

    first = await provider.status(handle)
    assert first.state is JobState.RUNNING and first.progress == 0.0
    clock.advance(JOB_TIME / 2)
    half = await provider.status(handle)
    assert half.state is JobState.RUNNING and half.progress == 0.5
    clock.advance(JOB_TIME / 2 + 1)
    done = await provider.status(handle)
    assert done.state is JobState.SUCCEEDED
    calls = emulator.ledger.calls("runware")
    out = await provider.result(handle, done)
    assert emulator.ledger.calls("runware") == calls  # the success item holds the result: no extra call
    item = done.raw["data"][0]
    assert item["status"] == "success" and item["taskUUID"] == TASK
    assert out.video_url == f"https://vm.runware.ai/video/os/a10dlim3/ws/5/vi/{item['videoUUID']}.mp4"
    assert out.seed == 0 and out.cost_usd == Decimal("0.1171") and out.nsfw is None

    clip = await http.get(out.video_url)
    assert clip.status_code == 200 and clip.content == ClipStore.asset("mp4")
    assert clip.headers["content-type"] == "video/mp4"
    assert clip.headers["content-length"] == str(len(ClipStore.asset("mp4")))
    billable = emulator.ledger.billable("runware")
    assert len(billable) == 1 and billable[0].price == Decimal("0.1171") and billable[0].idempotency_key == TASK
    assert emulator.ledger.calls("runware", "submit") == 1


async def test_cost_follows_steps_and_format_sets_the_extension(clock: VirtualClock) -> None:
    emulator, provider, _ = setup(clock)
    req = OviRequest(prompt=PROMPT, image=IMAGE, steps=40, output_format="WEBM", video_guidance=5, slg_layer=11)
    handle = await provider.submit(req, CTX)
    done = await run_to_end(provider, clock, handle)
    out = await provider.result(handle, done)
    assert out.cost_usd == Decimal("0.1466") == price_for(40) and out.video_url.endswith(".webm")
    assert isinstance(out.seed, int)
    assert emulator["runware"].jobs[TASK].payload["advancedFeatures"] == {"videoCFGScale": 5.0, "slgLayer": 11}


async def test_local_file_is_sent_inline(clock: VirtualClock, png_file: Path) -> None:
    emulator, provider, _ = setup(clock)
    handle = await provider.submit(OviRequest(prompt=PROMPT, image=png_file), CTX)
    assert emulator["runware"].jobs[handle.job_id].payload["inputs"]["image"].startswith("data:image/png;base64,")
    assert emulator.ledger.calls("runware", "upload") == 0
    assert (await run_to_end(provider, clock, handle)).state is JobState.SUCCEEDED


async def test_large_local_file_goes_through_image_upload(clock: VirtualClock, tmp_path: Path) -> None:
    big = tmp_path / "big.png"
    big.write_bytes(PNG_BYTES + b"\0" * 4_000_000)  # its data URI is over 5 MB
    emulator, provider, _http = setup(clock)
    handle = await provider.submit(OviRequest(prompt=PROMPT, image=big), CTX)
    vendor = emulator["runware"]
    image_uuid = vendor.jobs[handle.job_id].payload["inputs"]["image"]
    assert image_uuid in vendor.uploads and vendor.uploads[image_uuid].startswith("data:image/png;base64,")
    assert emulator.ledger.calls("runware", "upload") == 1 and emulator.ledger.calls("runware", "submit") == 1
    assert (await run_to_end(provider, clock, handle)).state is JobState.SUCCEEDED


async def test_upload_failure_sends_no_job(clock: VirtualClock, tmp_path: Path) -> None:
    big = tmp_path / "big.png"
    big.write_bytes(PNG_BYTES + b"\0" * 4_000_000)
    emulator, provider, _ = setup(clock, faults="runware.upload=503")
    with pytest.raises(ProviderUnavailable) as info:
        await provider.submit(OviRequest(prompt=PROMPT, image=big), CTX)
    assert info.value.may_be_billed is False
    assert emulator.ledger.calls("runware", "submit") == 0 and not emulator.ledger.jobs


async def test_missing_key_fails_before_any_request(clock: VirtualClock) -> None:
    emulator, provider, _ = setup(clock, key=None)
    with pytest.raises(ConfigurationError, match="RUNWARE_API_KEY"):
        await provider.submit(OviRequest(prompt=PROMPT, image=IMAGE), CTX)
    assert emulator.ledger.requests == []


async def test_wrong_key_is_an_auth_error_and_never_echoed(clock: VirtualClock) -> None:
    emulator, provider, _ = setup(clock, key="wrong-key-123", api_keys={"runware": "right-key-456"})
    with pytest.raises(AuthError) as info:
        await provider.submit(OviRequest(prompt=PROMPT, image=IMAGE), CTX)
    assert info.value.vendor_code == "invalidApiKey" and "wrong-key-123" not in repr(info.value)
    assert not emulator.ledger.jobs


async def test_text_to_video_is_refused_before_sending(clock: VirtualClock) -> None:
    emulator, provider, _ = setup(clock)
    with pytest.raises(UnsupportedByProvider):
        await provider.submit(OviRequest(prompt=PROMPT), CTX)
    assert emulator.ledger.requests == []


# ---- faults on submit ---------------------------------------------------------------------------
SUBMIT_FAULTS = {
    "429": (RateLimited, False, None),
    "500": (ProviderUnavailable, True, None),
    "502": (ProviderUnavailable, True, None),
    "503": (ProviderUnavailable, True, None),
    "401": (AuthError, False, None),
    "402": (InsufficientFunds, False, None),
    "refuse": (ProviderUnavailable, False, None),
    "timeout": (SubmitOutcomeUnknown, True, None),
    "drop": (SubmitOutcomeUnknown, True, "found"),
    "drop_body": (SubmitOutcomeUnknown, True, "found"),
    "bad_json": (MalformedResponse, True, "found"),
    "400": (ProviderRejected, False, None),
    "404": (ProviderRejected, False, None),
    "422": (ProviderRejected, False, None),
    "504": (ProviderUnavailable, True, None),
    "late": (SubmitOutcomeUnknown, True, None),  # still on its way when find() asks
    "500_id": (ProviderUnavailable, True, "found"),  # the task was created, then the answer failed
}
# Kinds that answer (slowly, with nulls, ...) rather than fail a submit, or apply to checks or jobs only:
# tests/emulator/test_adversity.py runs them on every vendor.
NOT_SUBMIT_ERRORS = {"ok", "fail", "stuck", "nsfw", *DEFECTIVE_FATES, "trickle", "nulls", "flap", "unknown_status",
                     "media_url", "fail_item", "fail_completed"}


def test_every_transport_fault_kind_is_covered() -> None:
    assert set(SUBMIT_FAULTS) | NOT_SUBMIT_ERRORS == set(FAULT_KINDS)


@pytest.mark.parametrize("fault", sorted(SUBMIT_FAULTS))
async def test_submit_fault(clock: VirtualClock, fault: str) -> None:
    cls, billed, found = SUBMIT_FAULTS[fault]
    emulator, provider, _ = setup(clock, faults=f"runware.submit={fault}")
    with pytest.raises(cls) as info:
        await provider.submit(OviRequest(prompt=PROMPT, image=IMAGE), CTX)
    error = info.value
    assert type(error) is cls and error.may_be_billed is billed and error.provider == "runware"
    if fault == "429":
        assert error.retry_after == 2.0 and error.vendor_code == "rateLimitExceeded"
    if isinstance(error, SubmitOutcomeUnknown):
        assert error.job_hint["idempotency_key"] == TASK
    # reconciliation: Runware knows the task exactly when the emulator created it
    handle = await provider.find(CTX)
    assert (handle is not None) == (found == "found") == bool(emulator.ledger.jobs)
    if handle is not None:
        assert handle.job_id == TASK
        assert (await run_to_end(provider, clock, handle)).state is JobState.SUCCEEDED
    assert len(emulator.ledger.billable("runware")) == (1 if found else 0)


async def test_resubmitting_the_same_task_uuid_returns_the_existing_job(clock: VirtualClock) -> None:
    emulator, provider, http = setup(clock, faults="runware.submit=drop")
    req = OviRequest(prompt=PROMPT, image=IMAGE)
    with pytest.raises(SubmitOutcomeUnknown):
        await provider.submit(req, CTX)
    raw = await http.post("https://api.runware.ai/v1", json=provider.translate(req, CTX),
                          headers={"authorization": "Bearer test-key"})
    assert raw.status_code == 400 and raw.json()["errors"][0]["code"] == "conflictTaskUUID"
    handle = await provider.submit(req, CTX)  # conflictTaskUUID: the task is ours
    assert handle.job_id == TASK and len(emulator.ledger.billable("runware")) == 1


async def test_lost_answer_body_is_one_post_then_one_poll(clock: VirtualClock) -> None:
    """drop_body: Runware took (and bills) the task but its answer's body never arrived. The adapter
    sends exactly one POST and says the outcome is unknown; reconciling by taskUUID is the runner's."""
    emulator, provider, _ = setup(clock, faults="runware.submit=drop_body; runware.status=drop_body")
    started = time.monotonic()
    with pytest.raises(SubmitOutcomeUnknown) as info:
        await provider.submit(OviRequest(prompt=PROMPT, image=IMAGE), CTX)
    assert info.value.may_be_billed and info.value.job_hint["job_id"] == TASK
    assert emulator.ledger.calls("runware", "submit") == 1 and len(emulator.ledger.billable("runware")) == 1
    with pytest.raises(ProviderUnavailable) as polled:
        await provider.status(JobHandle("runware", TASK))
    assert polled.value.retryable and emulator.ledger.calls("runware", "status") == 1
    assert time.monotonic() - started < 0.5  # no sleeps anywhere underneath


# ---- faults on status ---------------------------------------------------------------------------
STATUS_FAULTS = {"429": RateLimited, "500": ProviderUnavailable, "502": ProviderUnavailable,
                 "503": ProviderUnavailable, "401": AuthError, "402": InsufficientFunds,
                 "refuse": ProviderUnavailable, "timeout": ProviderUnavailable, "drop": ProviderUnavailable,
                 "drop_body": ProviderUnavailable, "bad_json": MalformedResponse}


@pytest.mark.parametrize("fault", sorted(STATUS_FAULTS))
async def test_status_fault_then_recovery(clock: VirtualClock, fault: str) -> None:
    emulator, provider, _ = setup(clock, faults=f"runware.status={fault}")
    handle = await provider.submit(OviRequest(prompt=PROMPT, image=IMAGE), CTX)
    with pytest.raises(STATUS_FAULTS[fault]) as info:
        await provider.status(handle)
    assert type(info.value) is STATUS_FAULTS[fault] and info.value.may_be_billed is False
    assert (await run_to_end(provider, clock, handle)).state is JobState.SUCCEEDED
    assert len(emulator.ledger.billable("runware")) == 1


# ---- how jobs end -------------------------------------------------------------------------------
async def test_failed_job(clock: VirtualClock) -> None:
    emulator, provider, _ = setup(clock, faults="runware.job=fail")
    handle = await provider.submit(OviRequest(prompt=PROMPT, image=IMAGE), CTX)
    status = await run_to_end(provider, clock, handle)
    assert status.state is JobState.FAILED and isinstance(status.error, GenerationFailed)
    assert status.error.vendor_code == "inferenceError" and status.raw["errors"][0]["taskUUID"] == TASK
    assert status.error.may_be_billed  # Runware documents nothing about failed runs: conservative
    assert emulator.ledger.billable("runware") == []  # the emulator's own assumption
    assert await provider.find(CTX) == handle  # a failed task is still known to Runware


async def test_nsfw_job(clock: VirtualClock) -> None:
    emulator, provider, _ = setup(clock, faults="runware.job=nsfw")
    handle = await provider.submit(OviRequest(prompt=PROMPT, image=IMAGE), CTX)
    status = await run_to_end(provider, clock, handle)
    assert status.state is JobState.FAILED and isinstance(status.error, ContentRejected)
    assert status.raw["data"][0]["error"]["code"] == "contentPolicyViolation"
    assert emulator.ledger.billable("runware") == []


async def test_stuck_job_keeps_running(clock: VirtualClock) -> None:
    _, provider, _ = setup(clock, faults="runware.job=stuck")
    handle = await provider.submit(OviRequest(prompt=PROMPT, image=IMAGE), CTX)
    clock.advance(10 * JOB_TIME)
    status = await provider.status(handle)
    assert status.state is JobState.RUNNING and status.progress is not None and status.progress < 1


async def test_cancel_is_a_documented_no_op(clock: VirtualClock) -> None:
    emulator, provider, _ = setup(clock)
    handle = await provider.submit(OviRequest(prompt=PROMPT, image=IMAGE), CTX)
    calls = emulator.ledger.calls("runware")
    assert await provider.cancel(handle) is None
    assert emulator.ledger.calls("runware") == calls
    assert (await run_to_end(provider, clock, handle)).state is JobState.SUCCEEDED


async def test_find_unknown_task_is_none(clock: VirtualClock) -> None:
    _emulator, provider, http = setup(clock)
    raw = await http.post("https://api.runware.ai/v1", json=[{"taskType": "getResponse", "taskUUID": TASK}],
                          headers={"authorization": "Bearer test-key"})
    assert raw.status_code == 400 and raw.json()["errors"][0]["code"] == "taskFailedOrNotFound"
    assert await provider.find(CTX) is None
    await provider.submit(OviRequest(prompt=PROMPT, image=IMAGE), CTX)
    assert (await provider.find(CTX)).job_id == TASK


# ---- payload validation -------------------------------------------------------------------------
GOOD = {"taskType": "videoInference", "taskUUID": TASK, "model": "runware:190@1", "positivePrompt": "x",
        "inputs": {"image": IMAGE}, "deliveryMethod": "async", "includeCost": True}
BAD = [
    ({**GOOD, "duration": 5}, "unknownParameter", "duration"),
    ({**GOOD, "steps": 101}, "invalidSteps", "steps"),
    ({**GOOD, "steps": 0}, "invalidSteps", "steps"),
    ({**GOOD, "seed": -1}, "invalidSeed", "seed"),
    ({**GOOD, "fps": 121}, "invalidFps", "fps"),
    ({**GOOD, "outputFormat": "GIF"}, "invalidOutputFormat", "outputFormat"),
    ({**GOOD, "outputQuality": 19}, "invalidOutputQuality", "outputQuality"),
    ({**GOOD, "deliveryMethod": "sync"}, "invalidDeliveryMethod", "deliveryMethod"),
    ({**GOOD, "model": "runware:100@1"}, "invalidModel", "model"),
    ({**GOOD, "taskUUID": "not-a-uuid"}, "invalidTaskUUID", "taskUUID"),
    ({**GOOD, "inputs": {"image": "not an image!"}}, "invalidImage", "inputs.image"),
    ({**GOOD, "inputs": {"image": IMAGE, "video": IMAGE}}, "unknownParameter", "inputs.video"),
    ({**GOOD, "inputs": {}}, "missingImage", "inputs.image"),
    ({k: v for k, v in GOOD.items() if k != "positivePrompt"}, "missingPositivePrompt", "positivePrompt"),
    ({**GOOD, "advancedFeatures": {"videoCFGScale": 10.5}}, "invalidVideoCFGScale", "advancedFeatures.videoCFGScale"),
    ({**GOOD, "advancedFeatures": {"slgLayer": None}}, "invalidSlgLayer", "advancedFeatures.slgLayer"),
    ({**GOOD, "advancedFeatures": {"negativePrompt": "x"}}, "unknownParameter", "advancedFeatures.negativePrompt"),
    ({**GOOD, "acceleratorOptions": {"teaCacheDistance": 0.005}}, "invalidTeaCacheDistance",
     "acceleratorOptions.teaCacheDistance"),
    ({**GOOD, "acceleratorOptions": {"cacheEndStep": 5, "cacheEndStepPercentage": 50}}, "conflictingParameters",
     "acceleratorOptions.cacheEndStep"),
    ({**GOOD, "includeCost": "yes"}, "invalidIncludeCost", "includeCost"),
]


@pytest.mark.parametrize(("task", "code", "parameter"), BAD)
async def test_emulator_rejects_bad_payloads(clock: VirtualClock, task: dict, code: str, parameter: str) -> None:
    emulator, provider, http = setup(clock)
    raw = await http.post("https://api.runware.ai/v1", json=[task], headers={"authorization": "Bearer test-key"})
    assert raw.status_code == 400
    assert {"code": code, "parameter": parameter} == {k: raw.json()["errors"][0][k] for k in ("code", "parameter")}
    assert isinstance(provider.classify(raw), ProviderRejected) and not emulator.ledger.jobs


@pytest.mark.parametrize(("task", "code", "parameter"), BAD)
def test_hand_check_agrees_with_jsonschema(task: dict, code: str, parameter: str) -> None:
    jsonschema = pytest.importorskip("jsonschema")
    validator = jsonschema.Draft202012Validator(TASK_SCHEMA, format_checker=jsonschema.FormatChecker())
    assert hand_check(task) and validate_task(task) == hand_check(task)
    if parameter != "inputs.image":  # jsonschema checks no "uri" format without rfc3987, so any string passes
        assert list(validator.iter_errors(task))
    assert hand_check(GOOD) == [] and list(validator.iter_errors(GOOD)) == []


async def test_emulator_refuses_bodies_that_are_not_task_arrays(clock: VirtualClock) -> None:
    _, _, http = setup(clock)
    for body in (b"{}", b"not json", b"[]"):
        raw = await http.post("https://api.runware.ai/v1", content=body,
                              headers={"authorization": "Bearer test-key", "content-type": "application/json"})
        assert raw.status_code == 400 and raw.json()["errors"][0]["code"] == "invalidRequestBody"
    raw = await http.post("https://api.runware.ai/v1", json=[GOOD])
    assert raw.status_code == 401 and raw.json()["errors"][0]["code"] == "missingApiKey"
    raw = await http.post("https://api.runware.ai/v1", json=[{"taskType": "authentication", "apiKey": "k"}, GOOD])
    assert raw.status_code == 200 and raw.json() == {"data": [{"taskType": "videoInference", "taskUUID": TASK}]}


def test_loopback_server_hands_out_loopback_urls() -> None:
    async def scenario(port: int) -> None:
        async with httpx.AsyncClient() as http:
            ctx = ProviderContext(api_key=SecretStr("k"), http=http,
                                  options={"base_url": f"http://127.0.0.1:{port}/v1"})
            provider = RunwareProvider(ctx)
            handle = await provider.submit(OviRequest(prompt=PROMPT, image=IMAGE), CTX)
            done = await provider.status(handle)
            assert done.state is JobState.SUCCEEDED
            out = await provider.result(handle, done)
            assert out.video_url.startswith(f"http://127.0.0.1:{port}/v1/video/")
            assert (await http.get(out.video_url)).content == ClipStore.asset("mp4")

    import asyncio

    server = Emulator(clock=VirtualClock(), job_time=lambda rng: 0.0).serve(0)
    try:
        asyncio.run(scenario(server.server_port))
    finally:  # shutdown() waits out serve_forever's 0.5 s poll: let a daemon thread do it
        threading.Thread(target=lambda: (server.shutdown(), server.server_close()), daemon=True).start()


def test_price_reproduces_documented_costs() -> None:
    assert price_for(None) == price_for(30) == Decimal("0.1171")
    assert price_for(40) == Decimal("0.1466")
    assert json.loads(json.dumps(float(price_for(30)))) == 0.1171
