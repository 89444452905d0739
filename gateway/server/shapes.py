"""What the API answers: the OpenAI ``Video`` object (``video_json``) and the error envelope
``{"error": {message, type, param, code}}`` (``error``), with the status the openai SDK maps to its
exception classes [openai@3.57.0 _client.py:635-668], for each refusal the routes make."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from gateway.errors import BudgetExceeded, ConfigurationError, GatewayError, InvalidRequest, NoRoute
from gateway.jobs.handles import JobView
from gateway.server.store import VideoRow

__all__ = ["error", "expired", "not_found", "refusal_of", "reused_key", "video_json"]

_STATUS = {"submitting": "queued", "queued": "queued", "running": "in_progress", "unknown": "in_progress",
           "succeeded": "completed", "failed": "failed", "cancelled": "failed"}
_FAILURE_CODES = {"ResultExpired": "expired", "ContentRejected": "content_rejected"}
"""``error.code`` of a failed video by the gateway error class its journal text starts with."""
_PROGRESS = {"queued": 0, "in_progress": 50, "completed": 100, "failed": 100}


def error(status: int, message: str, *, type: str = "invalid_request_error", param: str | None = None,
          code: str | None = None, headers: dict[str, str] | None = None) -> JSONResponse:
    """The OpenAI error envelope."""
    return JSONResponse({"error": {"message": message, "type": type, "param": param, "code": code}},
                        status_code=status, headers=headers)


def video_json(row: VideoRow, view: JobView | None, expires_at: int | None = None) -> dict[str, Any]:
    """The OpenAI ``Video`` object, plus ``ovi`` (the gateway's full state) and ``usage.cost`` (USD);
    ``expires_at`` (Unix s) is when its content stops being downloadable (``VideoServer._expires_at``)."""
    state = view.state if view is not None else "submitting"
    status = _STATUS[state]
    result = view.result if view is not None else None
    problem = None
    if state == "cancelled":
        problem = {"code": "cancelled", "message": view.error if view else "cancelled"}
    elif state == "failed":
        text = (view.error if view else None) or "the video failed"
        problem = {"code": _FAILURE_CODES.get(text.partition(":")[0], "generation_failed"), "message": text}
    completed_at = int(row.created_at + result.timings.total_s) if result is not None else None
    cost = None if view is None or view.cost_usd is None else str(view.cost_usd)
    return {
        "id": row.id, "object": "video", "created_at": int(row.created_at), "completed_at": completed_at,
        "expires_at": expires_at, "model": row.model, "progress": _PROGRESS[status], "prompt": row.prompt,
        "remixed_from_video_id": None, "seconds": row.seconds, "size": row.size, "status": status, "error": problem,
        "usage": {"cost": cost, "cost_source": view.cost_source if view else None},
        "ovi": {"state": state, "provider": view.provider if view else None,
                "vendor_job_id": view.vendor_job_id if view else None,
                "attempts": list(view.attempts) if view else [],
                "dropped": list(result.dropped) if result is not None else []},
    }


def not_found(request: Request) -> Response:
    return error(404, f"no video {request.path_params['video_id']!r}", code="not_found")


def expired(row: VideoRow, why: str) -> Response:
    return error(410, f"video {row.id} has no stored copy and {why}; its content is gone", code="video_expired",
                 headers={"x-should-retry": "false"})


def reused_key() -> Response:
    return error(409, "this Idempotency-Key was used for a different request; use a new key",
                 param="Idempotency-Key", code="idempotency_key_reused")


def refusal_of(failure: GatewayError) -> Response:
    if isinstance(failure, NoRoute):
        return error(400, failure.message, code="no_route")
    if isinstance(failure, InvalidRequest):
        return error(400, failure.message, code="invalid_request")
    if isinstance(failure, BudgetExceeded):
        return error(402, failure.message, code="budget_exceeded")
    if isinstance(failure, ConfigurationError):
        return error(503, failure.message, type="server_error", code="not_configured")
    return error(502, f"no vendor took the video: {failure.message}", type="server_error", code="vendor_error")
