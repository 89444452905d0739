"""The canonical request: one ``OviRequest`` that every vendor adapter translates.

``None`` always means "the vendor's default". Every field a caller sets must be honored by the vendor
that runs it, or refused before anything is sent (unless the route allows degrading).
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
import re
import socket
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, ClassVar, Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from gateway.prompt import OviPrompt

__all__ = ["MAX_IMAGE_BYTES", "ImageInput", "Mode", "OviRequest"]

MAX_IMAGE_BYTES = 20 * 1024 * 1024
"""Largest image the gateway accepts, decoded (bytes). Vendors downscale anyway (Runware to 2048 px)."""

_MAGIC = (
    (b"\x89PNG\r\n\x1a\n", "image/png"),
    (b"\xff\xd8\xff", "image/jpeg"),
    (b"GIF87a", "image/gif"),
    (b"GIF89a", "image/gif"),
    (b"BM", "image/bmp"),
)
_BASE64 = re.compile(r"^[A-Za-z0-9+/]+={0,2}$")
_DATA_URI = re.compile(r"^data:(?P<mime>[\w.+-]+/[\w.+-]+);base64,(?P<data>.*)$", re.DOTALL)
_SIZE = re.compile(r"^(?P<w>[1-9]\d{1,4})x(?P<h>[1-9]\d{1,4})$")


class Mode(StrEnum):
    """What the vendor is asked to do: animate an image, or make a clip from text alone."""

    IMAGE_TO_VIDEO = "image-to-video"
    TEXT_TO_VIDEO = "text-to-video"


def sniff_image(data: bytes) -> str | None:
    """The image MIME type from the leading bytes, or ``None`` when they are no image we know."""
    for magic, mime in _MAGIC:
        if data.startswith(magic):
            return mime
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    return None


def _check_image_bytes(data: bytes, where: str) -> str:
    if len(data) > MAX_IMAGE_BYTES:
        raise ValueError(f"{where} is {len(data)} bytes; at most {MAX_IMAGE_BYTES} are accepted "
                         "(upload it somewhere and pass its https URL instead)")
    mime = sniff_image(data)
    if mime is None:
        raise ValueError(f"{where} is not a PNG, JPEG, WebP, GIF or BMP image")
    return mime


def _check_public_url(url: str) -> None:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https"):
        raise ValueError(f"image URL scheme {parts.scheme!r} is not allowed; use https:// "
                         "(or pass a local file as a Path)")
    host = (parts.hostname or "").rstrip(".").lower()
    if not host:
        raise ValueError("image URL has no host")
    if host == "localhost" or host.endswith(".localhost") or host.endswith(".internal"):
        raise ValueError(f"image URL host {host!r} is not reachable by a vendor; use a public URL")
    try:
        address: ipaddress.IPv4Address | ipaddress.IPv6Address = ipaddress.ip_address(host)
    except ValueError:
        try:  # shorthand and integer IPv4 forms (127.1, 2130706433, 0x7f.1) that resolvers accept
            address = ipaddress.IPv4Address(socket.inet_aton(host))
        except OSError:
            return
    if not address.is_global:
        raise ValueError(f"image URL host {host} is a private or reserved address; "
                         "vendors cannot fetch it — pass a public URL or a local file")


class ImageInput(BaseModel):
    """The input image in one of four forms: ``url``, ``data_uri``, ``base64`` or a local ``file``.

    Built from a plain value by ``ImageInput.coerce``: a ``Path`` is a file; a string is a URL when
    it starts with ``http(s)://``, a data URI when it starts with ``data:``, bare base64 when it
    decodes to image bytes, and otherwise a file path that must exist.
    """

    model_config: ClassVar[ConfigDict] = ConfigDict(frozen=True, extra="forbid")

    kind: Literal["url", "data_uri", "base64", "file"]
    value: str = Field(repr=False)
    mime: str | None = None

    def __repr__(self) -> str:
        shown = self.value if self.kind in ("url", "file") else f"<{len(self.value)} chars>"
        return f"ImageInput(kind={self.kind!r}, value={shown!r}, mime={self.mime!r})"

    @classmethod
    def coerce(cls, raw: Any) -> ImageInput:
        """Classify and check ``raw``; raises ``ValueError`` with what is allowed."""
        if isinstance(raw, ImageInput):
            return raw
        if isinstance(raw, dict) and "value" in raw:  # an ImageInput read back from JSON: check it again
            if not isinstance(raw["value"], str):
                raise ValueError("image value must be a string (URL, data URI, base64 or file path)")
            return cls.coerce(Path(raw["value"]) if raw.get("kind") == "file" else raw["value"])
        if isinstance(raw, Path):
            return cls._from_file(raw)
        if isinstance(raw, (bytes, bytearray)):
            mime = _check_image_bytes(bytes(raw), "image bytes")
            return cls(kind="base64", value=base64.b64encode(bytes(raw)).decode(), mime=mime)
        if not isinstance(raw, str) or not raw.strip():
            raise ValueError("image must be an https URL, a data URI, base64 text, or a local file path")
        text = raw.strip()
        lowered = text[:8].lower()
        if lowered.startswith(("http://", "https://")):
            _check_public_url(text)
            return cls(kind="url", value=text)
        if "://" in text[:16]:
            _check_public_url(text)  # raises: only http(s) URLs are allowed
        if lowered.startswith("data:"):
            match = _DATA_URI.match(text)
            if not match:
                raise ValueError("image data URI must look like data:image/png;base64,<data>")
            data = _decode(match.group("data"), "image data URI")
            mime = _check_image_bytes(data, "image data URI")
            declared = match.group("mime").lower()
            if {"image/jpg": "image/jpeg"}.get(declared, declared) != mime:
                raise ValueError(f"image data URI says {match.group('mime')} but holds {mime}")
            return cls(kind="data_uri", value=text, mime=mime)
        if len(text) >= 16 and _BASE64.match(text):
            try:
                data = _decode(text, "image base64")
                return cls(kind="base64", value=text, mime=_check_image_bytes(data, "image base64"))
            except ValueError:
                if len(text) > 4096 or not Path(text).is_file():  # not a path either: say what base64 lacked
                    raise
        return cls._from_file(Path(text))

    @classmethod
    def _from_file(cls, path: Path) -> ImageInput:
        try:
            with path.open("rb") as handle:
                data = handle.read(MAX_IMAGE_BYTES + 1)
        except OSError as exc:
            raise ValueError(f"image file {str(path)!r} cannot be read ({exc.strerror or exc}); "
                             "pass an existing image file, an https URL, a data URI or base64") from None
        mime = _check_image_bytes(data, f"image file {str(path)!r}")
        return cls(kind="file", value=str(path), mime=mime)

    def read_bytes(self) -> bytes:
        """The image's bytes (not for ``url`` images, which the vendor fetches itself)."""
        if self.kind == "file":
            return Path(self.value).read_bytes()
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


def _decode(text: str, where: str) -> bytes:
    if len(text) > MAX_IMAGE_BYTES * 4 // 3 + 4:
        raise ValueError(f"{where} is larger than {MAX_IMAGE_BYTES} bytes decoded; pass an https URL instead")
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise ValueError(f"{where} is not valid base64") from None


class OviRequest(BaseModel):
    """One Ovi clip to make: a 5 s, 24 fps video with synchronized speech and sound.

    ``None`` means the vendor's default. Fields past ``audio_negative_prompt`` are honored by some
    vendors only; routing sends the request where every set field is honored.
    """

    model_config: ClassVar[ConfigDict] = ConfigDict(frozen=True, extra="forbid", arbitrary_types_allowed=False)

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
        return {name: value for name, value in self
                if name not in ("prompt", "image") and value is not None}


def _document_fields(model: type[BaseModel]) -> None:
    """Append each field's description to the class docstring, so ``help()`` and hovers show them."""
    lines = [f"    {name}: {info.description}" for name, info in model.model_fields.items() if info.description]
    model.__doc__ = (model.__doc__ or "").rstrip() + "\n\n    Fields:\n" + "\n".join(lines) + "\n"


_document_fields(OviRequest)
