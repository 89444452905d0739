"""The WaveSpeed adapter's I/O: upload, submit, poll. Everything it builds or reads is in ``translate``.

Protocol (seeds/wavespeed-ovi-image-to-video.md): ``POST /api/v3/character-ai/ovi/{image,text}-to-video``
with ``Authorization: Bearer <key>``, then ``GET /api/v3/predictions/{id}/result`` until ``data.status``
is ``completed`` or ``failed``. Local images go first to the documented ``/api/v3/media/upload/binary``.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import gateway.secrets as secrets
from gateway.contract import (
    CONTRACT_VERSION,
    JobHandle,
    JobStatus,
    ProviderContext,
    ProviderOutput,
    StepTimeout,
    SubmitContext,
    WebhookEvent,
)
from gateway.errors import GatewayError, MalformedResponse
from gateway.http import USER_AGENT, classify_transport, require_key
from gateway.lazy import LazyModule
from gateway.request import ImageInput, OviRequest
from providers.wavespeed.capabilities import CAPABILITIES, NAME

if TYPE_CHECKING:
    import httpx

    from providers.wavespeed import translate, webhooks
else:  # translation and wire schemas load on the first call, not when the registry reads the class (gateway.lazy)
    httpx = LazyModule("httpx", globals())
    translate = LazyModule("providers.wavespeed.translate", globals())
    webhooks = LazyModule("providers.wavespeed.webhooks", globals())

__all__ = ["WaveSpeedProvider"]

_log = logging.getLogger("providers.wavespeed")

# (connect, read, write, pool) seconds, httpx's tuple form, so importing this module imports no httpx
SUBMIT_TIMEOUT: StepTimeout = (10.0, 60.0, 60.0, 60.0)
STATUS_TIMEOUT: StepTimeout = (10.0, 30.0, 30.0, 30.0)
UPLOAD_TIMEOUT: StepTimeout = (10.0, 120.0, 120.0, 120.0)
_EXTENSIONS = {"image/png": "png", "image/jpeg": "jpg", "image/webp": "webp", "image/gif": "gif",
               "image/bmp": "bmp"}


class WaveSpeedProvider:
    """Ovi on WaveSpeed (``character-ai/ovi/image-to-video`` and ``…/text-to-video``), $0.15 per clip.

    Honors prompt, image, seed 0…2147483647 (unset → ``-1``, WaveSpeed's random), T2V ``size``
    960x540/540x960, and fps 24 / MP4 (fixed, never sent). Not reconcilable: WaveSpeed has no lookup
    by a client key, so an ambiguous submit cannot be settled by asking it.
    ``ctx.options["base_url"]`` points the adapter at another API root (a loopback emulator).
    """

    name = NAME
    contract_version = CONTRACT_VERSION
    env_key = "WAVESPEED_API_KEY"
    capabilities = CAPABILITIES
    reconcilable = False
    accepted_options = frozenset({"base_url"})
    min_poll_interval = 5.0
    """WaveSpeed asks for at least 5 s between video result polls (its Ovi docs)."""
    result_retention_s = 7 * 86400.0
    """Predictions and outputs are deleted after 7 days (https://wavespeed.ai/docs/what-are-predictions)."""
    media_url_lifetime_s = 7 * 86400.0
    """The output URLs go with the prediction after 7 days (same page)."""

    def __init__(self, ctx: ProviderContext) -> None:
        self._ctx = ctx
        self._base = str(ctx.options.get("base_url") or translate.API_BASE).rstrip("/")
        secrets.register(os.environ.get("WAVESPEED_WEBHOOK_SECRET"))  # known now, before any echo can carry it
        # Built once, not per request (a submit URL parsed by httpx costs as much as the request's headers).
        self._submit_urls = {model: httpx.URL(translate.submit_url(model, self._base))
                             for model in (translate.I2V_MODEL, translate.T2V_MODEL)}
        # The gateway's client already sends our User-Agent; a caller's own client gets it per request.
        sends_ours = getattr(ctx.http, "headers", {}).get("user-agent") == USER_AGENT
        self._extra_headers = {} if sends_ours else {"User-Agent": USER_AGENT}
        self._auth: tuple[str, dict[str, str]] | None = None

    # ---- pure --------------------------------------------------------------------------------
    def translate(self, request: OviRequest, ctx: SubmitContext) -> dict[str, Any]:
        """The submit body. A URL image is sent as given; a file or base64 image is shown as a data URI,
        though ``submit`` sends the URL WaveSpeed's upload returns for it instead."""
        self.capabilities.require(request, provider=self.name, dropped=ctx.dropped)
        image = None
        if request.image is not None:
            image = request.image.value if request.image.kind == "url" else request.image.as_data_uri()
        return translate.build_payload(request, ctx, image)

    def parse(self, final: Any, handle: JobHandle) -> ProviderOutput:
        return translate.parse_output(final, handle)

    def classify(self, error: BaseException | httpx.Response) -> GatewayError:
        if isinstance(error, GatewayError):
            return error
        if isinstance(error, httpx.Response):
            return translate.classify_http(error.status_code, error.content, headers=error.headers,
                                           secrets=(self._secret(),))
        if isinstance(error, httpx.TransportError):
            return classify_transport(self.name, error, submitting=False)
        return MalformedResponse(f"{type(error).__name__}: {error}", provider=self.name)

    # ---- I/O ---------------------------------------------------------------------------------
    async def submit(self, request: OviRequest, ctx: SubmitContext) -> JobHandle:
        """Upload a local image if needed, then POST the job exactly once."""
        key = self._key()
        self.capabilities.require(request, provider=self.name, dropped=ctx.dropped)
        image = None
        if request.image is not None:
            image = request.image.value if request.image.kind == "url" else await self._upload(request.image, key)
        model = translate.endpoint(request)
        payload = translate.build_payload(request, ctx, image)
        try:
            # The documented way to ask for a webhook is a `webhook` query parameter on the submit URL
            # [doc wavespeed.ai/docs/how-to-use-webhooks]; httpx percent-encodes it.
            params = {"webhook": ctx.webhook_url} if ctx.webhook_url else None
            response = await self._ctx.http.post(self._submit_urls[model], json=payload, params=params,
                                                 headers=self._headers(key),
                                                 timeout=self._ctx.timeout_or(SUBMIT_TIMEOUT))
        except httpx.TransportError as exc:
            raise classify_transport(self.name, exc, submitting=True,
                                     job_hint={"idempotency_key": ctx.idempotency_key}) from exc
        if response.status_code != 200:
            raise translate.classify_http(response.status_code, response.content, headers=response.headers,
                                          secrets=(key,), submitting=True)
        job_id, urls_get = translate.submitted_job(response.content)
        _log.debug("submit to %s acknowledged: prediction %s", model, job_id)
        return JobHandle(self.name, job_id, {
            "endpoint": model,
            "result_url": translate.result_url(job_id, self._base),
            "urls_get": urls_get,
        })

    async def status(self, handle: JobHandle) -> JobStatus:
        """One GET of the documented ``/predictions/{id}/result`` (as the SDK polls; ``urls_get`` is kept
        in the handle for reference only)."""
        response = await self._get(handle)
        status = translate.status_of(response.content)
        _log.debug("prediction %s: HTTP %d, %s", handle.job_id, response.status_code, status.state.value)
        return status

    async def result(self, handle: JobHandle, last: JobStatus) -> ProviderOutput:
        """The finished clip: the final poll already holds it (a failed one raises its error); otherwise
        one GET."""
        if last.state.final and isinstance(last.raw, Mapping):
            return translate.parse_output(last.raw, handle)
        response = await self._get(handle)
        return translate.parse_output(response.content, handle)

    async def cancel(self, handle: JobHandle) -> None:
        """No-op: WaveSpeed documents no cancel endpoint for predictions; a job runs to its end."""

    async def find(self, ctx: SubmitContext) -> JobHandle | None:
        """Always ``None``: WaveSpeed has no lookup of a job by a client-given key."""
        return None

    # ---- webhooks (providers.wavespeed.webhooks) --------------------------------------------------
    async def verify_webhook(self, headers: Mapping[str, str], body: bytes, now: float) -> None:
        """Raise ``AuthError`` unless the delivery carries a valid ``v3`` HMAC under the secret in
        ``WAVESPEED_WEBHOOK_SECRET`` (``GET /api/v3/webhook/secret`` gives it per API key). ``now``: Unix s."""
        secret = os.environ.get("WAVESPEED_WEBHOOK_SECRET", "")
        secrets.register(secret)  # a signing secret is as sensitive as the API key
        webhooks.verify(headers, body, secret=secret, now=now)

    def parse_webhook(self, body: bytes) -> WebhookEvent:
        """A verified delivery (the prediction object) as a ``WebhookEvent``."""
        return webhooks.parse(body)

    # ---- helpers -----------------------------------------------------------------------------
    async def _upload(self, image: ImageInput, key: str) -> str:
        """POST the image bytes to ``upload/binary``; the returned ``download_url`` becomes ``image``.
        Any failure here is before the job's submit: nothing is billed."""
        name = Path(image.value).name if image.kind == "file" else f"image.{_EXTENSIONS.get(image.mime or '', 'png')}"
        files = {"file": (name, image.read_bytes(), image.mime or "application/octet-stream")}
        try:
            response = await self._ctx.http.post(translate.upload_url(self._base), files=files,
                                                 headers=self._headers(key),
                                                 timeout=self._ctx.timeout_or(UPLOAD_TIMEOUT))
        except httpx.TransportError as exc:
            raise classify_transport(self.name, exc, submitting=False) from exc
        if response.status_code != 200:
            raise translate.classify_http(response.status_code, response.content, headers=response.headers,
                                          secrets=(key,))
        return translate.parse_upload(response.content)

    async def _get(self, handle: JobHandle) -> httpx.Response:
        key = self._key()
        url = handle.data.get("result_url") or translate.result_url(handle.job_id, self._base)
        try:
            response = await self._ctx.http.get(url, headers=self._headers(key),
                                                timeout=self._ctx.timeout_or(STATUS_TIMEOUT))
        except httpx.TransportError as exc:
            raise classify_transport(self.name, exc, submitting=False) from exc
        if response.status_code != 200:
            raise translate.classify_http(response.status_code, response.content, headers=response.headers,
                                          secrets=(key,), polling=True)
        return response

    def _secret(self) -> str | None:
        return self._ctx.api_key.get_secret_value() if self._ctx.api_key is not None else None

    def _key(self) -> str:
        return require_key(self._ctx.api_key, provider=self.name, env_key=self.env_key)

    def _headers(self, key: str) -> dict[str, str]:
        """The request headers for ``key``, built once per key (httpx copies them into each request)."""
        if self._auth is None or self._auth[0] != key:
            self._auth = (key, {"Authorization": f"Bearer {key}", **self._extra_headers})
        return self._auth[1]
