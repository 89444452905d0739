"""The clips the emulated vendors serve at their output URLs: the one place emulated downloads are answered.

Every vendor module's download route ends in ``ClipStore.response(job, fmt, image)``. By default the store
serves the packaged assets in ``gateway/emulator/media/`` (real H.264/AAC MP4 and MOV, VP9/Opus WEBM,
5.04 s at 24 fps; provenance in that folder's README), so benchmarks and contract tests never encode a
video. ``ClipStore(render=True)`` (the demo, the CLI's emulator mode) instead renders the request's own
image into the clip on the first GET, when PyAV is installed, cached by the image's hash; without PyAV it
serves the static asset.

A job's fate picks defective variants, the broken successes real vendors do return: ``truncated`` (the
download stops short: the first 40 % of a good clip's bytes, so an MP4 has no ``moov`` box), ``noaudio``
(no audio stream) and ``short`` (2 s).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import threading
from collections import OrderedDict
from collections.abc import Callable
from importlib import resources
from typing import Any, ClassVar

import httpx

from gateway.emulator import render

__all__ = ["DEFECTIVE_FATES", "MIME", "ClipStore", "asset_name", "inline_image"]

MIME = {"mp4": "video/mp4", "webm": "video/webm", "mov": "video/quicktime"}
DEFECTIVE_FATES = ("truncated", "noaudio", "short")
"""Job fates whose job succeeds at the vendor but whose clip is broken."""
TRUNCATE_AT = 0.4
_CACHE_SIZE = 64


def asset_name(fmt: str, variant: str = "ok") -> str:
    """File name of a packaged clip, e.g. ``ovi-5s-24fps.mp4`` or ``ovi-5s-24fps-noaudio.webm``."""
    return f"ovi-5s-24fps{'' if variant == 'ok' else '-' + variant}.{fmt}"


def inline_image(value: Any) -> bytes | None:
    """The bytes of an image given inline (data URI or bare base64), else ``None`` (URLs, ids)."""
    if not isinstance(value, str) or value.startswith(("http://", "https://")):
        return None
    text = value.split(",", 1)[1] if value.startswith("data:") and "," in value else value
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        return None


class ClipStore:
    """Clip bytes per format, fate, fps and picture. Thread-safe (the loopback server is threaded).

    Args:
        render: put the request's own image in the frames (encoded on first download, needs PyAV).
    """

    _assets: ClassVar[dict[str, bytes]] = {}
    _rendered: ClassVar[OrderedDict[tuple[str, str, int, str], bytes]] = OrderedDict()
    _lock: ClassVar[threading.Lock] = threading.Lock()
    renders: ClassVar[int] = 0
    """Clips encoded in this process (class-wide), for tests that prove nothing is encoded."""

    def __init__(self, *, render: bool = False) -> None:
        self.render = render

    def response(self, job: Any, fmt: str = "mp4", image: bytes | None = None) -> httpx.Response:
        """The HTTP answer for a finished job's clip (``job.fate`` picks a defect, ``job.payload``'s
        ``fps`` the frame rate where the vendor honors one)."""
        fmt = fmt.lower() if fmt.lower() in MIME else "mp4"
        fate = getattr(job, "fate", "ok")
        variant = fate if fate in ("noaudio", "short") else "ok"
        payload = job.payload if isinstance(getattr(job, "payload", None), dict) else {}
        fps = payload["fps"] if isinstance(payload.get("fps"), int) else render.FPS
        data = self.clip(fmt, variant, fps, image if self.render else None)
        if fate == "truncated":
            data = data[:int(len(data) * TRUNCATE_AT)]
        return httpx.Response(200, content=data, headers={"content-type": MIME[fmt],
                                                          "content-length": str(len(data))})

    def size(self, fmt: str = "mp4") -> int | None:
        """Bytes of the packaged good clip in ``fmt`` (what a vendor reports as ``file_size``), or ``None``
        when this store renders (the size is known only once the clip is made)."""
        return None if self.render else len(self.asset(fmt))

    def clip(self, fmt: str, variant: str = "ok", fps: int = render.FPS, image: bytes | None = None) -> bytes:
        """The clip: a packaged asset when it fits; else rendered once and cached (needs PyAV; without
        it the packaged 24 fps asset is served)."""
        if (image is None and fps == render.FPS) or not render.available():
            return self.asset(fmt, variant)
        key = (fmt, variant, fps, "" if image is None else hashlib.sha256(image).hexdigest())
        return self._cached(key, lambda: render.encode_clip(render.ClipSpec(fmt, variant, fps, image)))

    @classmethod
    def asset(cls, fmt: str, variant: str = "ok") -> bytes:
        """A packaged clip's bytes (read once per process)."""
        name = asset_name(fmt, variant)
        with cls._lock:
            if name not in cls._assets:
                cls._assets[name] = resources.files("gateway.emulator").joinpath("media", name).read_bytes()
            return cls._assets[name]

    @classmethod
    def _cached(cls, key: tuple[str, str, int, str], make: Callable[[], bytes]) -> bytes:
        with cls._lock:
            if key in cls._rendered:
                cls._rendered.move_to_end(key)
                return cls._rendered[key]
        data = make()  # outside the lock: a render takes a fraction of a second
        with cls._lock:
            ClipStore.renders += 1
            cls._rendered[key] = data
            while len(cls._rendered) > _CACHE_SIZE:
                cls._rendered.popitem(last=False)
        return data
