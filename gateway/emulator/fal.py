"""fal.ai's documented queue protocol for Ovi, emulated (see reference/providers.md §1).

Hosts: ``queue.fal.run`` (submit / status / result / cancel), ``fal.run`` (synchronous runs,
``fal_client.run``: the answer is the result itself and no queue job is booked; on loopback its
prefix is ``/fal-run/``), ``rest.fal.ai`` (CDN upload token) and ``v3.fal.media`` (uploads and
generated files). fal-client 1.0.3 uploads with ``POST rest.fal.ai/storage/auth/token?
storage_type=fal-cdn-v3`` then ``POST https://v3.fal.media/files/upload`` (its module-global
``CDN_URL``; the token's ``base_url`` is only used for multipart uploads above 100 MB).

Billing follows fal's FAQ: a job is charged from creation, except when cancelled while still
IN_QUEUE (removed, never run) or when it fails with a 5xx ("server errors are never charged").
A content refusal (422) used GPU time and stays charged.

Not documented by fal, chosen here (say so when it matters): the HTTP code of each cancel answer
(200 OK / 202 CANCELLATION_REQUESTED / 400 ALREADY_COMPLETED / 404 NOT_FOUND), the 401/402/429
bodies, the 400 for a result asked before completion, and COMPLETED + ``client_cancelled`` for a
request removed from the queue. Payloads are validated at submit (fal's runner may instead fail
the request at the result GET with the same 422 body); unknown fields are accepted, FastAPI's
default.
"""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any, ClassVar

import httpx

from gateway.emulator.base import EmulatedJob, EmulatedVendor, LedgerEntry, clip_fingerprint, json_response
from gateway.emulator.clips import inline_image

__all__ = ["FalEmulator"]

PRICE = Decimal("0.20")
RETENTION_S = 3600.0
"""fal keeps a result 1 h after completion (6 min when 10 KB or larger; ours are small)."""
RESOLUTIONS = ("512x992", "992x512", "960x512", "512x960", "720x720", "448x1120", "1120x448")
ENDPOINTS = {"fal-ai/ovi/image-to-video": "i2v", "fal-ai/ovi": "t2v"}
LOOPBACK = ("127.0.0.1", "localhost", "::1")
RUN_PREFIX = "/fal-run/"
"""On loopback, ``https://fal.run/<app>`` (fal-client's ``RUN_URL_FORMAT``) is ``http://HOST:PORT/fal-run/<app>``."""
NGINX = ("<html>\r\n<head><title>{code} {reason}</title></head>\r\n<body>\r\n<center><h1>{code} {reason}"
         "</h1></center>\r\n<hr><center>nginx</center>\r\n</body>\r\n</html>\r\n")


def _missing(field: str) -> dict[str, Any]:
    return {"loc": ["body", field], "msg": "field required", "type": "value_error.missing"}


def validate(payload: Any, kind: str) -> list[dict[str, Any]]:
    """FastAPI (pydantic v1) style errors for an Ovi input, as fal's 422 ``detail`` list."""
    if not isinstance(payload, dict):
        return [{"loc": ["body"], "msg": "value is not a valid dict", "type": "type_error.dict"}]
    errors: list[dict[str, Any]] = []
    required = ("prompt", "image_url") if kind == "i2v" else ("prompt",)
    for name in required:
        if name not in payload or payload[name] is None:
            errors.append(_missing(name))
    for name in ("prompt", "image_url", "negative_prompt", "audio_negative_prompt"):
        if name in payload and payload[name] is not None and not isinstance(payload[name], str):
            errors.append({"loc": ["body", name], "msg": "str type expected", "type": "type_error.str"})
    for name in ("num_inference_steps", "seed"):
        value = payload.get(name)
        if name in payload and value is not None and (not isinstance(value, int) or isinstance(value, bool)):
            errors.append({"loc": ["body", name], "msg": "value is not a valid integer",
                           "type": "type_error.integer"})
    steps = payload.get("num_inference_steps")
    if isinstance(steps, int) and not isinstance(steps, bool):
        if steps < 1:
            errors.append({"loc": ["body", "num_inference_steps"], "type": "value_error.number.not_ge",
                           "msg": "ensure this value is greater than or equal to 1", "ctx": {"limit_value": 1}})
        elif steps > 50:
            errors.append({"loc": ["body", "num_inference_steps"], "type": "value_error.number.not_le",
                           "msg": "ensure this value is less than or equal to 50", "ctx": {"limit_value": 50}})
    if kind == "t2v" and "resolution" in payload and payload["resolution"] not in RESOLUTIONS:
        permitted = ", ".join(repr(r) for r in RESOLUTIONS)
        errors.append({"loc": ["body", "resolution"], "type": "type_error.enum",
                       "msg": f"value is not a valid enumeration member; permitted: {permitted}",
                       "ctx": {"enum_values": list(RESOLUTIONS)}})
    image = payload.get("image_url")
    if kind == "i2v" and isinstance(image, str) and not image.startswith(("http://", "https://", "data:")):
        errors.append({"loc": ["body", "image_url"], "msg": "Failed to download the file",
                       "type": "file_download_error"})
    return errors


