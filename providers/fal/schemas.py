"""fal.ai's wire shapes for the Ovi endpoints and the queue, as pydantic models.

Sources: the queue protocol (https://docs.fal.ai/model-endpoints/queue, the inference-api pages),
the Ovi model page (seeds/fal-ovi-image-to-video.md and fal-js ``oviOutput``), and the error pages
(https://fal.ai/docs/model-apis/errors, …/request-errors). Unknown extra keys are kept, never refused:
fal adds fields over time, and only a missing or mistyped field we rely on should fail.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict


class _Wire(BaseModel):
    # defer_build: the validator is built on first use, once, not at import (start-up, issue 14)
    model_config = ConfigDict(extra="allow", frozen=True, defer_build=True)


class SubmitAck(_Wire):
    """The answer to ``POST https://queue.fal.run/{model_id}``. The three URLs are used verbatim."""

    request_id: str
    response_url: str
    status_url: str
    cancel_url: str
    status: str | None = None
    queue_position: int | None = None


class Metrics(_Wire):
    """``metrics`` on a COMPLETED status; ``inference_time`` is in seconds."""

    inference_time: float | None = None


class QueueStatus(_Wire):
    """``GET …/requests/{id}/status``: 202 while IN_QUEUE / IN_PROGRESS, 200 when COMPLETED.

    A failed request reaches COMPLETED too; fal-client also reads ``error`` / ``error_type`` here.
    """

    status: str
    """IN_QUEUE, IN_PROGRESS or COMPLETED; any other string is read as still running (fal-client raises
    ``ValueError("Unknown status")`` there, client.py L709-724; a paid job must not end on a new word)."""
    queue_position: int | None = None
    logs: list[dict[str, Any]] | None = None
    metrics: Metrics | None = None
    error: str | None = None
    error_type: str | None = None
    response_url: str | None = None


class File(_Wire):
    """fal's ``File``: only ``url`` is required."""

    url: str
    content_type: str | None = None
    file_name: str | None = None
    file_size: int | None = None


class OviOutput(_Wire):
    """The Ovi result body. The schema marks ``seed`` required, yet the documented example omits
    it, so a missing seed is accepted (``None``). ``video`` is optional in fal's schema; the adapter
    refuses a result without one."""

    video: File | None = None
    seed: int | None = None


class ValidationItem(_Wire):
    """One FastAPI-style error object in a ``detail`` list (``loc``, ``msg``, ``type`` required)."""

    loc: list[str | int]
    msg: str
    type: str


class ErrorBody(_Wire):
    """An error body: ``detail`` is a list of ``ValidationItem`` (model errors) or a plain string
    (request/infrastructure errors, which also carry ``error_type``). Cancel answers carry ``status``."""

    detail: list[ValidationItem] | str | None = None
    error_type: str | None = None
    status: str | None = None


class StorageToken(_Wire):
    """``POST https://rest.fal.ai/storage/auth/token?storage_type=fal-cdn-v3`` (read by fal-client)."""

    token: str
    token_type: str
    base_url: str
    expires_at: str


class UploadAck(_Wire):
    """``POST https://v3.fal.media/files/upload`` (read by fal-client)."""

    access_url: str
