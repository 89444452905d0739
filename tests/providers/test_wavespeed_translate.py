"""WaveSpeed pure parts: golden payloads, refusals, parsing of documented bodies, error classification."""

from __future__ import annotations

import json

import httpx
import pytest
from pydantic import SecretStr

from gateway.contract import CONTRACT_VERSION, JobHandle, JobState, ProviderContext, SubmitContext
from gateway.errors import (
    AuthError,
    ContentRejected,
    GenerationFailed,
    InsufficientFunds,
    MalformedResponse,
    ProviderRejected,
    ProviderUnavailable,
    RateLimited,
    ResultExpired,
    UnsupportedByProvider,
)
from gateway.jobs.fate import is_verdict
from gateway.request import OviRequest
from providers.wavespeed import WaveSpeedProvider
from providers.wavespeed import translate as tr
from providers.wavespeed.schemas import ImageToVideoInput, TextToVideoInput
from tests.conftest import PNG_BYTES

KNIGHT = ("A wide shot of a medieval knight standing in the rain, sword planted into the ground, glowing "
          "with mystical energy. <S>I will defend this land until my last breath.<E> <AUDCAP>Thunder rolls "
          "across the dark sky, distant war drums echo.<ENDAUDCAP>")
IMAGE = "https://example.com/knight.jpg"
CTX = SubmitContext(idempotency_key="6f1c0b8e-2a4d-4e7b-9c3a-1d2e3f4a5b6c")
HANDLE = JobHandle("wavespeed", "task-1", {})


@pytest.fixture(scope="module")
def provider() -> WaveSpeedProvider:
    # a client with a no-op transport: the pure parts never send, and no TLS context is built
    http = httpx.AsyncClient(transport=httpx.MockTransport(lambda request: httpx.Response(599)))
    return WaveSpeedProvider(ProviderContext(api_key=SecretStr("ws-secret-key"), http=http))


def i2v(**fields) -> OviRequest:
    return OviRequest(prompt=KNIGHT, image=IMAGE, **fields)


def t2v(**fields) -> OviRequest:
    return OviRequest(prompt=KNIGHT, **fields)


def test_class_attributes() -> None:
    assert WaveSpeedProvider.name == "wavespeed"
    assert WaveSpeedProvider.env_key == "WAVESPEED_API_KEY"
    assert WaveSpeedProvider.contract_version == CONTRACT_VERSION
    assert WaveSpeedProvider.reconcilable is False
    modes = WaveSpeedProvider.capabilities.modes
    assert {m.endpoint for m in modes.values()} == {"character-ai/ovi/image-to-video", "character-ai/ovi/text-to-video"}


# ---- golden payloads ----------------------------------------------------------------------------
@pytest.mark.parametrize(("request_", "payload"), [
    (i2v(), {"image": IMAGE, "prompt": KNIGHT, "seed": -1}),
    (i2v(seed=0), {"image": IMAGE, "prompt": KNIGHT, "seed": 0}),
    (i2v(seed=42), {"image": IMAGE, "prompt": KNIGHT, "seed": 42}),
    (i2v(seed=2147483647), {"image": IMAGE, "prompt": KNIGHT, "seed": 2147483647}),
    (i2v(fps=24, output_format="MP4"), {"image": IMAGE, "prompt": KNIGHT, "seed": -1}),
    (t2v(), {"prompt": KNIGHT, "seed": -1}),
    (t2v(seed=0, size="960x540"), {"prompt": KNIGHT, "size": "960*540", "seed": 0}),
    (t2v(size="540x960", seed=7, fps=24), {"prompt": KNIGHT, "size": "540*960", "seed": 7}),
], ids=["i2v-default", "seed-0", "seed-42", "seed-max", "fixed-fps-format", "t2v-default", "t2v-landscape",
        "t2v-portrait"])
