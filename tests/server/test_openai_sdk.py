"""The official openai SDK (3.57.0, ``client.videos``) against ``ovi-gateway serve --emulator``, a real
uvicorn server in another process on loopback: create with an image file and Ovi fields in
``extra_body``, retrieve until completed, download the clip; keys see only their own videos; a wrong key
is refused; and an SDK retry after a lost answer bills one clip (asserted from the emulator's ledger)."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import time

import httpx
import pytest

from gateway.emulator.clips import ClipStore
from tests.conftest import PNG_BYTES

pytestmark = pytest.mark.slow
openai = pytest.importorskip("openai")

KEY, OTHER = "sk-sdk-one", "sk-sdk-two"
PROMPT = "A knight in the rain. <S>I will defend this land.<E> <AUDCAP>Thunder.<ENDAUDCAP>"


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class Served:
    def __init__(self, tmp_path, *extra: str) -> None:
        self.port = _free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.process = subprocess.Popen(
            [sys.executable, "-m", "gateway", "serve", "--emulator", "--host", "127.0.0.1", "--port", str(self.port),
             "--api-key", KEY, "--api-key", OTHER, "--journal", str(tmp_path / "journal.sqlite3"),
             "--media-dir", str(tmp_path / "media"), "--poll-after-ms", "100", "--emulator-job-seconds", "0.5",
             *extra], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f"serve exited: {self.process.stderr.read().decode()}")
            try:
                if httpx.get(f"{self.base}/healthz", timeout=1).status_code == 200:
                    return
            except httpx.TransportError:
                time.sleep(0.1)
        raise AssertionError("serve did not come up")

    def client(self, key: str = KEY, **options) -> openai.OpenAI:
        return openai.OpenAI(api_key=key, base_url=f"{self.base}/v1", **options)

    def ledger(self) -> dict:
        return httpx.get(f"{self.base}/_emulator/ledger", headers={"authorization": f"Bearer {KEY}"}).json()

    def stop(self) -> int:
        self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout=30)
        finally:
            if self.process.poll() is None:
                self.process.kill()


def _until_completed(client, video_id: str):
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        video = client.videos.retrieve(video_id)
        if video.status in ("completed", "failed"):
            return video
        time.sleep(0.1)
    raise AssertionError("never completed")


@pytest.fixture
def served(tmp_path):
    server = Served(tmp_path)
    yield server
    assert server.stop() == 0  # SIGTERM drains and exits cleanly


def test_create_retrieve_download_with_the_official_sdk(served, tmp_path) -> None:
    image = tmp_path / "knight.png"
    image.write_bytes(PNG_BYTES)
    client = served.client()
    with image.open("rb") as file:
        video = client.videos.create(prompt=PROMPT, input_reference=file, model="ovi", seconds="5",
                                     extra_body={"seed": 0, "provider": {"order": ["fal"], "allow_fallbacks": False}})
    assert video.status == "queued" and video.seconds == "5"
    done = _until_completed(client, video.id)
    assert done.status == "completed" and done.progress == 100
    assert done.model_extra["ovi"]["provider"] == "fal" and done.model_extra["usage"]["cost"] == "0.20"
    assert client.videos.download_content(video.id).read() == ClipStore.asset("mp4")
    page = client.videos.list(limit=10)
    assert [v.id for v in page.data] == [video.id]

    with pytest.raises(openai.NotFoundError):
        served.client(OTHER).videos.retrieve(video.id)
    with pytest.raises(openai.AuthenticationError):
        served.client("sk-wrong").videos.retrieve(video.id)
    with pytest.raises(openai.BadRequestError) as refused:
        client.videos.create(prompt=PROMPT, seconds="8")
    assert refused.value.param == "seconds"
    assert len(served.ledger()["jobs"]) == 1


def test_an_sdk_retry_after_a_lost_answer_bills_once(tmp_path) -> None:
    served = Served(tmp_path, "--lose-create-answers", "1")
    try:
        client = served.client(max_retries=2)
        video = client.videos.create(prompt=PROMPT, extra_body={"seed": 3})  # 502 after the intent, then a retry
        assert _until_completed(client, video.id).status == "completed"
        jobs = served.ledger()["jobs"]
        assert len(jobs) == 1 and jobs[0]["billable"] is True
        assert [v.id for v in client.videos.list().data] == [video.id]
    finally:
        assert served.stop() == 0
