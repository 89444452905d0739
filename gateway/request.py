"""The canonical request: one ``OviRequest`` that every vendor adapter translates.

``None`` always means "the vendor's default". Every field a caller sets must be honored by the vendor
that runs it, or refused before anything is sent (unless the route allows degrading).
"""

from __future__ import annotations

import base64
import functools
import re
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, ClassVar, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ModelWrapValidatorHandler,
    PrivateAttr,
    ValidationInfo,
    field_validator,
    model_validator,
)

from gateway.addresses import check_url
from gateway.errors import InvalidRequest
from gateway.images import MAX_IMAGE_BYTES, image_from_file, inspect_image, sniff_image, verified_file_bytes
from gateway.prompt import OviPrompt

__all__ = ["MAX_IDEMPOTENCY_KEY", "MAX_IMAGE_BYTES", "ImageInput", "Mode", "OviRequest", "check_idempotency_key",
           "check_text", "sniff_image"]

MAX_IDEMPOTENCY_KEY = 256
"""Longest idempotency key accepted (characters)."""


def check_idempotency_key(key: object) -> str | None:
    """``key`` when it is a usable idempotency key (or ``None``: no key); ``InvalidRequest`` otherwise.

    A key must be a non-empty string of printable characters, at most ``MAX_IDEMPOTENCY_KEY`` long. An
    empty key is refused rather than read as "no key", and a number is refused before anything is
    paid for (it used to be billed and then crash the journal).
    """
    if key is None:
        return None
    if not isinstance(key, str):
        raise InvalidRequest(f"idempotency_key must be a string, not {type(key).__name__} ({key!r:.40}); "
                             "pass str(value) or a UUID string")
    if not key.strip():
        raise InvalidRequest("idempotency_key is empty; pass a non-empty string, or None for no key")
    if len(key) > MAX_IDEMPOTENCY_KEY:
        raise InvalidRequest(f"idempotency_key is {len(key)} characters; at most {MAX_IDEMPOTENCY_KEY} are allowed")
    bad = next((i for i, ch in enumerate(key) if not ch.isprintable() or "\ud800" <= ch <= "\udfff"), None)
    if bad is not None:
        raise InvalidRequest(f"idempotency_key holds a control or invalid character at position {bad}; "
                             "use printable text (letters, digits, '-', '_', ':')")
    return key


def check_text(value: str | None, field: str) -> str | None:
    """``value`` when it is valid Unicode text (no lone surrogates, which cannot be sent as UTF-8)."""
    if value is None:
        return None
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise InvalidRequest(f"{field} holds a lone surrogate U+{ord(value[exc.start]):04X} at character "
                             f"{exc.start}: not valid Unicode text; decode the input as UTF-8 first") from None
    return value

_BASE64 = re.compile(r"^[A-Za-z0-9+/]+={0,2}$")
_SIZE = re.compile(r"^(?P<w>[1-9]\d{1,4})x(?P<h>[1-9]\d{1,4})$")


class Mode(StrEnum):
    """What the vendor is asked to do: animate an image, or make a clip from text alone."""

    IMAGE_TO_VIDEO = "image-to-video"
    TEXT_TO_VIDEO = "text-to-video"


