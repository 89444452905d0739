"""WaveSpeed's documented Ovi protocol, emulated.

Served (seeds/wavespeed-ovi-image-to-video.md, reference/providers.md §3):
- ``POST /api/v3/character-ai/ovi/image-to-video`` ``{"image", "prompt", "seed"}`` and
  ``POST /api/v3/character-ai/ovi/text-to-video`` ``{"prompt", "size", "seed"}`` → the envelope
  ``{"code": 200, "message": "success", "data": {...status "created"}}``;
- ``GET /api/v3/predictions/{id}/result`` and ``GET /api/v3/predictions/{id}`` (both documented) → the
  same envelope; a failed task is HTTP 200 with ``data.status: "failed"``, ``data.error``, ``data.code``;
- ``POST /api/v3/media/upload/binary`` (multipart ``file``, documented) → ``data.download_url``;
- ``POST /api/v3/media/uploads`` + ``PUT`` — the undocumented ticket flow the official SDK 2.0.5 uses,
  emulated only so the SDK runs against the loopback server;
- downloads of outputs and uploaded files.

Fault operations: both prediction GETs are ``status`` (WaveSpeed has one poll endpoint, so ``result``
faults never fire); ``upload/binary`` and the SDK's ticket POST are ``upload``.
"""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from email.parser import BytesParser
from email.policy import HTTP
from typing import Any, ClassVar

import httpx

from gateway.emulator.base import EmulatedJob, EmulatedVendor, clip_fingerprint, json_response
from gateway.emulator.clips import inline_image

__all__ = ["WaveSpeedEmulator"]

API_HOST = "api.wavespeed.ai"
MEDIA_HOST = "cdn.wavespeed.ai"
"""Made up: WaveSpeed does not document the host its output files live on."""

PRICE = Decimal("0.15")
SEED_MIN, SEED_MAX = -1, 2_147_483_647
MODELS = {"character-ai/ovi/image-to-video": "i2v", "character-ai/ovi/text-to-video": "t2v"}
FIELDS = {"i2v": {"image", "prompt", "seed"}, "t2v": {"prompt", "size", "seed"}}
SIZES = ("960*540", "540*960")
EPOCH = datetime(2025, 1, 1, tzinfo=UTC)

_PREDICTION = re.compile(r"^/api/v3/predictions/(?P<id>[^/]+)(?P<result>/result)?/?$")
_SUBMIT = re.compile(r"^/api/v3/(?P<model>character-ai/ovi/[a-z-]+)/?$")
# emulator-only paths (made up; on loopback they must sit under /api/v3/ to be routed here)
OUTPUT_RETENTION_S = 7 * 86400.0
"""Predictions and their outputs are deleted after 7 days [doc https://wavespeed.ai/docs/what-are-predictions]."""
_OUTPUT = re.compile(r"^/api/v3/emulator/outputs/(?P<id>[^/]+)\.mp4$")
_FILE = re.compile(r"^/api/v3/emulator/files/(?P<id>[^/]+)/(?P<name>[^/]+)$")
_PUT = re.compile(r"^/api/v3/emulator/put/(?P<id>[^/]+)$")

_MAGIC = ((b"\x89PNG\r\n\x1a\n", "image/png"), (b"\xff\xd8\xff", "image/jpeg"), (b"GIF8", "image/gif"),
          (b"BM", "image/bmp"), (b"II*\x00", "image/tiff"), (b"MM\x00*", "image/tiff"))

_FAILURES = {
    "fail": (1403, "Task execution failed"),
    "nsfw": (1200, "Content moderation: the input or output was flagged as NSFW"),
}


def _image_type(data: bytes) -> str | None:
    for magic, mime in _MAGIC:
        if data.startswith(magic):
            return mime
    return "image/webp" if data[:4] == b"RIFF" and data[8:12] == b"WEBP" else None


def _error(status: int, message: str, headers: dict[str, str] | None = None) -> httpx.Response:
    # The docs do not show non-200 bodies; this mirrors the success envelope's code/message.
    return json_response(status, {"code": status, "message": message}, headers)


