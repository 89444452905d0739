"""fal.ai: golden payloads, refusals, parsing of documented bodies, error classification (no I/O)."""

from __future__ import annotations

import base64
import json
from decimal import Decimal
from pathlib import Path

import httpx
import pytest
from pydantic import SecretStr

from gateway.contract import CONTRACT_VERSION, JobHandle, JobState, ProviderContext, SubmitContext
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
    ResultExpired,
    SubmitOutcomeUnknown,
    UnsupportedByProvider,
)
from gateway.jobs.fate import is_verdict
from gateway.request import Mode, OviRequest
from providers.fal import FalProvider
from providers.fal import translate as t
from tests.conftest import PNG_BYTES

SEED_PROMPT = (
    "An intimate close-up of a European woman with long dark hair as she gently brushes her hair in a softly "
    "lit bedroom, her delicate hand moving in the foreground. She looks directly into the camera with calm, "
    "focused eyes, a faint serene smile glowing in the warm lamp light. She says, <S>[soft whisper] I am an "
    "artificial intelligence.<E>.<AUDCAP>Soft whispering female voice, ASMR tone with gentle breaths, cozy room "
    "acoustics, subtle emphasis on \"I am an artificial intelligence\".<ENDAUDCAP>"
)
SEED_IMAGE = "https://storage.googleapis.com/falserverless/example_inputs/ovi_i2v_input.png"
PROMPT = "A knight in the rain. <S>I will defend this land.<E> <AUDCAP>Thunder.<ENDAUDCAP>"
CTX = SubmitContext(idempotency_key="5d0c6a3e-0000-4000-8000-000000000001")
KEY = "fal-secret-key-123456"


NO_NETWORK = httpx.MockTransport(lambda request: pytest.fail(f"unexpected request {request.url}"))


@pytest.fixture
def fal() -> FalProvider:
    return FalProvider(ProviderContext(api_key=SecretStr(KEY), http=httpx.AsyncClient(transport=NO_NETWORK),
                                       transport=NO_NETWORK))


def test_class_attributes() -> None:
    assert FalProvider.name == "fal"
    assert FalProvider.env_key == "FAL_KEY"
    assert FalProvider.contract_version == CONTRACT_VERSION
    assert FalProvider.reconcilable is False
    assert FalProvider.capabilities.modes[Mode.IMAGE_TO_VIDEO].endpoint == "fal-ai/ovi/image-to-video"
    assert FalProvider.capabilities.modes[Mode.TEXT_TO_VIDEO].endpoint == "fal-ai/ovi"


def test_seed_full_example_is_reproduced_literally(fal: FalProvider) -> None:
    request = OviRequest(prompt=SEED_PROMPT, image=SEED_IMAGE, negative_prompt="jitter, bad hands, blur, distortion",
                         steps=30, audio_negative_prompt="robotic, muffled, echo, distorted")
    assert fal.translate(request, CTX) == {
        "prompt": SEED_PROMPT,
        "image_url": SEED_IMAGE,
        "negative_prompt": "jitter, bad hands, blur, distortion",
        "num_inference_steps": 30,
        "audio_negative_prompt": "robotic, muffled, echo, distorted",
    }


def test_minimal_i2v_sends_no_defaults(fal: FalProvider) -> None:
    assert fal.translate(OviRequest(prompt=PROMPT, image=SEED_IMAGE), CTX) == {
        "prompt": PROMPT, "image_url": SEED_IMAGE}


def test_every_honored_field_including_falsy_values(fal: FalProvider) -> None:
    request = OviRequest(prompt=PROMPT, image=SEED_IMAGE, seed=0, steps=1, negative_prompt="",
                         audio_negative_prompt="", fps=24, output_format="MP4")
    assert fal.translate(request, CTX) == {
        "prompt": PROMPT, "image_url": SEED_IMAGE, "seed": 0, "num_inference_steps": 1,
        "negative_prompt": "", "audio_negative_prompt": ""}


def test_upper_bounds(fal: FalProvider) -> None:
    request = OviRequest(prompt=PROMPT, image=SEED_IMAGE, seed=2**32 - 1, steps=50)
    assert fal.translate(request, CTX) == {
        "prompt": PROMPT, "image_url": SEED_IMAGE, "seed": 4294967295, "num_inference_steps": 50}


