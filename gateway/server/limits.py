"""The request body cap of ``ovi-gateway serve``, for every route.

A body is refused with 413 in the API's error envelope when its ``Content-Length`` is over the cap
(before anything is read), and — for a body sent without one (``Transfer-Encoding: chunked``) — as soon
as the bytes received pass the cap, so at most the cap plus one chunk is ever held in memory. Checking
only ``Content-Length`` let a chunked create body of any size be read whole before it was parsed.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from starlette.datastructures import Headers
from starlette.responses import JSONResponse

__all__ = ["BodyLimit", "too_large"]

Message = MutableMapping[str, Any]
ASGIApp = Callable[[MutableMapping[str, Any], Callable[[], Awaitable[Message]], Callable[[Message], Awaitable[None]]],
                   Awaitable[None]]


class _TooLarge(Exception):
    """Raised out of ``receive`` once a streamed body passes the cap; caught by ``BodyLimit``."""


def too_large(limit: int) -> JSONResponse:
    """413 ``body_too_large``, naming the cap (bytes)."""
    return JSONResponse({"error": {"message": f"request body over this server's limit of {limit} bytes",
                                   "type": "invalid_request_error", "param": None, "code": "body_too_large"}},
                        status_code=413, headers={"connection": "close"})


class BodyLimit:
    """ASGI middleware: refuse request bodies over ``max_bytes`` (see the module docstring)."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: MutableMapping[str, Any], receive: Callable[[], Awaitable[Message]],
                       send: Callable[[Message], Awaitable[None]]) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        limit = self.max_bytes
        declared = Headers(scope=scope).get("content-length", "")
        if declared.isdigit() and int(declared) > limit:
            return await too_large(limit)(scope, receive, send)
        received = 0
        started = False

        async def capped() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise _TooLarge
            return message

        async def watched(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, capped, watched)
        except _TooLarge:
            if started:  # a handler that answered before reading all of its body: nothing left to say
                return None
            await too_large(limit)(scope, receive, send)
        return None
