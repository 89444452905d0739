"""Runware's documented REST protocol for Ovi (``runware:190@1``), emulated.

``POST https://api.runware.ai/v1`` takes a JSON array of tasks (``Authorization: Bearer <key>``, or
an ``authentication`` task first) and answers ``{"data": [...]}`` and/or ``{"errors": [...]}``:

- ``videoInference``: checked against the Ovi OpenAPI ``RequestBody`` (shipped next to this module;
  a hand check driven by the same schema always runs, ``jsonschema`` adds a second check when it is
  importable). A bad task gets HTTP 400 with Runware-style ``errors`` (``missing<Param>``,
  ``invalid<Param>``, ``unknownParameter``); a reused ``taskUUID`` gets ``conflictTaskUUID``.
  Accepted: the ack ``{"data": [{"taskType", "taskUUID"}]}``.
- ``getResponse``: ``processing`` (with ``progress`` in percent), then ``success`` with ``videoUUID``,
  ``videoURL``, ``seed`` and, with ``includeCost``, ``cost`` (compute-time price
  0.02869 + 0.002947 × steps USD, which reproduces the documented $0.1171 @ 30 steps).
  An unknown ``taskUUID`` gets HTTP 400 ``taskFailedOrNotFound``.
- ``imageUpload``: stores the image, answers ``imageUUID`` and ``imageURL``.
- ``GET`` of a ``videoURL`` on ``vm.runware.ai`` serves the clip in the task's ``outputFormat``
  (``gateway.emulator.clips``).

How a failed job is reported over REST is not documented for Ovi (reference/providers.md 2.3), so the
emulator uses both shapes Runware's own SDK handles: fate ``fail`` answers HTTP 200 with the
documented ``ErrorResponse`` array (code ``inferenceError``); fate ``nsfw`` answers an item
``{"status": "error", "error": {"code": "contentPolicyViolation", …}}``. (The Ovi page documents only
the ``NSFWContent`` flag on a success item, i.e. a clip that was made and billed; a refused job is
not billed, so the refusal uses the error form.)
"""

from __future__ import annotations

import importlib.resources
import json
import re
import uuid
from decimal import Decimal
from typing import Any, ClassVar

import httpx

from gateway.emulator.base import EmulatedJob, EmulatedVendor, clip_fingerprint, json_response
from gateway.emulator.clips import inline_image

__all__ = ["TASK_SCHEMA", "RunwareEmulator", "hand_check", "price_for", "validate_task"]

SCHEMA: dict[str, Any] = json.loads(
    importlib.resources.files("gateway.emulator").joinpath("runware-ovi-openapi.json").read_text("utf-8"))
TASK_SCHEMA: dict[str, Any] = SCHEMA["components"]["schemas"]["RequestBody"]["items"]
"""One Ovi ``videoInference`` task, as Runware's OpenAPI for ``runware:190@1`` describes it."""

_LOOPBACK = ("127.0.0.1", "localhost", "::1")
_URI = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:\S+$")
_IMAGE = re.compile(r"^(data:image/[a-zA-Z]+;base64,)?[a-zA-Z0-9+/=]+$")
_TYPES: dict[str, tuple[type, ...]] = {"object": (dict,), "string": (str,), "integer": (int,),
                                      "number": (int, float), "boolean": (bool,), "array": (list,)}


def price_for(steps: int | None) -> Decimal:
    """What Runware charges for one Ovi task (USD): compute time, linear in steps (default 30)."""
    return (Decimal("0.02869") + Decimal("0.002947") * (30 if steps is None else steps)).quantize(Decimal("0.0001"))


# ---- validation -----------------------------------------------------------------------------
def _error(code: str, message: str, parameter: str | None, task: dict[str, Any]) -> dict[str, Any]:
    entry: dict[str, Any] = {"code": code, "message": message}
    if parameter:
        entry["parameter"] = parameter
    entry["taskType"] = task.get("taskType", "videoInference")
    if isinstance(task.get("taskUUID"), str):
        entry["taskUUID"] = task["taskUUID"]
    return entry


def _cap(path: str) -> str:
    last = path.rsplit(".", 1)[-1]
    return last[:1].upper() + last[1:]


def _format_ok(fmt: str, value: str) -> bool:
    if fmt == "uuid":
        try:
            uuid.UUID(value)
        except ValueError:
            return False
        return True
    if fmt == "uri":
        return bool(_URI.match(value))
    return True