def test_text_to_video_with_each_resolution(fal: FalProvider) -> None:
    assert fal.translate(OviRequest(prompt=PROMPT), CTX) == {"prompt": PROMPT}
    for size in t.RESOLUTIONS:
        request = OviRequest(prompt=PROMPT, size=size, seed=7, steps=20, negative_prompt="blur",
                             audio_negative_prompt="hiss")
        assert fal.translate(request, CTX) == {
            "prompt": PROMPT, "resolution": size, "seed": 7, "num_inference_steps": 20,
            "negative_prompt": "blur", "audio_negative_prompt": "hiss"}
    assert len(t.RESOLUTIONS) == 7 and "1120x448" in t.RESOLUTIONS


def test_local_images_show_as_data_uri_and_upload_url_substitutes(fal: FalProvider, png_file: Path) -> None:
    data_uri = "data:image/png;base64," + base64.b64encode(PNG_BYTES).decode()
    for image in (png_file, data_uri, base64.b64encode(PNG_BYTES).decode()):
        request = OviRequest(prompt=PROMPT, image=image)
        assert fal.translate(request, CTX) == {"prompt": PROMPT, "image_url": data_uri}
        assert t.build_payload(request, CTX, "https://v3.fal.media/files/x/image.png") == {
            "prompt": PROMPT, "image_url": "https://v3.fal.media/files/x/image.png"}


@pytest.mark.parametrize(("field", "value", "allowed"), [
    ("steps", 51, "1–50"),
    ("seed", 2**32, "0–4294967295"),
    ("fps", 30, "always 24"),
    ("output_format", "WEBM", "always MP4"),
    ("video_guidance", 5.0, "not supported"),
    ("audio_guidance", 4.0, "not supported"),
    ("slg_layer", 11, "not supported"),
    ("output_quality", 90, "not supported"),
])
def test_refusals_name_field_value_vendor_and_range(fal: FalProvider, field: str, value: object,
                                                    allowed: str) -> None:
    request = OviRequest(prompt=PROMPT, image=SEED_IMAGE, **{field: value})
    with pytest.raises(UnsupportedByProvider) as info:
        fal.translate(request, CTX)
    message = str(info.value)
    assert "fal" in message and field in message and repr(value) in message and allowed in message
    assert info.value.provider == "fal" and [v.field for v in info.value.violations] == [field]
    assert info.value.failover


def test_refuses_sizes_outside_the_enum(fal: FalProvider) -> None:
    with pytest.raises(UnsupportedByProvider, match=r"size='1024x1024'.*512x992"):
        fal.translate(OviRequest(prompt=PROMPT, size="1024x1024"), CTX)


def test_dropped_fields_are_left_out(fal: FalProvider) -> None:
    request = OviRequest(prompt=PROMPT, image=SEED_IMAGE, steps=80, video_guidance=5.0, seed=3)
    ctx = SubmitContext(idempotency_key=CTX.idempotency_key, dropped=frozenset({"steps", "video_guidance"}))
    assert fal.translate(request, ctx) == {"prompt": PROMPT, "image_url": SEED_IMAGE, "seed": 3}


@pytest.mark.anyio
async def test_submit_without_key_is_a_configuration_error() -> None:
    fal = FalProvider(ProviderContext(api_key=None, http=httpx.AsyncClient(transport=NO_NETWORK),
                                      transport=NO_NETWORK))
    with pytest.raises(ConfigurationError, match="FAL_KEY"):
        await fal.submit(OviRequest(prompt=PROMPT, image=SEED_IMAGE), CTX)


# ---- parsing -------------------------------------------------------------------------------------
HANDLE = JobHandle("fal", "req-1", {})


def test_parse_seed_example_response_without_seed(fal: FalProvider) -> None:
    body = {"video": {"url": "https://storage.googleapis.com/falserverless/example_inputs/ovi_i2v_output.mp4"}}
    out = fal.parse(body, HANDLE)
    assert out.video_url == "https://storage.googleapis.com/falserverless/example_inputs/ovi_i2v_output.mp4"
    assert out.seed is None and out.cost_usd is None and out.raw == body


