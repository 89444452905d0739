"""Pure fal.ai translation: capabilities, payloads, parsing of queue bodies, error classification.

Nothing here does I/O. ``provider.py`` calls these functions around fal-client.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from decimal import Decimal
from typing import Any, Literal

from pydantic import ValidationError

from gateway.contract import (
    JobState,
    JobStatus,
    ProviderOutput,
    SubmitContext,
)
from gateway.errors import (
    ContentRejected,
    GatewayError,
    GenerationFailed,
    InsufficientFunds,
    MalformedResponse,
    ProviderRejected,
    ProviderUnavailable,
)
from gateway.http import LastDecoded, classify_status, decode, redact
from gateway.jobs.fate import as_verdict
from gateway.request import ImageInput, Mode, OviRequest
from providers.fal.capabilities import CAPABILITIES, I2V_ENDPOINT, PROVIDER, RESOLUTIONS, T2V_ENDPOINT
from providers.fal.schemas import ErrorBody, OviOutput, QueueStatus, SubmitAck

__all__ = [
    "CAPABILITIES",
    "ERROR_TYPE_STATUS",
    "I2V_ENDPOINT",
    "PRICE_USD",
    "RESOLUTIONS",
    "T2V_ENDPOINT",
    "Phase",
    "build_payload",
    "cancel_was_moot",
    "classify_completed",
    "classify_http",
    "endpoint_for",
    "image_reference",
    "inference_seconds",
    "parse_ack",
    "parse_output",
    "parse_status",
    "phase_of",
]

PRICE_USD = Decimal("0.20")
"""fal's published price per Ovi video (both endpoints); fal reports no cost per request."""

_WIRE_NAMES = {
    "seed": "seed",
    "steps": "num_inference_steps",
    "negative_prompt": "negative_prompt",
    "audio_negative_prompt": "audio_negative_prompt",
    "size": "resolution",
}
"""Canonical field -> fal field. Fields with a ``fixed`` limit (fps, output_format) are never sent."""

Phase = Literal["submit", "status", "result", "cancel", "upload"]

# Documented request-error types and the HTTP status fal answers them with (request-errors page).
ERROR_TYPE_STATUS = {
    "request_timeout": 504, "startup_timeout": 504,
    "runner_scheduling_failure": 503, "runner_connection_timeout": 503, "runner_disconnected": 503,
    "runner_connection_refused": 503, "runner_connection_error": 503,
    "runner_incomplete_response": 502, "runner_server_error": 500,
    "client_disconnected": 499, "client_cancelled": 499,
    "bad_request": 400, "internal_error": 500,
}
_CONTENT_WORDS = ("nsfw", "content policy", "content_policy", "safety checker", "flagged", "unsafe content")
_FUNDS_WORDS = ("insufficient", "balance", "exhausted", "billing", "credits")


# ---- requests -----------------------------------------------------------------------------------
def endpoint_for(request: OviRequest) -> str:
    """The fal model id that runs ``request`` (image-to-video or text-to-video)."""
    return I2V_ENDPOINT if request.mode is Mode.IMAGE_TO_VIDEO else T2V_ENDPOINT


def image_reference(image: ImageInput) -> str:
    """What ``image_url`` shows before upload: the URL itself, or the image as a data URI."""
    return image.value if image.kind == "url" else image.as_data_uri()


def build_payload(request: OviRequest, ctx: SubmitContext, image_url: str | None = None) -> dict[str, Any]:
    """The exact JSON fal receives. ``image_url`` is the resolved image (the uploaded CDN URL for
    local images); when omitted, the request's own image reference is used. Call ``check`` first."""
    payload: dict[str, Any] = {"prompt": request.prompt}
    if request.image is not None:
        payload["image_url"] = image_url if image_url is not None else image_reference(request.image)
    for name, value in request.set_fields().items():
        wire = _WIRE_NAMES.get(name)
        if wire is not None and name not in ctx.dropped:
            payload[wire] = value
    return payload