class WaveSpeedEmulator(EmulatedVendor):
    """WaveSpeed's Ovi endpoints, prediction polling, media upload and output downloads."""

    name = "wavespeed"
    hosts: ClassVar[tuple[str, ...]] = (API_HOST, MEDIA_HOST)

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.files: dict[str, tuple[str, bytes, str]] = {}
        """Uploaded files by id: (filename, bytes, content type)."""
        self.tickets: dict[str, tuple[str, str]] = {}
        """SDK upload tickets awaiting their PUT: id → (filename, content type)."""

    # ---- routing -----------------------------------------------------------------------------
    def operation(self, request: httpx.Request) -> str:
        path, method = request.url.path, request.method
        if method == "GET" and (request.url.host == MEDIA_HOST or _OUTPUT.match(path) or _FILE.match(path)):
            return "download"
        if method == "POST" and _SUBMIT.match(path):
            return "submit"
        if method == "GET" and _PREDICTION.match(path):
            return "status"
        if method == "POST" and path in ("/api/v3/media/upload/binary", "/api/v3/media/uploads"):
            return "upload"
        if method == "PUT" and _PUT.match(path):
            return "upload_put"
        return "other"

    def route(self, request: httpx.Request) -> httpx.Response:
        operation = self.operation(request)
        if operation == "download":
            return self._download(request)
        if operation == "upload_put":  # a presigned-style URL: no auth header, like the SDK sends
            return self._put(request)
        if operation == "other":
            return _error(404, f"no route for {request.method} {request.url.path}")
        if not self.check_key(request, "Bearer"):
            return _error(401, "Unauthorized: invalid or missing API key")
        if operation == "submit":
            return self._submit(request)
        if operation == "status":
            return self._status(request)
        if request.url.path.endswith("/binary"):
            return self._upload_binary(request)
        return self._upload_ticket(request)

    def error_response(self, status: int, request: httpx.Request) -> httpx.Response:
        messages = {401: "Unauthorized: invalid or missing API key", 402: "Insufficient balance",
                    429: "Too many requests, please slow down", 500: "Internal server error",
                    502: "Bad gateway", 503: "Service unavailable", 504: "Gateway timeout",
                    400: "Bad request", 404: "prediction not found", 422: "Unprocessable request"}
        headers = {"Retry-After": "2"} if status == 429 else None
        return _error(status, messages.get(status, "error"), headers)

    # ---- URLs --------------------------------------------------------------------------------
    @staticmethod
    def _bases(request: httpx.Request) -> tuple[str, str]:
        """(API base, media base): the caller's own loopback server, else the real hosts."""
        if request.url.host in ("127.0.0.1", "localhost", "::1"):
            port = f":{request.url.port}" if request.url.port else ""
            host = f"[{request.url.host}]" if ":" in request.url.host else request.url.host
            own = f"{request.url.scheme}://{host}{port}"
            return own, own
        return f"https://{API_HOST}", f"https://{MEDIA_HOST}"

    # ---- predictions -------------------------------------------------------------------------
    def _submit(self, request: httpx.Request) -> httpx.Response:
        model = _SUBMIT.match(request.url.path).group("model")  # type: ignore[union-attr]
        kind = MODELS.get(model)
        if kind is None:
            return _error(404, f"model {model} not found")
        try:
            body = json.loads(request.content or b"null")
        except ValueError:
            return _error(400, "request body is not valid JSON")
        problem = self._validate(kind, body)
        if problem:
            return _error(400, problem)
        job_id = self.new_id().replace("-", "")
        job = self.create_job(job_id, body, clip=clip_fingerprint(body["prompt"], body.get("image")), price=PRICE)
        job.extra["model"] = model
        image = body.get("image")
        if kind == "i2v" and not image.startswith(("http://", "https://")):
            # The vendor fetches the image itself; it cannot fetch what is not a URL (whether it
            # accepts data URIs is UNCONFIRMED).
            job.fate = "fail"
            job.extra["failure"] = (1402, "Media access failed: the image URL could not be downloaded")
        self.push_when_done(job, request.url.params.get("webhook"))  # [doc wavespeed.ai how-to-use-webhooks]
        return json_response(200, self._envelope(job, "created", request))

    @staticmethod
    def _validate(kind: str, body: Any) -> str | None:
        if not isinstance(body, dict):
            return "request body must be a JSON object"
        unknown = sorted(set(body) - FIELDS[kind])
        if unknown:
            return f"unknown parameter(s): {', '.join(unknown)}; allowed: {', '.join(sorted(FIELDS[kind]))}"
        required = ("image", "prompt") if kind == "i2v" else ("prompt",)
        for name in required:
            if name not in body:
                return f"{name} is required"
            if not isinstance(body[name], str) or not body[name].strip():
                return f"{name} must be a non-empty string"
        seed = body.get("seed", -1)
        if isinstance(seed, bool) or not isinstance(seed, int) or not SEED_MIN <= seed <= SEED_MAX:
            return f"seed must be an integer from {SEED_MIN} to {SEED_MAX}, got {seed!r}"
        if kind == "t2v" and body.get("size", SIZES[0]) not in SIZES:
            return f"size must be one of {', '.join(SIZES)}, got {body.get('size')!r}"
        return None

    def _status(self, request: httpx.Request) -> httpx.Response:
        job = self.jobs.get(_PREDICTION.match(request.url.path).group("id"))  # type: ignore[union-attr]
        if job is None:
            return _error(404, "prediction not found")
        state = self.observed(self.settle(job))
        status = {"queued": "created", "running": "processing", "succeeded": "completed",
                  "nsfw": "failed", "cancelled": "cancelled"}.get(state, state)
        if self.current_fault == "unknown_status":
            status = "warming_up"  # not in the docs; the SDK keeps polling on any status it does not know
        return json_response(200, self._envelope(job, status, request, nsfw=state == "nsfw"))

    def _envelope(self, job: EmulatedJob, status: str, request: httpx.Request, *,
                  nsfw: bool = False) -> dict[str, Any]:
        api, media = self._bases(request)
        data: dict[str, Any] = {
            "id": job.job_id,
            "model": job.extra["model"],
            "outputs": [],
            "urls": {"get": f"{api}/api/v3/predictions/{job.job_id}/result"},
            "has_nsfw_contents": [],
            "status": status,
            "created_at": (EPOCH + timedelta(seconds=job.created_at)).isoformat(timespec="milliseconds")
            .replace("+00:00", "Z"),
            "error": "",
            "timings": {"inference": 0},
        }
        if status == "completed":
            data["outputs"] = [f"{media}/api/v3/emulator/outputs/{job.job_id}.mp4"]
            data["has_nsfw_contents"] = [False]
            data["timings"] = {"inference": int(job.duration * 1000)}
        elif status == "failed":
            code, message = job.extra.get("failure") or _FAILURES["nsfw" if nsfw else "fail"]
            data["error"], data["code"] = message, code
        if self.current_fault == "nulls":  # what the SDK tolerates: null lists, null error, no timings
            data.update(has_nsfw_contents=None, error=None, timings=None)
            if not data["outputs"]:
                data["outputs"] = None
        return {"code": 200, "message": "success", "data": data}

    # ---- media -------------------------------------------------------------------------------
    def _image_bytes(self, image: Any) -> bytes | None:
        """The request's image: an uploaded file, or an inline data URI (for clips that show it)."""
        stored = _FILE.match(httpx.URL(image).path) if isinstance(image, str) and image.startswith("http") else None
        if stored and stored.group("id") in self.files:
            return self.files[stored.group("id")][1]
        return inline_image(image)

    def _upload_binary(self, request: httpx.Request) -> httpx.Response:
        content_type = request.headers.get("content-type", "")
        if not content_type.startswith("multipart/form-data"):
            return _error(400, "expected multipart/form-data with a 'file' field")
        message = BytesParser(policy=HTTP).parsebytes(
            f"Content-Type: {content_type}\r\n\r\n".encode() + request.content)
        part = next((p for p in message.iter_parts() if p.get_param("name", header="content-disposition") == "file"),
                    None) if message.is_multipart() else None
        if part is None:
            return _error(400, "file is required")
        payload = part.get_payload(decode=True)
        data = payload if isinstance(payload, bytes) else b""
        mime = _image_type(data)
        if mime is None:
            return _error(400, "unsupported file type; upload JPG, PNG, WebP, GIF, BMP or TIFF")
        file_id = self.new_id().replace("-", "")
        name = part.get_filename() or "upload"
        self.files[file_id] = (name, data, mime)
        _, media = self._bases(request)
        return json_response(200, {"code": 200, "message": "success", "data": {
            "type": "image", "download_url": f"{media}/api/v3/emulator/files/{file_id}/{name}",
            "filename": name, "size": len(data)}})

    def _upload_ticket(self, request: httpx.Request) -> httpx.Response:
        try:
            body = json.loads(request.content or b"null")
        except ValueError:
            body = None
        if not isinstance(body, dict) or not isinstance(body.get("filename"), str) \
                or not isinstance(body.get("size"), int):
            return _error(400, "filename and size are required")
        file_id = self.new_id().replace("-", "")
        content_type = body.get("content_type") or "application/octet-stream"
        self.tickets[file_id] = (body["filename"], content_type)
        _, media = self._bases(request)
        return json_response(200, {"code": 200, "message": "success", "data": {
            "upload": {"method": "PUT", "url": f"{media}/api/v3/emulator/put/{file_id}",
                       "headers": {"Content-Type": content_type}},
            "download_url": f"{media}/api/v3/emulator/files/{file_id}/{body['filename']}"}})

    def _put(self, request: httpx.Request) -> httpx.Response:
        file_id = _PUT.match(request.url.path).group("id")  # type: ignore[union-attr]
        ticket = self.tickets.pop(file_id, None)
        if ticket is None:
            return httpx.Response(403, content=b"upload URL unknown or already used")
        self.files[file_id] = (ticket[0], request.content, ticket[1])
        return httpx.Response(200)

    def _download(self, request: httpx.Request) -> httpx.Response:
        path = request.url.path
        output = _OUTPUT.match(path)
        if output and output.group("id") in self.jobs:
            job = self.jobs[output.group("id")]
            if self.clock.now() > job.created_at + OUTPUT_RETENTION_S:  # deleted with its prediction
                return httpx.Response(404, content=b"Not Found")
            return self.clips.response(job, "mp4", self._image_bytes(job.payload.get("image")))
        stored = _FILE.match(path)
        if stored and stored.group("id") in self.files:
            _, data, mime = self.files[stored.group("id")]
            return httpx.Response(200, content=data, headers={"content-type": mime,
                                                             "content-length": str(len(data))})
        return httpx.Response(404, content=b"Not Found")