def test_parse_schema_response_with_seed_and_file_fields(fal: FalProvider) -> None:
    body = {"video": {"url": "https://v3.fal.media/files/a/out.mp4", "content_type": "video/mp4",
                      "file_name": "out.mp4", "file_size": 123}, "seed": 42}
    out = fal.parse(body, HANDLE)
    assert (out.video_url, out.seed, out.cost_usd) == ("https://v3.fal.media/files/a/out.mp4", 42, None)


@pytest.mark.parametrize("body", [{"seed": 1}, {"video": {"content_type": "video/mp4"}}, [], {"video": "x"}])
def test_parse_malformed_results(fal: FalProvider, body: object) -> None:
    with pytest.raises(MalformedResponse):
        fal.parse(body, HANDLE)


def test_parse_documented_status_bodies() -> None:
    queued = t.parse_status({"status": "IN_QUEUE", "queue_position": 3, "response_url": "u"})
    assert (queued.state, queued.queue_position) == (JobState.QUEUED, 3)
    running = t.parse_status({"status": "IN_PROGRESS", "logs": [
        {"message": "step 1", "level": "INFO", "source": "USER", "timestamp": "2025-01-01T00:00:00Z"}]})
    assert running.state is JobState.RUNNING
    body = {"status": "COMPLETED", "logs": None, "metrics": {"inference_time": 12.3}, "response_url": "u"}
    done = t.parse_status(body)
    assert done.state is JobState.SUCCEEDED and done.raw == body
    assert t.inference_seconds(body) == 12.3
    assert t.inference_seconds({"status": "COMPLETED", "logs": None}) is None


def test_completed_with_error_is_failed() -> None:
    failed = t.parse_status({"status": "COMPLETED", "logs": None, "metrics": {},
                             "error": "Internal error", "error_type": "runner_server_error"})
    assert failed.state is JobState.FAILED and isinstance(failed.error, GenerationFailed)
    # fal FAQ: server errors (5xx) are never charged
    assert not failed.error.may_be_billed and failed.error.vendor_code == "runner_server_error"
    nsfw = t.parse_status({"status": "COMPLETED", "logs": None, "error": "Output flagged as NSFW"})
    assert isinstance(nsfw.error, ContentRejected)
    cancelled = t.parse_status({"status": "COMPLETED", "logs": None, "error": "cancelled",
                                "error_type": "client_cancelled"})
    assert isinstance(cancelled.error, ProviderUnavailable)
    untyped = t.parse_status({"status": "COMPLETED", "logs": None, "error": "worker crashed"})
    assert isinstance(untyped.error, GenerationFailed) and not untyped.error.may_be_billed  # a 5xx: not charged


@pytest.mark.parametrize("body", [{"queue_position": 1}, "IN_QUEUE", {"status": None}])
def test_a_status_body_without_a_status_is_malformed(body: object) -> None:
    with pytest.raises(MalformedResponse):
        t.parse_status(body)


@pytest.mark.parametrize("word", ["DONE", "IN_WARMUP", "in_progress"])
def test_an_unknown_status_keeps_the_job_running(word: str) -> None:
    """fal-client raises ValueError("Unknown status") (client.py L709-724); a paid job must not end on a
    word we do not know, so it reads as running and polling goes on."""
    assert t.parse_status({"status": word}).state is JobState.RUNNING


def test_parse_submit_ack() -> None:
    ack = t.parse_ack({"request_id": "r", "response_url": "https://queue.fal.run/fal-ai/ovi/requests/r",
                       "status_url": "s", "cancel_url": "c", "status": "IN_QUEUE", "queue_position": 0})
    assert ack.request_id == "r" and ack.response_url.endswith("/fal-ai/ovi/requests/r")
    with pytest.raises(MalformedResponse):
        t.parse_ack({"request_id": "r"})


# ---- errors --------------------------------------------------------------------------------------
def _response(status: int, body: object, method: str = "POST",
              url: str = "https://queue.fal.run/fal-ai/ovi/image-to-video",
              headers: dict | None = None) -> httpx.Response:
    content = body.encode() if isinstance(body, str) else json.dumps(body).encode()
    return httpx.Response(status, content=content, headers=headers or {}, request=httpx.Request(method, url))


