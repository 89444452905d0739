"""Pure WaveSpeed translation: capabilities, payloads, parsing of answers, error classification.

No I/O here. ``provider.py`` sends what these functions build and hands back what it receives.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import ValidationError

from gateway.contract import (
    JobHandle,
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
    ProviderError,
    ProviderRejected,
    ProviderUnavailable,
)
from gateway.http import LastDecoded, classify_status, decode, redact
from gateway.jobs.fate import as_verdict
from gateway.request import Mode, OviRequest
from providers.wavespeed.capabilities import CAPABILITIES, I2V_MODEL, NAME, T2V_MODEL
from providers.wavespeed.capabilities import WIRE_SIZES as _SIZES
from providers.wavespeed.schemas import TERMINAL_FAILURES, Envelope, ErrorBody, PredictionData, UploadEnvelope

__all__ = [
    "API_BASE",
    "CAPABILITIES",
    "I2V_MODEL",
    "NAME",
    "T2V_MODEL",
    "UPLOAD_PATH",
    "build_payload",
    "classify_code",
    "classify_http",
    "classify_task",
    "endpoint",
    "load_envelope",
    "parse_envelope",
    "parse_output",
    "parse_upload",
    "result_url",
    "status_of",
    "submit_url",
    "submitted_job",
    "upload_url",
]

API_BASE = "https://api.wavespeed.ai"
UPLOAD_PATH = "/api/v3/media/upload/binary"
RANDOM_SEED = -1
"""WaveSpeed's documented "random seed" value, sent when the caller set no seed."""

# data.code of a failed task (https://wavespeed.ai/docs/error-codes). The docs say "5xxx: retry with
# backoff", but the failed job is dead either way: a retry is a NEW paid job, which only the runner may
# decide on, so 5000/5003/5004 are GenerationFailed like 1403/1405.
_CONTENT_CODES = {1200}
_REJECTED_CODES = {1400, 1401, 1402}    # missing/invalid parameter; 1402: the image URL could not be fetched
_FAILED_CODES = {1403, 1405, 5000, 5003, 5004}


def endpoint(request: OviRequest) -> str:
    """The model path for the request's mode."""
    return I2V_MODEL if request.mode is Mode.IMAGE_TO_VIDEO else T2V_MODEL


def submit_url(model: str, base: str = API_BASE) -> str:
    return f"{base}/api/v3/{model}"


def result_url(job_id: str, base: str = API_BASE) -> str:
    """The documented result path, which the official SDK polls (it ignores ``data.urls.get``)."""
    return f"{base}/api/v3/predictions/{job_id}/result"


def upload_url(base: str = API_BASE) -> str:
    """The documented upload endpoint (multipart field ``file``)."""
    return base + UPLOAD_PATH


def build_payload(request: OviRequest, ctx: SubmitContext, image: str | None) -> dict[str, Any]:
    """The exact submit body. ``image`` is what goes in ``"image"`` (a URL, or the uploaded file's URL).

    An unset seed is sent as ``-1`` (WaveSpeed's "random"), as is a dropped one. ``size`` maps
    ``960x540`` → ``"960*540"``; fps and output format are fixed (24, MP4) and never sent. Check the
    request against ``CAPABILITIES`` first (the adapter's ``translate`` and ``submit`` do).
    """
    seed = request.seed if request.seed is not None and "seed" not in ctx.dropped else RANDOM_SEED
    if request.mode is Mode.IMAGE_TO_VIDEO:
        if image is None:
            raise ValueError("an image-to-video payload needs the image URL")
        return {"image": image, "prompt": request.prompt, "seed": seed}
    payload: dict[str, Any] = {"prompt": request.prompt}
    if request.size is not None and "size" not in ctx.dropped:
        payload["size"] = _SIZES[request.size]
    payload["seed"] = seed
    return payload


def _load(body: bytes | str | Mapping[str, Any]) -> Any:
    """The decoded JSON, of any shape: its ``code`` is read before the envelope is validated."""
    return decode(Any, body, provider=NAME)


def _refuse_error_code(value: Any, submitting: bool) -> None:
    """A body whose ``code`` is not 200 (even on HTTP 200) is an error: raise it, mapped by code."""
    if isinstance(value, Mapping) and "code" in value and value["code"] != 200:
        raise classify_code(value["code"], str(value.get("message") or ""), submitting=submitting)


def load_envelope(body: bytes | str | Mapping[str, Any], *, submitting: bool = False) -> tuple[Envelope, Any]:
    """The submit/result envelope and the decoded body; ``MalformedResponse`` when it is off-shape."""
    known = _envelopes.get(body) if isinstance(body, Mapping) else None
    if known is not None:
        return known, body  # this very body was validated by the poll that ended the job
    value = _load(body)
    _refuse_error_code(value, submitting)
    envelope = decode(Envelope, value, provider=NAME, what="answer (the documented envelope)")
    _envelopes.put(value, envelope)
    return envelope, value


