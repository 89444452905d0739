"""Send vendor traffic to an emulator served on loopback (``Emulator().serve`` / ``ovi-gateway emulate``).

The loopback server routes by path, so rewriting each vendor request's scheme and host to the loopback
base is all it takes; URLs the emulator hands back already point at it.
"""

from __future__ import annotations

import httpx

__all__ = ["LoopbackTransport"]


class LoopbackTransport(httpx.AsyncBaseTransport):
    """An async transport that sends every request to ``base_url`` (loopback only), keeping path and query."""

    def __init__(self, base_url: str) -> None:
        self.base: httpx.URL = httpx.URL(base_url)
        if self.base.host not in ("127.0.0.1", "localhost", "::1"):
            raise ValueError("LoopbackTransport only talks to 127.0.0.1, localhost or ::1")
        self.inner: httpx.AsyncHTTPTransport = httpx.AsyncHTTPTransport()

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        url = request.url
        if url.host != self.base.host or url.port != self.base.port or url.scheme != self.base.scheme:
            # Only a URL that points elsewhere is rebuilt: the emulator's own answers (fal's status and
            # result URLs, media) already point at it, and a rebuild costs a URL parse per request.
            request.url = url.copy_with(scheme=self.base.scheme, host=self.base.host, port=self.base.port)
            request.headers["host"] = f"{self.base.host}:{self.base.port}" if self.base.port else self.base.host
        return await self.inner.handle_async_request(request)

    async def aclose(self) -> None:
        await self.inner.aclose()