RESULT_URL = "https://queue.fal.run/fal-ai/ovi/requests/r"


def test_422_detail_list_names_loc_and_msg(fal: FalProvider) -> None:
    error = fal.classify(_response(422, {"detail": [
        {"loc": ["body", "prompt"], "msg": "field required", "type": "value_error.missing"}]}))
    assert isinstance(error, ProviderRejected) and "body.prompt: field required" in str(error)
    assert error.status_code == 422 and not error.may_be_billed


def test_422_detail_string(fal: FalProvider) -> None:
    error = fal.classify(_response(422, {"detail": "Image could not be decoded"}))
    assert isinstance(error, ProviderRejected) and "Image could not be decoded" in str(error)


@pytest.mark.parametrize(("error_type", "status", "cls"), [
    ("request_timeout", 504, ProviderUnavailable),
    ("startup_timeout", 504, ProviderUnavailable),
    ("runner_scheduling_failure", 503, ProviderUnavailable),
    ("runner_disconnected", 503, ProviderUnavailable),
    ("runner_incomplete_response", 502, ProviderUnavailable),
    ("runner_server_error", 500, ProviderUnavailable),
    ("client_disconnected", 499, ProviderUnavailable),
    ("client_cancelled", 499, ProviderUnavailable),
    ("bad_request", 400, ProviderRejected),
    ("internal_error", 500, ProviderUnavailable),
])
def test_request_error_types_on_submit(fal: FalProvider, error_type: str, status: int, cls: type) -> None:
    error = fal.classify(_response(status, {"detail": "Request failed", "error_type": error_type},
                                   headers={"X-Fal-Error-Type": error_type}))
    assert type(error) is cls and error.vendor_code == error_type
    # fal's own server answered (not nginx ingress): a 5xx may have queued a job, a 4xx refused it
    assert error.may_be_billed is (status >= 500)


def test_error_type_from_header_only(fal: FalProvider) -> None:
    error = fal.classify(_response(400, {"detail": "bad"}, headers={"x-fal-error-type": "bad_request"}))
    assert isinstance(error, ProviderRejected) and error.vendor_code == "bad_request"


def test_auth_funds_and_rate_limit(fal: FalProvider) -> None:
    assert isinstance(fal.classify(_response(401, {"detail": "No user found for Key ID and Secret"})), AuthError)
    assert isinstance(fal.classify(_response(403, {"detail": "Forbidden"})), AuthError)
    assert isinstance(fal.classify(_response(402, {"detail": "Payment required"})), InsufficientFunds)
    locked = fal.classify(_response(403, {"detail": "User is locked. Reason: Exhausted balance. Top up."}))
    assert isinstance(locked, InsufficientFunds)
    limited = fal.classify(_response(429, {"detail": "slow down"}, headers={"Retry-After": "7"}))
    assert isinstance(limited, RateLimited) and limited.retry_after == 7.0 and limited.retryable


def test_ingress_html_5xx(fal: FalProvider) -> None:
    html = "<html><body><center><h1>502 Bad Gateway</h1></center><hr><center>nginx</center></body></html>"
    assert isinstance(fal.classify(_response(502, html)), ProviderUnavailable)
    on_result = fal.classify(_response(503, html, "GET", RESULT_URL))
    assert isinstance(on_result, ProviderUnavailable) and on_result.may_be_billed


