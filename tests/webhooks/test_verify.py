"""The vendors' webhook checks on their own: what verifies, and every way a delivery is refused."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from gateway.contract import JobState
from gateway.emulator.webhooks import FAL_TEST_KEY, fal_jwks
from gateway.errors import AuthError
from providers.fal import webhooks as fal
from providers.wavespeed import webhooks as ws

NOW = 1_760_000_000.0
BODY = json.dumps({"error": None, "gateway_request_id": "r1", "payload": {
    "video": {"url": "https://v3.fal.media/files/r1/o.mp4"}, "seed": 4}, "request_id": "r1", "status": "OK"}).encode()


def _fal_headers(body: bytes = BODY, *, user: str = "me", stamp: float = NOW, key=FAL_TEST_KEY) -> dict[str, str]:
    signed = fal.message("r1", user, str(int(stamp)), body)
    return {"X-Fal-Webhook-Request-Id": "r1", "X-Fal-Webhook-User-Id": user,
            "X-Fal-Webhook-Timestamp": str(int(stamp)), "X-Fal-Webhook-Signature": key.sign(signed).hex()}


def test_fal_jwks_keys_are_unpadded_base64url_and_parse() -> None:
    jwks = fal_jwks()
    assert "=" not in jwks["keys"][0]["x"] and len(fal.public_keys(jwks)) == 1
    assert fal.public_keys({"keys": [{"kty": "RSA", "n": "x"}]}) == []


def test_fal_verifies_and_reads_the_delivery() -> None:
    keys = fal.public_keys(fal_jwks())
    assert fal.verify(_fal_headers(), BODY, keys=keys, user_id="me", now=NOW) == "r1"
    event = fal.parse(BODY)
    assert event.trusted and event.status.state == JobState.SUCCEEDED and event.output.seed == 4


@pytest.mark.parametrize(("change", "reason"), [
    ({"user": "someone-else"}, "another fal user"),
    ({"stamp": NOW - 301}, "window"),
    ({"stamp": NOW + 301}, "window"),
    ({"key": Ed25519PrivateKey.generate()}, "none of fal's published keys"),
])
def test_fal_refuses(change, reason) -> None:
    keys = fal.public_keys(fal_jwks())
    user = change.pop("user", "me")
    headers = _fal_headers(user=user, **change)
    with pytest.raises(AuthError, match=reason):
        fal.verify(headers, BODY, keys=keys, user_id="me", now=NOW)


def test_fal_refuses_a_changed_body_and_an_unset_user_id() -> None:
    keys = fal.public_keys(fal_jwks())
    with pytest.raises(AuthError, match="none of"):
        fal.verify(_fal_headers(), BODY.replace(b"o.mp4", b"x.mp4"), keys=keys, user_id="me", now=NOW)
    with pytest.raises(AuthError, match="not configured"):
        fal.verify(_fal_headers(), BODY, keys=keys, user_id="", now=NOW)


WS_BODY = json.dumps({"id": "p1", "status": "completed", "outputs": ["https://x/o.mp4"],
                      "has_nsfw_contents": [False], "model": "m", "created_at": "2026-01-01T00:00:00Z",
                      "error": ""}).encode()
SECRET = "whsec_c2VjcmV0"  # base64 of "secret": the key is the text itself, never decoded


def test_wavespeed_signs_with_the_raw_text_after_whsec() -> None:
    expected = hmac.new(b"c2VjcmV0", b"p1.1760000000." + WS_BODY, hashlib.sha256).hexdigest()
    assert ws.sign(SECRET, "p1", "1760000000", WS_BODY) == "v3," + expected
    decoded = hmac.new(base64.b64decode("c2VjcmV0"), b"p1.1760000000." + WS_BODY, hashlib.sha256).hexdigest()
    assert expected != decoded


def test_wavespeed_verifies_and_refuses() -> None:
    headers = {"webhook-id": "p1", "webhook-timestamp": "1760000000",
               "webhook-signature": ws.sign(SECRET, "p1", "1760000000", WS_BODY)}
    assert ws.verify(headers, WS_BODY, secret=SECRET, now=NOW) == "p1"
    assert ws.parse(WS_BODY).output.video_url == "https://x/o.mp4"
    for bad in ({**headers, "webhook-signature": headers["webhook-signature"].replace("v3,", "v1,")},
                {**headers, "webhook-timestamp": "1759999000"},
                {k: v for k, v in headers.items() if k != "webhook-signature"}):
        with pytest.raises(AuthError):
            ws.verify(bad, WS_BODY, secret=SECRET, now=NOW)
    with pytest.raises(AuthError, match="bad signature"):
        ws.verify(headers, WS_BODY + b" ", secret=SECRET, now=NOW)
