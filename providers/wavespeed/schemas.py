"""WaveSpeed wire shapes (pydantic v2), as documented.

Sources: the Ovi image-to-video page (seeds/wavespeed-ovi-image-to-video.md: request parameters and the
response envelope), https://wavespeed.ai/docs/get-result (failed tasks are HTTP 200 with
``data.status: "failed"``), https://wavespeed.ai/docs/error-codes (``data.code``), and
https://www.wavespeed.ai/docs/upload-files-api (``/api/v3/media/upload/binary``).
Unknown extra fields are ignored; a missing or mistyped documented field fails loudly.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

__all__ = [
    "TERMINAL_FAILURES",
    "Envelope",
    "ErrorBody",
    "ImageToVideoInput",
    "PredictionData",
    "TextToVideoInput",
    "Timings",
    "UploadData",
    "UploadEnvelope",
    "Urls",
]

TERMINAL_FAILURES = ("failed", "cancelled", "timeout", "deleted")
"""Statuses that end a task: ``failed`` is documented; the official SDK 2.0.5 ends on the other three
too (client.py L357-360). Any other status string is read and means "keep polling", as in the SDK."""


class _Wire(BaseModel):
    # defer_build: the validator is built on first use, once, not at import (start-up, issue 14)
    model_config = ConfigDict(extra="ignore", frozen=True, defer_build=True)


class ImageToVideoInput(_Wire):
    """The I2V submit body: ``image`` and ``prompt`` required, ``seed`` −1…2147483647 (−1 = random)."""

    model_config = ConfigDict(extra="forbid", frozen=True, defer_build=True)

    image: str
    prompt: str
    seed: int = Field(default=-1, ge=-1, le=2_147_483_647)


class TextToVideoInput(_Wire):
    """The T2V submit body: ``prompt`` required, ``size`` ``"960*540"`` (default) or ``"540*960"``."""

    model_config = ConfigDict(extra="forbid", frozen=True, defer_build=True)

    prompt: str
    size: Literal["960*540", "540*960"] = "960*540"
    seed: int = Field(default=-1, ge=-1, le=2_147_483_647)


class Timings(_Wire):
    inference: float | None = None
    """Inference time in milliseconds."""


class Urls(_Wire):
    get: str | None = None


class PredictionData(_Wire):
    """``data`` of the submit and result envelopes."""

    id: str
    model: str | None = None
    outputs: list[str] | None = Field(default_factory=list)
    """``null`` is read as no outputs (the SDK returns it as ``None`` rather than failing)."""
    urls: Urls | None = None
    has_nsfw_contents: list[bool | None] | None = Field(default_factory=list)
    status: str | None = None
    """Any string: only ``completed`` and ``TERMINAL_FAILURES`` end a task (a missing one keeps polling)."""
    created_at: Any = None
    """Not read: a timestamp as text or as a number (the SDK never reads it)."""
    error: str | None = ""
    code: int | None = None
    """Task failure code (error-codes page): 1200 moderation, 14xx request, 5xxx server."""

    @field_validator("error", mode="before")
    @classmethod
    def _error_as_text(cls, value: Any) -> Any:
        """An error object (``{"message": ...}``) or number reads as its text: the SDK only prints it."""
        if value is None or isinstance(value, str):
            return value
        if isinstance(value, dict) and isinstance(value.get("message"), str):
            return value["message"]
        return str(value)

    @field_validator("code", mode="before")
    @classmethod
    def _code_as_int(cls, value: Any) -> Any:
        """A numeric string reads as its number; anything else unreadable as no code."""
        if isinstance(value, bool) or value is None or isinstance(value, int):
            return None if isinstance(value, bool) else value
        if isinstance(value, str) and value.strip().isdigit():
            return int(value)
        return None
    timings: Timings | None = None
    input: dict[str, Any] | None = None
    """The original body; present in webhook payloads, tolerated in results."""


class Envelope(_Wire):
    """``{"code": 200, "message": "success", "data": {...}}``. A missing ``code`` is read as success:
    the SDK reads only the HTTP status and ``data`` (client.py L205-217, L341-362)."""

    code: int | None = None
    message: Any = ""
    data: PredictionData


class ErrorBody(_Wire):
    """A non-success body. Its shape for non-200 answers is UNCONFIRMED in the docs; parsed leniently."""

    code: int | None = None
    message: str | None = None


class UploadData(_Wire):
    type: str | None = None
    download_url: str
    filename: str | None = None
    size: int | None = None


class UploadEnvelope(_Wire):
    """The ``/api/v3/media/upload/binary`` answer."""

    code: int
    message: str = ""
    data: UploadData
