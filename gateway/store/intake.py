"""How a request is journaled: its image stored once by content hash, and the call's options beside it.

A clip's request row used to carry the whole image — a data URI in every row, or a local path that a
resume worker on another machine cannot read. Now an image with bytes (a data URI, base64 or a local
file) is written once to the ``images`` table under its SHA-256, and the request JSON keeps only a
reference (``"stored": true`` with the kind, mime, hash and, for a file, its path for display).
``load_request`` rebuilds the same request from the stored bytes, on any machine sharing the store;
the request hash is unchanged (an image counts by its ``sha256`` alone, ``records.request_hash``).

``CallOptions`` are what a later process needs to go on with the clip the caller's way (review finding
5): the ``Route`` (vendor order, ``max_price``, ``allow_degrade``…) and the caller's budget scope digest.
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from gateway.errors import InvalidRequest
from gateway.request import OviRequest
from gateway.routing.planner import Route

__all__ = ["CallOptions", "StoredImage", "load_request", "stored_request"]


@dataclass(frozen=True)
class StoredImage:
    """One request image as the store keeps it: ``sha256`` (hex) of ``data``, and its mime type."""

    sha256: str
    data: bytes
    mime: str | None


@dataclass(frozen=True)
class CallOptions:
    """How the caller asked for the clip: its ``route`` and ``caller`` (budget scope digest, or None)."""

    route: Route
    caller: str | None = None

    def to_json(self) -> str:
        return json.dumps({"route": self.route.model_dump(mode="json", exclude_defaults=True),
                           "caller": self.caller}, sort_keys=True)

    @classmethod
    def adopt(cls, stored: str | None, route: Route, caller: str | None, *, keep_route: bool
              ) -> tuple[Route, str | None]:
        """The route and caller a later call on a clip goes on with: the first call's (``stored``), unless
        this call named its own route (``keep_route``) or caller."""
        found = cls.from_json(stored)
        if found is None:
            return route, caller
        return (route if keep_route else found.route), (caller if caller is not None else found.caller)

    @classmethod
    def from_json(cls, text: str | None) -> CallOptions | None:
        """The options stored with a clip; None for clips journaled before they were kept."""
        if not text:
            return None
        data = json.loads(text)
        return cls(Route.model_validate(data.get("route") or {}), data.get("caller"))


def stored_request(request: OviRequest) -> tuple[str, StoredImage | None]:
    """The request JSON to journal, and the image to store once (None for a URL image or no image)."""
    image = request.image
    if image is None or image.kind == "url" or image.sha256 is None:
        return request.model_dump_json(), None
    data = image.read_bytes()
    value = json.loads(request.model_dump_json())
    value["image"] = {"kind": image.kind, "value": image.value if image.kind == "file" else "",
                      "mime": image.mime, "sha256": image.sha256, "stored": True}
    return json.dumps(value, ensure_ascii=False), StoredImage(image.sha256, data, image.mime)


def load_request(request_json: str, image_bytes: Callable[[str], bytes | None]) -> OviRequest:
    """The request journaled as ``request_json``, its stored image read back through ``image_bytes``
    (the store's ``get_image``). A journaled image whose bytes are gone or changed is an
    ``InvalidRequest`` — nothing different from what the key was made with is ever sent."""
    value: Any = json.loads(request_json)
    image = value.get("image") if isinstance(value, dict) else None
    if not (isinstance(image, dict) and image.pop("stored", False)):
        return OviRequest.model_validate(value)  # journaled whole (a URL, or before images were stored)
    digest = str(image.get("sha256"))
    data = image_bytes(digest)
    if data is None or hashlib.sha256(data).hexdigest() != digest:
        raise InvalidRequest(f"the journal no longer holds the request's image (sha256 {digest[:12]}…); "
                             "nothing was sent — make the request again")
    encoded = base64.b64encode(data).decode("ascii")
    if image["kind"] == "data_uri":
        image["value"] = f"data:{image['mime']};base64,{encoded}"
    elif image["kind"] == "base64":
        image["value"] = encoded
    request = OviRequest.model_validate(value)  # a file with mime and sha256 is not read here
    if request.image is not None and request.image.kind == "file":
        request.image._data = data  # the stored bytes, readable on a machine without the file
    return request
