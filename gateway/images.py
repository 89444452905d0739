"""Checking an input image, whatever way an ``ImageInput`` is built (issue 9, items 4 and 9).

``inspect_image(kind, value, mime, sha256)`` is the one check ``ImageInput``'s validator runs for
``ImageInput.coerce``, ``ImageInput(...)`` and JSON alike:

* ``url``: ``http(s)://`` with a public host (``gateway.addresses``: no userinfo, no backslash, no
  loopback/private/NAT64/IPv4-mapped/Unicode-digit tricks).
* ``data_uri`` / ``base64``: decoded, size-capped, image magic sniffed, a data URI's declared type
  matching its bytes; ``sha256`` of the decoded bytes.
* ``file``: read **once**, through ``read_image_file`` — opened non-blocking and checked on the open
  descriptor to be a regular file (a FIFO, device or directory is refused instead of hanging; a
  symlink swapped after the check cannot change what was read) — and the bytes kept, so every vendor,
  resubmit and resume in this process gets exactly those bytes. The request JSON (and so the request
  hash and the journal) carries their ``sha256``; a request read back from JSON re-reads the file
  only when the bytes are needed and refuses it if the sha256 differs.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
import re
import stat

from gateway.addresses import check_url
from gateway.errors import InvalidRequest

__all__ = ["MAX_IMAGE_BYTES", "ImageFacts", "check_image_bytes", "decode_base64", "image_from_file", "inspect_image",
           "read_image_file", "sniff_image", "verified_file_bytes"]

MAX_IMAGE_BYTES = 20 * 1024 * 1024
"""Largest image the gateway accepts, decoded (bytes). Vendors downscale anyway (Runware to 2048 px)."""

_MAGIC = (
    (b"\x89PNG\r\n\x1a\n", "image/png"),
    (b"\xff\xd8\xff", "image/jpeg"),
    (b"GIF87a", "image/gif"),
    (b"GIF89a", "image/gif"),
    (b"BM", "image/bmp"),
)
_DATA_URI = re.compile(r"^data:(?P<mime>[\w.+-]+/[\w.+-]+);base64,(?P<data>.*)$", re.DOTALL)
_SHA256 = re.compile(r"^[0-9a-f]{64}$")

ImageFacts = tuple[str | None, str | None, bytes | None]
"""``(mime, sha256, file bytes)`` as ``inspect_image`` found them (bytes only for a file read now)."""


def sniff_image(data: bytes) -> str | None:
    """The image MIME type from the leading bytes, or ``None`` when they are no image we know."""
    for magic, mime in _MAGIC:
        if data.startswith(magic):
            return mime
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    return None


def check_image_bytes(data: bytes, where: str) -> str:
    """The MIME type of ``data``; ``ValueError`` when it is too large or no image we know."""
    if len(data) > MAX_IMAGE_BYTES:
        raise ValueError(f"{where} is {len(data)} bytes; at most {MAX_IMAGE_BYTES} are accepted "
                         "(upload it somewhere and pass its https URL instead)")
    mime = sniff_image(data)
    if mime is None:
        raise ValueError(f"{where} is not a PNG, JPEG, WebP, GIF or BMP image")
    return mime


def decode_base64(text: str, where: str) -> bytes:
    """``text`` decoded strictly; ``ValueError`` naming ``where`` when it is too long or invalid."""
    if len(text) > MAX_IMAGE_BYTES * 4 // 3 + 4:
        raise ValueError(f"{where} is larger than {MAX_IMAGE_BYTES} bytes decoded; pass an https URL instead")
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise ValueError(f"{where} is not valid base64") from None


_KINDS = {stat.S_IFIFO: "a FIFO (named pipe)", stat.S_IFCHR: "a character device", stat.S_IFBLK: "a block device",
          stat.S_IFDIR: "a directory", stat.S_IFSOCK: "a socket"}


def read_image_file(path: str | os.PathLike[str]) -> bytes:
    """The bytes of the regular file at ``path`` (at most ``MAX_IMAGE_BYTES`` + 1 are read).

    Opened with ``O_NONBLOCK`` so a FIFO cannot block the open, then checked with ``fstat`` on the
    open descriptor, so what is read is what was checked. ``ValueError`` says what the path is.
    """
    shown = repr(os.fspath(path))
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOCTTY", 0) | getattr(os, "O_CLOEXEC", 0)
    try:
        fd = os.open(path, flags)
    except OSError as exc:
        raise ValueError(f"image file {shown} cannot be read ({exc.strerror or exc}); pass an existing "
                         "image file, an https URL, a data URI or base64") from None
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            what = _KINDS.get(stat.S_IFMT(mode), "not a regular file")
            raise ValueError(f"image file {shown} is {what}; pass a regular image file")
        chunks, size = [], 0
        while size <= MAX_IMAGE_BYTES:
            chunk = os.read(fd, min(1 << 20, MAX_IMAGE_BYTES + 1 - size))
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
        return b"".join(chunks)
    except OSError as exc:
        raise ValueError(f"image file {shown} cannot be read ({exc.strerror or exc})") from None
    finally:
        os.close(fd)


def image_from_file(path: str | os.PathLike[str]) -> tuple[str, str, bytes]:
    """``(mime, sha256, bytes)`` of an image file, read once."""
    data = read_image_file(path)
    mime = check_image_bytes(data, f"image file {os.fspath(path)!r}")
    return mime, hashlib.sha256(data).hexdigest(), data


def inspect_image(kind: str, value: str, mime: str | None, sha256: str | None) -> ImageFacts:
    """Check one image input and return its facts; ``ValueError`` (with what is allowed) otherwise."""
    if not isinstance(value, str) or not value:
        raise ValueError("image value must be a non-empty string (URL, data URI, base64 or file path)")
    if sha256 is not None and not (isinstance(sha256, str) and _SHA256.match(sha256)):
        raise ValueError("image sha256 must be 64 lowercase hex digits")
    if kind == "url":
        check_url(value, what="image URL", schemes=("https", "http"))
        if mime is not None or sha256 is not None:
            raise ValueError("a URL image has no mime or sha256 of its own: the vendor fetches it")
        return None, None, None
    if kind == "file":
        if "\x00" in value:
            raise ValueError("image file path holds a NUL character")
        if sha256 is not None and mime is not None:  # read back from a request's JSON: checked when read
            return mime, sha256, None
        found_mime, digest, data = image_from_file(value)
        return found_mime, digest, data
    if kind == "data_uri":
        match = _DATA_URI.match(value)
        if not match:
            raise ValueError("image data URI must look like data:image/png;base64,<data>")
        data = decode_base64(match.group("data"), "image data URI")
        found = check_image_bytes(data, "image data URI")
        declared = match.group("mime").lower()
        if {"image/jpg": "image/jpeg"}.get(declared, declared) != found:
            raise ValueError(f"image data URI says {match.group('mime')} but holds {found}")
    elif kind == "base64":
        data = decode_base64(value, "image base64")
        found = check_image_bytes(data, "image base64")
    else:
        raise ValueError(f"image kind {kind!r} is not one of url, data_uri, base64, file")
    digest = hashlib.sha256(data).hexdigest()
    if sha256 is not None and sha256 != digest:
        raise ValueError("image sha256 does not match its bytes")
    return found, digest, None


def verified_file_bytes(path: str, sha256: str) -> bytes:
    """The file's bytes when they still hash to ``sha256``; ``InvalidRequest`` when they changed, so a
    resumed clip never sends another image than the one its request (and idempotency key) was made with."""
    try:
        data = read_image_file(path)
    except ValueError as exc:
        raise InvalidRequest(f"{exc}; the request recorded this image with sha256 {sha256[:12]}…") from None
    digest = hashlib.sha256(data).hexdigest()
    if digest != sha256:
        raise InvalidRequest(f"image file {path!r} changed since the request was made (sha256 {sha256[:12]}… "
                             f"recorded, {digest[:12]}… now); nothing was sent — restore the file, or make a "
                             "new request (with a new idempotency key) for the new image")
    return data