_envelopes: LastDecoded[Envelope] = LastDecoded()
"""The last decoded body (the object itself) and its validated ``Envelope``. The final poll's body is the
result (``WaveSpeedProvider.result`` reads ``last.raw``) and the runner asks for it right after that poll,
in the same task and without a loop turn: it is validated once, not twice. By identity only: any other
body is a miss and validated as before."""


def parse_envelope(body: bytes | str | Mapping[str, Any]) -> Envelope:
    """The submit/result envelope, or ``MalformedResponse``; a ``code`` other than 200 raises its error."""
    return load_envelope(body)[0]


def parse_upload(body: bytes | str | Mapping[str, Any]) -> str:
    """The ``download_url`` of an ``upload/binary`` answer."""
    value = _load(body)
    _refuse_error_code(value, False)
    return decode(UploadEnvelope, value, provider=NAME, what="upload answer").data.download_url


def _task_error(code: int | None, message: str) -> ProviderError:
    """A verdict: the task ended failed (``as_verdict``). The job was created, and WaveSpeed does not
    document whether failed tasks are charged, so it may have been billed."""
    kwargs: dict[str, Any] = {"provider": NAME, "may_be_billed": True,
                              "vendor_code": None if code is None else str(code)}
    if code in _CONTENT_CODES:
        return as_verdict(ContentRejected(message, **kwargs))
    if code in _REJECTED_CODES:
        return as_verdict(ProviderRejected(message, **kwargs))
    return as_verdict(GenerationFailed(message, **kwargs))


def classify_task(data: PredictionData) -> ProviderError:
    """The error of a task that ended ``failed`` (or the SDK's ``cancelled``/``timeout``/``deleted``):
    1200 → ``ContentRejected``; 1400/1401/1402 → ``ProviderRejected``; anything else →
    ``GenerationFailed``. All carry ``may_be_billed=True``: the job existed."""
    code = f" (code {data.code})" if data.code is not None else ""
    return _task_error(data.code, f"task {data.id} {data.status}{code}: {data.error or 'no reason given'}")


def classify_code(code: Any, message: str, *, submitting: bool = False) -> GatewayError:
    """An error ``code`` in a body (HTTP-like, or a 4-digit task code) in our taxonomy."""
    if isinstance(code, bool) or not isinstance(code, int):
        return MalformedResponse(f"answer carries code {code!r}: {message}", provider=NAME,
                                 may_be_billed=submitting)
    if code >= 1000:
        return _task_error(code, f"code {code}: {message}")
    return classify_http(code, message, submitting=submitting)


_SUBMIT_REFUSALS = frozenset({400, 401, 402, 403, 404, 422, 429})
"""Submit statuses that refuse the call before any job exists: the payload (400/422, WaveSpeed's
parameter errors 1400-1402), the model path (404), the key (401/403), funds (402), pace (429). Any
other non-200 on submit (408, 409, 5xx, ...) may hide a created task."""


def submitted_job(body: bytes | str | Mapping[str, Any]) -> tuple[str, str | None]:
    """``(data.id, data.urls.get)`` of an HTTP 200 submit answer, read as the official SDK reads it:
    only the HTTP status and ``data.id`` (wavespeed client.py L205-217). A readable id is the job,
    whatever the envelope ``code``, ``created_at`` or other fields say. With no readable id, an
    envelope code refusing the call (``_SUBMIT_REFUSALS``) raises that refusal; anything else raises
    ``MalformedResponse`` with ``may_be_billed`` (HTTP 200: the job most likely exists, unnamed)."""
    try:
        value = _load(body)
    except MalformedResponse as exc:
        exc.may_be_billed = True
        raise
    data = value.get("data") if isinstance(value, Mapping) else None
    job_id = data.get("id") if isinstance(data, Mapping) else None
    if isinstance(job_id, str) and job_id:
        urls = data.get("urls") if isinstance(data, Mapping) else None
        get = urls.get("get") if isinstance(urls, Mapping) else None
        return job_id, get if isinstance(get, str) else None
    code = value.get("code") if isinstance(value, Mapping) else None
    message = str(value.get("message") or "") if isinstance(value, Mapping) else ""
    if isinstance(code, int) and not isinstance(code, bool) and code in _SUBMIT_REFUSALS:
        raise classify_http(code, message)
    raise MalformedResponse(f"HTTP 200 submit answer names no task (code {code!r}): {message[:200]}",
                            provider=NAME, may_be_billed=True)


