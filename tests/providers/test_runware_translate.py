"""Runware's pure parts: golden payloads for every honored field, refusals, drops, parsing, errors."""

from __future__ import annotations

import base64
import json
from decimal import Decimal
from pathlib import Path

import httpx
import pytest
from pydantic import SecretStr

from gateway.contract import JobHandle, JobState, ProviderContext, SubmitContext
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
    ResultExpired,
    SubmitOutcomeUnknown,
    UnsupportedByProvider,
)
from gateway.jobs.fate import is_verdict
from gateway.request import Mode, OviRequest
from providers.runware import RunwareProvider
from providers.runware.translate import find_from, handle_from_submit, parse_output, status_from
from tests.conftest import PNG_BYTES

TASK = "fd9a5ac6-7acc-44ef-a961-cf55b99e41cd"
CTX = SubmitContext(idempotency_key=TASK)
PROMPT = "A knight in the rain. <S>I will defend this land.<E> <AUDCAP>Thunder, war drums.<ENDAUDCAP>"
IMAGE = "https://example.com/knight.jpg"
PNG_B64 = base64.b64encode(PNG_BYTES).decode()
HANDLE = JobHandle("runware", TASK, {"endpoint": "runware:190@1"})
BASE = {"taskType": "videoInference", "taskUUID": TASK, "model": "runware:190@1", "positivePrompt": PROMPT,
        "inputs": {"image": IMAGE}, "deliveryMethod": "async", "includeCost": True}


# pure parts never send: a client on a transport that fails loudly (and builds no TLS context)
OFFLINE = httpx.AsyncClient(transport=httpx.MockTransport(lambda request: pytest.fail("no I/O expected")))


@pytest.fixture
def provider() -> RunwareProvider:
    return RunwareProvider(ProviderContext(api_key=SecretStr("rw-secret-key-123"), http=OFFLINE))


def payload(provider: RunwareProvider, ctx: SubmitContext = CTX, **fields) -> list[dict]:
    return provider.translate(OviRequest(prompt=PROMPT, image=fields.pop("image", IMAGE), **fields), ctx)


def test_class_attributes() -> None:
    assert RunwareProvider.name == "runware" and RunwareProvider.env_key == "RUNWARE_API_KEY"
    assert RunwareProvider.reconcilable is True and RunwareProvider.contract_version == 1
    assert set(RunwareProvider.capabilities.modes) == {Mode.IMAGE_TO_VIDEO}
    assert RunwareProvider.capabilities.modes[Mode.IMAGE_TO_VIDEO].endpoint == "runware:190@1"


def test_minimal_payload(provider: RunwareProvider) -> None:
    assert payload(provider) == [BASE]


@pytest.mark.parametrize(("fields", "extra"), [
    ({"seed": 0}, {"seed": 0}),
    ({"seed": 2**63 - 1}, {"seed": 9223372036854775807}),
    ({"steps": 1}, {"steps": 1}),
    ({"steps": 100}, {"steps": 100}),
    ({"fps": 1}, {"fps": 1}),
    ({"fps": 120}, {"fps": 120}),
    ({"output_format": "MOV"}, {"outputFormat": "MOV"}),
    ({"output_quality": 20}, {"outputQuality": 20}),
    ({"output_quality": 99}, {"outputQuality": 99}),
    ({"negative_prompt": ""}, {"advancedFeatures": {"videoNegativePrompt": ""}}),
    ({"audio_negative_prompt": ""}, {"advancedFeatures": {"audioNegativePrompt": ""}}),
    ({"video_guidance": 0}, {"advancedFeatures": {"videoCFGScale": 0.0}}),
    ({"audio_guidance": 0}, {"advancedFeatures": {"audioCFGScale": 0.0}}),
    ({"slg_layer": 0}, {"advancedFeatures": {"slgLayer": 0}}),
    ({"video_guidance": 10, "audio_guidance": 7.5, "slg_layer": 30},
     {"advancedFeatures": {"videoCFGScale": 10.0, "audioCFGScale": 7.5, "slgLayer": 30}}),
])
def test_each_field_is_sent_including_falsy_values(provider: RunwareProvider, fields: dict, extra: dict) -> None:
    assert payload(provider, **fields) == [{**BASE, **extra}]


