"""The fal.ai adapter: I/O only, through fal-client (``queue.FalQueueClient``), one call per step.

Translation, parsing and error mapping are the pure functions in ``translate.py``.
"""

from __future__ import annotations

import logging
import mimetypes
import os
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from gateway.contract import (
    CONTRACT_VERSION,
    JobHandle,
    JobStatus,
    ProviderContext,
    ProviderOutput,
    SubmitContext,
    WebhookEvent,
)
from gateway.errors import (
    AuthError,
    GatewayError,
    MalformedResponse,
    ProviderUnavailable,
    SubmitOutcomeUnknown,
)
from gateway.http import classify_transport, redact, require_key
from gateway.lazy import LazyModule
from gateway.request import ImageInput, OviRequest
from providers.fal.capabilities import CAPABILITIES
from providers.fal.schemas import SubmitAck

if TYPE_CHECKING:
    import fal_client
    import httpx

    from providers.fal import queue as fal_queue
    from providers.fal import translate, webhooks
    from providers.fal.queue import FalCallError, FalQueueClient, FalRequest
    from providers.fal.translate import Phase
else:  # httpx, translation and webhooks load on the first call, not when the registry reads the class (gateway.lazy)
    httpx = LazyModule("httpx", globals())
    translate = LazyModule("providers.fal.translate", globals())
    webhooks = LazyModule("providers.fal.webhooks", globals())
    # fal-client (and ``providers.fal.queue``, built on it) load with the adapter (``__init__``), not with
    # this module: the registry imports it for the class's capabilities whenever a gateway starts, and a
    # gateway that never sends a fal request should not pay fal-client's import (start-up, issue 14). As
    # stand-ins, not import statements in each method: every job's submit and reads would run those again.
    fal_client = LazyModule("fal_client", globals())
    fal_queue = LazyModule("providers.fal.queue", globals(), key="fal_queue")

__all__ = ["FalProvider"]

_log = logging.getLogger("providers.fal")

SUBMIT_HEADERS = {"x-fal-disable-fallbacks": "true"}
"""Sent on every submit: after its retries fal may reroute a request to another model
(providers.md 1.3); a clip must come from Ovi, at Ovi's price, or not at all."""