def test_golden_payloads(provider: WaveSpeedProvider, request_: OviRequest, payload: dict) -> None:
    got = provider.translate(request_, CTX)
    assert got == payload
    assert list(got) == list(payload)  # key order too: the exact JSON
    model = ImageToVideoInput if request_.image else TextToVideoInput
    model.model_validate(got)  # the documented request schema accepts it


def test_local_file_shows_data_uri_in_translate(provider: WaveSpeedProvider, png_file) -> None:
    payload = provider.translate(OviRequest(prompt=KNIGHT, image=png_file, seed=3), CTX)
    assert payload["image"].startswith("data:image/png;base64,")
    assert payload["seed"] == 3


def test_build_payload_uses_the_uploaded_url() -> None:
    request = OviRequest(prompt=KNIGHT, image=PNG_BYTES)
    assert tr.build_payload(request, CTX, "https://cdn.example/u.png") == {
        "image": "https://cdn.example/u.png", "prompt": KNIGHT, "seed": -1}


# ---- refusals -------------------------------------------------------------------------------------
@pytest.mark.parametrize(("field", "value", "allowed"), [
    ("seed", 2147483648, "0–2147483647"),
    ("steps", 30, "not supported"),
    ("negative_prompt", "", "not supported"),
    ("negative_prompt", "jitter, blur", "not supported"),
    ("audio_negative_prompt", "robotic", "not supported"),
    ("video_guidance", 0.0, "not supported"),
    ("audio_guidance", 4.0, "not supported"),
    ("slg_layer", 0, "not supported"),
    ("output_quality", 90, "not supported"),
    ("fps", 30, "always 24"),
    ("output_format", "WEBM", "always MP4"),
])
def test_refusals_name_field_value_vendor_and_range(provider: WaveSpeedProvider, field, value, allowed) -> None:
    with pytest.raises(UnsupportedByProvider) as info:
        provider.translate(i2v(**{field: value}), CTX)
    message = str(info.value)
    assert field in message and repr(value) in message and "wavespeed" in message and allowed in message
    assert info.value.provider == "wavespeed"
    assert [v.field for v in info.value.violations] == [field]


def test_t2v_size_refused_outside_the_two_sizes(provider: WaveSpeedProvider) -> None:
    with pytest.raises(UnsupportedByProvider, match=r"size='992x512'.*960x540, 540x960"):
        provider.translate(t2v(size="992x512"), CTX)


def test_every_violation_is_listed(provider: WaveSpeedProvider) -> None:
    with pytest.raises(UnsupportedByProvider) as info:
        provider.translate(i2v(steps=40, negative_prompt="x", seed=2**40), CTX)
    assert {v.field for v in info.value.violations} == {"steps", "negative_prompt", "seed"}


def test_dropped_fields_are_left_out(provider: WaveSpeedProvider) -> None:
    ctx = SubmitContext(idempotency_key="k", dropped=frozenset({"steps", "negative_prompt", "audio_guidance"}))
    request = i2v(steps=50, negative_prompt="", audio_guidance=3.0, seed=0)
    assert provider.translate(request, ctx) == {"image": IMAGE, "prompt": KNIGHT, "seed": 0}


def test_dropped_seed_becomes_random(provider: WaveSpeedProvider) -> None:
    ctx = SubmitContext(idempotency_key="k", dropped=frozenset({"seed"}))
    assert provider.translate(i2v(seed=2**40), ctx) == {"image": IMAGE, "prompt": KNIGHT, "seed": -1}


def test_dropped_size_is_left_out(provider: WaveSpeedProvider) -> None:
    ctx = SubmitContext(idempotency_key="k", dropped=frozenset({"size"}))
    assert provider.translate(t2v(size="992x512"), ctx) == {"prompt": KNIGHT, "seed": -1}


