"""``POST /v1/videos`` bodies → an ``OviRequest`` and a ``Route``, refusing (never dropping) what Ovi cannot do.

The official openai SDK always sends multipart, every value a string, nested ``extra_body`` values as
bracket keys (``provider[order][]=fal``) [openai@3.57.0 _base_client.py:704-731, qs brackets format];
other clients send JSON. Both are rebuilt into one nested dict, then typed by the pydantic models
(lax mode turns ``"0"`` into 0 and ``"false"`` into False), so coercion has one schema, not two.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import typing
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError
from starlette.datastructures import UploadFile
from starlette.requests import Request

from gateway.request import ImageInput, OviRequest, sniff_image
from gateway.routing.planner import Route

__all__ = ["MODELS", "BadField", "CreateBody", "check_vendors", "nest", "parse_create", "read_fields"]

MODELS = {
    "ovi": "Ovi, image-to-video with an input_reference, text-to-video without",
    "ovi-image-to-video": "Ovi image-to-video (input_reference required)",
    "ovi-text-to-video": "Ovi text-to-video (no input_reference; size picks the frame)",
}
"""Accepted ``model`` values (default ``ovi``)."""
SECONDS = "5"
"""Ovi makes 5-second clips only."""
OPENAI_FIELDS = ("prompt", "model", "seconds", "size", "input_reference")
REQUEST_FIELDS = tuple(name for name in OviRequest.model_fields if name not in ("prompt", "image", "size"))
ROUTE_FIELDS = tuple(Route.model_fields)
_LIST_FIELDS = frozenset(name for name, info in Route.model_fields.items()
                         if typing.get_origin(info.annotation) is list
                         or list in typing.get_args(info.annotation)
                         or any(typing.get_origin(a) is list for a in typing.get_args(info.annotation)))
_BRACKET = re.compile(r"\[([^\[\]]*)\]")


class BadField(ValueError):
    """A field the server refuses: ``param`` names it, the message says what is allowed."""

    def __init__(self, message: str, param: str | None = None, code: str = "invalid_value") -> None:
        super().__init__(message)
        self.message = message
        self.param = param
        self.code = code


@dataclass(frozen=True)
class CreateBody:
    """A parsed create: the clip, how to route it, the OpenAI-shaped echoes, a fingerprint for retries."""

    request: OviRequest
    route: Route | None
    model: str
    seconds: str
    size: str
    callback_url: str | None
    fingerprint: str


def nest(items: Iterable[tuple[str, Any]]) -> dict[str, Any]:
    """Bracket keys (``a[b][]``) to nested dicts and lists; a repeated plain key becomes a list."""
    out: dict[str, Any] = {}
    for key, value in items:
        head, _, rest = key.partition("[")
        path = [head, *_BRACKET.findall("[" + rest)] if rest else [head]
        if not head:
            raise BadField(f"malformed form key {key!r}", param=key)
        node: Any = out
        for index, part in enumerate(path):
            last = index == len(path) - 1
            if part == "":  # "[]": append
                if not isinstance(node, list):
                    raise BadField(f"form key {key!r} mixes a list and a value", param=key)
                node.append(value if last else {})
                node = node[-1]
                continue
            if not isinstance(node, dict):
                raise BadField(f"form key {key!r} mixes a list and a value", param=key)
            if last:
                if part in node:
                    previous = node[part]
                    node[part] = [*previous, value] if isinstance(previous, list) else [previous, value]
                else:
                    node[part] = value
            else:
                node = node.setdefault(part, [] if path[index + 1] == "" else {})
    return out


_BASE64 = re.compile(r"^[A-Za-z0-9+/]+={0,2}$")


def _image(value: Any, param: str) -> dict[str, str]:
    """``input_reference`` (or ``image``, named by ``param``) as an explicit ``ImageInput`` kind: bytes
    become a data URI; an object gives its ``image_url``; a ``file_id`` is refused (this server stores
    no files). Only what a remote caller can hand over is taken — an http(s) URL, a data URI, bare
    base64 — never a local path or a ``kind: file`` object: ``ImageInput.coerce`` would read that file
    on this machine and send it to a vendor. The kind is fixed here, so text that also names an
    existing file is read as base64 or refused, never opened."""
    if isinstance(value, bytes | bytearray):
        mime = sniff_image(bytes(value))
        if mime is None:
            raise BadField(f"{param} must be a PNG, JPEG or WebP image", param=param)
        return {"kind": "data_uri", "value": f"data:{mime};base64,{base64.b64encode(bytes(value)).decode()}"}
    if isinstance(value, Mapping):
        if set(value) - {"image_url", "file_id"}:
            raise BadField(f"{param} takes image_url (or an uploaded file)", param=param)
        if value.get("file_id"):
            raise BadField(f"{param}.file_id is not supported: upload the image or give image_url",
                           param=f"{param}.file_id")
        if not value.get("image_url"):
            raise BadField(f"{param} needs image_url or a file", param=param)
        value = value["image_url"]
    text = value.strip() if isinstance(value, str) else ""
    head = text[:8].lower()
    if head.startswith(("http://", "https://")):
        return {"kind": "url", "value": text}
    if head.startswith("data:"):
        return {"kind": "data_uri", "value": text}
    if len(text) >= 16 and _BASE64.match(text):
        return {"kind": "base64", "value": text}
    raise BadField(f"{param} must be an image file, an http(s) image URL, a data: URI, base64 image bytes or "
                   "{image_url}; a local file path is refused (the server never reads its own files for a caller)",
                   param=param)


def _route(fields: dict[str, Any]) -> dict[str, Any]:
    """Route fields, top level (``order``, ``max_price``…) or OpenRouter-style ``provider: {order…}``."""
    route = {name: fields.pop(name) for name in list(fields) if name in ROUTE_FIELDS and name != "provider"}
    provider = fields.pop("provider", None)
    if isinstance(provider, Mapping):
        unknown = set(provider) - set(ROUTE_FIELDS) - {"provider"}
        if unknown:
            name = sorted(unknown)[0]
            raise BadField(f"unknown routing field provider.{name}; allowed: {', '.join(ROUTE_FIELDS)}",
                           param=f"provider.{name}", code="unknown_parameter")
        route.update(provider)
    elif provider is not None:
        route["provider"] = provider
    for name in _LIST_FIELDS & set(route):
        if isinstance(route[name], str):  # a plain form key: "fal,runware"
            route[name] = [part.strip() for part in route[name].split(",") if part.strip()]
    return route


def parse_create(fields: dict[str, Any]) -> CreateBody:
    """Turn one create body (already nested) into a ``CreateBody``; ``BadField`` names what is wrong."""
    fields = dict(fields)
    prompt = fields.pop("prompt", None)
    if not isinstance(prompt, str) or not prompt.strip():
        raise BadField("prompt is required", param="prompt", code="missing_required_parameter")
    model = str(fields.pop("model", None) or "ovi")
    if model not in MODELS:
        raise BadField(f"model {model!r} is not served here; use one of: {', '.join(MODELS)}", param="model",
                       code="model_not_found")
    seconds = str(fields.pop("seconds", None) or SECONDS)
    if seconds != SECONDS:
        raise BadField(f"seconds={seconds!r} is not possible: Ovi clips are always {SECONDS} seconds "
                       f"(send \"{SECONDS}\" or leave it out)", param="seconds", code="unsupported_value")
    raw_image, image_param = fields.pop("input_reference", None), "input_reference"
    if "image" in fields:
        if raw_image is not None:
            raise BadField("give the image once: input_reference or image", param="image")
        raw_image, image_param = fields.pop("image"), "image"
    image = None if raw_image is None else _image(raw_image, image_param)
    if model == "ovi-image-to-video" and image is None:
        raise BadField("model ovi-image-to-video needs an input_reference image", param="input_reference")
    if model == "ovi-text-to-video" and image is not None:
        raise BadField("model ovi-text-to-video takes no input_reference", param="input_reference")
    size = fields.pop("size", None)
    if size is not None and image is not None:
        raise BadField("size applies to text-to-video only; an image-to-video clip takes the input image's "
                       "aspect ratio (remove size, or the input_reference)", param="size", code="unsupported_value")
    callback_url = fields.pop("callback_url", None)
    route_fields = _route(fields)
    request_fields = {name: fields.pop(name) for name in list(fields) if name in REQUEST_FIELDS}
    if fields:
        name = sorted(fields)[0]
        allowed = ", ".join((*OPENAI_FIELDS, *REQUEST_FIELDS, *ROUTE_FIELDS, "callback_url"))
        raise BadField(f"unknown field {name!r} (refused, not dropped); allowed: {allowed}", param=name,
                       code="unknown_parameter")
    try:
        picture = None if image is None else ImageInput.model_validate(image)
    except ValidationError as error:
        raise BadField(f"{image_param}: {error.errors()[0]['msg']}", param=image_param) from None
    try:
        request = OviRequest(prompt=prompt, image=picture, size=size, **request_fields)
        route = Route(**route_fields) if route_fields else None
    except ValidationError as error:
        first = error.errors()[0]
        where = ".".join(str(part) for part in first["loc"]) or None
        if where is not None and where.split(".")[0] == "image":  # name the field the caller used
            where = image_param
        raise BadField(f"{where}: {first['msg']}" if where else first["msg"], param=where) from None
    canonical = {"request": json.loads(request.model_dump_json()), "model": model,
                 "route": None if route is None else json.loads(route.model_dump_json()),
                 "callback_url": callback_url}
    fingerprint = hashlib.sha256(json.dumps(canonical, sort_keys=True).encode()).hexdigest()
    return CreateBody(request=request, route=route, model=model, seconds=seconds,
                      size=str(size) if size is not None else "auto", callback_url=callback_url,
                      fingerprint=fingerprint)


def check_vendors(route: Route | None, enabled: Iterable[str]) -> None:
    """Refuse a route naming a vendor this server does not run (``BadField`` naming the field and the
    vendors it has): the caller's mistake is a 400, not the server's configuration error (503)."""
    if route is None:
        return
    names = sorted(enabled)
    named = [("provider", route.provider)] if route.provider is not None else []
    named += [(field, name) for field in ("order", "only", "ignore") for name in getattr(route, field) or []]
    for field, name in named:
        if name not in names:
            raise BadField(f"{field}: no vendor {name!r} here; this server runs {', '.join(names) or 'none'}",
                           param=field, code="unknown_provider")


async def read_fields(request: Request) -> dict[str, Any]:
    """A create request's fields: its JSON object, or its form keys (multipart with the image file, or
    urlencoded) nested by ``nest``; ``BadField`` for any other body."""
    kind = request.headers.get("content-type", "")
    if kind.startswith("application/json"):
        try:
            value = json.loads(await request.body())
        except ValueError:
            raise BadField("the body is not valid JSON") from None
        if not isinstance(value, dict):
            raise BadField("the body must be a JSON object")
        return value
    if kind.startswith(("multipart/form-data", "application/x-www-form-urlencoded")):
        form = await request.form()
        items = []
        for key, value in form.multi_items():
            items.append((key, await value.read() if isinstance(value, UploadFile) else value))
        return nest(items)
    raise BadField("send application/json or multipart/form-data", param=None)
