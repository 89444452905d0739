"""Webhook delivery by the emulated vendors, as each vendor documents it, signed with test keys.

* fal: POST ``{request_id, gateway_request_id, status: OK|ERROR, payload, error}`` with
  ``X-Fal-Webhook-{Request-Id,User-Id,Timestamp,Signature}``, ED25519 over the four lines
  (request id, user id, timestamp, SHA-256 hex of the body) under ``FAL_TEST_KEY``, whose JWKS the
  emulator serves at fal's JWKS host (``rest.alpha.fal.ai/.well-known/jwks.json``, and on loopback);
* WaveSpeed: POST the prediction ``data`` object with ``webhook-id`` / ``-timestamp`` /
  ``-signature: v3,<hex HMAC-SHA256 of id.timestamp.body>`` keyed by ``WAVESPEED_TEST_SECRET``'s text
  after ``whsec_``;
* Runware: POST the flat task object (what ``getResponse`` holds for the task), unsigned.

Deliveries leave when the job ends (on the emulator's clock), from an asyncio task in the loop that
submitted the job, through ``transport`` (an ASGI transport in tests, loopback HTTP under ``serve``).
Faults per vendor, a sequence then ``ok``: ``duplicate`` (sent twice), ``delayed`` (``delay`` s late),
``early`` (Runware only, out of order: the unsigned push comes ``delay`` s before the job is done, so
the confirming status check still says running; elsewhere it counts as ``ok``), ``bad_signature``
(signature corrupted; fal and WaveSpeed), ``never`` (not sent), and ``internal_error`` (fal only): an
``ERROR`` delivery carrying what fal's result GET answers when its own platform fails (HTTP 500,
``error_type: internal_error``, one of fal's documented error types) while the job itself completes,
so a later status check and result read find the clip (elsewhere it counts as ``ok``).
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import os
import time
from collections.abc import Callable, Mapping
from typing import Any

import httpx
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from gateway.emulator.base import EmulatedJob, EmulatedVendor

__all__ = ["FAL_TEST_KEY", "FAL_TEST_USER", "WAVESPEED_TEST_SECRET", "WEBHOOK_FAULTS", "WebhookSender", "fal_jwks",
           "trust_test_keys"]

FAL_TEST_KEY = Ed25519PrivateKey.from_private_bytes(hashlib.sha256(b"ovi-gateway emulator fal webhook key").digest())
"""The emulator's fal signing key (a test key: its private half is in this file)."""
FAL_TEST_USER = "emulated-fal-user"
"""The fal user id the emulator's deliveries name (set ``FAL_WEBHOOK_USER_ID`` to it)."""
WAVESPEED_TEST_SECRET = "whsec_emulated-wavespeed-webhook-secret"
"""The emulator's WaveSpeed webhook secret (set ``WAVESPEED_WEBHOOK_SECRET`` to it)."""
WEBHOOK_FAULTS = ("ok", "duplicate", "delayed", "early", "bad_signature", "never", "internal_error")


def trust_test_keys() -> None:
    """Point the adapters' webhook checks at the emulator's test identities (unless already set):
    ``FAL_WEBHOOK_USER_ID`` and ``WAVESPEED_WEBHOOK_SECRET``. Only for a gateway on the emulator."""
    os.environ.setdefault("FAL_WEBHOOK_USER_ID", FAL_TEST_USER)
    os.environ.setdefault("WAVESPEED_WEBHOOK_SECRET", WAVESPEED_TEST_SECRET)


def fal_jwks() -> dict[str, Any]:
    """The JWKS document fal would publish for ``FAL_TEST_KEY`` (``x`` base64url, no padding)."""
    raw = FAL_TEST_KEY.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    return {"keys": [{"kty": "OKP", "crv": "Ed25519", "use": "sig",
                      "x": base64.urlsafe_b64encode(raw).rstrip(b"=").decode()}]}


