"""fal queue webhooks: verifying a delivery (ED25519 over four lines, keys from fal's JWKS) and reading it.

Verification, as fal's "Verifying Your Webhook" section is described by its outline and ≥8 independent
implementations (shared/reference/server-and-webhooks.md §1.1; the section's own text was not
retrievable): headers ``X-Fal-Webhook-Request-Id``, ``-User-Id``, ``-Timestamp`` (Unix s),
``-Signature`` (hex); the signed message is request id, user id, timestamp and the lower-case hex
SHA-256 of the raw body, joined by ``\\n``; ED25519; keys are the JWKS ``x`` values (base64url without
padding), no key id is sent so every key is tried; a timestamp more than 300 s from now is refused; and
the user id must be our own, or any fal customer's signed delivery to our URL would verify.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import re
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from gateway.contract import JobState, JobStatus, WebhookEvent
from gateway.errors import AuthError, ConfigurationError, GatewayError, MalformedResponse
from gateway.jobs.fate import is_verdict
from providers.fal import translate

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

__all__ = ["JWKS_URL", "REPLAY_WINDOW", "message", "parse", "public_keys", "verify"]

JWKS_URL = "https://rest.alpha.fal.ai/.well-known/jwks.json"
"""fal's published webhook keys (override with ``FAL_WEBHOOK_JWKS_URL``)."""
REPLAY_WINDOW = 300.0
"""Seconds a delivery's timestamp may differ from now."""
JWKS_CACHE_SECONDS = 24 * 3600.0
_HEADERS = ("x-fal-webhook-request-id", "x-fal-webhook-user-id", "x-fal-webhook-timestamp",
            "x-fal-webhook-signature")


def _ed25519() -> Any:
    """``cryptography``'s ED25519 module, imported only where a webhook is verified: the adapter itself
    (polling, the CLI's demo) must load on a base install, where the ``server`` extra is absent."""
    try:
        from cryptography.hazmat.primitives.asymmetric import ed25519
    except ImportError as exc:
        raise ConfigurationError("verifying fal webhooks needs the 'cryptography' package: "
                                 "pip install 'ovi-gateway[server]'") from exc
    return ed25519


def _refused(why: str) -> AuthError:
    return AuthError(f"fal webhook refused: {why}", provider="fal")


def public_keys(jwks: Any) -> list[Ed25519PublicKey]:
    """The ED25519 keys of a JWKS document (``kty: OKP``, ``crv: Ed25519``); others are skipped."""
    ed25519 = _ed25519()
    keys = []
    for entry in (jwks or {}).get("keys", []) if isinstance(jwks, Mapping) else []:
        if not isinstance(entry, Mapping) or entry.get("kty") != "OKP" or entry.get("crv") != "Ed25519":
            continue
        x = str(entry.get("x", ""))
        try:  # base64url without padding: pad before decoding
            keys.append(ed25519.Ed25519PublicKey.from_public_bytes(base64.urlsafe_b64decode(x + "=" * (-len(x) % 4))))
        except (ValueError, binascii.Error):
            continue
    return keys


def message(request_id: str, user_id: str, timestamp: str, body: bytes) -> bytes:
    """The signed bytes: the four lines fal signs (no trailing newline)."""
    return "\n".join((request_id, user_id, timestamp, hashlib.sha256(body).hexdigest())).encode()


def verify(headers: Mapping[str, str], body: bytes, *, keys: Sequence[Ed25519PublicKey], user_id: str,
           now: float) -> str:
    """The delivery's request id when it is authentic; ``AuthError`` otherwise (nothing is trusted)."""
    lowered = {k.lower(): v for k, v in headers.items()}
    missing = [name for name in _HEADERS if not lowered.get(name)]
    if missing:
        raise _refused("missing " + ", ".join(missing))
    request_id, sender, stamp, signature = (lowered[name] for name in _HEADERS)
    if not user_id:
        raise _refused("our fal user id is not configured (FAL_WEBHOOK_USER_ID), so no delivery can be trusted")
    if sender != user_id:
        raise _refused("the delivery names another fal user")
    try:
        when = float(stamp)
    except ValueError:
        raise _refused("timestamp is not a number") from None
    if abs(now - when) > REPLAY_WINDOW:
        raise _refused(f"timestamp is {now - when:.0f} s from now (window ±{REPLAY_WINDOW:.0f} s)")
    try:
        raw_signature = bytes.fromhex(signature)
    except ValueError:
        raise _refused("signature is not hex") from None
    signed = message(request_id, sender, stamp, body)
    if not keys:
        raise _refused("signature matches none of fal's published keys")
    from cryptography.exceptions import InvalidSignature  # keys exist, so cryptography is installed

    for key in keys:
        try:
            key.verify(raw_signature, signed)
            return request_id
        except InvalidSignature:
            continue
    raise _refused("signature matches none of fal's published keys")


def parse(body: bytes, *, request_id: str | None = None) -> WebhookEvent:
    """A verified delivery ``{request_id, status: OK|ERROR, payload, error}`` as a ``WebhookEvent``."""
    try:
        value = json.loads(body)
    except ValueError:
        raise MalformedResponse("fal webhook body is not JSON", provider="fal") from None
    if not isinstance(value, Mapping) or not isinstance(value.get("request_id"), str):
        raise MalformedResponse("fal webhook body has no request_id", provider="fal")
    job_id = value["request_id"]
    if request_id is not None and request_id not in (job_id, value.get("gateway_request_id")):
        raise AuthError("fal webhook: signed request id does not match the body", provider="fal")
    if value.get("status") == "OK" and value.get("payload") is not None:
        output = translate.parse_output(value["payload"])
        return WebhookEvent(job_id, JobStatus(JobState.SUCCEEDED, raw=value), output, trusted=True)
    if value.get("status") == "ERROR":
        error = _error_of(value)
        if error is not None:
            return WebhookEvent(job_id, JobStatus(JobState.FAILED, error=error, raw=value), trusted=True)
        # Not the vendor's word on the job (fal's platform failing, an unreadable answer): the push only
        # wakes the follower, whose status check and result read decide, as they would without it.
        return WebhookEvent(job_id, JobStatus(JobState.RUNNING, raw=value), trusted=False)
    # OK without a payload (payload_error: not serializable): the result must be fetched by polling.
    return WebhookEvent(job_id, JobStatus(JobState.RUNNING, raw=value), trusted=False)


_STATUS_CODE = re.compile(r"status code:?\s*(\d{3})\b", re.IGNORECASE)


def _error_of(value: Mapping[str, Any]) -> GatewayError | None:
    """The verdict an ``ERROR`` delivery carries, or ``None`` when it carries none (review finding 7).

    fal's webhook mirrors its result GET: ``error`` names the model's HTTP status ("Invalid status
    code: 422") and ``payload`` is that answer's body [doc docs.fal.ai/model-endpoints/webhooks]. So it
    is read exactly as the result GET is (``translate.classify_http``, phase ``result``): a content
    refusal is ``ContentRejected``, a 5xx with a job error type (not ``internal_error``) is
    ``GenerationFailed``, both verdicts; anything else (``internal_error``, a 4xx that is not a
    refusal, no status in the text) is a failed check, never a verdict.
    """
    found = _STATUS_CODE.search(str(value.get("error") or ""))
    if found is None:
        return None
    payload = value.get("payload")
    text = json.dumps(payload) if isinstance(payload, Mapping | list) else str(payload or "")
    error = translate.classify_http(int(found.group(1)), {"x-fal-request-id": str(value["request_id"])}, text,
                                    phase="result")
    return error if is_verdict(error) else None
