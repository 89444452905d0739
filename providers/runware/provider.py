"""The Runware adapter's I/O shell: one POST per call to ``https://api.runware.ai/v1``.

Every request is a JSON array of tasks with ``Authorization: Bearer <key>``. Building payloads,
reading answers and mapping errors is in ``translate.py``; this module only sends and receives.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from gateway.contract import (
    CONTRACT_VERSION,
    JobHandle,
    JobState,
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
from gateway.request import OviRequest
from providers.runware.capabilities import CAPABILITIES, PROVIDER

if TYPE_CHECKING:
    import httpx

    from providers.runware import translate
else:  # translation and wire schemas load on the first call, not when the registry reads the class (gateway.lazy)
    httpx = LazyModule("httpx", globals())
    translate = LazyModule("providers.runware.translate", globals())

__all__ = ["RunwareProvider"]

_log = logging.getLogger("providers.runware")

# (connect, read, write, pool) seconds, httpx's tuple form, so importing this module imports no httpx
SUBMIT_TIMEOUT: StepTimeout = (10.0, 60.0, 60.0, 60.0)
STATUS_TIMEOUT: StepTimeout = (10.0, 30.0, 30.0, 30.0)
UPLOAD_TIMEOUT: StepTimeout = (10.0, 120.0, 120.0, 120.0)


class RunwareProvider:
    """Ovi ``runware:190@1`` on Runware: image-to-video, async delivery, polled with ``getResponse``.

    Our idempotency key is the ``taskUUID``, so an ambiguous submit is reconciled with ``find``.
    ``ctx.options["base_url"]`` points the adapter elsewhere (the loopback emulator), default
    ``https://api.runware.ai/v1``.
    """

    name = PROVIDER
    contract_version = CONTRACT_VERSION
    env_key = "RUNWARE_API_KEY"
    capabilities = CAPABILITIES
    reconcilable = True
    result_retention_s = None
    """Runware documents no lifetime for a generated video's URL (only uploaded images: 30 days after
    last use), so results say the expiry is unknown."""
    media_url_lifetime_s = None
    """UNCONFIRMED: the request's ``ttl`` (seconds, min 60, URL outputs) sets how long the video URL lives
    [seeds/runware-video-inference-api.md]; we send none and the default is undocumented."""
    accepted_options = frozenset({"base_url"})

    def __init__(self, ctx: ProviderContext) -> None:
        self._ctx = ctx
        self._url = str(ctx.options.get("base_url") or translate.API_URL)
        self._parsed_url = httpx.URL(self._url)  # parsed once: every call POSTs to this one URL
        # The gateway's client already sends our User-Agent; a caller's own client gets it per request.
        sends_ours = getattr(ctx.http, "headers", {}).get("user-agent") == USER_AGENT
        self._extra_headers = {"accept": "application/json"} | ({} if sends_ours else {"user-agent": USER_AGENT})
        self._auth: tuple[str, dict[str, str]] | None = None

    def __repr__(self) -> str:
        return f"RunwareProvider(url={self._url!r})"

    # ---- pure parts -------------------------------------------------------------------------
    def translate(self, request: OviRequest, ctx: SubmitContext) -> list[dict[str, Any]]:
        """The exact task array Runware receives; a local image file is inlined as a data URI."""
        return translate.build_payload(request, ctx)

    def parse(self, final: Any, handle: JobHandle) -> ProviderOutput:
        """The clip from a final ``getResponse`` body or a bare result item (pure)."""
        return translate.parse_output(final, handle.job_id)

    def classify(self, error: BaseException | httpx.Response) -> GatewayError:
        """A Runware answer or exception in our taxonomy (pure; the key is redacted)."""
        return translate.classify(error, secrets=[self._secret()])

    # ---- I/O ----------------------------------------------------------------------------------
    async def submit(self, request: OviRequest, ctx: SubmitContext) -> JobHandle:
        """Send the ``videoInference`` task once. A local image whose data URI is over 5 MB is sent
        through ``imageUpload`` first (one extra POST, not billed) and referenced by its UUID."""
        key = self._key()
        payload = self.translate(request, ctx)
        image = payload[0]["inputs"]["image"]
        assert request.image is not None
        if request.image.kind == "file" and len(image) > translate.INLINE_IMAGE_LIMIT:
            payload = translate.with_image(payload, await self._upload(image, key))
        hint = {"provider": self.name, "idempotency_key": ctx.idempotency_key, "job_id": ctx.idempotency_key}
        response = await self._post(payload, key, SUBMIT_TIMEOUT, submitting=True, job_hint=hint)
        return translate.handle_from_submit(response.status_code, response.headers, response.content,
                                            task_uuid=ctx.idempotency_key, secrets=[key])

    async def status(self, handle: JobHandle) -> JobStatus:
        """One ``getResponse`` for the task."""
        key = self._key()
        response = await self._post(translate.poll_payload(handle.job_id), key, STATUS_TIMEOUT)
        return translate.status_from(response.status_code, response.headers, response.content,
                                     task_uuid=handle.job_id, secrets=[key])

    async def result(self, handle: JobHandle, last: JobStatus) -> ProviderOutput:
        """Runware's ``success`` item already holds the result: no extra call."""
        return translate.parse_output(last.raw, handle.job_id)

    async def cancel(self, handle: JobHandle) -> None:
        """A no-op: Runware documents no way to cancel a REST ``videoInference`` task.

        The task runs to its end and is billed by Runware regardless; the runner just stops polling.
        """
        return None

    async def find(self, ctx: SubmitContext) -> JobHandle | None:
        """One ``getResponse`` for ``ctx.idempotency_key``: its handle when Runware knows the task,
        ``None`` when Runware answers that no such task exists."""
        key = self._key()
        response = await self._post(translate.poll_payload(ctx.idempotency_key), key, STATUS_TIMEOUT)
        return translate.find_from(response.status_code, response.headers, response.content,
                                   task_uuid=ctx.idempotency_key, secrets=[key])

    # ---- webhooks ---------------------------------------------------------------------------
    async def verify_webhook(self, headers: Mapping[str, str], body: bytes, now: float) -> None:
        """Runware signs nothing [doc runware.ai/docs/platform/webhooks]: authenticity rests on the per-job
        token in the URL (checked by ``gateway.webhooks``); the push is never trusted as a result."""

    def parse_webhook(self, body: bytes) -> WebhookEvent:
        """The pushed task object's ``taskUUID``, as an untrusted hint: the follower confirms with one
        ``getResponse`` before anything counts (the body's shape on failure is undocumented)."""
        try:
            value = json.loads(body)
        except ValueError:
            raise MalformedResponse("Runware webhook body is not JSON", provider=self.name) from None
        enveloped = isinstance(value, dict) and isinstance(value.get("data"), list) and value["data"]
        task = value["data"][0] if enveloped else value  # flat per the vendor's checklist; tolerate the envelope
        if not isinstance(task, dict) or not isinstance(task.get("taskUUID"), str):
            raise MalformedResponse("Runware webhook body has no taskUUID", provider=self.name)
        return WebhookEvent(task["taskUUID"], JobStatus(JobState.RUNNING, raw=task), trusted=False)

    # ---- plumbing ---------------------------------------------------------------------------
    def _secret(self) -> str | None:
        return None if self._ctx.api_key is None else self._ctx.api_key.get_secret_value()

    def _key(self) -> str:
        return require_key(self._ctx.api_key, provider=self.name, env_key=self.env_key)

    async def _upload(self, data_uri: str, key: str) -> str:
        task_uuid = self._ctx.new_id()
        response = await self._post(translate.upload_payload(task_uuid, data_uri), key, UPLOAD_TIMEOUT)
        return translate.uploaded_image(response.status_code, response.headers, response.content,
                                        task_uuid=task_uuid, secrets=[key])

    async def _post(self, payload: list[dict[str, Any]], key: str, timeout: StepTimeout, *,
                    submitting: bool = False, job_hint: dict[str, Any] | None = None) -> httpx.Response:
        if self._auth is None or self._auth[0] != key:  # built once per key: httpx copies them per request
            self._auth = (key, {"authorization": f"Bearer {key}", **self._extra_headers})
        try:
            response = await self._ctx.http.post(self._parsed_url, json=payload, headers=self._auth[1],
                                                 timeout=self._ctx.timeout_or(timeout))
        except httpx.TransportError as exc:
            raise classify_transport(self.name, exc, submitting=submitting, job_hint=job_hint) from exc
        if _log.isEnabledFor(logging.DEBUG):
            tasks = ",".join(str(task.get("taskType")) for task in payload)
            _log.debug("POST %s (%s) answered HTTP %d", self._url, tasks, response.status_code)
        return response
