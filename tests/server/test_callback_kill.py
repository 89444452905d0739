"""A client callback survives a killed server: ``serve --emulator`` (a real process) queues the ended video's
event, the receiver (a real HTTP server on loopback) is down for the first try, the server is SIGKILLed,
and the next server on the same journal delivers it from the outbox, signed so that the official openai
SDK's Standard Webhooks verifier accepts it, with the same ``webhook-id``."""

from __future__ import annotations

import base64
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest

pytestmark = pytest.mark.slow
openai = pytest.importorskip("openai")

KEY = "sk-callback-kill"
SECRET = "whsec_" + base64.b64encode(bytes(range(32))).decode()
PROMPT = "A knight in the rain. <S>I will defend this land.<E>"


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class Receiver(ThreadingHTTPServer):
    def __init__(self) -> None:
        self.down = True
        self.seen: list[tuple[int, dict[str, str], bytes]] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["content-length"]))
                code = 503 if receiver.down else 204
                receiver.seen.append((code, {k.lower(): v for k, v in self.headers.items()}, body))
                self.send_response(code)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        super().__init__(("127.0.0.1", 0), Handler)


def _serve(tmp_path, port: int) -> subprocess.Popen[bytes]:
    process = subprocess.Popen(
        [sys.executable, "-m", "gateway", "serve", "--emulator", "--port", str(port), "--api-key", KEY,
         "--journal", str(tmp_path / "journal.sqlite3"), "--media-dir", str(tmp_path / "media"),
         "--emulator-job-seconds", "0.5"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env={**os.environ,
                                                                "OVI_GATEWAY_CALLBACK_SECRET": SECRET})
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"serve exited: {process.stderr.read().decode()}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                return process
        except httpx.TransportError:
            time.sleep(0.1)
    raise AssertionError("serve did not come up")


def _until(predicate, within: float) -> None:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.1)
    raise AssertionError("timed out")


def test_a_callback_queued_before_a_kill_is_delivered_by_the_next_server(tmp_path) -> None:
    receiver = Receiver()
    threading.Thread(target=receiver.serve_forever, daemon=True).start()
    hook = f"http://127.0.0.1:{receiver.server_address[1]}/hooks/ovi"
    port = _free_port()
    first = _serve(tmp_path, port)
    try:
        answer = httpx.post(f"http://127.0.0.1:{port}/v1/videos", headers={"authorization": f"Bearer {KEY}"},
                            json={"prompt": PROMPT, "callback_url": hook}, timeout=30)
        assert answer.status_code == 200, answer.text
        video_id = answer.json()["id"]
        _until(lambda: len(receiver.seen) >= 1, within=30.0)  # tried once, refused (503)
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait()
    receiver.down = False
    second = _serve(tmp_path, _free_port())
    try:
        _until(lambda: any(code == 204 for code, _, _ in receiver.seen), within=40.0)
    finally:
        second.send_signal(signal.SIGTERM)
        second.wait(timeout=40)
        receiver.shutdown()
    delivered = [(headers, body) for code, headers, body in receiver.seen if code == 204]
    assert len(delivered) == 1
    verifier = openai.OpenAI(api_key="unused").webhooks
    for _, headers, body in receiver.seen:
        verifier.verify_signature(body, headers, secret=SECRET)
    assert {headers["webhook-id"] for _, headers, _ in receiver.seen} == {f"evt_{video_id}_completed"}
    event = json.loads(delivered[0][1])
    assert event["type"] == "video.completed" and event["data"]["id"] == video_id
