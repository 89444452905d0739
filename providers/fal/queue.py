"""The thin wrapper over fal-client 1.0.3's ``AsyncClient``: every fal call, single-shot.

fal-client's ``_async_maybe_retry_request`` retries ``httpx.HTTPError`` and ``FalClientHTTPError``
(every transport error, 408/409/429, ingress 5xx) up to 10 times with real ``asyncio.sleep`` —
including the submit POST, which would silently pay twice. The runner owns retries, so here
every request goes through ``SingleShotTransport``: a transport error or an error status leaves
the transport as ``FalCallError``, which that loop does not catch, and the adapter classifies it.
The transport also reads every body itself: httpx reads it after the transport returns, so a
2xx whose body is lost (the connection drops after the headers) would otherwise raise a plain
``httpx.ReadError`` into that loop and re-POST a submit fal already took.

``FalQueueClient`` also routes fal-client's uploads (CDN token + file POST) through the same
injected transport; fal-client itself would open fresh ``httpx.AsyncClient()`` instances there.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import httpx
from asyncstdlib import cached_property as async_cached_property
from fal_client import AsyncClient, AsyncRequestHandle
from fal_client import client as fal_impl

from gateway.transports import BaseURLTransport, VendorClient

__all__ = ["FalCallError", "FalQueueClient", "FalRequest", "SingleShotTransport"]

STATUS_TIMEOUT = httpx.Timeout(30.0, connect=10.0)
RESULT_TIMEOUT = httpx.Timeout(60.0, connect=10.0)
SUBMIT_TIMEOUT_S = 60.0
"""Seconds for the submit POST (fal-client applies ``default_timeout`` to it)."""


class FalCallError(Exception):
    """A fal request that failed: ``cause`` is the httpx error (a transport error, or a body that
    could not be decoded), or ``response`` the error answer (body already read). Deliberately
    neither ``httpx.HTTPError`` nor ``FalClientHTTPError``, so fal-client's retry loop lets it
    through at once. ``status_code``/``headers`` are those of the answer whenever one arrived — also
    when its body was then lost (``cause`` set): its ``x-fal-request-id`` still names the job."""

    def __init__(self, request: httpx.Request, *, response: httpx.Response | None = None,
                 cause: httpx.TransportError | httpx.DecodingError | None = None,
                 answered: httpx.Response | None = None) -> None:
        what = f"HTTP {response.status_code}" if response is not None else type(cause).__name__
        super().__init__(f"{request.method} {request.url.copy_with(query=None)}: {what}")
        self.request = request
        self.response = response
        self.cause = cause
        head = response if response is not None else answered
        self.status_code: int | None = head.status_code if head is not None else None
        self.headers: httpx.Headers = head.headers if head is not None else httpx.Headers()


class SingleShotTransport(httpx.AsyncBaseTransport):
    """Wraps a transport so no failure looks retryable to fal-client (see the module docstring).

    ``owns_inner=False`` leaves the inner transport open on ``aclose`` (it is shared).
    """

    def __init__(self, inner: httpx.AsyncBaseTransport, *, owns_inner: bool) -> None:
        self._inner = inner
        self._owns_inner = owns_inner

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        try:
            response = await self._inner.handle_async_request(request)
        except httpx.TransportError as exc:
            raise FalCallError(request, cause=exc) from exc
        response.request = request
        try:
            # Read (and decode) here, for every status: the client's own read would happen outside
            # this transport, where a lost body is a plain httpx error that fal-client retries.
            await response.aread()
        except (httpx.TransportError, httpx.DecodingError) as exc:
            raise FalCallError(request, cause=exc, answered=response) from exc
        finally:
            await response.aclose()
        if response.status_code < 400:
            return response
        raise FalCallError(request, response=response)

    async def aclose(self) -> None:
        if self._owns_inner:
            await self._inner.aclose()


class _TokenManager(fal_impl.AsyncCDNTokenManager):
    """fal-client's CDN token manager, refreshing through our client instead of a fresh one."""

    def __init__(self, auth: Any, http: httpx.AsyncClient, timeout: httpx.Timeout | None = None) -> None:
        super().__init__(auth)
        self._http = http
        self._timeout = timeout

    async def _refresh_token(self) -> fal_impl.CDNToken:
        response = await self._http.post(self._url, headers=self._headers, json={},
                                          timeout=self._timeout or STATUS_TIMEOUT)
        data = response.json()
        return fal_impl.CDNToken(token=data["token"], token_type=data["token_type"],
                                 base_upload_url=data["base_url"],
                                 expires_at=datetime.fromisoformat(data["expires_at"]))