class ImageInput(BaseModel):
    """The input image in one of four forms: ``url``, ``data_uri``, ``base64`` or a local ``file``.

    Built from a plain value by ``ImageInput.coerce``: a ``Path`` is a file; a string is a URL when
    it starts with ``http(s)://``, a data URI when it starts with ``data:``, bare base64 when it
    decodes to image bytes, and otherwise a file path that must exist.

    However it is built (``coerce``, ``ImageInput(...)``, JSON), ``gateway.images.inspect_image``
    checks it. A local file is read once and its bytes kept: ``read_bytes()`` returns those same
    bytes to every vendor, resubmit and resume. ``sha256`` (of the bytes; ``None`` for a URL, which the
    vendor fetches) is part of the request's JSON, so the request hash and the journal identify the
    image by its content, not its path.
    """

    # defer_build: the validator is built on first use, once, not at import (start-up, issue 14)
    model_config: ClassVar[ConfigDict] = ConfigDict(frozen=True, extra="forbid", defer_build=True)

    kind: Literal["url", "data_uri", "base64", "file"]
    value: str = Field(repr=False)
    mime: str | None = None
    sha256: str | None = Field(default=None, description="SHA-256 (hex) of the image bytes; None for a URL.")
    _data: bytes | None = PrivateAttr(default=None)

    @model_validator(mode="wrap")
    @classmethod
    def _inspected(cls, raw: Any, handler: ModelWrapValidatorHandler[ImageInput]) -> ImageInput:
        if not isinstance(raw, dict):
            return handler(raw)
        mime, sha256, data = inspect_image(raw.get("kind", ""), raw.get("value", ""), raw.get("mime"),
                                           raw.get("sha256"))
        given = raw.get("mime")
        if given is not None and mime is not None and given != mime:
            raise ValueError(f"image mime says {given} but the bytes are {mime}")
        model = handler({**raw, "mime": mime, "sha256": sha256})
        model._data = data
        return model

    def __repr__(self) -> str:
        shown = self.value if self.kind in ("url", "file") else f"<{len(self.value)} chars>"
        digest = "" if self.sha256 is None else f", sha256={self.sha256[:12]!r}…"
        return f"ImageInput(kind={self.kind!r}, value={shown!r}, mime={self.mime!r}{digest})"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, ImageInput):
            return NotImplemented
        return self._identity() == other._identity()

    def __hash__(self) -> int:
        return hash(self._identity())

    def _identity(self) -> tuple[str, str, str | None, str | None]:
        return self.kind, self.value, self.mime, self.sha256

    @classmethod
    def coerce(cls, raw: Any) -> ImageInput:
        """Classify and check ``raw``; raises ``ValueError`` with what is allowed."""
        if isinstance(raw, ImageInput):
            return raw
        if isinstance(raw, dict) and "value" in raw:  # an ImageInput read back from JSON: checked again
            return cls.model_validate(raw)
        if isinstance(raw, Path):
            return cls(kind="file", value=str(raw))
        if isinstance(raw, (bytes, bytearray)):
            return cls(kind="base64", value=base64.b64encode(bytes(raw)).decode())
        if not isinstance(raw, str) or not raw.strip():
            raise ValueError("image must be an https URL, a data URI, base64 text, or a local file path")
        text = raw.strip()
        lowered = text[:8].lower()
        if lowered.startswith(("http://", "https://")):
            return _url_image(text)
        if "://" in text[:16]:
            check_url(text, what="image URL", schemes=("https", "http"))  # raises: only http(s) URLs
        if lowered.startswith("data:"):
            return cls(kind="data_uri", value=text)
        if len(text) >= 16 and _BASE64.match(text):
            try:
                return cls(kind="base64", value=text)
            except ValueError:
                if len(text) > 4096 or not Path(text).is_file():  # not a path either: say what base64 lacked
                    raise
        return cls(kind="file", value=text)

    def read_bytes(self) -> bytes:
        """The image's bytes (not for ``url`` images, which the vendor fetches itself). A file's are the
        bytes read when the input was made; read back from JSON, the file is read once and must still
        hash to ``sha256`` (else ``InvalidRequest``: nothing different is ever sent)."""
        if self.kind == "file":
            if self._data is None:
                self._data = (verified_file_bytes(self.value, self.sha256) if self.sha256
                              else image_from_file(self.value)[2])
            return self._data
        if self.kind == "data_uri":
            return base64.b64decode(self.value.split(",", 1)[1])
        if self.kind == "base64":
            return base64.b64decode(self.value)
        raise ValueError("a URL image has no local bytes")

    def as_data_uri(self) -> str:
        """The image as ``data:<mime>;base64,…`` (not for ``url`` images)."""
        if self.kind == "data_uri":
            return self.value
        encoded = self.value if self.kind == "base64" else base64.b64encode(self.read_bytes()).decode()
        return f"data:{self.mime};base64,{encoded}"


@functools.lru_cache(maxsize=256)
def _url_image(text: str) -> ImageInput:
    """A URL image, checked once per URL text: the check reads only the text, and an ``ImageInput`` is
    frozen (a URL one holds no bytes), so many clips from one image share one. A refused URL raises every
    time (``lru_cache`` keeps no exceptions)."""
    return ImageInput(kind="url", value=text)


