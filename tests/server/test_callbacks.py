"""Client callbacks in process and virtual time: ``callback_url`` refusals naming the field, and an ended
video's event signed as Standard Webhooks, verified by the official openai SDK's verifier (code we did not
write), retried with backoff from the outbox and delivered once queued."""

from __future__ import annotations

import base64
import json
import time

import httpx
import openai
import pytest

from gateway.client import Gateway
from gateway.clock import VirtualClock
from gateway.emulator import Emulator
from gateway.errors import ConfigurationError
from gateway.jobs.polling import PollPolicy
from gateway.server import create_app
from gateway.server.callbacks import check_callback_url, parse_secret, sign
from gateway.server.forms import BadField

pytestmark = pytest.mark.anyio

KEY = "sk-callback-test"
SECRET = "whsec_" + base64.b64encode(b"k" * 32).decode()
PROMPT = "A knight in the rain. <S>I will defend this land.<E>"
HOOK = "http://127.0.0.1:9/hooks/ovi"


class Receiver:
    """An ASGI receiver: answers ``codes`` in turn (then 200) and keeps every request."""

    def __init__(self, codes: list[int]) -> None:
        self.codes = codes
        self.seen: list[tuple[dict[str, str], bytes]] = []

    async def __call__(self, scope, receive, send) -> None:
        assert scope["type"] == "http"
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        self.seen.append(({k.decode(): v.decode() for k, v in scope["headers"]}, body))
        code = self.codes.pop(0) if self.codes else 200
        await send({"type": "http.response.start", "status": code, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})


def verify(headers: dict[str, str], body: bytes) -> None:
    openai.OpenAI(api_key="unused").webhooks.verify_signature(body, headers, secret=SECRET)


@pytest.fixture
async def served(tmp_path):
    clock = VirtualClock()
    emulator = Emulator(clock=clock, seed=3, job_time=lambda rng: 20.0)
    gateway = Gateway(emulator=emulator, clock=clock, journal=str(tmp_path / "j.sqlite3"), jitter_seed=3,
                      poll=PollPolicy(expected=20.0, interval=2.0, min_interval={}))
    start = time.time()
    gateway.journal.wall = lambda: start + clock.now()  # outbox backoff on the virtual clock, near real time
    receiver = Receiver([500])
    app = create_app(gateway, api_keys=[KEY], media_dir=tmp_path / "media", emulator=True, callback_secret=SECRET,
                     callback_transport=httpx.ASGITransport(app=receiver))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gw",
                                 headers={"authorization": f"Bearer {KEY}"}) as http:
        yield clock, gateway, app.state.server, receiver, http
    await app.state.server.callbacks.close()
    await gateway.aclose()


async def test_an_ended_video_is_called_back_signed_retried_and_delivered_once(served) -> None:
    clock, gateway, server, receiver, http = served
    answer = await http.post("/v1/videos", json={"prompt": PROMPT, "callback_url": HOOK})
    assert answer.status_code == 200, answer.text
    video_id = answer.json()["id"]
    assert await server.callbacks.round() == 0 and receiver.seen == []  # not ended: nothing queued
    for _ in range(60):
        if (await http.get(f"/v1/videos/{video_id}")).json()["status"] == "completed":
            break
        await clock.sleep(2.0)
    assert await server.callbacks.round() == 1  # queued and tried: the receiver answers 500
    assert await server.callbacks.round() == 0  # not due again before the backoff
    [row] = gateway.journal.outbox_rows(video_id)
    assert row["attempts"] == 1 and row["last_error"] == "HTTP 500" and row["delivered_at"] is None
    await clock.sleep(5.0)
    assert await server.callbacks.round() == 1
    assert await server.callbacks.round() == 0  # delivered: never sent again
    assert len(receiver.seen) == 2
    for headers, body in receiver.seen:
        verify(headers, body)
    (first, body), (second, again) = receiver.seen
    assert first["webhook-id"] == second["webhook-id"] == f"evt_{video_id}_completed" and body == again
    event = json.loads(body)
    assert event["type"] == "video.completed" and event["data"]["id"] == video_id
    assert event["data"]["status"] == "completed" and event["data"]["usage"]["cost"] is not None
    with pytest.raises(openai.InvalidWebhookSignatureError):  # the verifier can fail: a changed body
        verify(first, body.replace(b"completed", b"failed"))
    [row] = gateway.journal.outbox_rows(video_id)
    assert row["attempts"] == 2 and row["delivered_at"] is not None
    text = (await http.get("/metrics")).text
    assert 'ovi_callback_deliveries_total{outcome="delivered"} 1.0' in text
    assert 'ovi_callback_deliveries_total{outcome="failed"} 1.0' in text


async def test_callback_url_refusals_name_the_field(served, tmp_path) -> None:
    _, _, _, _, http = served
    for url in ("http://hooks.example.com/x", "https://10.0.0.7/x", "https://localhost.localdomain/x", "ftp://a/b"):
        answer = await http.post("/v1/videos", json={"prompt": PROMPT, "callback_url": url})
        assert answer.status_code == 400 and answer.json()["error"]["param"] == "callback_url", url
    assert check_callback_url("https://hooks.example.com/x", emulator=False) == "https://hooks.example.com/x"
    with pytest.raises(BadField, match="public https"):  # loopback only in emulator mode
        check_callback_url("https://127.0.0.1/x", emulator=False)
    assert check_callback_url("http://[::1]:8080/x", emulator=True)


async def test_without_a_secret_callbacks_are_refused(tmp_path) -> None:
    gateway = Gateway(emulator=Emulator(seed=1), journal=str(tmp_path / "j.sqlite3"))
    app = create_app(gateway, api_keys=[KEY], media_dir=tmp_path / "media", emulator=True)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gw",
                                 headers={"authorization": f"Bearer {KEY}"}) as http:
        answer = await http.post("/v1/videos", json={"prompt": PROMPT, "callback_url": HOOK})
    await gateway.aclose()
    assert answer.status_code == 400 and answer.json()["error"]["param"] == "callback_url"
    assert answer.json()["error"]["code"] == "callbacks_off"


def test_secrets_must_be_standard_webhooks_keys() -> None:
    for bad in ("plain", "whsec_%%%", "whsec_" + base64.b64encode(b"short").decode()):
        with pytest.raises(ConfigurationError):
            parse_secret(bad)
    key = parse_secret(SECRET)
    headers = sign(key, "evt_1", 1_700_000_000, '{"a":1}')
    assert headers["webhook-signature"].startswith("v1,") and headers["webhook-timestamp"] == "1700000000"


async def test_a_name_resolving_inside_is_never_called(tmp_path) -> None:
    from gateway.server.callbacks import Callbacks

    async def no_event(owner: str, video_id: str) -> None:
        return None

    async def no_sleep(seconds: float) -> None:
        return None

    drainer = Callbacks(None, parse_secret(SECRET), no_event, owner="t", sleep=no_sleep)
    assert "non-public" in str(await drainer._target("https://localhost/hook"))  # /etc/hosts: loopback
    assert "not a public address" in str(await drainer._target("https://[::ffff:127.0.0.1]/hook"))
    target = await drainer._target("https://93.184.216.34/hook")
    assert not isinstance(target, str) and target.url == "https://93.184.216.34/hook"
    await drainer._http.aclose()