class FalEmulator(EmulatedVendor):
    """fal's queue for ``fal-ai/ovi/image-to-video`` and ``fal-ai/ovi``, plus CDN upload/download."""

    name: ClassVar[str] = "fal"
    hosts: ClassVar[tuple[str, ...]] = ("queue.fal.run", "fal.run", "rest.fal.ai", "v3.fal.media")

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.files: dict[str, tuple[bytes, str]] = {}
        """Uploaded files by URL path: (bytes, content type)."""
        self.tokens: set[str] = set()
        self.cancel_requested: set[str] = set()

    # ---- routing ------------------------------------------------------------------------------
    def operation(self, request: httpx.Request) -> str:
        path, method, host = request.url.path, request.method, request.url.host
        if path.startswith("/storage/") or (method == "POST" and path.startswith("/files/")):
            return "upload"
        if path.startswith("/files/"):
            return "download"
        if host == "fal.run" or path.startswith(RUN_PREFIX):
            return "run"
        if "/requests/" in path:
            if method == "PUT" and path.endswith("/cancel"):
                return "cancel"
            return "status" if path.endswith("/status") else "result"
        return "submit" if method == "POST" else "unknown"

    def route(self, request: httpx.Request) -> httpx.Response:
        operation = self.operation(request)
        if operation == "download":
            return self._download(request)
        if operation == "upload" and request.url.path.startswith("/files/"):
            return self._upload_file(request)
        if not self.check_key(request, "Key"):
            missing = not request.headers.get("authorization")
            return json_response(401, {"detail": "Authentication is required to access this application."
                                       if missing else "No user found for Key ID and Secret"})
        if operation == "upload":
            return self._token(request)
        if operation == "submit":
            return self._submit(request)
        if operation == "run":
            return self._run(request)
        if operation in ("status", "result", "cancel"):
            request_id = request.url.path.split("/requests/", 1)[1].split("/")[0]
            job = self.jobs.get(request_id)
            if job is None:
                if operation == "cancel":
                    return json_response(404, {"status": "NOT_FOUND"})
                return json_response(404, {"detail": "Request not found"})
            answer: httpx.Response = getattr(self, "_" + operation)(request, job)
            return answer
        return json_response(404, {"detail": "the emulator serves fal's queue API only (queue.fal.run)"})

    def error_response(self, status: int, request: httpx.Request) -> httpx.Response:
        if status == 429:
            return json_response(429, {"detail": "Too many requests, please slow down"}, {"retry-after": "2"})
        if status == 401:
            return json_response(401, {"detail": "No user found for Key ID and Secret"})
        if status == 402:
            return json_response(402, {"detail": "User is locked. Reason: Exhausted balance. "
                                                 "Top up your balance at fal.ai/dashboard/billing."})
        if status == 404:
            return json_response(404, {"detail": "Request not found"})
        if status == 400:
            return json_response(400, {"detail": "Request is still in progress"})
        if status == 422:
            return json_response(422, {"detail": [{"loc": ["body"], "msg": "Unprocessable request",
                                                   "type": "value_error"}]})
        if status in (502, 503, 504):  # an ingress (nginx) error: no x-fal-request-id, HTML body
            reason = {502: "Bad Gateway", 503: "Service Temporarily Unavailable", 504: "Gateway Time-out"}[status]
            return httpx.Response(status, content=NGINX.format(code=status, reason=reason).encode(),
                                  headers={"content-type": "text/html"})
        return json_response(status, {"detail": "Internal server error", "error_type": "internal_error"},
                             {"x-fal-error-type": "internal_error"})

    # ---- URLs ---------------------------------------------------------------------------------
    @staticmethod
    def _base(request: httpx.Request, real: str) -> str:
        url = request.url
        if url.host in LOOPBACK:
            return f"{url.scheme}://{url.netloc.decode()}"
        return real

    # ---- queue --------------------------------------------------------------------------------
    def _submit(self, request: httpx.Request) -> httpx.Response:
        endpoint = request.url.path.strip("/")
        kind = ENDPOINTS.get(endpoint)
        if kind is None:
            return json_response(404, {"detail": f"Application '{endpoint}' not found"})
        try:
            payload = json.loads(request.content or b"null")
        except ValueError:
            return json_response(422, {"detail": [{"loc": ["body"], "msg": "Expecting value",
                                                   "type": "value_error.jsondecode"}]})
        errors = validate(payload, kind)
        if errors:
            return json_response(422, {"detail": errors}, {"x-fal-request-id": self.new_id()})
        request_id = self.new_id()
        job = self.create_job(request_id, payload, clip=clip_fingerprint(payload["prompt"],
                                                                         self._clip_image(payload)),
                              price=PRICE)
        job.extra.update(endpoint=endpoint, seed=payload.get("seed", self.rng.getrandbits(32)),
                         base=self._base(request, "https://queue.fal.run"),
                         media=self._base(request, "https://v3.fal.media"))
        urls = self._urls(job)
        self.push_when_done(job, request.url.params.get("fal_webhook"))  # [doc docs.fal.ai webhooks]
        position = None if self.current_fault == "nulls" else self._position(job)
        return json_response(200, {"request_id": request_id, **urls, "status": "IN_QUEUE",
                                   "queue_position": position},
                             {"x-fal-request-id": request_id})

    def _run(self, request: httpx.Request) -> httpx.Response:
        """``fal.run``: the model runs inside the request; the answer is the queue's result body.

        No queue job is booked (nothing under ``/requests/``, no status to poll); the run is on the
        ledger, billed as a queue job is (fal bills GPU time; 5xx failures are free). The emulated run
        takes no clock time; fate ``stuck`` answers fal's 504 request timeout (an emulator choice).
        """
        path = request.url.path
        endpoint = (path[len(RUN_PREFIX):] if path.startswith(RUN_PREFIX) else path).strip("/")
        kind = ENDPOINTS.get(endpoint)
        if kind is None:
            return json_response(404, {"detail": f"Application '{endpoint}' not found"})
        try:
            payload = json.loads(request.content or b"null")
        except ValueError:
            return json_response(422, {"detail": [{"loc": ["body"], "msg": "Expecting value",
                                                   "type": "value_error.jsondecode"}]})
        errors = validate(payload, kind)
        run_id = self.new_id()
        if errors:
            return json_response(422, {"detail": errors}, {"x-fal-request-id": run_id})
        fate = self.faults.next("job")
        entry = LedgerEntry(self.name, run_id, clip_fingerprint(payload["prompt"], self._clip_image(payload)),
                            None, PRICE, self.clock.now())
        self.ledger.record_job(entry)
        job = EmulatedJob(run_id, self.clock.now(), 0.0, fate, payload, entry)  # type: ignore[arg-type]
        job.extra.update(seed=payload.get("seed", self.rng.getrandbits(32)),
                         media=self._base(request, "https://v3.fal.media"))
        if fate == "stuck":
            return json_response(504, {"detail": "Request timed out", "error_type": "request_timeout"},
                                 {"x-fal-request-id": run_id, "x-fal-request-timeout-type": "user"})
        response = self._result(request, job)
        if response.status_code == 200:  # kept with the uploads: no queue job to serve it from
            clip = self.clips.response(job, "mp4", self._image_bytes(payload.get("image_url")))
            self.files[f"/files/{run_id}/ovi_output.mp4"] = (clip.content, "video/mp4")
        return response

    def error_after_job(self, request: httpx.Request, response: httpx.Response) -> httpx.Response:
        """fal's own server failed after queueing the request: its 500 names the request id."""
        try:
            request_id = response.json().get("request_id")
        except ValueError:
            request_id = None
        headers = {"x-fal-request-id": request_id} if request_id else {}
        return json_response(500, {"detail": "Internal server error", "error_type": "internal_error"},
                             {**headers, "x-fal-error-type": "internal_error"})

    def _clip_image(self, payload: dict[str, Any]) -> str | None:
        """The image for the clip fingerprint: an uploaded file counts as its data URI, so the same
        local image is the same clip whether fal got it as a CDN URL or another vendor inline."""
        image = payload.get("image_url")
        if not isinstance(image, str):
            return None
        stored = self.files.get(httpx.URL(image).path) if image.startswith("http") else None
        if stored is None:
            return image
        data, content_type = stored
        return f"data:{content_type};base64,{base64.b64encode(data).decode()}"

    def _image_bytes(self, image: Any) -> bytes | None:
        """The request's image: an uploaded file, or an inline data URI (for clips that show it)."""
        stored = self.files.get(httpx.URL(image).path) if isinstance(image, str) and image.startswith("http") else None
        return stored[0] if stored is not None else inline_image(image)

    def _urls(self, job: EmulatedJob) -> dict[str, str]:
        owner_app = "/".join(job.extra["endpoint"].split("/")[:2])  # the subpath is for submit only
        base = f"{job.extra['base']}/{owner_app}/requests/{job.job_id}"
        return {"response_url": base, "status_url": base + "/status", "cancel_url": base + "/cancel"}

    def _position(self, job: EmulatedJob) -> int:
        now = self.clock.now()
        ahead = 0
        for other in self.jobs.values():  # insertion order is arrival order
            if other is job:
                break
            ahead += other.state(now) == "queued"
        return ahead

    def settle(self, job: EmulatedJob) -> str:
        state = super().settle(job)
        if state == "nsfw":
            # The ledger only knows billable states: the run used GPU time and fal may charge a 422.
            job.entry.state = "succeeded"
        return state

    def _expired(self, job: EmulatedJob, state: str) -> bool:
        if state in ("queued", "running"):
            return False
        ended = job.created_at + job.queue_time + job.duration
        return self.clock.now() > ended + RETENTION_S

    def _status(self, request: httpx.Request, job: EmulatedJob) -> httpx.Response:
        real = self.settle(job)
        if self._expired(job, real):
            return json_response(404, {"detail": "Request not found"})
        state = self.observed(real)
        nulls = self.current_fault == "nulls"
        logs: list[Any] | None = [] if request.url.params.get("logs") in ("true", "1") and not nulls else None
        headers = {"x-fal-request-id": job.job_id}
        response_url = self._urls(job)["response_url"]
        if self.current_fault == "unknown_status":  # fal-client raises on it; a tolerant reader polls on
            return json_response(202, {"status": "IN_WARMUP", "response_url": response_url}, headers)
        if state == "queued":
            return json_response(202, {"status": "IN_QUEUE", "queue_position": None if nulls else self._position(job),
                                       "response_url": response_url}, headers)
        if state == "running":
            return json_response(202, {"status": "IN_PROGRESS", "logs": logs, "response_url": response_url},
                                 headers)
        body: dict[str, Any] = {"status": "COMPLETED", "logs": logs,
                                "metrics": {"inference_time": round(job.duration, 3)},
                                "response_url": response_url}
        if state == "cancelled":
            body.update(metrics={}, error="Request was cancelled", error_type="client_cancelled")
        if state == "failed" and job.fate == "fail_completed":  # fal-client reads these off COMPLETED
            body.update(error="Internal error while generating the video", error_type="runner_server_error")
        if nulls:
            body.update(metrics=None)
        return json_response(200, body, headers)

    def _result(self, request: httpx.Request, job: EmulatedJob) -> httpx.Response:
        state = self.settle(job)
        headers = {"x-fal-request-id": job.job_id}
        if self._expired(job, state):
            return json_response(404, {"detail": "Request not found"})
        if state in ("queued", "running"):
            return json_response(400, {"detail": "Request is still in progress"}, headers)
        if state == "failed":
            return json_response(500, {"detail": "Internal error while generating the video",
                                       "error_type": "runner_server_error"},
                                 {**headers, "x-fal-error-type": "runner_server_error"})
        if state == "nsfw":
            return json_response(422, {"detail": [{
                "loc": ["body"], "type": "content_policy_violation",
                "msg": "The content could not be processed because it contained material flagged "
                       "by a content checker (NSFW)."}]}, headers)
        if state == "cancelled":
            return json_response(499, {"detail": "Request was cancelled", "error_type": "client_cancelled"},
                                 {**headers, "x-fal-error-type": "client_cancelled"})
        url = f"{job.extra['media']}/files/{job.job_id}/ovi_output.mp4"
        return json_response(200, {"video": {"url": url, "content_type": "video/mp4",
                                             "file_name": "ovi_output.mp4", "file_size": self.clips.size("mp4")},
                                   "seed": None if self.current_fault == "nulls" else job.extra["seed"]}, headers)

    def _cancel(self, request: httpx.Request, job: EmulatedJob) -> httpx.Response:
        state = self.settle(job)
        if state == "queued":
            job.cancelled = True  # removed from the queue: never runs, never billed
            self.settle(job)
            return json_response(200, {"status": "OK"})
        if state == "running":
            # A signal to the runner; Ovi finishes (and is billed) regardless.
            self.cancel_requested.add(job.job_id)
            return json_response(202, {"status": "CANCELLATION_REQUESTED"})
        return json_response(400, {"status": "ALREADY_COMPLETED"})

    # ---- storage ------------------------------------------------------------------------------
    def _token(self, request: httpx.Request) -> httpx.Response:
        if request.url.path != "/storage/auth/token" or request.url.params.get("storage_type") != "fal-cdn-v3":
            return json_response(404, {"detail": "Not found"})
        token = "emu-cdn-" + self.new_id()
        self.tokens.add(token)
        expires = datetime.now(UTC) + timedelta(hours=1)  # a wall-clock stamp, not a timer
        return json_response(200, {"token": token, "token_type": "Bearer",
                                   "base_url": self._base(request, "https://v3.fal.media"),
                                   "expires_at": expires.isoformat()})

    def _upload_file(self, request: httpx.Request) -> httpx.Response:
        if request.url.path != "/files/upload":
            return json_response(404, {"detail": "Not found"})
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        if scheme != "Bearer" or token not in self.tokens:
            return json_response(401, {"detail": "Invalid or expired token"})
        content_type = request.headers.get("content-type", "application/octet-stream")
        name = request.headers.get("x-fal-file-name", "upload.bin")
        path = f"/files/{self.new_id()}/{name}"
        self.files[path] = (request.content, content_type)
        return json_response(200, {"access_url": self._base(request, "https://v3.fal.media") + path})

    def _download(self, request: httpx.Request) -> httpx.Response:
        path = request.url.path
        if path in self.files:
            data, content_type = self.files[path]
            return httpx.Response(200, content=data, headers={"content-type": content_type,
                                                              "content-length": str(len(data))})
        job_id = path.split("/")[2] if path.count("/") >= 3 else ""
        if path.endswith("/ovi_output.mp4") and job_id in self.jobs:
            job = self.jobs[job_id]
            return self.clips.response(job, "mp4", self._image_bytes(job.payload.get("image_url")))
        return httpx.Response(404, content=b"Not Found", headers={"content-type": "text/plain"})