# ---- parsing documented bodies ----------------------------------------------------------------------
def envelope(status: str, **data) -> dict:
    """The documented envelope (seed S2 / docs shared submit-response), with ``data`` overrides."""
    body = {"id": "task-1", "model": "character-ai/ovi/image-to-video", "outputs": [],
            "urls": {"get": "https://api.wavespeed.ai/api/v3/predictions/task-1/result"},
            "has_nsfw_contents": [], "status": status, "created_at": "2023-04-01T12:34:56.789Z",
            "error": "", "timings": {"inference": 0}}
    body.update(data)
    return {"code": 200, "message": "success", "data": body}


COMPLETED = envelope("completed", outputs=["https://cdn.example/out.mp4"], has_nsfw_contents=[False],
                     timings={"inference": 61234})


def test_parse_completed(provider: WaveSpeedProvider) -> None:
    out = provider.parse(COMPLETED, HANDLE)
    assert out.video_url == "https://cdn.example/out.mp4"
    assert out.nsfw is False and out.inference_s == pytest.approx(61.234)
    assert out.cost_usd is None and out.seed is None
    assert out.raw == COMPLETED


def test_parse_bytes_and_echoed_seed(provider: WaveSpeedProvider) -> None:
    body = envelope("completed", outputs=["https://x/o.mp4"], has_nsfw_contents=[True],
                    input={"image": IMAGE, "prompt": KNIGHT, "seed": 42})
    out = provider.parse(json.dumps(body).encode(), HANDLE)
    assert (out.seed, out.nsfw) == (42, True)
    random_seed = envelope("completed", outputs=["https://x/o.mp4"], input={"seed": -1})
    assert provider.parse(random_seed, HANDLE).seed is None


@pytest.mark.parametrize("body", [envelope("processing"), envelope("completed"), {"code": 200, "data": {}},
                                  {"code": 200, "message": "success"}, envelope("exploded")])
def test_parse_off_shape_is_malformed(provider: WaveSpeedProvider, body: dict) -> None:
    with pytest.raises(MalformedResponse):
        provider.parse(body, HANDLE)


def test_parse_not_json_is_malformed(provider: WaveSpeedProvider) -> None:
    with pytest.raises(MalformedResponse, match="not JSON"):
        provider.parse(b'{"data": [', HANDLE)


def test_parse_failed_raises_its_error(provider: WaveSpeedProvider) -> None:
    with pytest.raises(GenerationFailed, match="1403"):
        provider.parse(envelope("failed", error="Task execution failed", code=1403), HANDLE)


@pytest.mark.parametrize(("status", "state"), [("created", JobState.QUEUED), ("processing", JobState.RUNNING),
                                               ("completed", JobState.SUCCEEDED), ("failed", JobState.FAILED),
                                               ("cancelled", JobState.FAILED), ("timeout", JobState.FAILED),
                                               ("deleted", JobState.FAILED)])
def test_status_of(status: str, state: JobState) -> None:
    body = envelope(status)
    got = tr.status_of(body)
    assert got.state is state and got.raw == body
    assert (got.error is not None) is (state is JobState.FAILED)


@pytest.mark.parametrize(("code", "error_type"), [
    (1200, ContentRejected), (1400, ProviderRejected), (1401, ProviderRejected), (1402, ProviderRejected),
    (1403, GenerationFailed), (1405, GenerationFailed), (5000, GenerationFailed), (5003, GenerationFailed),
    (5004, GenerationFailed), (None, GenerationFailed)])
def test_failed_task_codes(code, error_type) -> None:
    fields = {"error": "boom"} if code is None else {"error": "boom", "code": code}
    error = tr.status_of(envelope("failed", **fields)).error
    assert type(error) is error_type
    assert error.may_be_billed is True
    assert error.vendor_code == (None if code is None else str(code))
    assert "boom" in str(error)


@pytest.mark.parametrize(("body", "error_type"), [
    ({"code": 1403, "message": "Task execution failed", "data": None}, GenerationFailed),
    ({"code": 5004, "message": "timeout", "data": {"id": "abc", "error": "ran out of time"}}, GenerationFailed),
    ({"code": 1200, "message": "flagged"}, ContentRejected),
])
def test_task_code_in_the_poll_envelope_is_a_failed_status(body: dict, error_type) -> None:
    got = tr.status_of(json.dumps(body).encode())
    assert got.state is JobState.FAILED and type(got.error) is error_type and got.raw == body
    assert got.error.vendor_code == str(body["code"]) and got.error.may_be_billed is True
    assert not got.error.retryable