def classify_http(status: int, body: bytes | str, *, headers: Mapping[str, str] | None = None,
                  secrets: tuple[str | None, ...] = (), submitting: bool = False,
                  polling: bool = False) -> GatewayError:
    """An HTTP error answer in our taxonomy.

    The JSON shape of non-200 answers is UNCONFIRMED: ``{"code": int, "message": str}`` is read when
    present, anything else falls back to the status. On submit, every non-200 except the refusals of
    the call itself (``_SUBMIT_REFUSALS``: 400/422 payload, 404 path, 401/403 key, 402 funds, 429 pace) is
    ambiguous — the job may exist — so it says ``may_be_billed=True`` and is never sent again: the
    official SDK never re-sends a submit ("the task may already have been created", client.py
    L196-203), whatever the status (408, 409 and 502–504 included). On a poll nothing here is a verdict:
    a 404 is a failed check (it said nothing about the task; WaveSpeed keeps predictions 7 days).
    """
    text = body.decode("utf-8", "replace") if isinstance(body, bytes) else str(body)
    message, code = text, None
    try:
        parsed = ErrorBody.model_validate_json(text)
        message, code = parsed.message or text, parsed.code
    except ValidationError:
        pass
    message = redact(message, secrets)
    vendor_code = None if code is None else str(code)
    ambiguous = submitting and status not in _SUBMIT_REFUSALS
    if status == 402 or "insufficient balance" in message.lower():
        return InsufficientFunds(f"HTTP {status}: {message}", provider=NAME, status_code=status,
                                 vendor_code=vendor_code)
    if ambiguous:
        return ProviderUnavailable(f"HTTP {status} on submit, the job may exist: {message}", provider=NAME,
                                   status_code=status, vendor_code=vendor_code, may_be_billed=True)
    return classify_status(NAME, status, message, headers=headers, vendor_code=vendor_code)


def status_of(body: bytes | str | Mapping[str, Any]) -> JobStatus:
    """One poll's answer as a ``JobStatus`` (``raw`` is the decoded body).

    A task error code (1xxx/5xxx, https://wavespeed.ai/docs/error-codes) in the envelope's own ``code``
    is the task's end, like ``data.status: "failed"``: ``FAILED`` with that error, not a raise. Any
    other ``code`` than 200 is about the request and raises.
    """
    value = _load(body)
    code = value.get("code") if isinstance(value, Mapping) else None
    if isinstance(code, int) and not isinstance(code, bool) and code >= 1000:
        return JobStatus(JobState.FAILED, error=_task_error(code, _envelope_failure(value, code)), raw=value)
    envelope, raw = load_envelope(value)
    data = envelope.data
    status = (data.status or "").lower()
    if status == "completed":
        return JobStatus(JobState.SUCCEEDED, progress=1.0, raw=raw)
    if status in TERMINAL_FAILURES:
        return JobStatus(JobState.FAILED, error=classify_task(data), raw=raw)
    if status in ("created", "pending", "queued", ""):
        return JobStatus(JobState.QUEUED, raw=raw)
    return JobStatus(JobState.RUNNING, raw=raw)  # processing, or a status the docs do not list: keep polling


def _envelope_failure(value: Mapping[str, Any], code: int) -> str:
    found = value.get("data")
    data: Mapping[str, Any] = found if isinstance(found, Mapping) else {}
    task = f"task {data['id']} " if data.get("id") else ""
    reason = data.get("error") or value.get("message") or "no reason given"
    return f"{task}failed (code {code}): {reason}"


def parse_output(final: bytes | str | Mapping[str, Any], handle: JobHandle) -> ProviderOutput:
    """A completed result envelope as a ``ProviderOutput``; a failed one raises its classified error.

    WaveSpeed reports no cost (``cost_usd`` None). ``seed`` is reported only when the body echoes the
    input with a fixed seed; ``timings.inference`` is milliseconds.
    """
    envelope, raw = load_envelope(final)
    data = envelope.data
    if (data.status or "").lower() in TERMINAL_FAILURES:
        raise classify_task(data)
    outputs = data.outputs or []
    if (data.status or "").lower() != "completed" or not outputs:
        raise MalformedResponse(f"task {data.id} is {data.status} with {len(outputs)} outputs; "
                                "a result needs status completed and one output URL", provider=NAME,
                                may_be_billed=True)
    seed = data.input.get("seed") if data.input else None
    inference = data.timings.inference if data.timings else None
    return ProviderOutput(
        video_url=outputs[0],
        seed=seed if isinstance(seed, int) and not isinstance(seed, bool) and seed >= 0 else None,
        cost_usd=None,
        nsfw=data.has_nsfw_contents[0] if data.has_nsfw_contents else None,
        inference_s=None if inference is None else inference / 1000.0,
        raw=raw,
    )
