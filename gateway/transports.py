"""httpx transports the gateway and its adapters share (kept apart from ``gateway.http``'s pure helpers,
which must not import httpx: see ``gateway.lazy``)."""

from __future__ import annotations

import httpx

__all__ = ["BaseURLTransport", "ClientTransport"]


class ClientTransport(httpx.AsyncBaseTransport):
    """Sends every request through a caller's ``httpx.AsyncClient`` (its proxies, mounts, certificates
    and hooks), for adapters that build their own client on a transport (fal-client). Never closes it."""

    def __init__(self, client: httpx.AsyncClient) -> None:
        self._client = client

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        return await self._client.send(request, stream=True)


class BaseURLTransport(httpx.AsyncBaseTransport):
    """Sends every request to ``base_url`` instead of its own host, keeping the path (under the base's
    path) and query: for adapters whose vendor SDK has its hosts built in (fal's queue, REST and CDN)."""

    def __init__(self, base_url: str, inner: httpx.AsyncBaseTransport, *, owns_inner: bool) -> None:
        self._base = httpx.URL(base_url)
        self._inner = inner
        self._owns_inner = owns_inner

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        prefix = self._base.path.rstrip("/")
        request.url = request.url.copy_with(scheme=self._base.scheme, host=self._base.host, port=self._base.port,
                                            path=prefix + request.url.path)
        request.headers["host"] = request.url.netloc.decode("ascii")
        return await self._inner.handle_async_request(request)

    async def aclose(self) -> None:
        if self._owns_inner:
            await self._inner.aclose()