@pytest.mark.parametrize(("body", "error_type"), [({"code": 401, "message": "Unauthorized"}, AuthError),
                                                  ({"code": 500, "message": "oops"}, ProviderUnavailable)])
def test_request_code_in_the_poll_envelope_still_raises(body: dict, error_type) -> None:
    with pytest.raises(error_type):
        tr.status_of(body)


def test_content_rejection_does_not_fail_over() -> None:
    error = tr.status_of(envelope("failed", error="nsfw", code=1200)).error
    assert error.failover is False and error.retryable is False
    assert tr.status_of(envelope("failed", error="fetch", code=1402)).error.failover is True


# ---- error classification ----------------------------------------------------------------------------
def response(status: int, body: object, headers: dict | None = None) -> httpx.Response:
    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    return httpx.Response(status, content=content, headers=headers or {})


@pytest.mark.parametrize(("status", "body", "error_type"), [
    (401, {"code": 401, "message": "Unauthorized"}, AuthError),
    (403, {"code": 403, "message": "Forbidden"}, AuthError),
    (402, {"code": 402, "message": "Insufficient balance"}, InsufficientFunds),
    (400, {"code": 400, "message": "Insufficient balance, please top up"}, InsufficientFunds),
    (400, {"code": 400, "message": "image is required"}, ProviderRejected),
    (422, b"<html>unprocessable</html>", ProviderRejected),
    (502, b"Bad Gateway", ProviderUnavailable),
    (503, {"code": 503, "message": "Service unavailable"}, ProviderUnavailable),
])
def test_classify_http(provider: WaveSpeedProvider, status, body, error_type) -> None:
    error = provider.classify(response(status, body))
    assert type(error) is error_type
    assert error.status_code == status and error.may_be_billed is False


def test_rate_limit_carries_retry_after(provider: WaveSpeedProvider) -> None:
    error = provider.classify(response(429, {"code": 429, "message": "slow down"}, {"Retry-After": "2"}))
    assert isinstance(error, RateLimited) and error.retry_after == 2.0 and error.retryable


# The official SDK never re-sends a submit that got no 200 ("the task may already have been created",
# client.py L196-208): every 5xx, the edge's 502-504 included, may hide a created task.
@pytest.mark.parametrize(("status", "billed"), [(500, True), (502, True), (503, True), (504, True)])
def test_submit_5xx_billing(status: int, billed: bool) -> None:
    error = tr.classify_http(status, b'{"code": %d, "message": "x"}' % status, submitting=True)
    assert isinstance(error, ProviderUnavailable) and error.may_be_billed is billed
    assert tr.classify_http(status, b"", submitting=False).may_be_billed is False


def test_poll_404_is_a_failed_check_never_expired() -> None:
    gone = tr.classify_http(404, b'{"code":404,"message":"not found"}', polling=True)
    assert not isinstance(gone, ResultExpired) and not is_verdict(gone)
    assert isinstance(tr.classify_http(404, b"", polling=False), ProviderRejected)


def test_tolerant_reader_nulls_and_unknown_statuses() -> None:
    """As the SDK reads them (client.py L341-362): null lists are empty, an unknown status keeps polling."""
    body = {"code": 200, "message": "success", "data": {"id": "t1", "status": "warming_up", "outputs": None,
                                                         "has_nsfw_contents": None, "error": None}}
    assert tr.status_of(body).state is JobState.RUNNING
    assert tr.status_of({**body, "data": {**body["data"], "status": "created"}}).state is JobState.QUEUED
    done = {**body, "data": {**body["data"], "status": "completed", "outputs": ["https://x/y.mp4"]}}
    assert tr.status_of(done).state is JobState.SUCCEEDED
    assert tr.parse_output(done, JobHandle("wavespeed", "t1")).video_url == "https://x/y.mp4"
    for word in ("failed", "cancelled", "timeout", "deleted"):
        failed = tr.status_of({**body, "data": {**body["data"], "status": word}})
        assert failed.state is JobState.FAILED and is_verdict(failed.error)
    coded = tr.status_of({"code": 1403, "message": "failed", "data": {"id": "t1", "status": "processing"}})
    assert coded.state is JobState.FAILED and is_verdict(coded.error)


