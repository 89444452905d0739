"""WaveSpeed webhooks: HMAC-SHA256 verification and reading the pushed prediction.

[doc https://wavespeed.ai/docs/docs-api/verifying_webhook] headers ``webhook-id``, ``webhook-timestamp``
(Unix s), ``webhook-signature`` = ``v3,<hex>``; the signed string is ``{id}.{timestamp}.{raw body}``;
HMAC-SHA256, lower-case hex, compared in constant time; the key is the secret's text after ``whsec_``
as raw UTF-8 bytes (not base64-decoded: this is *not* Standard Webhooks); ±300 s. The body is the
prediction ``data`` object without the ``{code, message}`` envelope [doc how-to-use-webhooks].
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Mapping
from typing import Any

from gateway.contract import JobHandle, JobState, JobStatus, WebhookEvent
from gateway.errors import AuthError, MalformedResponse
from providers.wavespeed import translate

__all__ = ["REPLAY_WINDOW", "parse", "sign", "verify"]

REPLAY_WINDOW = 300.0


def _key(secret: str) -> bytes:
    return (secret[len("whsec_"):] if secret.startswith("whsec_") else secret).encode("utf-8")


def sign(secret: str, webhook_id: str, timestamp: str, body: bytes) -> str:
    """The ``webhook-signature`` header value for a delivery (``v3,<hex>``)."""
    mac = hmac.new(_key(secret), f"{webhook_id}.{timestamp}.".encode() + body, hashlib.sha256)
    return "v3," + mac.hexdigest()


def verify(headers: Mapping[str, str], body: bytes, *, secret: str, now: float) -> str:
    """The ``webhook-id`` when the delivery is authentic; ``AuthError`` otherwise."""
    lowered = {k.lower(): v for k, v in headers.items()}
    webhook_id, stamp, signature = (lowered.get(n, "") for n in ("webhook-id", "webhook-timestamp",
                                                                   "webhook-signature"))
    if not (webhook_id and stamp and signature):
        raise AuthError("WaveSpeed webhook refused: missing webhook-id, -timestamp or -signature", provider="wavespeed")
    if not secret:
        raise AuthError("WaveSpeed webhook refused: no signing secret configured (WAVESPEED_WEBHOOK_SECRET)",
                        provider="wavespeed")
    version, _, digest = signature.partition(",")
    if version != "v3" or not digest or " " in digest:
        raise AuthError("WaveSpeed webhook refused: signature must be one 'v3,<hex>'", provider="wavespeed")
    try:
        when = float(stamp)
    except ValueError:
        raise AuthError("WaveSpeed webhook refused: timestamp is not a number", provider="wavespeed") from None
    if abs(now - when) > REPLAY_WINDOW:
        raise AuthError(f"WaveSpeed webhook refused: timestamp {now - when:.0f} s from now", provider="wavespeed")
    if not hmac.compare_digest(sign(secret, webhook_id, stamp, body), f"v3,{digest.lower()}"):
        raise AuthError("WaveSpeed webhook refused: bad signature", provider="wavespeed")
    return webhook_id


def parse(body: bytes) -> WebhookEvent:
    """A verified delivery (the prediction object) as a ``WebhookEvent``."""
    try:
        value: Any = json.loads(body)
    except ValueError:
        raise MalformedResponse("WaveSpeed webhook body is not JSON", provider="wavespeed") from None
    if not isinstance(value, Mapping) or not isinstance(value.get("id"), str):
        raise MalformedResponse("WaveSpeed webhook body has no id", provider="wavespeed")
    job_id = value["id"]
    envelope = {"code": 200, "message": "success", "data": value}
    # The status poll's own reading (``translate.status_of``): ``failed`` and the SDK's other terminal
    # statuses are the task's end, classified by code (1200 → ContentRejected); anything else is no verdict.
    status = translate.status_of(envelope)
    if status.state is JobState.SUCCEEDED:
        output = translate.parse_output(envelope, JobHandle("wavespeed", job_id))
        return WebhookEvent(job_id, JobStatus(JobState.SUCCEEDED, raw=value), output, trusted=True)
    if status.state is JobState.FAILED:
        return WebhookEvent(job_id, JobStatus(JobState.FAILED, error=status.error, raw=value), trusted=True)
    return WebhookEvent(job_id, JobStatus(JobState.RUNNING, raw=value), trusted=False)
