"""Pydantic models of Runware's wire shapes for Ovi (``runware:190@1``).

Requests follow the Ovi OpenAPI ``RequestBody`` (seeds/runware-ovi-openapi.json), which forbids
unknown properties at every level, so the request models forbid them too. Answers are parsed
leniently (``extra="allow"``): Runware adds fields over time, and only the ones read here matter.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

__all__ = [
    "RunwareAdvancedFeatures",
    "RunwareBody",
    "RunwareError",
    "RunwareGetResponseTask",
    "RunwareImageUploadTask",
    "RunwareInputs",
    "RunwareItem",
    "RunwareUploadItem",
    "RunwareVideoTask",
]


class _Request(BaseModel):
    # defer_build: the validator is built on first use, once, not at import (start-up, issue 14)
    model_config = ConfigDict(extra="forbid", defer_build=True)


class RunwareInputs(_Request):
    """``inputs``: the image as a URL, data URI, bare base64 or an uploaded image's UUID."""

    image: str


class RunwareAdvancedFeatures(_Request):
    """``advancedFeatures``: Ovi's negatives, CFG scales (0–10) and skip-layer guidance (0–30)."""

    videoNegativePrompt: str | None = None
    audioNegativePrompt: str | None = None
    videoCFGScale: float | None = None
    audioCFGScale: float | None = None
    slgLayer: int | None = None


class RunwareVideoTask(_Request):
    """One ``videoInference`` task for Ovi, as sent (``None`` fields are left out of the JSON)."""

    taskType: Literal["videoInference"] = "videoInference"
    taskUUID: str
    model: str
    positivePrompt: str
    inputs: RunwareInputs
    deliveryMethod: Literal["async"] = "async"
    includeCost: bool = True
    seed: int | None = None
    steps: int | None = None
    fps: int | None = None
    outputFormat: Literal["MP4", "WEBM", "MOV"] | None = None
    outputQuality: int | None = None
    advancedFeatures: RunwareAdvancedFeatures | None = None
    webhookURL: str | None = None


class RunwareGetResponseTask(_Request):
    """A poll for an async task's state: ``getResponse`` with the original ``taskUUID``."""

    taskType: Literal["getResponse"] = "getResponse"
    taskUUID: str


class RunwareImageUploadTask(_Request):
    """``imageUpload``: stores an image at Runware and answers with its ``imageUUID``."""

    taskType: Literal["imageUpload"] = "imageUpload"
    taskUUID: str
    image: str


class _Answer(BaseModel):
    model_config = ConfigDict(extra="allow", populate_by_name=True, defer_build=True)


class RunwareError(_Answer):
    """One entry of Runware's ``errors`` array (or an item's ``error``). ``parameter`` may be a list."""

    code: str
    message: str = ""
    parameter: str | list[str] | None = None

    @field_validator("code", "message", mode="before")
    @classmethod
    def _any_text(cls, value: Any) -> Any:
        """An integer (or other scalar) code/message is read as text: the SDK takes ``code`` as given
        (``RunwareAPIError.code = error_data.get("code")``, utils.py L243), so an unusual type must not
        turn a readable error into an unreadable answer."""
        return "" if value is None else value if isinstance(value, str) else str(value)
    taskType: str | None = None
    taskUUID: str | None = None
    documentation: str | None = None


class RunwareItem(_Answer):
    """One ``data`` item of a ``videoInference`` task: an ack, a ``processing`` poll, a result or a failure.

    ``progress`` is a percentage (0–100) on processing items; ``cost`` is USD, present with
    ``includeCost``.
    """

    taskType: str | None = None
    taskUUID: str
    status: str | None = None
    progress: float | None = None
    videoUUID: str | None = None
    videoURL: str | None = None
    mediaUUID: str | None = None
    mediaURL: str | None = None
    """The SDK's ``IVideo`` carries ``mediaUUID``/``mediaURL`` beside the video fields (types.py L2460)."""
    videoDataURI: str | None = None
    seed: int | None = None
    NSFWContent: bool | None = None
    cost: float | None = None
    error: RunwareError | None = None
    code: Any = None
    errorId: Any = None
    message: Any = None
    """An item carrying a truthy ``code``/``error``/``errorId`` is an error (the SDK's
    ``_is_error_response``, base.py L3768-3780), whatever its ``status``."""

    @field_validator("error", mode="before")
    @classmethod
    def _error_of_any_shape(cls, value: Any) -> Any:
        """``error`` as a bare string (or any non-object) is still an error, as the SDK's truthiness
        test reads it; falsy values are no error."""
        if not value:
            return None
        if isinstance(value, dict):
            return value if "code" in value else {"code": "error", **value}
        return {"code": "error", "message": str(value)}


class RunwareUploadItem(_Answer):
    """The ``imageUpload`` answer item."""

    taskType: Literal["imageUpload"]
    taskUUID: str
    imageUUID: str
    imageURL: str | None = None


class RunwareBody(_Answer):
    """Every Runware REST answer: ``data`` items and/or ``errors`` (the two can come together)."""

    data: list[dict[str, Any]] = Field(default_factory=list)
    errors: list[RunwareError] = Field(default_factory=list)

    @field_validator("data", "errors", mode="before")
    @classmethod
    def _null_is_empty(cls, value: Any) -> Any:
        """``null`` lists read as empty, as the SDK's ``.get(..., [])`` reads them."""
        return [] if value is None else value
