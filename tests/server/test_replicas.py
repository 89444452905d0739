"""Two ``ovi-gateway serve`` replicas, real processes on loopback, sharing one PostgreSQL journal and one
loopback emulator (in this process, delivering signed webhooks): a job created on replica A whose vendor
pushes to replica B completes a wait on A and on B without A polling the vendor — and, through PostgreSQL
LISTEN/NOTIFY, finishes on A with nobody asking for the video at all; SIGTERM drains A (no new
jobs, its lease released) and B finishes the job A handed back."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import time

import httpx
import psycopg
import pytest

from gateway.emulator import Emulator
from gateway.emulator.webhooks import WebhookSender

pytestmark = pytest.mark.slow

KEY = "sk-replica-test"
PROMPT = "A knight in the rain. <S>I will defend this land.<E>"
AUTH = {"authorization": f"Bearer {KEY}"}


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class Replica:
    """``serve --emulator-url`` on ``port``; vendors push to ``push_to`` (another replica, as a load
    balancer in front of both would)."""

    def __init__(self, tmp_path, journal: str, emulator_url: str, port: int, push_to: int, *extra: str) -> None:
        self.base = f"http://127.0.0.1:{port}"
        # --emulator-job-seconds 40 plans the first status poll at ~30 s: a job done in 3 s that finishes
        # sooner was finished by its push, not by polling.
        self.process = subprocess.Popen(
            [sys.executable, "-m", "gateway", "serve", "--emulator-url", emulator_url, "--port", str(port),
             "--api-key", KEY, "--journal", journal, "--media-dir", str(tmp_path / "media"),
             "--public-url", f"http://127.0.0.1:{push_to}", "--emulator-job-seconds", "40", "--poll-after-ms", "200",
             *extra],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)

    def wait_ready(self) -> None:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f"serve exited: {self.process.stderr.read().decode()}")
            try:
                if httpx.get(f"{self.base}/readyz", timeout=1).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        raise AssertionError("serve did not come up")

    def create(self) -> httpx.Response:
        return httpx.post(f"{self.base}/v1/videos", headers=AUTH, timeout=30,
                          json={"prompt": PROMPT, "input_reference": "https://example.com/k.png", "provider": "fal"})

    def video(self, video_id: str) -> dict:
        return httpx.get(f"{self.base}/v1/videos/{video_id}", headers=AUTH, timeout=30).json()

    def until_final(self, video_id: str, within: float) -> tuple[dict, float]:
        started = time.monotonic()
        while time.monotonic() - started < within:
            body = self.video(video_id)
            if body["status"] in ("completed", "failed"):
                return body, time.monotonic() - started
            time.sleep(0.2)
        raise AssertionError(f"{video_id} not final on {self.base} within {within} s: {body}")

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout=40)
        finally:
            if self.process.poll() is None:
                self.process.kill()
                self.process.wait()


@pytest.fixture
def cluster(tmp_path, pg_url, monkeypatch):
    emulator = Emulator(job_time=lambda rng: 3.0)
    emulator.deliver_webhooks(WebhookSender())
    loopback = emulator.serve(0)
    url = f"http://127.0.0.1:{loopback.server_port}"
    port_a, port_b = _free_port(), _free_port()
    b = Replica(tmp_path, pg_url, url, port_b, push_to=port_b)
    b.wait_ready()  # B migrates first; A then finds the schema there
    a = Replica(tmp_path, pg_url, url, port_a, push_to=port_b)
    a.wait_ready()
    yield a, b, emulator, pg_url
    for replica in (a, b):
        replica.stop()
    loopback.shutdown()
    loopback.server_close()


def _status_calls(emulator: Emulator, job_id: str) -> int:
    return sum(1 for vendor, op, detail in emulator.ledger.requests
               if vendor == "fal" and op == "status" and job_id in str(detail))


def _lease(pg_url: str, clip: str) -> object:
    with psycopg.connect(pg_url) as conn:
        row = conn.execute("SELECT lease_owner FROM clips WHERE key = %s", (clip,)).fetchone()
    return row[0]


def test_a_push_to_one_replica_completes_the_wait_on_the_other(cluster) -> None:
    a, b, emulator, pg_url = cluster
    answer = a.create()
    assert answer.status_code == 200, answer.text
    video_id = answer.json()["id"]
    done, took = a.until_final(video_id, within=25.0)
    assert done["status"] == "completed" and done["ovi"]["provider"] == "fal"
    assert took < 20.0  # the first planned poll is at ~30 s: the push B received ended A's wait
    assert _status_calls(emulator, done["ovi"]["vendor_job_id"]) == 0
    with psycopg.connect(pg_url) as conn:
        [(stored,)] = conn.execute("SELECT COUNT(*) FROM webhook_events WHERE clip_key = %s", (video_id,)).fetchall()
    assert stored == 1
    assert b.video(video_id)["status"] == "completed"  # B sees the same job, finished


def _states(pg_url: str, clip: str) -> list[str]:
    with psycopg.connect(pg_url) as conn:
        return [r[0] for r in conn.execute("SELECT state FROM submits WHERE clip_key = %s ORDER BY seq", (clip,))]


def test_a_push_to_one_replica_wakes_the_follower_on_the_other_without_any_get(cluster) -> None:
    """B stores fal's push and NOTIFYs; A's follower (first check planned ~30 s out, the push fallback
    90 s) wakes on its LISTEN and finishes the job from the stored delivery: nobody GETs the video."""
    a, _b, emulator, pg_url = cluster
    answer = a.create()
    assert answer.status_code == 200, answer.text
    video_id = answer.json()["id"]
    started = time.monotonic()
    while _states(pg_url, video_id) != ["succeeded"]:
        assert time.monotonic() - started < 20.0, f"not finished by its push: {_states(pg_url, video_id)}"
        time.sleep(0.2)
    [job] = [job for job in emulator.ledger.jobs if job.vendor == "fal"]
    assert _status_calls(emulator, job.job_id) == 0  # the push was the vendor's word, read from the shared table
    assert a.video(video_id)["status"] == "completed"

def test_sigterm_drains_and_the_other_replica_finishes_the_job(cluster) -> None:
    a, b, emulator, pg_url = cluster
    answer = a.create()
    assert answer.status_code == 200, answer.text
    video_id = answer.json()["id"]
    a.process.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:  # the drain has begun once /readyz says so or the listener is gone
        try:
            if httpx.get(f"{a.base}/readyz", timeout=5).status_code == 503:
                break
        except httpx.TransportError:
            break
    else:
        raise AssertionError("SIGTERM did not start a drain")
    while a.process.poll() is None:  # while draining: no new job is taken
        try:
            late = a.create()
        except httpx.TransportError:
            continue
        assert late.status_code == 503 and late.json()["error"]["code"] == "shutting_down", late.text
        time.sleep(0.02)
    assert a.stop() == 0
    assert _lease(pg_url, video_id) is None  # handed back, not left to expire
    done, _ = b.until_final(video_id, within=40.0)
    assert done["status"] == "completed"
    jobs = [job for job in emulator.ledger.jobs if job.vendor == "fal"]
    assert len(jobs) == 1  # resumed by B, never submitted again


def test_workers_share_one_port_and_the_database(tmp_path, pg_url) -> None:
    emulator = Emulator(job_time=lambda rng: 1.0)
    emulator.deliver_webhooks(WebhookSender())
    loopback = emulator.serve(0)
    port = _free_port()
    served = Replica(tmp_path, pg_url, f"http://127.0.0.1:{loopback.server_port}", port, port, "--workers", "2")
    try:
        served.wait_ready()
        ids = []
        for _ in range(4):
            answer = served.create()
            assert answer.status_code == 200, answer.text
            ids.append(answer.json()["id"])
        for video_id in ids:  # any worker answers for any video: the rows are in PostgreSQL
            assert served.until_final(video_id, within=30.0)[0]["status"] == "completed"
        listed = httpx.get(f"{served.base}/v1/videos?limit=10", headers=AUTH, timeout=30).json()
        assert sorted(v["id"] for v in listed["data"]) == sorted(ids)
        assert len(emulator.ledger.jobs) == 4
    finally:
        assert served.stop() == 0
        loopback.shutdown()
        loopback.server_close()