def test_result_phase_errors(fal: FalProvider) -> None:
    failed = fal.classify(_response(500, {"detail": "boom", "error_type": "runner_server_error"}, "GET", RESULT_URL))
    assert isinstance(failed, GenerationFailed) and not failed.may_be_billed  # fal: 5xx never charged
    assert is_verdict(failed)
    typed = fal.classify(_response(503, {"detail": "x"}, "GET", RESULT_URL,
                                   headers={"x-fal-error-type": "runner_disconnected"}))
    assert isinstance(typed, GenerationFailed) and is_verdict(typed)
    # a bare 5xx, even from fal's server (x-fal-request-id), names no failure: a failed check
    model_500 = fal.classify(_response(500, {"detail": "CUDA out of memory"}, "GET", RESULT_URL,
                                       headers={"x-fal-request-id": "r"}))
    assert not is_verdict(model_500) and model_500.may_be_billed
    platform = fal.classify(_response(500, {"detail": "oops", "error_type": "internal_error"}, "GET", RESULT_URL))
    assert isinstance(platform, ProviderUnavailable) and not is_verdict(platform)
    rejected = fal.classify(_response(422, {"detail": [{"loc": ["body", "image_url"], "msg": "Failed to download",
                                                        "type": "file_download_error"}]}, "GET", RESULT_URL))
    assert isinstance(rejected, ProviderRejected) and rejected.may_be_billed and not is_verdict(rejected)
    nsfw = fal.classify(_response(422, {"detail": [{"loc": ["body"], "msg": "flagged by a content checker",
                                                    "type": "content_policy_violation"}]}, "GET", RESULT_URL))
    assert isinstance(nsfw, ContentRejected) and not nsfw.failover and nsfw.may_be_billed and is_verdict(nsfw)
    for url in (RESULT_URL, RESULT_URL + "/status"):  # a 404 is never "expired": a failed check
        gone = fal.classify(_response(404, {"detail": "Request not found"}, "GET", url))
        assert not isinstance(gone, ResultExpired) and not is_verdict(gone) and gone.may_be_billed
    early = fal.classify(_response(400, {"detail": "Request is still in progress"}, "GET", RESULT_URL))
    assert not is_verdict(early)


def test_transport_errors_by_phase(fal: FalProvider) -> None:
    request = httpx.Request("POST", "https://queue.fal.run/fal-ai/ovi/image-to-video")
    assert isinstance(fal.classify(httpx.ConnectError("refused", request=request), phase="submit"),
                      ProviderUnavailable)
    unknown = fal.classify(httpx.ReadTimeout("slow", request=request), phase="submit")
    assert isinstance(unknown, SubmitOutcomeUnknown) and unknown.may_be_billed
    assert isinstance(fal.classify(httpx.ReadTimeout("slow", request=request), phase="status"),
                      ProviderUnavailable)


def test_key_is_redacted_from_messages(fal: FalProvider) -> None:
    error = fal.classify(_response(401, {"detail": f"bad key {KEY}"}))
    assert KEY not in str(error) and KEY not in repr(error)


def test_cancel_moot_answers() -> None:
    assert t.cancel_was_moot(400, json.dumps({"status": "ALREADY_COMPLETED"}))
    assert t.cancel_was_moot(404, json.dumps({"status": "NOT_FOUND"}))
    assert not t.cancel_was_moot(401, json.dumps({"detail": "no"}))


def test_price_is_data() -> None:
    assert t.PRICE_USD == Decimal("0.20")


# ---- review finding 8: a 2xx whose body is lost still names its job in x-fal-request-id ------------------
class _LostBody(httpx.AsyncByteStream):
    async def __aiter__(self):
        yield b'{"request_id": "req-123", "respo'
        raise httpx.ReadError("connection reset")


@pytest.mark.anyio
async def test_a_lost_submit_body_with_a_request_id_is_followed() -> None:
    from gateway import Gateway
    from gateway.clock import VirtualClock
    posts: list[str] = []
    gets: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        if request.method == "POST":
            posts.append(request.url.path)
            return httpx.Response(200, headers={"x-fal-request-id": "req-123", "content-type": "application/json"},
                                  stream=_LostBody())
        gets.append(request.url.path)
        if request.url.path.endswith("/status"):
            return httpx.Response(200, json={"status": "COMPLETED", "request_id": "req-123"})
        return httpx.Response(200, json={"video": {"url": "https://v3.fal.media/files/v.mp4"}, "seed": 1})

    gateway = Gateway(transport=httpx.MockTransport(handler), keys={"fal": "fal-id-123456:fal-secret-abcdef"},
                      providers=["fal"], journal=":memory:", clock=VirtualClock())
    try:
        result = await gateway.agenerate(OviRequest(prompt="A knight. <S>Hold the line.<E>",
                                                    image="https://example.com/k.png"))
    finally:
        await gateway.aclose()
    assert result.job_id == "req-123" and len(posts) == 1
    assert gets and all("/requests/req-123" in path for path in gets)