class FalProvider:
    """fal.ai's Ovi endpoints (``fal-ai/ovi/image-to-video`` and ``fal-ai/ovi``) via its queue.

    fal has no lookup by a client key, so an ambiguous submit cannot be reconciled
    (``reconcilable = False``); the journal keeps what is known instead.
    """

    name = "fal"
    contract_version = CONTRACT_VERSION
    env_key = "FAL_KEY"
    capabilities = CAPABILITIES
    reconcilable = False
    accepted_options = frozenset({"base_url"})
    can_cancel = True
    """fal's queue documents ``PUT .../requests/{id}/cancel``: a queued request is removed (and not
    billed); a running one gets a cancellation request it may not honor [docs.fal.ai queue API]."""
    result_retention_s = 3600.0
    """fal keeps a request's result 1 h after completion (6 min for payloads of 10 KB or more)."""
    media_url_lifetime_s = None
    """UNCONFIRMED: the clip itself lives on fal's CDN, whose default lifetime fal does not document (only
    that ``X-Fal-Object-Lifecycle-Preference`` can set one); the 1 h above is the queue result's, not the
    file's. So the expiry of a clip URL is unknown: the server tries it and reads the CDN's answer."""

    def __init__(self, ctx: ProviderContext) -> None:
        # Translation and the fal-client queue load with the adapter (a gateway's first call, before any
        # intent is journaled), so a broken install fails here, where the gateway drops this vendor, not
        # inside a submit whose intent says it may have been sent.
        fal_queue.FalQueueClient, fal_client.FalClientHTTPError  # noqa: B018  (load them: gateway.lazy)
        translate.endpoint_for  # noqa: B018  (loads the module; gateway.lazy)
        self._ctx = ctx
        self._queue: FalQueueClient | None = None
        self._last_request: tuple[JobHandle, FalRequest] | None = None

    # ---- pure ---------------------------------------------------------------------------------
    def translate(self, request: OviRequest, ctx: SubmitContext) -> dict[str, Any]:
        """The JSON fal receives; a local image shows as a data URI (``submit`` uploads it first)."""
        self.capabilities.require(request, provider=self.name, dropped=ctx.dropped)
        return translate.build_payload(request, ctx)

    def parse(self, final: Any, handle: JobHandle) -> ProviderOutput:
        return translate.parse_output(final)

    def classify(self, error: BaseException | httpx.Response, *,
                 phase: Phase | None = None) -> GatewayError:
        """Any fal failure in our taxonomy; ``phase`` is inferred from the request when not given."""
        if isinstance(error, GatewayError):
            return error
        if isinstance(error, fal_queue.FalCallError):
            phase = phase or translate.phase_of(error.request.method, str(error.request.url))
            if error.cause is not None:
                return self._transport(error.cause, phase, {})
            error = error.response  # type: ignore[assignment]
        if isinstance(error, fal_client.FalClientHTTPError):
            error = error.response
        if isinstance(error, httpx.Response):
            if phase is None:
                try:
                    phase = translate.phase_of(error.request.method, str(error.request.url))
                except RuntimeError:  # a bare response: no request attached
                    phase = "status"
            return translate.classify_http(error.status_code, error.headers, error.text, phase=phase,
                                           secrets=[self._secret()])
        if isinstance(error, httpx.TransportError):
            return self._transport(error, phase or "status", {})
        if isinstance(error, (ValueError, KeyError, TypeError)):
            return MalformedResponse(f"fal answer unreadable: {type(error).__name__}: "
                                     f"{redact(str(error), [self._secret()])}", provider=self.name)
        return ProviderUnavailable(f"{type(error).__name__}: {redact(str(error), [self._secret()])}",
                                   provider=self.name)

    def _transport(self, exc: httpx.TransportError | httpx.DecodingError, phase: str,
                   hint: dict[str, Any]) -> GatewayError:
        error = classify_transport(self.name, exc, submitting=phase == "submit", job_hint=hint)
        if phase in ("status", "result", "cancel"):
            error.may_be_billed = True  # the job exists and is paid for; only this read failed
        return error

    # ---- I/O ----------------------------------------------------------------------------------
    def _secret(self) -> str | None:
        key = self._ctx.api_key
        return key.get_secret_value() if key is not None else None

    def _client(self) -> FalQueueClient:
        key = require_key(self._ctx.api_key, provider=self.name, env_key=self.env_key)
        if self._queue is None:
            timeout = self._ctx.timeout
            # fal-client applies one number (seconds) to its submit POST: the caller's read timeout, if set
            submit_s = timeout.read if timeout is not None and timeout.read is not None else fal_queue.SUBMIT_TIMEOUT_S
            self._queue = fal_queue.FalQueueClient(key=key, default_timeout=submit_s, transport=self._ctx.transport,
                                         base_url=self._ctx.options.get("base_url"), timeout=timeout)
        return self._queue

    async def submit(self, request: OviRequest, ctx: SubmitContext) -> JobHandle:
        queue = self._client()
        self.capabilities.require(request, provider=self.name, dropped=ctx.dropped)
        endpoint = translate.endpoint_for(request)
        image_url = None
        if request.image is not None and request.image.kind != "url":
            image_url = await self._upload(queue, request.image)
        payload = translate.build_payload(request, ctx, image_url)
        hint = {"idempotency_key": ctx.idempotency_key, "endpoint": endpoint}
        try:
            # fal-client appends ?fal_webhook=<url-encoded> to the queue submit URL [fal-client@1.0.3 client.py ~1798]
            sent = await queue.submit(endpoint, payload, headers=dict(SUBMIT_HEADERS), webhook_url=ctx.webhook_url)
            ack = SubmitAck(request_id=sent.request_id, response_url=sent.response_url,
                            status_url=sent.status_url, cancel_url=sent.cancel_url)
        except fal_queue.FalCallError as exc:
            followed = self._request_in_answer(exc, endpoint, hint)
            if followed is not None:
                raise followed from exc
            if exc.cause is not None:
                raise self._transport(exc.cause, "submit", hint) from exc
            raise self.classify(exc, phase="submit") from exc
        except httpx.TransportError as exc:  # only if something bypassed SingleShotTransport
            raise self._transport(exc, "submit", hint) from exc
        except fal_client.FalClientHTTPError as exc:  # only if something bypassed SingleShotTransport
            raise self.classify(exc, phase="submit") from exc
        except (ValueError, KeyError, TypeError) as exc:
            # fal answered 2xx but the answer is unreadable: a paid request may exist, id unknown.
            raise SubmitOutcomeUnknown(f"fal accepted the submit but its answer was unreadable "
                                       f"({type(exc).__name__})", provider=self.name, job_hint=hint) from exc
        _log.debug("submit to %s acknowledged: request %s", endpoint, ack.request_id)
        handle = JobHandle(self.name, ack.request_id, data={
            "endpoint": endpoint, "request_id": ack.request_id, "response_url": ack.response_url,
            "status_url": ack.status_url, "cancel_url": ack.cancel_url})
        # The job's first status check (and its result GET) reuse this request, made from the checked ack on
        # the client the submit went through, as ``request_handle`` would make it (``_request``).
        self._last_request = (handle, fal_queue.FalRequest(
            request_id=ack.request_id, response_url=ack.response_url, status_url=ack.status_url,
            cancel_url=ack.cancel_url, client=sent.client, timeout=queue.timeout))
        return handle

    def _request_in_answer(self, exc: FalCallError, endpoint: str, hint: dict[str, Any]) -> GatewayError | None:
        """A submit answer that carries ``x-fal-request-id`` — a 5xx, or a 2xx whose body was lost
        after the headers: fal's own server saw the request (fal-client says so and does not retry it,
        client.py L1160-1168), so the job may be queued under that id. Returned as
        ``SubmitOutcomeUnknown`` with the job's handle in ``job_hint["handle"]``, which the runner
        follows instead of submitting again. A 4xx is fal refusing the payload: no job to follow."""
        status, request_id = exc.status_code, exc.headers.get("x-fal-request-id")
        if status is None or 400 <= status < 500 or not request_id:
            return None
        url = exc.request.url
        app = "/".join(endpoint.split("/")[:2])  # the subpath is for submit only
        base = f"{url.scheme}://{url.netloc.decode()}/{app}/requests/{request_id}"
        handle = JobHandle(self.name, request_id, data={
            "endpoint": endpoint, "request_id": request_id, "response_url": base,
            "status_url": base + "/status", "cancel_url": base + "/cancel"})
        cause = (self._transport(exc.cause, "submit", hint) if exc.cause is not None
                 else self.classify(exc, phase="submit"))
        return SubmitOutcomeUnknown(f"fal answered the submit with {cause.message} but named request "
                                    f"{request_id}; following it", provider=self.name,
                                    job_hint={**hint, "job_id": request_id, "handle": handle.to_json()})

    async def _upload(self, queue: FalQueueClient, image: ImageInput) -> str:
        mime = image.mime or "application/octet-stream"
        name = "image" + (mimetypes.guess_extension(mime) or ".bin")
        try:
            return await queue.upload_bytes(image.read_bytes(), mime, name)
        except (fal_queue.FalCallError, fal_client.FalClientHTTPError, httpx.TransportError) as exc:
            raise self.classify(exc, phase="upload") from exc
        except (ValueError, KeyError, TypeError) as exc:
            raise MalformedResponse(f"fal storage answer unreadable ({type(exc).__name__})",
                                    provider=self.name) from exc

    async def _request(self, handle: JobHandle) -> FalRequest:
        # The last handle's fal-client request, by identity (the adapter lives on one event loop): a job's
        # submit, final status check and result GET follow each other, so each reuses the one before's.
        last = self._last_request
        if last is not None and last[0] is handle:
            return last[1]
        request = await self._client().request_handle({"request_id": handle.job_id, **handle.data})
        self._last_request = (handle, request)
        return request

    async def _read(self, call: Any, phase: Phase) -> Any:
        try:
            response = await call()
        except (fal_queue.FalCallError, fal_client.FalClientHTTPError, httpx.TransportError) as exc:
            raise self.classify(exc, phase=phase) from exc
        try:
            return response.json()
        except ValueError as exc:
            raise MalformedResponse(f"fal {phase} answer is not JSON", provider=self.name,
                                    may_be_billed=True) from exc

    async def status(self, handle: JobHandle) -> JobStatus:
        request = await self._request(handle)
        status = translate.parse_status(await self._read(request.fetch_status, "status"))
        if _log.isEnabledFor(logging.DEBUG):  # every check of every job: no enum ``.value`` read for nobody
            _log.debug("request %s: %s", handle.job_id, status.state.value)
        return status

    async def result(self, handle: JobHandle, last: JobStatus) -> ProviderOutput:
        request = await self._request(handle)
        body = await self._read(request.fetch_result, "result")
        inference_s = translate.inference_seconds(last.raw) if last is not None else None
        return translate.parse_output(body, inference_s=inference_s)

    async def cancel(self, handle: JobHandle) -> None:
        request = await self._request(handle)
        try:
            await request.request_cancel()
        except fal_queue.FalCallError as exc:
            if exc.response is not None and translate.cancel_was_moot(exc.response.status_code,
                                                                      exc.response.text):
                return
            raise self.classify(exc, phase="cancel") from exc
        except (fal_client.FalClientHTTPError, httpx.TransportError) as exc:  # only if SingleShotTransport was bypassed
            raise self.classify(exc, phase="cancel") from exc

    async def find(self, ctx: SubmitContext) -> JobHandle | None:
        """fal has no lookup by a client key: always ``None``."""
        return None

    # ---- webhooks (providers.fal.webhooks) --------------------------------------------------------
    async def verify_webhook(self, headers: Mapping[str, str], body: bytes, now: float) -> None:
        """Raise ``AuthError`` unless the delivery is signed by fal for our user (``FAL_WEBHOOK_USER_ID``).
        ``now``: Unix seconds. Keys come from ``FAL_WEBHOOK_JWKS_URL`` (default fal's), cached 24 h and
        fetched again once when no cached key matches (fal may have rotated)."""
        user_id = os.environ.get("FAL_WEBHOOK_USER_ID", "")
        for fresh in (False, True):
            keys = await self._webhook_keys(now, refresh=fresh)
            try:
                webhooks.verify(headers, body, keys=keys, user_id=user_id, now=now)
                return
            except AuthError as refused:
                if fresh or "none of fal's published keys" not in refused.message:
                    raise

    async def _webhook_keys(self, now: float, *, refresh: bool) -> list[Any]:
        cached = getattr(self, "_jwks", None)
        if cached is not None and not refresh and now - cached[0] < webhooks.JWKS_CACHE_SECONDS:
            return list(cached[1])
        url = os.environ.get("FAL_WEBHOOK_JWKS_URL") or webhooks.JWKS_URL
        try:
            response = await self._ctx.http.get(url, timeout=10.0)
            response.raise_for_status()
            keys = webhooks.public_keys(response.json())
        except (httpx.HTTPError, ValueError) as exc:
            if cached is not None:
                return list(cached[1])
            raise AuthError(f"fal webhook refused: the JWKS at {url} could not be read ({type(exc).__name__})",
                            provider=self.name) from exc
        self._jwks = (now, keys)
        return keys

    def parse_webhook(self, body: bytes) -> WebhookEvent:
        """A verified delivery as a ``WebhookEvent`` (the payload is the result body)."""
        return webhooks.parse(body)