def test_key_is_redacted(provider: WaveSpeedProvider) -> None:
    error = provider.classify(response(401, {"code": 401, "message": "bad key ws-secret-key"}))
    assert "ws-secret-key" not in str(error) and "***" in str(error)


def test_vendor_code_read_from_body() -> None:
    error = tr.classify_http(400, b'{"code": 1401, "message": "seed out of range"}')
    assert error.vendor_code == "1401" and "seed out of range" in str(error)


@pytest.mark.parametrize(("body", "error_type"), [
    ({"code": 401, "message": "Unauthorized"}, AuthError),
    ({"code": 400, "message": "prompt is required", "data": None}, ProviderRejected),
    ({"code": 1200, "message": "flagged"}, ContentRejected),
    ({"code": "weird", "message": "?"}, MalformedResponse),
])
def test_error_code_in_an_http_200_body(body: dict, error_type) -> None:
    with pytest.raises(error_type):
        tr.parse_envelope(body)


def test_classify_transport_and_other(provider: WaveSpeedProvider) -> None:
    request = httpx.Request("GET", "https://api.wavespeed.ai/")
    assert isinstance(provider.classify(httpx.ConnectError("refused", request=request)), ProviderUnavailable)
    assert isinstance(provider.classify(ValueError("odd")), MalformedResponse)
    already = GenerationFailed("x", provider="wavespeed")
    assert provider.classify(already) is already


def test_parse_upload_documented_body() -> None:
    body = {"code": 200, "message": "success", "data": {"type": "image", "download_url": "https://x/f.png",
                                                        "filename": "f.png", "size": 1024000}}
    assert tr.parse_upload(body) == "https://x/f.png"
    with pytest.raises(MalformedResponse):
        tr.parse_upload({"code": 200, "message": "success", "data": {"type": "image"}})
    with pytest.raises(AuthError):
        tr.parse_upload({"code": 401, "message": "Unauthorized"})


# ---- review finding 2: on submit, a readable data.id is the job (the SDK reads only status + data.id) ----
@pytest.mark.parametrize("body", [
    {"code": 201, "message": "created", "data": {"id": "p1", "status": "created"}},
    {"data": {"id": "p1", "status": "created"}},                                      # no envelope code
    {"code": 200, "data": {"id": "p1", "status": "created", "created_at": 1764580000}},  # a numeric timestamp
    {"code": 1403, "message": "odd", "data": {"id": "p1", "status": "weird", "outputs": None}},
])
def test_a_submit_answer_naming_a_task_is_that_task(body) -> None:
    assert tr.submitted_job(json.dumps(body).encode())[0] == "p1"


@pytest.mark.parametrize("body", [b"not json", b'{"code": 200, "data": {}}', b'{"code": 408, "message": "x"}',
                                  b'{"code": 500, "data": null}'])
def test_an_http_200_submit_naming_no_task_may_be_billed(body: bytes) -> None:
    with pytest.raises(MalformedResponse) as info:
        tr.submitted_job(body)
    assert info.value.may_be_billed is True


def test_an_http_200_submit_refusing_the_key_is_a_refusal() -> None:
    with pytest.raises(AuthError) as info:
        tr.submitted_job(b'{"code": 401, "message": "Unauthorized"}')
    assert info.value.may_be_billed is False