@dataclass(frozen=True)
class FalRequest(AsyncRequestHandle):
    """fal-client's request handle plus one-call reads that keep the raw answer.

    ``AsyncRequestHandle.get`` polls status in a loop (with sleeps) before its result GET; the
    runner owns polling, so ``fetch_result`` is only that final GET, on fal-client's own path.
    ``timeout`` is the caller's (``Gateway(timeout=…)``), replacing the per-step defaults.
    """

    timeout: httpx.Timeout | None = field(default=None, repr=False, compare=False)

    async def fetch_status(self) -> httpx.Response:
        """One ``GET status_url?logs=false`` (raw answer: 202 queued/running, 200 completed)."""
        return await fal_impl._async_maybe_retry_request(
            self.client, "GET", self.status_url, params={"logs": False},
            timeout=self.timeout or STATUS_TIMEOUT)

    async def fetch_result(self) -> httpx.Response:
        """One ``GET response_url``: the model's answer (its error status and body when it failed)."""
        return await fal_impl._async_maybe_retry_request(
            self.client, "GET", self.response_url, timeout=self.timeout or RESULT_TIMEOUT)

    async def request_cancel(self) -> httpx.Response:
        """One ``PUT cancel_url``."""
        return await fal_impl._async_maybe_retry_request(
            self.client, "PUT", self.cancel_url, timeout=self.timeout or STATUS_TIMEOUT)


@dataclass(unsafe_hash=True)
class FalQueueClient(AsyncClient):
    """fal-client's ``AsyncClient`` on an injected transport, with no retries anywhere.

    ``transport``: the gateway's injected transport (the emulator, a test double). ``None`` means
    real traffic: fal-client's own ``AsyncBackupDomainTransport`` (it only switches to the backup
    domain when the connection itself fails, before anything is sent), still single-shot.
    ``base_url`` sends every fal request (queue, REST storage, CDN) to that root, path kept;
    ``timeout`` replaces the per-step timeouts.
    """

    transport: httpx.AsyncBaseTransport | None = field(default=None, repr=False, compare=False)
    base_url: str | None = field(default=None, compare=False)
    timeout: httpx.Timeout | None = field(default=None, repr=False, compare=False)

    def _rebased(self, inner: httpx.AsyncBaseTransport, *, owns_inner: bool) -> SingleShotTransport:
        if self.base_url is not None:
            inner, owns_inner = BaseURLTransport(self.base_url, inner, owns_inner=owns_inner), True
        return SingleShotTransport(inner, owns_inner=owns_inner)

    def _wrapped(self) -> SingleShotTransport:
        if self.transport is not None:
            return self._rebased(self.transport, owns_inner=False)
        if self.base_url is not None:  # a relay or emulator: fal's backup domain means nothing there
            return self._rebased(httpx.AsyncHTTPTransport(), owns_inner=True)
        return self._rebased(fal_impl.AsyncBackupDomainTransport(), owns_inner=True)

    @async_cached_property(asyncio.Lock)
    async def _client(self) -> httpx.AsyncClient:
        auth = await self._auth
        return VendorClient(transport=self._wrapped(),  # keeps no cookies (gateway.transports)
                                 headers={"Authorization": auth.header_value,
                                          "User-Agent": fal_impl.USER_AGENT},
                                 timeout=self.default_timeout)

    @async_cached_property(asyncio.Lock)
    async def _token_manager(self) -> fal_impl.AsyncCDNTokenManager:
        auth = await self._auth
        return _TokenManager(auth, await self._client, self.timeout)

    @asynccontextmanager
    async def _cdn_client(self) -> AsyncIterator[httpx.AsyncClient]:
        inner = self.transport if self.transport is not None else httpx.AsyncHTTPTransport()
        transport = self._rebased(inner, owns_inner=self.transport is None)
        async with httpx.AsyncClient(transport=transport, headers={"User-Agent": fal_impl.USER_AGENT},
                                     timeout=self.default_timeout) as client:
            yield client

    async def request_handle(self, data: Mapping[str, Any]) -> FalRequest:
        """The handle of a submitted request from the URLs its submit answer gave (resumable)."""
        return FalRequest(request_id=data["request_id"], response_url=data["response_url"],
                          status_url=data["status_url"], cancel_url=data["cancel_url"],
                          client=await self._client, timeout=self.timeout)

    async def upload_bytes(self, data: bytes, content_type: str, file_name: str) -> str:
        """Upload through fal's CDN (``fal_v3``, no fallback repository: one attempt); the URL."""
        return await self.upload(data, content_type, file_name, repository="fal_v3", fallback_repository=[])