def _problem(schema: dict[str, Any], value: Any) -> str | None:
    """Why ``value`` breaks a leaf ``schema`` (type, const, enum, range, pattern, format), or ``None``."""
    kind = schema.get("type")
    if kind and (not isinstance(value, _TYPES[kind]) or (kind != "boolean" and isinstance(value, bool))):
        return f"must be of type {kind}"
    if "const" in schema and value != schema["const"]:
        return f"must be {schema['const']!r}"
    choices = schema.get("enum") or [b["const"] for b in schema.get("oneOf", []) if "const" in b] or None
    if choices is not None and value not in choices:
        return "must be one of " + ", ".join(map(str, choices))
    if "minimum" in schema and value < schema["minimum"]:
        return f"must be at least {schema['minimum']}"
    if "maximum" in schema and value > schema["maximum"]:
        return f"must be at most {schema['maximum']}"
    if "multipleOf" in schema and Decimal(str(value)) % Decimal(str(schema["multipleOf"])) != 0:
        return f"must be a multiple of {schema['multipleOf']}"
    if "pattern" in schema and not re.search(schema["pattern"], value):
        return "has an invalid format"
    if "format" in schema and not _format_ok(schema["format"], value):
        return f"must be a valid {schema['format']}"
    if "anyOf" in schema and all(_problem(branch, value) for branch in schema["anyOf"]):
        return "must be a UUID, a URL, a data URI or base64" if kind == "string" else "has an invalid value"
    return None


def _walk(schema: dict[str, Any], value: Any, path: str, task: dict[str, Any], out: list[dict[str, Any]]) -> None:
    problem = _problem(schema, value)
    if problem:
        out.append(_error(f"invalid{_cap(path)}", f"Invalid value for {path}: {problem}.", path, task))
        return
    if schema.get("type") != "object":
        return
    for name in schema.get("required", []):
        if name not in value:
            where = f"{path}.{name}" if path else name
            out.append(_error(f"missing{_cap(where)}", f"Missing required parameter: {where}.", where, task))
    props = schema.get("properties", {})
    for name, item in value.items():
        where = f"{path}.{name}" if path else name
        if name not in props:
            if schema.get("additionalProperties") is False:
                out.append(_error("unknownParameter", f"Unknown parameter: {where}.", where, task))
            continue
        _walk(props[name], item, where, task, out)
    for rule in schema.get("allOf", []):
        both = rule.get("not", {}).get("required", [])
        if both and all(name in value for name in both):
            out.append(_error("conflictingParameters", f"Use only one of {', '.join(both)} in {path}.",
                              f"{path}.{both[0]}", task))


def hand_check(task: Any) -> list[dict[str, Any]]:
    """Runware-style errors for one task, checked against ``TASK_SCHEMA`` without ``jsonschema``."""
    if not isinstance(task, dict):
        return [_error("invalidTask", "Each task must be a JSON object.", None, {})]
    out: list[dict[str, Any]] = []
    _walk(TASK_SCHEMA, task, "", task, out)
    return out


def _jsonschema_check(task: dict[str, Any]) -> list[dict[str, Any]]:
    try:
        import jsonschema  # a test dependency, not a runtime one
    except ImportError:
        return []
    validator = jsonschema.Draft202012Validator(TASK_SCHEMA, format_checker=jsonschema.FormatChecker())
    out = []
    for err in validator.iter_errors(task):
        path = ".".join(str(p) for p in err.absolute_path)
        code = "unknownParameter" if err.validator == "additionalProperties" else f"invalid{_cap(path) or 'Task'}"
        out.append(_error(code, f"Invalid request: {err.message}.", path or None, task))
    return out


def validate_task(task: Any) -> list[dict[str, Any]]:
    """The errors Runware would answer for one ``videoInference`` task (empty when it is valid)."""
    return hand_check(task) or _jsonschema_check(task)