def test_every_field_at_once(provider: RunwareProvider) -> None:
    got = payload(provider, seed=42, steps=30, negative_prompt="jitter, blur", audio_negative_prompt="robotic",
                  video_guidance=5, audio_guidance=4, slg_layer=11, fps=24, output_format="WEBM", output_quality=95)
    assert got == [{
        "taskType": "videoInference", "taskUUID": TASK, "model": "runware:190@1", "positivePrompt": PROMPT,
        "inputs": {"image": IMAGE}, "deliveryMethod": "async", "includeCost": True,
        "seed": 42, "steps": 30, "fps": 24, "outputFormat": "WEBM", "outputQuality": 95,
        "advancedFeatures": {"videoNegativePrompt": "jitter, blur", "audioNegativePrompt": "robotic",
                             "videoCFGScale": 5.0, "audioCFGScale": 4.0, "slgLayer": 11},
    }]
    assert json.loads(json.dumps(got)) == got


@pytest.mark.parametrize(("image", "sent"), [
    (IMAGE, IMAGE),
    (f"data:image/png;base64,{PNG_B64}", f"data:image/png;base64,{PNG_B64}"),
    (PNG_B64, PNG_B64),
])
def test_image_forms_are_sent_as_given(provider: RunwareProvider, image: str, sent: str) -> None:
    assert payload(provider, image=image)[0]["inputs"] == {"image": sent}


def test_local_file_is_inlined_as_a_data_uri(provider: RunwareProvider, png_file: Path) -> None:
    assert payload(provider, image=png_file)[0]["inputs"] == {"image": f"data:image/png;base64,{PNG_B64}"}


@pytest.mark.parametrize(("fields", "named"), [
    ({"steps": 101}, "steps=101 (allowed: 1–100)"),
    ({"fps": 121}, "fps=121 (allowed: 1–120)"),
    ({"video_guidance": 10.5}, "video_guidance=10.5 (allowed: 0–10)"),
    ({"audio_guidance": 11}, "audio_guidance=11.0 (allowed: 0–10)"),
    ({"slg_layer": 31}, "slg_layer=31 (allowed: 0–30)"),
    ({"output_quality": 19}, "output_quality=19 (allowed: 20–99)"),
    ({"output_quality": 100}, "output_quality=100 (allowed: 20–99)"),
])
def test_out_of_range_fields_are_refused(provider: RunwareProvider, fields: dict, named: str) -> None:
    with pytest.raises(UnsupportedByProvider) as info:
        payload(provider, **fields)
    assert "runware" in str(info.value) and named in str(info.value)
    assert info.value.provider == "runware" and [v.field for v in info.value.violations] == list(fields)


def test_text_to_video_is_refused_even_when_dropping(provider: RunwareProvider) -> None:
    for ctx in (CTX, SubmitContext(TASK, dropped=frozenset({"image", "size"}))):
        with pytest.raises(UnsupportedByProvider, match=r"image.*text-to-video not offered; offers image-to-video"):
            provider.translate(OviRequest(prompt=PROMPT, size="992x512"), ctx)


def test_dropped_fields_are_left_out(provider: RunwareProvider) -> None:
    ctx = SubmitContext(TASK, dropped=frozenset({"steps", "slg_layer"}))
    assert payload(provider, ctx, steps=150, slg_layer=40, seed=7) == [{**BASE, "seed": 7}]
    with pytest.raises(UnsupportedByProvider, match="fps=500"):
        payload(provider, ctx, steps=150, fps=500)


# ---- answers ------------------------------------------------------------------------------------
DOC_SUCCESS = {  # runware-ovi-model-docs.md, "Rain-Soaked Arcade Concourse"
    "taskType": "videoInference", "taskUUID": TASK, "videoUUID": "4585f688-3f56-4cdf-9750-de1343c9d355",
    "videoURL": "https://vm.runware.ai/video/os/a10dlim3/ws/5/vi/4585f688-3f56-4cdf-9750-de1343c9d355.mp4",
    "seed": 71241, "cost": 0.1171,
}


def test_parse_documented_result_item_and_poll_body(provider: RunwareProvider) -> None:
    for final in (DOC_SUCCESS, {"data": [{**DOC_SUCCESS, "status": "success"}]}):
        out = provider.parse(final, HANDLE)
        assert out.video_url == DOC_SUCCESS["videoURL"] and out.seed == 71241
        assert out.cost_usd == Decimal("0.1171") and out.nsfw is None and out.raw is final