# ---- answers ------------------------------------------------------------------------------------
def parse_ack(body: Any) -> SubmitAck:
    """The submit answer (request id and the three queue URLs)."""
    return decode(SubmitAck, body, provider=PROVIDER, what="submit answer")


def parse_status(body: Any) -> JobStatus:
    """One status body as a ``JobStatus``. COMPLETED with ``error``/``error_type`` is FAILED."""
    status: QueueStatus = decode(QueueStatus, body, provider=PROVIDER, what="status answer", may_be_billed=True)
    _statuses.put(body, status)
    if status.status == "IN_QUEUE":
        return JobStatus(JobState.QUEUED, queue_position=status.queue_position, raw=body)
    if status.status != "COMPLETED":
        return JobStatus(JobState.RUNNING, raw=body)  # IN_PROGRESS, or a status fal-client does not know
    if status.error is not None or status.error_type is not None:
        return JobStatus(JobState.FAILED, error=as_verdict(classify_completed(status.error, status.error_type)),
                         raw=body)
    return JobStatus(JobState.SUCCEEDED, progress=1.0, raw=body)


_statuses: LastDecoded[QueueStatus] = LastDecoded()
"""The last status body ``parse_status`` read and its model: the result step reads its metrics again."""


def inference_seconds(status_body: Any) -> float | None:
    """``metrics.inference_time`` (seconds) from a COMPLETED status body, when present."""
    # this very body was validated by the status check that ended the job: its model, else validate it
    status = _statuses.get(status_body) if isinstance(status_body, dict) else None
    if status is None:
        try:
            status = QueueStatus.model_validate(status_body)
        except ValidationError:
            return None
    return status.metrics.inference_time if status.metrics is not None else None


def parse_output(body: Any, *, inference_s: float | None = None) -> ProviderOutput:
    """The result body as a ``ProviderOutput``. fal reports no cost, so ``cost_usd`` is ``None``."""
    output: OviOutput = decode(OviOutput, body, provider=PROVIDER, what="result", may_be_billed=True)
    if output.video is None:
        raise MalformedResponse("fal result has no video", provider=PROVIDER, may_be_billed=True)
    return ProviderOutput(video_url=output.video.url, seed=output.seed, cost_usd=None,
                          inference_s=inference_s, raw=body)


# ---- errors -------------------------------------------------------------------------------------
def _error_body(text: str) -> ErrorBody | None:
    try:
        data = json.loads(text)
    except ValueError:
        return None
    if not isinstance(data, dict):
        return None
    try:
        return ErrorBody.model_validate(data)
    except ValidationError:
        return None


def _describe(body: ErrorBody | None, text: str) -> str:
    if body is None or body.detail is None:
        return text.strip() or "(empty body)"
    if isinstance(body.detail, str):
        return body.detail
    return "; ".join(f"{'.'.join(str(p) for p in item.loc)}: {item.msg}" for item in body.detail) or "(no detail)"


def _is_content(body: ErrorBody | None, message: str) -> bool:
    if body is not None and isinstance(body.detail, list):
        if any("content_policy" in item.type or "nsfw" in item.type.lower() for item in body.detail):
            return True
    lowered = message.lower()
    return any(word in lowered for word in _CONTENT_WORDS)


