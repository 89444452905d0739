"""Pure Runware translation: canonical request -> task array, Runware answers -> our types and errors.

No I/O here; how Runware's errors read is ``providers.runware.failures`` (named here too). Sources:
the Ovi model page and OpenAPI (seeds/runware-ovi-model-docs.md, seeds/runware-ovi-openapi.json; they
win over the generic videoInference page) and reference/providers.md section 2 for polling, error
shapes and codes.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from decimal import Decimal
from typing import Any

from gateway.contract import (
    JobHandle,
    JobState,
    JobStatus,
    ProviderOutput,
    SubmitContext,
)
from gateway.errors import (
    GenerationFailed,
    MalformedResponse,
    ProviderError,
)
from gateway.http import decode
from gateway.jobs.fate import as_verdict
from gateway.request import ImageInput, OviRequest
from providers.runware.capabilities import CAPABILITIES, ENDPOINT, PROVIDER
from providers.runware.failures import (
    classify,
    classify_response,
    error_from,
    errors_for,
    family,
    read_body,
)
from providers.runware.schemas import (
    RunwareAdvancedFeatures,
    RunwareBody,
    RunwareError,
    RunwareGetResponseTask,
    RunwareImageUploadTask,
    RunwareInputs,
    RunwareItem,
    RunwareUploadItem,
    RunwareVideoTask,
)

__all__ = [
    "API_URL", "CAPABILITIES", "ENDPOINT", "INLINE_IMAGE_LIMIT", "PROVIDER",
    "build_payload", "classify", "classify_response", "error_from", "family",
    "find_from", "handle_from_submit", "image_value", "parse_output", "poll_payload", "read_body",
    "status_from", "upload_payload", "uploaded_image", "with_image",
]

API_URL = "https://api.runware.ai/v1"
INLINE_IMAGE_LIMIT = 5 * 1024 * 1024
"""A local image whose data URI is longer than this (characters) goes through ``imageUpload`` first."""

_ADVANCED = {"negative_prompt": "videoNegativePrompt", "audio_negative_prompt": "audioNegativePrompt",
             "video_guidance": "videoCFGScale", "audio_guidance": "audioCFGScale", "slg_layer": "slgLayer"}
_TOP = {"seed": "seed", "steps": "steps", "fps": "fps", "output_format": "outputFormat",
        "output_quality": "outputQuality"}


# ---- request side ---------------------------------------------------------------------------
def image_value(image: ImageInput) -> str:
    """``inputs.image``: URLs, data URIs and bare base64 as given; a local file as an inline data URI."""
    return image.as_data_uri() if image.kind == "file" else image.value


def build_payload(request: OviRequest, ctx: SubmitContext) -> list[dict[str, Any]]:
    """The exact task array Runware receives (checks the request first)."""
    CAPABILITIES.require(request, provider=PROVIDER, dropped=ctx.dropped)
    assert request.image is not None  # require() refused text-to-video
    honored = {k: v for k, v in request.set_fields().items() if k not in ctx.dropped}
    advanced = {_ADVANCED[k]: v for k, v in honored.items() if k in _ADVANCED}
    task = RunwareVideoTask(
        taskUUID=ctx.idempotency_key, model=ENDPOINT, positivePrompt=request.prompt,
        inputs=RunwareInputs(image=image_value(request.image)),
        advancedFeatures=RunwareAdvancedFeatures(**advanced) if advanced else None,
        # Runware POSTs the finished task here [doc runware.ai/docs/platform/webhooks]; unsigned, so the
        # URL carries a per-job token and the push only prompts one getResponse.
        webhookURL=ctx.webhook_url,
        **{_TOP[k]: v for k, v in honored.items() if k in _TOP},
    )
    return [task.model_dump(exclude_none=True)]


def with_image(payload: list[dict[str, Any]], image: str) -> list[dict[str, Any]]:
    """``payload`` with ``inputs.image`` replaced (by an uploaded image's UUID)."""
    first = {**payload[0], "inputs": {**payload[0]["inputs"], "image": image}}
    return [first, *payload[1:]]


def poll_payload(task_uuid: str) -> list[dict[str, Any]]:
    """The ``getResponse`` task array that polls ``task_uuid``."""
    return [RunwareGetResponseTask(taskUUID=task_uuid).model_dump()]


def upload_payload(task_uuid: str, data_uri: str) -> list[dict[str, Any]]:
    """The ``imageUpload`` task array storing ``data_uri`` at Runware."""
    return [RunwareImageUploadTask(taskUUID=task_uuid, image=data_uri).model_dump()]


# ---- answers --------------------------------------------------------------------------------
def handle_from_submit(status: int, headers: Mapping[str, str], content: bytes, *, task_uuid: str,
                       secrets: Iterable[str | None] = ()) -> JobHandle:
    """The job handle from a submit answer; raises the classified error when Runware refused.

    ``conflictTaskUUID`` means a task with our ``taskUUID`` already exists. Whether it is *ours* is
    not this reader's call: the handle carries ``data["conflict"] = True`` and the runner follows it
    only if ``fate.conflict_is_ours``. After a 5xx Runware may still have taken the task, so the error
    says ``may_be_billed``; a 2xx body we cannot read says so too.
    """
    handle = JobHandle(PROVIDER, task_uuid, {"endpoint": ENDPOINT})
    server_side = status >= 500
    try:
        body = read_body(content)
    except MalformedResponse as exc:
        if 200 <= status < 300:
            exc.may_be_billed = True
            raise
        raise classify_response(status, headers, content, task_uuid=task_uuid, secrets=secrets,
                                may_be_billed=server_side) from None
    if any(family(e.code) == "conflict" for e in body.errors):
        return JobHandle(PROVIDER, task_uuid, {"endpoint": ENDPOINT, "conflict": True})
    if body.errors or status >= 300:
        raise classify_response(status, headers, content, task_uuid=task_uuid, secrets=secrets,
                                may_be_billed=server_side)
    return handle


def _items(body: RunwareBody, task_uuid: str) -> list[RunwareItem]:
    return [decode(RunwareItem, d, provider=PROVIDER, what="task item") for d in body.data
            if d.get("taskUUID") == task_uuid]  # by taskUUID only, whatever the taskType (the SDK's routing)


_QUEUED = {"queued", "pending", "scheduled", "waiting"}


def _is_error_item(item: RunwareItem) -> bool:
    """The SDK's ``_is_error_response``: a truthy ``code``, ``error`` or ``errorId`` (base.py L3768)."""
    return bool(item.code or item.error or item.errorId)


def _url(item: RunwareItem) -> str | None:
    return item.videoURL or item.mediaURL or item.videoDataURI


def _state(item: RunwareItem) -> JobState:
    """An item's state. Unknown statuses keep the job RUNNING (the SDK keeps polling on them)."""
    status = (item.status or "").lower()
    if status in ("error", "failed") or _is_error_item(item):
        return JobState.FAILED
    if status == "success" or (not status and _url(item)):
        return JobState.SUCCEEDED
    if status in _QUEUED or not status:
        return JobState.QUEUED
    return JobState.RUNNING


def _pick(items: list[RunwareItem]) -> RunwareItem | None:
    by_state = {_state(item): item for item in items}
    for state in (JobState.SUCCEEDED, JobState.FAILED, JobState.RUNNING, JobState.QUEUED):
        if state in by_state:
            return by_state[state]
    return None


_JOB_FAMILIES = ("job", "safety", "cancelled")
"""Codes that are about one task. No *notfound* code is here: "not found" says nothing about a task
that may be late or kept elsewhere, so it is a failed check, never a verdict."""
_REQUEST_FAMILIES = ("auth", "funds", "rate")
"""Families that are about the call (key, balance, pace), never about one task, wherever they appear."""


NOT_A_VERDICT = "taskfailedornotfound"
"""Runware's "failed *or* not found": it does not say the task ended (a late submit is not found yet)."""


def _is_task_failure(error: RunwareError, task_uuid: str, status: int = 200) -> bool:
    """Whether an ``errors`` entry is Runware's verdict that OUR task ended: it names our ``taskUUID``,
    its code is not ``taskFailedOrNotFound``, any other *notfound* code, nor about the request (auth,
    funds, pace), the answer is not a 404 or a 5xx, and it is about the task (its ``videoInference``
    type, or a generation/safety/cancel code)."""
    kind = family(error.code)
    return (error.taskUUID == task_uuid and error.code.lower() != NOT_A_VERDICT and status < 500
            and status != 404 and kind not in _REQUEST_FAMILIES and kind != "gone"
            and (error.taskType == "videoInference" or kind in _JOB_FAMILIES))


def _task_failure(error: RunwareError, *, status: int, secrets: Iterable[str | None]) -> ProviderError:
    """The error of a task that ended failed. Runware bills compute time and documents nothing about
    failed runs, so it may have been billed. A failed task is final: a provider or timeout failure
    (``timeoutProvider``, ``serviceUnavailable``…) is ``GenerationFailed``, never a retryable poll error."""
    failure = error_from(error, status=status, secrets=secrets, may_be_billed=True)
    if failure.retryable or family(error.code) is None:  # an unknown code on a task item: it failed
        failure = GenerationFailed(failure.message, provider=PROVIDER, status_code=status, vendor_code=error.code,
                                   may_be_billed=True)
    return as_verdict(failure)


def status_from(status: int, headers: Mapping[str, str], content: bytes, *, task_uuid: str,
                secrets: Iterable[str | None] = ()) -> JobStatus:
    """One ``getResponse`` answer as a ``JobStatus``; raises for everything that is not Runware's word
    about our task (auth, funds, 429, 5xx, ``taskFailedOrNotFound``, errors naming no task or another
    task) — failed checks, which a later poll may get past.

    Verdicts (``FAILED``, the error marked ``as_verdict``, ``may_be_billed``): a task item with
    ``status: "error"`` or a truthy ``code``/``errorId``/``error`` (the SDK's ``_is_error_response``),
    or an ``errors`` entry for our task (see ``_is_task_failure``). Unknown statuses and an empty
    ``{"data": []}`` keep the job going. ``progress`` is Runware's percentage as a fraction 0–1.
    """
    ok = 200 <= status < 300
    try:
        raw = json.loads(content)  # parsed once: ``raw`` is also what the body is validated from
    except ValueError:
        raw = content  # not JSON: read_body raises its MalformedResponse, as for any unreadable body
    try:
        body = read_body(raw)
    except MalformedResponse:
        if ok:
            raise
        raise classify_response(status, headers, content, task_uuid=task_uuid, secrets=secrets) from None
    item = _pick(_items(body, task_uuid)) if ok else None
    if item is not None:
        state = _state(item)
        if state is JobState.FAILED:
            error = item.error or RunwareError(code=str(item.code or item.errorId or "taskFailed"),
                                               message=item.message or "the task ended with an error")
            return JobStatus(state, error=_task_failure(error, status=status, secrets=secrets), raw=raw)
        progress = None if item.progress is None else max(0.0, min(1.0, item.progress / 100))
        return JobStatus(state, progress=progress, raw=raw)
    errors = errors_for(body, task_uuid)
    if errors:
        first = errors[0]
        if _is_task_failure(first, task_uuid, status):
            return JobStatus(JobState.FAILED, error=_task_failure(first, status=status, secrets=secrets), raw=raw)
        raise error_from(first, status=status, headers=headers, secrets=secrets)
    if not ok:
        raise classify_response(status, headers, content, task_uuid=task_uuid, secrets=secrets)
    return JobStatus(JobState.QUEUED, raw=raw)


def find_from(status: int, headers: Mapping[str, str], content: bytes, *, task_uuid: str,
              secrets: Iterable[str | None] = ()) -> JobHandle | None:
    """After an ambiguous submit: the handle when Runware knows ``task_uuid``, ``None`` when it says
    the task does not exist (``taskFailedOrNotFound``-style codes, whatever the HTTP status).

    A failed task is known: its handle is returned and ``status`` reports the failure.
    An empty ``{"data": []}`` answer is treated as known, so an unclear answer never leads to a second
    paid submit.
    """
    handle = JobHandle(PROVIDER, task_uuid, {"endpoint": ENDPOINT})
    try:
        body = read_body(content)
    except MalformedResponse:
        if 200 <= status < 300:
            raise
        raise classify_response(status, headers, content, task_uuid=task_uuid, secrets=secrets) from None
    if _items(body, task_uuid):
        return handle
    errors = errors_for(body, task_uuid)
    if errors:
        kind = family(errors[0].code)
        if kind == "gone":
            return None
        if kind in _JOB_FAMILIES or _is_task_failure(errors[0], task_uuid):
            return handle
        raise error_from(errors[0], status=status, headers=headers, secrets=secrets)
    if status >= 300:
        raise classify_response(status, headers, content, task_uuid=task_uuid, secrets=secrets)
    return handle


def uploaded_image(status: int, headers: Mapping[str, str], content: bytes, *, task_uuid: str,
                   secrets: Iterable[str | None] = ()) -> str:
    """The ``imageUUID`` from an ``imageUpload`` answer; raises the classified error otherwise."""
    body = read_body(content) if 200 <= status < 300 else None
    if body is None or body.errors:
        raise classify_response(status, headers, content, task_uuid=task_uuid, secrets=secrets)
    for data in body.data:
        if data.get("taskUUID") == task_uuid:
            return decode(RunwareUploadItem, data, provider=PROVIDER, what="imageUpload item").imageUUID
    raise MalformedResponse("imageUpload answer holds no item for our task", provider=PROVIDER)


def parse_output(final: Any, task_uuid: str) -> ProviderOutput:
    """The finished clip from a ``getResponse`` body (``{"data": [...]}``) or a bare result item
    (the documented example / webhook shape). ``cost`` (USD float) becomes an exact ``Decimal``."""
    wrapped = final
    if isinstance(final, Mapping) and "data" not in final and "taskUUID" in final:
        wrapped = {"data": [dict(final)]}
    body = read_body(wrapped)
    items = [i for i in _items(body, task_uuid) if _state(i) is JobState.SUCCEEDED]
    if not items:
        raise MalformedResponse(f"no successful result for task {task_uuid} in the answer", provider=PROVIDER)
    item = items[0]
    url = _url(item)
    if not url:
        raise MalformedResponse("result has no videoURL, mediaURL or videoDataURI", provider=PROVIDER)
    return ProviderOutput(
        video_url=url, seed=item.seed,
        cost_usd=None if item.cost is None else Decimal(str(item.cost)),
        nsfw=item.NSFWContent, raw=final,
    )