def test_parse_nsfw_flag_and_missing_cost(provider: RunwareProvider) -> None:
    item = {k: v for k, v in DOC_SUCCESS.items() if k != "cost"}
    out = provider.parse({"data": [{**item, "status": "success", "NSFWContent": True}]}, HANDLE)
    assert out.nsfw is True and out.cost_usd is None


@pytest.mark.parametrize("final", [{"data": []}, {"data": [{"taskUUID": TASK}]}, {"data": "x"}, [1],
                                   {"data": [{**DOC_SUCCESS, "status": "processing"}]}])
def test_parse_rejects_bodies_without_a_result(provider: RunwareProvider, final) -> None:
    with pytest.raises(MalformedResponse):
        provider.parse(final, HANDLE)


def respond(status: int, body, headers: dict | None = None) -> httpx.Response:
    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    return httpx.Response(status, content=content, headers=headers or {},
                          request=httpx.Request("POST", "https://api.runware.ai/v1"))


def err(code: str, **more) -> dict:
    return {"errors": [{"code": code, "message": f"{code} happened", **more}]}


AUTH_DOC = {"errors": [{"code": "invalidApiKey", "message": "Invalid API key. Get one at https://my.runware.ai/signup",
                        "parameter": "apiKey", "taskType": "authentication"}]}


@pytest.mark.parametrize(("status", "body", "cls"), [
    (401, AUTH_DOC, AuthError),
    (200, AUTH_DOC, AuthError),
    (401, err("missingApiKey"), AuthError),
    (402, err("insufficientCredits"), InsufficientFunds),
    (400, err("accountBalanceTooLow"), InsufficientFunds),
    (403, err("monthlyQuotaExceeded"), InsufficientFunds),
    (429, err("rateLimitExceeded"), RateLimited),
    (400, err("contentPolicyViolation"), ContentRejected),
    (200, err("nsfwContentDetected"), ContentRejected),
    (400, err("invalidSteps", parameter="steps"), ProviderRejected),
    (400, err("missingPositivePrompt"), ProviderRejected),
    (400, err("unknownParameter", parameter=["duration", "width"]), ProviderRejected),
    (200, err("timeoutProvider"), ProviderUnavailable),
    (503, err("noAvailableServer"), ProviderUnavailable),
    (200, err("modelUnavailable"), ProviderUnavailable),
    (200, err("inferenceError"), GenerationFailed),
    (200, err("processingFailed"), GenerationFailed),
    (200, err("taskFailed"), GenerationFailed),
    (400, err("taskExpired"), ResultExpired),
    (402, err("somethingNeverSeenBefore"), InsufficientFunds),
    (500, err("somethingNeverSeenBefore"), ProviderUnavailable),
    (200, err("somethingNeverSeenBefore"), ProviderRejected),
    (404, b"<html>nope</html>", ProviderRejected),
    (502, b"Bad Gateway", ProviderUnavailable),
])
def test_classify_documented_error_shapes(provider: RunwareProvider, status: int, body, cls: type) -> None:
    error = provider.classify(respond(status, body))
    assert type(error) is cls and error.provider == "runware" and error.status_code == status


def test_classify_carries_code_retry_after_and_redacts_the_key(provider: RunwareProvider) -> None:
    error = provider.classify(respond(429, err("rateLimitExceeded", parameter="rw-secret-key-123"),
                                      {"retry-after": "3"}))
    assert isinstance(error, RateLimited) and error.retry_after == 3.0 and error.vendor_code == "rateLimitExceeded"
    assert "rw-secret-key-123" not in str(error) and "***" in str(error)


def test_classify_exceptions(provider: RunwareProvider) -> None:
    request = httpx.Request("POST", "https://api.runware.ai/v1")
    assert isinstance(provider.classify(httpx.ConnectError("down", request=request)), ProviderUnavailable)
    assert isinstance(provider.classify(httpx.ReadTimeout("slow", request=request)), ProviderUnavailable)
    assert isinstance(provider.classify(ValueError("bad json")), MalformedResponse)
    same = AuthError("x", provider="runware")
    assert provider.classify(same) is same
    assert not isinstance(provider.classify(httpx.ReadTimeout("slow", request=request)), SubmitOutcomeUnknown)