class WebhookSender:
    """Sends the emulated vendors' webhooks.

    Args:
        transport: how deliveries reach the receiver (default: real HTTP).
        wall: Unix seconds for signature timestamps (default ``time.time``).
        faults: per vendor, a list of ``WEBHOOK_FAULTS`` consumed one per delivery.
        delay: seconds for ``delayed`` and ``early``.
    """

    def __init__(self, *, transport: httpx.AsyncBaseTransport | None = None, wall: Callable[[], float] = time.time,
                 faults: Mapping[str, list[str]] | None = None, delay: float = 30.0) -> None:
        unknown = {f for kinds in (faults or {}).values() for f in kinds} - set(WEBHOOK_FAULTS)
        if unknown:
            raise ValueError(f"unknown webhook fault(s) {sorted(unknown)}; use {', '.join(WEBHOOK_FAULTS)}")
        self.transport = transport
        self.wall = wall
        self.faults = {vendor: list(kinds) for vendor, kinds in (faults or {}).items()}
        self.delay = delay
        self.sent: list[tuple[str, str, int]] = []
        """(vendor, job id, HTTP status of the answer) per delivery made."""
        self._tasks: set[asyncio.Task[None]] = set()
        self._clients: dict[asyncio.AbstractEventLoop, httpx.AsyncClient] = {}

    def _client(self) -> httpx.AsyncClient:
        """One client per event loop, kept: a new ``httpx.AsyncClient`` builds an SSL context (~20 ms of
        CPU here), which under ``serve --emulator`` the server's own process would pay for every push."""
        loop = asyncio.get_running_loop()
        for stale in [old for old in self._clients if old.is_closed()]:
            del self._clients[stale]
        client = self._clients.get(loop)
        if client is None:
            client = self._clients[loop] = httpx.AsyncClient(transport=self.transport, timeout=15.0)
        return client

    async def aclose(self) -> None:
        """Close this event loop's client (deliveries after it open a new one)."""
        client = self._clients.pop(asyncio.get_running_loop(), None)
        if client is not None:
            await client.aclose()

    def schedule(self, vendor: EmulatedVendor, job: EmulatedJob, url: str) -> None:
        """Deliver ``job``'s webhook to ``url`` when it ends (needs a running event loop)."""
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return  # a threaded loopback server without a loop: no push, the client polls
        task = loop.create_task(self._deliver(vendor, job, url))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def drain(self) -> None:
        """Wait for every scheduled delivery (tests)."""
        while self._tasks:
            await asyncio.wait(set(self._tasks))

    async def _deliver(self, vendor: EmulatedVendor, job: EmulatedJob, url: str) -> None:
        queue = self.faults.get(vendor.name) or []
        fault = queue.pop(0) if queue else "ok"
        if fault == "never" or job.fate == "stuck":
            return
        if fault == "early" and vendor.name != "runware":
            fault = "ok"  # a signed push settles the job: an early one would be a vendor lying
        if fault == "internal_error" and vendor.name != "fal":
            fault = "ok"
        ends = job.created_at + job.queue_time + job.duration
        shift = self.delay if fault == "delayed" else -self.delay if fault == "early" else 0.0
        await vendor.clock.sleep(max(0.0, ends + shift - vendor.clock.now()))
        if job.cancelled and vendor.name != "fal":
            return
        with vendor.lock:
            body, headers = self._body(vendor, job, platform_error=fault == "internal_error")
        if fault == "bad_signature":
            headers = _corrupt(headers)
        http = self._client()
        for _ in range(2 if fault == "duplicate" else 1):
            try:
                answer = await http.post(url, content=body, headers={"content-type": "application/json", **headers})
                self.sent.append((vendor.name, job.job_id, answer.status_code))
            except httpx.HTTPError:
                self.sent.append((vendor.name, job.job_id, 0))

    def _body(self, vendor: EmulatedVendor, job: EmulatedJob, *,
              platform_error: bool = False) -> tuple[bytes, dict[str, str]]:
        stamp = str(int(self.wall()))
        if vendor.name == "fal":
            url = f"{job.extra['base']}/{job.extra['endpoint']}/requests/{job.job_id}"
            answer = vendor._result(httpx.Request("GET", url), job)  # type: ignore[attr-defined]
            if platform_error:  # fal's platform failed on this read; the job's own result is unharmed
                answer = httpx.Response(500, json={"detail": "Internal server error", "error_type": "internal_error"})
            result = json.loads(answer.content)
            ok = answer.status_code == 200
            value = {"error": None if ok else f"Invalid status code: {answer.status_code}",
                     "gateway_request_id": job.job_id, "payload": result,
                     "payload_error": None, "request_id": job.job_id, "status": "OK" if ok else "ERROR"}
            body = json.dumps(value).encode()  # Python's ", " / ": " separators, as fal's own deliveries
            digest = hashlib.sha256(body).hexdigest()
            signed = "\n".join((job.job_id, FAL_TEST_USER, stamp, digest)).encode()
            return body, {"x-fal-webhook-request-id": job.job_id, "x-fal-webhook-user-id": FAL_TEST_USER,
                          "x-fal-webhook-timestamp": stamp, "x-fal-webhook-signature": FAL_TEST_KEY.sign(signed).hex()}
        if vendor.name == "wavespeed":
            state = vendor.settle(job)
            status = "completed" if state == "succeeded" else "failed"
            request = httpx.Request("GET", f"https://api.wavespeed.ai/api/v3/predictions/{job.job_id}/result")
            data = vendor._envelope(job, status, request, nsfw=state == "nsfw")["data"]  # type: ignore[attr-defined]
            body = json.dumps(data).encode()
            key = WAVESPEED_TEST_SECRET[len("whsec_"):].encode()
            mac = hmac.new(key, f"{job.job_id}.{stamp}.".encode() + body, hashlib.sha256).hexdigest()
            return body, {"webhook-id": job.job_id, "webhook-timestamp": stamp, "webhook-signature": f"v3,{mac}"}
        request = httpx.Request("POST", "https://api.runware.ai/v1")
        item, error = vendor._poll({"taskUUID": job.job_id}, request)  # type: ignore[attr-defined]
        task = item if item is not None else error[1]
        return json.dumps(task).encode(), {}


def _corrupt(headers: dict[str, str]) -> dict[str, str]:
    out = dict(headers)
    for name in ("x-fal-webhook-signature", "webhook-signature"):
        if name in out:
            value = out[name]
            out[name] = value[:-4] + ("0000" if not value.endswith("0000") else "1111")
    return out