def classify_http(status: int, headers: Mapping[str, str], text: str, *, phase: Phase,
                  secrets: Iterable[str | None] = ()) -> GatewayError:
    """A fal HTTP error answer in our taxonomy.

    ``phase`` matters. On submit (fal-client's ``_should_retry``, client.py L1155-1211): 408/409/429
    and an ingress 502–504 (no ``x-fal-request-id``, an nginx body) never reached fal's queue and are
    retryable; any other 5xx may have queued a job (``may_be_billed``; the provider follows the request
    id when the answer carries one); other 4xx refused the request. After submit only two answers are
    verdicts on the job (``as_verdict``): a result 5xx carrying the ``x-fal-error-type`` header (not
    ``internal_error``, fal's platform rather than the model) and a content refusal. A 404, a 400
    after an early COMPLETED, any other 4xx/5xx are failed checks, never "expired".
    """
    lowered_headers = {k.lower(): v for k, v in headers.items()}
    body = _error_body(text)
    error_type = (body.error_type if body else None) or lowered_headers.get("x-fal-error-type")
    message = redact(_describe(body, text), list(secrets))
    text_msg = f"HTTP {status}: {message}"
    job_exists = phase in ("status", "result", "cancel")
    kwargs: dict[str, Any] = {"provider": PROVIDER, "status_code": status, "vendor_code": error_type,
                              "may_be_billed": job_exists}

    if phase == "submit" and status >= 500 and not _is_ingress(status, lowered_headers, text):
        kwargs["may_be_billed"] = True  # fal's own server (or an unknown hop) answered: a job may be queued
    if _is_content(body, message) and status < 500:
        refusal = ContentRejected(text_msg, **kwargs)
        return as_verdict(refusal) if phase == "result" else refusal
    if status == 402 or (status in (401, 403) and any(w in message.lower() for w in _FUNDS_WORDS)):
        return InsufficientFunds(text_msg, **kwargs)
    if phase == "result" and status >= 500 and _is_job_failure(error_type):
        # fal FAQ: "server errors (5xx) are never charged" — the failed job cost nothing.
        return as_verdict(GenerationFailed(text_msg, **{**kwargs, "may_be_billed": False}))
    if error_type == "bad_request":
        return ProviderRejected(text_msg, **kwargs)
    if error_type is not None and status not in (401, 402, 403, 429) and (
            error_type in ("request_timeout", "startup_timeout", "internal_error")
            or error_type.startswith(("runner_", "client_"))):
        return ProviderUnavailable(text_msg, **kwargs)
    return classify_status(PROVIDER, status, message, headers=lowered_headers, vendor_code=error_type,
                           may_be_billed=job_exists)


def _is_job_failure(error_type: str | None) -> bool:
    """Whether a 5xx on the result GET is the request's own stored failure: it carries an error type
    (the ``x-fal-error-type`` header, or the body's ``error_type``, which fal-client reads first,
    client.py L650-654), other than ``internal_error`` (fal's platform failing, not the model).
    Anything else — a bare 5xx, even with ``x-fal-request-id`` — is worth another GET."""
    return error_type is not None and error_type != "internal_error"


def _is_ingress(status: int, headers: Mapping[str, str], text: str) -> bool:
    """fal-client's ``_is_ingress_error`` (client.py L1155-1170): 502–504 with no ``x-fal-request-id``
    and an nginx body — the request never reached fal's queue."""
    return status in (502, 503, 504) and "x-fal-request-id" not in headers and "nginx" in text


def classify_completed(error: str | None, error_type: str | None) -> GatewayError:
    """The error of a request that reached COMPLETED with ``error``/``error_type`` set."""
    message = error or error_type or "request failed"
    if _is_content(None, message):
        return ContentRejected(f"request failed: {message}", provider=PROVIDER, vendor_code=error_type,
                               may_be_billed=True)
    status = ERROR_TYPE_STATUS.get(error_type or "", 500)
    if error_type == "internal_error" or error_type is None:
        return GenerationFailed(f"request failed: {message}", provider=PROVIDER, status_code=status,
                                vendor_code=error_type, may_be_billed=status < 500)
    return classify_http(status, {"x-fal-error-type": error_type, "x-fal-request-id": "completed"},
                         json.dumps({"detail": message, "error_type": error_type}), phase="result")


def phase_of(method: str, url: str) -> Phase:
    """Which queue step a request to ``url`` was, from fal's URL layout (for ``classify``)."""
    parts = url.split("?", 1)[0].rstrip("/")
    if "/storage/" in parts or parts.endswith("/files/upload"):
        return "upload"
    if method.upper() == "PUT":
        return "cancel"
    if method.upper() == "POST":
        return "submit"
    return "status" if parts.endswith("/status") else "result"


def cancel_was_moot(status: int, text: str) -> bool:
    """Whether a refused cancel only says the request is already final or gone (not an error)."""
    body = _error_body(text)
    return status == 404 or (body is not None and body.status in ("ALREADY_COMPLETED", "NOT_FOUND"))