class OviRequest(BaseModel):
    """One Ovi clip to make: a 5 s, 24 fps video with synchronized speech and sound.

    ``None`` means the vendor's default. Fields past ``audio_negative_prompt`` are honored by some
    vendors only; routing sends the request where every set field is honored.
    """

    model_config: ClassVar[ConfigDict] = ConfigDict(frozen=True, extra="forbid", arbitrary_types_allowed=False,
                                                    defer_build=True)

    prompt: str = Field(description="Scene text with <S>speech<E> and one <AUDCAP>sound<ENDAUDCAP> "
                                    "(an ``OviPrompt`` is accepted and stored as its text).")
    image: ImageInput | None = Field(default=None, description=(
        "The first frame: an https URL, a data URI, base64 text, image bytes or a local file path "
        f"(PNG, JPEG, WebP, GIF or BMP, at most {MAX_IMAGE_BYTES} bytes); omit for text-to-video."))
    seed: Annotated[int, Field(ge=0, le=2**63 - 1)] | None = Field(
        default=None, description="Random seed (an integer ≥ 0); the same seed repeats a clip on the same vendor.")
    steps: Annotated[int, Field(ge=1)] | None = Field(
        default=None, description="Denoising steps (a count ≥ 1; vendors allow 1–50 or 1–100, default 30).")
    negative_prompt: str | None = Field(default=None, description="What to keep out of the video (text).")
    audio_negative_prompt: str | None = Field(default=None, description="What to keep out of the audio (text).")
    video_guidance: Annotated[float, Field(ge=0, allow_inf_nan=False)] | None = Field(
        default=None, description="Video classifier-free guidance scale (unitless, ≥ 0; vendors allow 0–10).")
    audio_guidance: Annotated[float, Field(ge=0, allow_inf_nan=False)] | None = Field(
        default=None, description="Audio classifier-free guidance scale (unitless, ≥ 0; vendors allow 0–10).")
    slg_layer: Annotated[int, Field(ge=0)] | None = Field(
        default=None, description="Skip-layer guidance: the transformer layer index (≥ 0; vendors allow 0–30).")
    fps: Annotated[int, Field(ge=1)] | None = Field(
        default=None, description="Frames per second of the output video (Ovi renders 24).")
    output_format: Literal["MP4", "WEBM", "MOV"] | None = Field(
        default=None, description="Container of the output video: MP4, WEBM or MOV.")
    output_quality: Annotated[int, Field(ge=1, le=100)] | None = Field(
        default=None, description="Encoder quality, 1–100 (percent; higher is better and larger).")
    size: str | None = Field(default=None, description=(
        "Text-to-video frame size in pixels as WIDTHxHEIGHT, e.g. 992x512 (image-to-video takes the image's)."))

    if TYPE_CHECKING:
        # What type checkers see: the values the validators accept (an image as a path, bytes or text;
        # a prompt as an ``OviPrompt``), while the attributes read back as the precise types above.
        def __init__(self, *, prompt: str | OviPrompt, image: str | Path | bytes | ImageInput | None = None,
                     seed: int | None = None, steps: int | None = None, negative_prompt: str | None = None,
                     audio_negative_prompt: str | None = None, video_guidance: float | None = None,
                     audio_guidance: float | None = None, slg_layer: int | None = None, fps: int | None = None,
                     output_format: Literal["MP4", "WEBM", "MOV"] | None = None,
                     output_quality: int | None = None, size: str | None = None) -> None: ...

    @field_validator("prompt", mode="before")
    @classmethod
    def _check_prompt(cls, value: Any) -> str:
        if isinstance(value, OviPrompt):
            return str(value)
        OviPrompt.parse(value)
        return str(value)

    @field_validator("negative_prompt", "audio_negative_prompt")
    @classmethod
    def _check_texts(cls, value: str | None, info: ValidationInfo) -> str | None:
        return check_text(value, str(info.field_name))

    @field_validator("image", mode="before")
    @classmethod
    def _coerce_image(cls, value: Any) -> ImageInput | None:
        return None if value is None else ImageInput.coerce(value)

    @field_validator("size")
    @classmethod
    def _check_size(cls, value: str | None) -> str | None:
        if value is not None and not _SIZE.match(value):
            raise ValueError("size must be WIDTHxHEIGHT in pixels, e.g. '992x512'")
        return value

    @model_validator(mode="after")
    def _size_only_for_text(self) -> OviRequest:
        if self.size is not None and self.image is not None:
            raise ValueError("size applies to text-to-video only; an image-to-video clip takes "
                             "the input image's aspect ratio — remove size or the image")
        return self

    @property
    def mode(self) -> Mode:
        """Image-to-video when an image is given, text-to-video otherwise."""
        return Mode.IMAGE_TO_VIDEO if self.image is not None else Mode.TEXT_TO_VIDEO

    @property
    def parsed_prompt(self) -> OviPrompt:
        """The prompt split into scene, speech lines and audio caption."""
        return OviPrompt.parse(self.prompt)

    def set_fields(self) -> dict[str, Any]:
        """The optional fields the caller set (not ``None``), by canonical name."""
        # ``__dict__`` holds exactly the fields (extra="forbid"; private attributes live elsewhere): read
        # directly, it skips pydantic's per-field iterator, and every quote and submit asks this.
        return {name: value for name, value in self.__dict__.items()
                if value is not None and name not in ("prompt", "image")}


def _document_fields(model: type[BaseModel]) -> None:
    """Append each field's description to the class docstring, so ``help()`` and hovers show them."""
    lines = [f"    {name}: {info.description}" for name, info in model.model_fields.items() if info.description]
    model.__doc__ = (model.__doc__ or "").rstrip() + "\n\n    Fields:\n" + "\n".join(lines) + "\n"


_document_fields(OviRequest)