def test_error_entry_inside_a_failed_item_is_classified() -> None:
    body = {"data": [{"taskType": "videoInference", "taskUUID": TASK, "status": "error",
                      "error": {"code": "contentPolicyViolation", "message": "flagged"}}]}
    status = status_from(200, {}, json.dumps(body).encode(), task_uuid=TASK)
    assert status.state is JobState.FAILED and isinstance(status.error, ContentRejected)
    assert status.raw == body


# ---- submit / status / find answers (pure functions of one HTTP answer) -------------------------
def raw(body) -> bytes:
    return body if isinstance(body, bytes) else json.dumps(body).encode()


@pytest.mark.parametrize("body", [{"data": [{"taskType": "videoInference", "taskUUID": TASK}]}, {"data": []},
                                  {"data": None}])
def test_submit_answers_that_mean_accepted(body) -> None:
    assert handle_from_submit(200, {}, raw(body), task_uuid=TASK) == HANDLE


def test_a_conflict_is_reported_as_a_fact_the_runner_judges() -> None:
    """conflictTaskUUID says a task with this key exists, not that it is ours: the handle says
    ``conflict`` and ``fate.conflict_is_ours`` decides."""
    body = {"errors": [{"code": "conflictTaskUUID", "message": "exists", "taskUUID": TASK}]}
    for status in (200, 400):
        handle = handle_from_submit(status, {}, raw(body), task_uuid=TASK)
        assert handle.job_id == TASK and handle.data["conflict"] is True


@pytest.mark.parametrize(("status", "body", "cls", "billed"), [
    (200, err("invalidSteps", taskUUID=TASK), ProviderRejected, False),
    (400, err("unknownParameter"), ProviderRejected, False),
    (200, b"<html>", MalformedResponse, True),
    (500, b"oops", ProviderUnavailable, True),
    (503, err("serviceUnavailable"), ProviderUnavailable, True),
    (429, err("rateLimitExceeded"), RateLimited, False),
    (402, err("insufficientCredits"), InsufficientFunds, False),
])
def test_submit_answers_that_mean_refused(status: int, body, cls: type, billed: bool) -> None:
    with pytest.raises(cls) as info:
        handle_from_submit(status, {}, raw(body), task_uuid=TASK)
    assert info.value.may_be_billed is billed


@pytest.mark.parametrize(("body", "state", "progress"), [
    ({"data": [{"taskType": "videoInference", "taskUUID": TASK, "status": "processing", "progress": 42}]},
     JobState.RUNNING, 0.42),
    ({"data": [{"taskType": "videoInference", "taskUUID": TASK, "status": "processing"}]}, JobState.RUNNING, None),
    ({"data": [{"taskType": "videoInference", "taskUUID": TASK, "status": "pending"}]}, JobState.QUEUED, None),
    ({"data": []}, JobState.QUEUED, None),
    ({"data": [{**DOC_SUCCESS, "status": "success"}]}, JobState.SUCCEEDED, None),
    ({"data": [DOC_SUCCESS]}, JobState.SUCCEEDED, None),  # the documented item carries no status
])
def test_status_answers(body, state: JobState, progress) -> None:
    got = status_from(200, {}, raw(body), task_uuid=TASK)
    assert (got.state, got.progress, got.error, got.raw) == (state, progress, None, body)


@pytest.mark.parametrize(("status", "body", "cls"), [
    (200, err("inferenceError", taskUUID=TASK), GenerationFailed),
    (200, {"data": [{"taskType": "videoInference", "taskUUID": TASK, "status": "error"}]}, GenerationFailed),
    # the SDK's _is_error_response: a truthy code or errorId makes an item an error, whatever its status
    (200, {"data": [{"taskType": "videoInference", "taskUUID": TASK, "code": "inferenceError"}]}, GenerationFailed),
    (200, {"data": [{"taskType": "videoInference", "taskUUID": TASK, "status": "processing", "errorId": 17}]},
     GenerationFailed),
])
def test_status_answers_that_mean_failed(status: int, body, cls: type) -> None:
    got = status_from(status, {}, raw(body), task_uuid=TASK)
    assert got.state is JobState.FAILED and type(got.error) is cls and got.error.failover is True
    # Runware bills compute time and documents nothing about failed runs: conservatively billed
    assert got.error.may_be_billed is True and is_verdict(got.error)


