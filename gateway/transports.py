"""httpx transports and the vendor client the gateway and its adapters share (kept apart from
``gateway.http``'s pure helpers, which must not import httpx: see ``gateway.lazy``)."""

from __future__ import annotations

from http.cookiejar import Cookie, CookieJar
from typing import Any

import httpx

__all__ = ["BaseURLTransport", "ClientTransport", "VendorClient"]


class _KeepsNothing(CookieJar):
    """A cookie jar that never takes a cookie."""

    def set_cookie(self, cookie: Cookie) -> None:
        return None

    def extract_cookies(self, response: Any, request: Any) -> None:
        return None


class _NoCookies(httpx.Cookies):
    """httpx's cookies, always empty: a response's ``Set-Cookie`` is not read at all."""

    def extract_cookies(self, response: httpx.Response) -> None:
        # httpx's own version wraps every response in urllib and email objects for the jar before the jar
        # even looks (measured: ~12 µs per response, about a tenth of a WaveSpeed job's client-side CPU).
        return None


class VendorClient(httpx.AsyncClient):
    """The ``httpx.AsyncClient`` the gateway builds for vendor calls when the caller passes none: an
    ``AsyncClient`` that keeps no cookies.

    The vendors' APIs authenticate every request by its key header and document no cookies (providers.md);
    the official WaveSpeed SDK sends each call with a fresh ``requests.post``/``requests.get`` (wavespeed
    2.0.5 api/client.py L193, L268), so it never sends a cookie back either. A caller's own ``http_client``
    is used as it is, cookies and all."""

    _none = _NoCookies(_KeepsNothing())

    @property
    def cookies(self) -> httpx.Cookies:
        return self._none

    @cookies.setter
    def cookies(self, cookies: Any) -> None:
        raise AttributeError("the gateway's vendor client keeps no cookies")


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