@pytest.mark.anyio
async def test_a_code_201_submit_is_followed_never_bought_again() -> None:
    """The reviewer's proof: HTTP 200 + data.id + code 201. The task is followed on WaveSpeed; Runware is
    never asked (before, the submit was closed failed, not billed, and the clip bought on Runware)."""
    from gateway import Gateway, Route
    from gateway.clock import VirtualClock
    hosts: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        hosts.append(request.url.host)
        if request.method == "POST":
            return httpx.Response(200, json={"code": 201, "message": "created",
                                             "data": {"id": "p1", "status": "created"}})
        return httpx.Response(200, json={"code": 200, "data": {"id": "p1", "status": "completed",
                                                                "outputs": ["https://cdn.wavespeed.ai/v.mp4"]}})

    gateway = Gateway(transport=httpx.MockTransport(handler), providers=["wavespeed", "runware"],
                      keys={"wavespeed": "ws-secret-key-123", "runware": "rw-secret-key-123"},
                      journal=":memory:", clock=VirtualClock())
    try:
        result = await gateway.agenerate(OviRequest(prompt="A knight. <S>Hold the line.<E>",
                                                    image="https://example.com/k.png"),
                                         route=Route(order=["wavespeed", "runware"]), idempotency_key="c")
    finally:
        await gateway.aclose()
    assert (result.provider, result.job_id) == ("wavespeed", "p1")
    assert "api.runware.ai" not in hosts


# ---- review finding 9: no WaveSpeed submit is sent twice once bytes may have left ----------------------
@pytest.mark.parametrize("status", [408, 409, 410, 500, 502, 504])
def test_submit_non_refusals_may_be_billed(status: int) -> None:
    error = tr.classify_http(status, b"Request Timeout", submitting=True)
    assert error.may_be_billed is True


@pytest.mark.parametrize("status", [400, 401, 402, 403, 404, 422, 429])
def test_submit_refusals_created_nothing(status: int) -> None:
    assert tr.classify_http(status, b'{"code": %d, "message": "x"}' % status, submitting=True).may_be_billed is False


@pytest.mark.anyio
@pytest.mark.parametrize("status", [408, 409])
async def test_a_408_or_409_submit_is_never_sent_again(status: int) -> None:
    from gateway import Gateway
    from gateway.clock import VirtualClock
    from gateway.errors import SubmitOutcomeUnknown
    posts: list[int] = []

    def handler(request: httpx.Request) -> httpx.Response:
        if request.method == "POST":
            posts.append(1)
            if len(posts) == 1:
                return httpx.Response(status, text="Request Timeout")
            return httpx.Response(200, json={"code": 200, "data": {"id": f"p{len(posts)}", "status": "created"}})
        return httpx.Response(200, json={"code": 200, "data": {"id": "p2", "status": "completed",
                                                                "outputs": ["https://cdn.wavespeed.ai/v.mp4"]}})

    gateway = Gateway(transport=httpx.MockTransport(handler), keys={"wavespeed": "ws-secret-key-123"},
                      providers=["wavespeed"], journal=":memory:", clock=VirtualClock())
    try:
        with pytest.raises(SubmitOutcomeUnknown):
            await gateway.agenerate(OviRequest(prompt="A knight. <S>Hold the line.<E>",
                                               image="https://example.com/k.png"))
    finally:
        await gateway.aclose()
    assert len(posts) == 1


# ---- poll readers as tolerant as the SDK ------------------------------------------------------------
@pytest.mark.parametrize(("body", "state"), [
    ({"code": 200, "data": {"id": "p", "status": "processing", "created_at": 1764580000}}, JobState.RUNNING),
    ({"data": {"id": "p", "status": "completed", "outputs": ["https://x.y/v.mp4"]}}, JobState.SUCCEEDED),
    ({"code": 200, "data": {"id": "p", "status": "failed", "error": {"message": "oom"}}}, JobState.FAILED),
])
def test_poll_readers_take_what_they_need(body, state: JobState) -> None:
    assert tr.status_of(body).state is state