@pytest.mark.parametrize("status", [200, 400])
def test_task_failed_or_not_found_is_a_failed_check_never_a_verdict(status: int) -> None:
    """"failed OR not found": a late submit is not found yet, so it says nothing final about the job."""
    with pytest.raises(GatewayError) as info:
        status_from(status, {}, raw(err("taskFailedOrNotFound", taskUUID=TASK)), task_uuid=TASK)
    assert not is_verdict(info.value)


@pytest.mark.parametrize("word", ["exploded", "warming", "QUEUED_AGAIN"])
def test_an_unknown_status_keeps_the_job_running(word: str) -> None:
    body = {"data": [{"taskType": "videoInference", "taskUUID": TASK, "status": word}]}
    assert status_from(200, {}, raw(body), task_uuid=TASK).state is JobState.RUNNING


def test_media_url_is_a_result_url() -> None:
    item = {"taskType": "videoInference", "taskUUID": TASK, "status": "success", "mediaUUID": "m",
            "mediaURL": "https://vm.runware.ai/video/m.mp4"}
    assert status_from(200, {}, raw({"data": [item]}), task_uuid=TASK).state is JobState.SUCCEEDED
    assert parse_output({"data": [item]}, TASK).video_url == "https://vm.runware.ai/video/m.mp4"


def task_err(code: str, task_type: str = "videoInference", task_uuid: str = TASK) -> dict:
    return err(code, taskType=task_type, taskUUID=task_uuid)


@pytest.mark.parametrize(("code", "cls"), [
    ("timeoutProvider", GenerationFailed),       # a provider/timeout family: final for this task
    ("noAvailableServer", GenerationFailed),
    ("inferenceError", GenerationFailed),
    ("contentPolicyViolation", ContentRejected),
    ("invalidImage", ProviderRejected),
])
def test_our_task_failing_in_errors_is_a_failed_status_not_a_raise(code: str, cls: type) -> None:
    got = status_from(200, {}, raw(task_err(code)), task_uuid=TASK)
    assert got.state is JobState.FAILED and type(got.error) is cls
    assert got.error.vendor_code == code and got.error.may_be_billed is True and not got.error.retryable
    assert find_from(200, {}, raw(task_err(code)), task_uuid=TASK) == HANDLE  # the task is known


@pytest.mark.parametrize(("status", "body", "cls"), [
    (200, task_err("timeoutProvider", task_type="getResponse"), ProviderUnavailable),  # the poll itself
    (200, err("timeoutProvider"), ProviderUnavailable),                                 # no task named
    (200, task_err("timeoutProvider", task_uuid="00000000-0000-4000-8000-000000000000"), ProviderUnavailable),
    (401, task_err("invalidApiKey"), AuthError),
    (429, task_err("rateLimitExceeded"), RateLimited),
    (402, task_err("insufficientCredits"), InsufficientFunds),
])
def test_request_level_errors_on_a_poll_still_raise(status: int, body, cls: type) -> None:
    with pytest.raises(cls) as info:
        status_from(status, {}, raw(body), task_uuid=TASK)
    assert type(info.value) is cls


@pytest.mark.parametrize(("status", "body", "cls"), [
    (200, AUTH_DOC, AuthError),
    (429, err("rateLimitExceeded"), RateLimited),
    (503, b"down", ProviderUnavailable),
    (200, b"not json", MalformedResponse),
])
def test_status_answers_that_raise(status: int, body, cls: type) -> None:
    with pytest.raises(cls):
        status_from(status, {}, raw(body), task_uuid=TASK)


@pytest.mark.parametrize(("status", "body", "found"), [
    (400, err("taskFailedOrNotFound", taskUUID=TASK), False),
    (200, err("taskFailedOrNotFound", taskUUID=TASK), False),
    (404, err("taskNotFound"), False),
    (200, {"data": [{"taskType": "videoInference", "taskUUID": TASK, "status": "processing"}]}, True),
    (200, {"data": [{**DOC_SUCCESS, "status": "success"}]}, True),
    (200, err("inferenceError", taskUUID=TASK), True),
    (200, {"data": []}, True),  # unclear: never risk a second paid submit
])
def test_find_answers(status: int, body, found: bool) -> None:
    assert find_from(status, {}, raw(body), task_uuid=TASK) == (HANDLE if found else None)