# ---- the vendor ---------------------------------------------------------------------------------
class RunwareEmulator(EmulatedVendor):
    """Runware's REST API for Ovi: tasks on ``api.runware.ai/v1``, clips on ``vm.runware.ai``."""

    name = "runware"
    hosts: ClassVar[tuple[str, ...]] = ("api.runware.ai", "vm.runware.ai")

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.uploads: dict[str, str] = {}
        """imageUUID -> the uploaded image (data URI or base64)."""
        self.videos: dict[str, EmulatedJob] = {}

    # ---- routing ------------------------------------------------------------------------------
    def operation(self, request: httpx.Request) -> str:
        if request.method == "GET":
            return "download"
        types = [t.get("taskType") for t in _tasks(request) or [] if isinstance(t, dict)]
        first = next((t for t in types if t != "authentication"), None)
        return {"videoInference": "submit", "getResponse": "status", "imageUpload": "upload"}.get(str(first), "other")

    def route(self, request: httpx.Request) -> httpx.Response:
        if request.method == "GET":
            return self._download(request)
        if request.method != "POST" or request.url.path.rstrip("/") != "/v1":
            unknown = {"code": "notFound", "message": "Unknown endpoint; POST task arrays to /v1."}
            return json_response(404, {"errors": [unknown]})
        tasks = _tasks(request)
        if not tasks:
            return json_response(400, {"errors": [{"code": "invalidRequestBody",
                                                   "message": "You must always POST an array of task objects."}]})
        auth = tasks[0] if isinstance(tasks[0], dict) and tasks[0].get("taskType") == "authentication" else None
        if not self.check_key(request, "Bearer") and not self._auth_task_ok(auth):
            return self.error_response(401, request)
        data: list[dict[str, Any]] = []
        errors: list[tuple[int, dict[str, Any]]] = []
        for task in tasks[1:] if auth else tasks:
            kind = task.get("taskType") if isinstance(task, dict) else None
            handlers = {"videoInference": self._video, "getResponse": self._poll, "imageUpload": self._upload}
            handler = handlers.get(str(kind))
            if handler is None:
                errors.append((400, _error("invalidTaskType", f"Unsupported taskType {kind!r}.", "taskType",
                                           task if isinstance(task, dict) else {})))
                continue
            item, error = handler(task, request)
            if item is not None:
                data.append(item)
            if error is not None:
                errors.append(error)
        body: dict[str, Any] = {"data": data} if data else {}
        if errors:
            body["errors"] = [e for _, e in errors]
        elif self.current_fault == "nulls":
            body["errors"] = None
        status = 200 if data else max(code for code, _ in errors)
        return json_response(status, body)

    def error_response(self, status: int, request: httpx.Request) -> httpx.Response:
        tasks = [t for t in _tasks(request) or [] if isinstance(t, dict) and t.get("taskType") != "authentication"]
        task = tasks[0] if tasks else {}
        codes = {
            401: ("invalidApiKey", "Invalid API key. Get one at https://my.runware.ai/signup"),
            402: ("insufficientCredits", "Insufficient credits. Add funds at https://my.runware.ai/wallet"),
            429: ("rateLimitExceeded", "Rate limit exceeded. Please slow down and retry later."),
            503: ("serviceUnavailable", "Service temporarily unavailable (maintenance or capacity)."),
        }
        if status == 404 and task.get("taskType") == "getResponse":  # Runware's "failed OR not found", HTTP 400
            entry = _error("taskFailedOrNotFound", "Task not found or failed. Check the taskUUID.", "taskUUID",
                           task)
            return json_response(400, {"errors": [entry]})
        if status == 404:
            return json_response(404, {"errors": [_error("invalidEndpoint", "Unknown endpoint.", None, task)]})
        codes.update({400: ("invalidRequest", "The request could not be processed."),
                      422: ("invalidRequest", "The request could not be processed.")})
        code, message = codes.get(status, ("internalServerError", "Something went wrong on Runware's end."))
        if status == 401:
            entry = {"code": code, "message": message, "parameter": "apiKey", "taskType": "authentication"}
            if not request.headers.get("authorization"):
                entry = {**entry, "code": "missingApiKey", "message": "Missing API key."}
        else:
            entry = _error(code, message, None, task)
        return json_response(status, {"errors": [entry]}, {"Retry-After": "2"} if status == 429 else None)

    # ---- tasks ------------------------------------------------------------------------------------
    def _video(self, task: dict[str, Any], request: httpx.Request) -> tuple[Any, Any]:
        errors = validate_task(task)
        image = task.get("inputs", {}).get("image") if not errors else None
        if not errors and _is_uuid(image) and image not in self.uploads:
            errors = [_error("invalidImage", "No uploaded image with this UUID.", "inputs.image", task)]
        if errors:
            return None, (400, errors[0])
        task_uuid = task["taskUUID"]
        if task_uuid in self.jobs:
            return None, (400, _error("conflictTaskUUID", "A task with this taskUUID already exists; "
                                      "taskUUID must be unique per task.", "taskUUID", task))
        clip = clip_fingerprint(task["positivePrompt"], self.uploads.get(str(image), image))
        job = self.create_job(task_uuid, task, clip=clip,
                              price=price_for(task.get("steps")), idempotency_key=task_uuid)
        given = task.get("seed")
        job.extra.update(seed=self.rng.getrandbits(32) if given is None else given, video_uuid=self.new_id())
        self.videos[job.extra["video_uuid"]] = job
        self.push_when_done(job, task.get("webhookURL"))  # [doc runware.ai/docs/platform/webhooks]
        return {"taskType": "videoInference", "taskUUID": task_uuid}, None

    def _poll(self, task: dict[str, Any], request: httpx.Request) -> tuple[Any, Any]:
        task_uuid = task.get("taskUUID")
        job = self.jobs.get(task_uuid) if isinstance(task_uuid, str) else None
        if job is None:
            return None, (400, _error("taskFailedOrNotFound", "Task not found or failed. Check the taskUUID.",
                                      "taskUUID", {"taskType": "getResponse", "taskUUID": task_uuid}))
        state = self.observed(self.settle(job))
        item: dict[str, Any] = {"taskType": "videoInference", "taskUUID": task_uuid}
        if self.current_fault == "unknown_status":  # a word the docs do not list; the SDK polls on
            return {**item, "status": "warming"}, None
        if state in ("queued", "running"):
            elapsed = self.clock.now() - job.created_at - job.queue_time
            progress = 0 if state == "queued" or job.duration <= 0 else int(min(99, 100 * elapsed / job.duration))
            if self.current_fault == "nulls":
                return {**item, "status": "processing", "progress": None}, None
            return {**item, "status": "processing", "progress": progress}, None
        if state == "failed" and job.fate == "fail_item":
            # The failure as a data item carrying code/errorId (the SDK's _is_error_response)
            return {**item, "code": "inferenceError", "errorId": 1001,
                    "message": "Inference failed for this task."}, None
        if state == "failed":
            return None, (200, _error("inferenceError", "Inference failed for this task. Please try again.",
                                      None, job.payload))
        if state == "nsfw":
            flagged = "The content was flagged by the safety checker."
            error = _error("contentPolicyViolation", flagged, None, job.payload)
            return {**item, "status": "error", "error": error}, None
        payload = job.payload
        fmt = payload.get("outputFormat", "MP4")
        item.update(status="success", videoUUID=job.extra["video_uuid"], seed=job.extra["seed"],
                    videoURL=f"{_media_base(request)}/video/os/a10dlim3/ws/5/vi/{job.extra['video_uuid']}.{fmt.lower()}")
        if payload.get("safety", {}).get("checkContent"):
            item["NSFWContent"] = False
        if payload.get("includeCost"):
            item["cost"] = float(job.entry.price)
        if self.current_fault == "media_url":  # the SDK's IVideo also knows mediaUUID/mediaURL
            item["mediaUUID"], item["mediaURL"] = item.pop("videoUUID"), item.pop("videoURL")
        return item, None

    def _upload(self, task: dict[str, Any], request: httpx.Request) -> tuple[Any, Any]:
        image = task.get("image")
        if not isinstance(task.get("taskUUID"), str) or not _is_uuid(task["taskUUID"]):
            return None, (400, _error("invalidTaskUUID", "taskUUID must be a UUID v4.", "taskUUID", task))
        if not isinstance(image, str) or not (_IMAGE.match(image) or _URI.match(image)):
            return None, (400, _error("invalidImage", "image must be a data URI, base64 or a URL.", "image", task))
        image_uuid = self.new_id()
        self.uploads[image_uuid] = image
        return {"taskType": "imageUpload", "taskUUID": task["taskUUID"], "imageUUID": image_uuid,
                "imageURL": f"{_media_base(request)}/image/ii/{image_uuid}.png"}, None

    def _download(self, request: httpx.Request) -> httpx.Response:
        name = request.url.path.rsplit("/", 1)[-1]
        stem, _, ext = name.partition(".")
        job = self.videos.get(stem) if "/video/" in request.url.path else None
        if job is not None and self.settle(job) == "succeeded":
            image = job.payload.get("inputs", {}).get("image")
            return self.clips.response(job, ext, inline_image(self.uploads.get(image, image)))
        if "/image/" in request.url.path and stem in self.uploads:
            return httpx.Response(200, content=self.uploads[stem].encode(), headers={"content-type": "text/plain"})
        return httpx.Response(404, content=b"Not Found", headers={"content-type": "text/plain"})

    def _auth_task_ok(self, auth: dict[str, Any] | None) -> bool:
        key = auth.get("apiKey") if auth else None
        return isinstance(key, str) and bool(key) and (self.api_key is None or key == self.api_key)


def _tasks(request: httpx.Request) -> list[Any] | None:
    try:
        value = json.loads(request.content or b"null")
    except ValueError:
        return None
    return value if isinstance(value, list) else None


def _is_uuid(value: Any) -> bool:
    return isinstance(value, str) and _format_ok("uuid", value) and len(value) == 36


def _media_base(request: httpx.Request) -> str:
    """Where clips are served: the loopback server itself (under /v1, which it routes to Runware),
    else Runware's real media host."""
    if request.url.host in _LOOPBACK:
        port = f":{request.url.port}" if request.url.port else ""
        host = f"[{request.url.host}]" if ":" in request.url.host else request.url.host
        return f"{request.url.scheme}://{host}{port}/v1"
    return "https://vm.runware.ai"