def test_find_raises_when_runware_cannot_be_asked() -> None:
    with pytest.raises(AuthError):
        find_from(401, {}, raw(AUTH_DOC), task_uuid=TASK)
    with pytest.raises(ProviderUnavailable):
        find_from(502, {}, b"Bad Gateway", task_uuid=TASK)


# ---- review finding 3: no "not found" is a verdict, and no 404 is -------------------------------------
@pytest.mark.parametrize("status", [200, 400, 404])
@pytest.mark.parametrize("code", ["taskNotFound", "notFound", "resourceNotFound"])
@pytest.mark.parametrize("task_type", ["getResponse", "videoInference"])
def test_no_not_found_code_is_a_verdict(status: int, code: str, task_type: str) -> None:
    """A task Runware cannot find (late, or kept elsewhere) is a failed check: polled again, never paid twice."""
    with pytest.raises(GatewayError) as info:
        status_from(status, {}, raw(task_err(code, task_type=task_type)), task_uuid=TASK)
    assert not is_verdict(info.value)


def test_a_404_is_never_a_verdict_whatever_the_code() -> None:
    with pytest.raises(GatewayError) as info:
        status_from(404, {}, raw(task_err("inferenceError")), task_uuid=TASK)
    assert not is_verdict(info.value)


def test_task_cancelled_stays_a_verdict() -> None:
    got = status_from(200, {}, raw(task_err("taskCancelled", task_type="getResponse")), task_uuid=TASK)
    assert got.state is JobState.FAILED and is_verdict(got.error)


# ---- review finding 11: readers as tolerant as the SDK ---------------------------------------------
def test_an_item_error_given_as_a_string_is_a_failed_task() -> None:
    body = {"data": [{"taskType": "videoInference", "taskUUID": TASK, "status": "error", "error": "GPU crashed"}]}
    got = status_from(200, {}, raw(body), task_uuid=TASK)
    assert got.state is JobState.FAILED and is_verdict(got.error) and "GPU crashed" in str(got.error)


def test_an_errors_entry_with_an_integer_code_is_read() -> None:
    body = {"errors": [{"code": 500, "message": "inference failed", "taskUUID": TASK, "taskType": "videoInference"}]}
    got = status_from(200, {}, raw(body), task_uuid=TASK)
    assert got.state is JobState.FAILED and got.error.vendor_code == "500"


def test_items_are_matched_by_task_uuid_whatever_their_task_type() -> None:
    """The SDK routes answers by taskUUID only (server.py L217-263): a getResponse-typed result is ours."""
    item = {"taskType": "getResponse", "taskUUID": TASK, "status": "success", "videoUUID": "v",
            "videoURL": "https://vm.runware.ai/v.mp4"}
    assert status_from(200, {}, raw({"data": [item]}), task_uuid=TASK).state is JobState.SUCCEEDED
    assert parse_output({"data": [item]}, TASK).video_url == "https://vm.runware.ai/v.mp4"


@pytest.mark.anyio
async def test_a_not_found_poll_never_pays_a_second_task() -> None:
    """The reviewer's proof: 404 ``taskNotFound`` for our task on every poll, default route (job_retries=1):
    one submit, then ``JobUnresolved`` (open for resume), never a second paid task."""
    from gateway import Gateway
    from gateway.clock import VirtualClock
    from gateway.errors import JobUnresolved
    submits: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        task = json.loads(request.content)[0]
        if task["taskType"] == "videoInference":
            submits.append(task["taskUUID"])
            return httpx.Response(200, json={"data": [{"taskType": "videoInference", "taskUUID": task["taskUUID"]}]})
        return httpx.Response(404, json={"errors": [{"code": "taskNotFound", "message": "Task not found",
                                                     "taskUUID": task["taskUUID"], "taskType": "getResponse"}]})

    gateway = Gateway(transport=httpx.MockTransport(handler), keys={"runware": "rw-secret-key-123"},
                      providers=["runware"], journal=":memory:", clock=VirtualClock())
    try:
        with pytest.raises(JobUnresolved):
            await gateway.agenerate(OviRequest(prompt=PROMPT, image=IMAGE), idempotency_key="clip-1")
        assert len(submits) == 1
        assert [s.state for s in gateway.journal.submits("clip-1")] == ["accepted"]
    finally:
        await gateway.aclose()
