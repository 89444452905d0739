"""The official ``runware`` SDK (0.5.24, WebSocket) completes Ovi jobs against the loopback emulator.

``runware.Runware(api_key=..., url="ws://127.0.0.1:PORT/v1")``: authentication and its error, ping/pong,
``videoInference`` + ``getResponse``, error frames for failed and refused jobs, ``conflictTaskUUID``, and the
SDK's reconnect-and-resend of the same ``taskUUID`` after a lost answer (one job billed). The SDK reads
``RUNWARE_VIDEO_INITIAL_TIMEOUT`` (ack and poll wait, default 30 s) at import, so the in-process tests patch
the value it imported; the ``ovi-gateway emulate`` test runs the SDK in a child process with the variable set.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import runware
import runware.base
from runware import IVideoInference, IVideoInputs

from gateway.emulator import Emulator
from gateway.emulator.clips import ClipStore

pytestmark = [pytest.mark.slow, pytest.mark.anyio]

PROMPT = "A knight in the rain. <S>I will defend this land.<E> <AUDCAP>Thunder.<ENDAUDCAP>"
KEY = "rw-test-key"
SDK_TIMEOUTS = {"RUNWARE_VIDEO_INITIAL_TIMEOUT": "300", "RUNWARE_VIDEO_POLLING_DELAY": "50"}
"""Milliseconds: the SDK's ack/poll wait and its delay between polls."""


@pytest.fixture(scope="module")
def served() -> Iterator[tuple[Emulator, Any]]:
    emulator = Emulator(job_time=lambda rng: 0.3, api_keys={"runware": KEY})  # real clock: 0.3 s jobs
    with emulator.serve(0) as server:
        yield emulator, server


@pytest.fixture(autouse=True)
def quick_sdk(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in SDK_TIMEOUTS.items():
        monkeypatch.setenv(name, value)
        monkeypatch.setattr(runware.base, name.removeprefix("RUNWARE_"), int(value))  # already imported


def video(task_uuid: str | None = None) -> IVideoInference:
    return IVideoInference(model="runware:190@1", positivePrompt=PROMPT, taskUUID=task_uuid, steps=30, seed=7,
                           includeCost=True, inputs=IVideoInputs(image="https://example.com/knight.png"))


async def run_one(url: str, request: IVideoInference, key: str = KEY) -> Any:
    """What a user of the SDK writes: connect, submit, and ``getResponse`` when the submit was only acked."""
    client = runware.Runware(api_key=key, url=url)
    try:
        await asyncio.wait_for(client.connect(), 10)
        first = await asyncio.wait_for(client.videoInference(request), 20)
        if isinstance(first, list):  # the SDK itself polled (after a resend answered conflictTaskUUID)
            return first
        return await asyncio.wait_for(client.getResponse(first.taskUUID, numberResults=1), 20)
    finally:
        await client.disconnect()


def new_jobs(emulator: Emulator, before: int) -> list[Any]:
    return emulator.ledger.jobs[before:]


async def test_sdk_completes_a_video_inference(served: tuple[Emulator, Any]) -> None:
    emulator, server = served
    before, polls = len(emulator.ledger.jobs), emulator.ledger.calls("runware", "status")
    [clip] = await run_one(server.ws_url, video())
    assert clip.status == "success" and clip.seed == 7 and clip.cost == pytest.approx(0.1171)
    assert clip.videoURL.startswith(server.url + "/v1/video/")
    assert httpx.get(clip.videoURL, timeout=5).content == ClipStore.asset("mp4")
    [job] = new_jobs(emulator, before)
    assert job.job_id == clip.taskUUID and job.billable and str(job.price) == "0.1171"
    assert emulator.ledger.calls("runware", "status") > polls


async def test_sdk_with_a_bad_key_gets_the_authentication_error(served: tuple[Emulator, Any]) -> None:
    emulator, server = served
    before = len(emulator.ledger.requests)
    with pytest.raises(ConnectionError, match="Invalid API key"):
        await run_one(server.ws_url, video(), key="not-the-key")
    assert emulator.ledger.requests[before:] == []  # no task ever reached the task handler


@pytest.mark.parametrize(("fate", "code"), [("fail", "inferenceError"), ("nsfw", "contentPolicyViolation")])
async def test_sdk_raises_on_failed_and_refused_jobs(served: tuple[Emulator, Any], fate: str, code: str) -> None:
    emulator, server = served
    before = len(emulator.ledger.jobs)
    emulator["runware"].faults.add("job", fate)
    with pytest.raises(runware.RunwareAPIError) as raised:
        await run_one(server.ws_url, video())
    assert code in str(raised.value)
    [job] = new_jobs(emulator, before)
    assert not job.billable


async def test_sdk_sees_conflict_task_uuid_on_a_reused_task_uuid(served: tuple[Emulator, Any]) -> None:
    emulator, server = served
    before = len(emulator.ledger.jobs)
    task = "5a1c2e3f-0000-4000-8000-00000000c0f1"
    client = runware.Runware(api_key=KEY, url=server.ws_url)
    try:
        await asyncio.wait_for(client.connect(), 10)
        ack = await asyncio.wait_for(client.videoInference(video(task)), 20)
        assert ack.taskUUID == task
        with pytest.raises(runware.RunwareAPIError) as raised:  # attempt 0: re-raised to the caller
            await asyncio.wait_for(client.videoInference(video(task)), 20)
        assert raised.value.code == "conflictTaskUUID"
    finally:
        await client.disconnect()
    assert len(new_jobs(emulator, before)) == 1


@pytest.mark.parametrize("fault", ["drop", "timeout"])
async def test_sdk_resends_the_same_task_after_a_lost_answer_and_pays_once(served: tuple[Emulator, Any],
                                                                           fault: str) -> None:
    """``drop`` makes the job and closes the socket; ``timeout`` never answers. Either way the SDK reconnects
    and re-sends the same taskUUID (base.py ``_retry_async_with_reconnect``): a made job answers
    ``conflictTaskUUID``, which the SDK takes as "already submitted", so one job is billed."""
    emulator, server = served
    before, submits = len(emulator.ledger.jobs), emulator.ledger.calls("runware", "submit")
    emulator["runware"].faults.add("submit", fault)
    [clip] = await run_one(server.ws_url, video())
    assert clip.status == "success"
    assert emulator.ledger.calls("runware", "submit") == submits + 2
    [job] = new_jobs(emulator, before)
    assert job.job_id == clip.taskUUID and job.billable


async def test_ping_pong_and_session_resume_on_the_socket(served: tuple[Emulator, Any]) -> None:
    import websockets

    _, server = served
    auth = json.dumps([{"taskType": "authentication", "apiKey": KEY}])
    async with websockets.connect(server.ws_url) as ws:
        await ws.send(json.dumps([{"taskType": "ping", "ping": True}]))
        assert json.loads(await ws.recv()) == {"data": [{"taskType": "ping", "pong": True}]}
        await ws.send(auth)
        session = json.loads(await ws.recv())["data"][0]["connectionSessionUUID"]
    async with websockets.connect(server.ws_url) as ws:
        await ws.send(json.dumps([{"taskType": "authentication", "apiKey": KEY, "connectionSessionUUID": session}]))
        assert json.loads(await ws.recv())["data"][0]["connectionSessionUUID"] == session
    with pytest.raises(websockets.InvalidStatus):
        async with websockets.connect(server.url.replace("http", "ws") + "/elsewhere"):
            pass


CHILD = textwrap.dedent("""
    import asyncio, json, sys
    import runware  # reads RUNWARE_VIDEO_INITIAL_TIMEOUT now, from the environment
    from runware import IVideoInference, IVideoInputs

    async def main():
        client = runware.Runware(api_key="any-key", url=sys.argv[1])
        await asyncio.wait_for(client.connect(), 10)
        request = IVideoInference(model="runware:190@1", positivePrompt=sys.argv[2],
                                  inputs=IVideoInputs(image="https://example.com/knight.png"))
        ack = await asyncio.wait_for(client.videoInference(request), 20)
        [clip] = await asyncio.wait_for(client.getResponse(ack.taskUUID, numberResults=1), 20)
        await client.disconnect()
        print(json.dumps({"taskUUID": clip.taskUUID, "status": clip.status, "videoURL": clip.videoURL}))

    asyncio.run(main())
""")


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_sdk_against_ovi_gateway_emulate() -> None:
    port = _free_port()
    server = subprocess.Popen([sys.executable, "-m", "gateway", "emulate", "--port", str(port), "--job-seconds",
                               "0.3"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert server.stdout is not None
        banner = server.stdout.readline()
        assert f"emulator listening on http://127.0.0.1:{port}" in banner, banner + server.stderr.read()
        child = subprocess.run([sys.executable, "-c", CHILD, f"ws://127.0.0.1:{port}/v1", PROMPT],
                               env={**os.environ, **SDK_TIMEOUTS}, capture_output=True, text=True, timeout=60)
        assert child.returncode == 0, child.stderr[-2000:]
        clip = json.loads(child.stdout.strip().splitlines()[-1])
        assert clip["status"] == "success"
        assert httpx.get(clip["videoURL"], timeout=5).content == ClipStore.asset("mp4")
        ledger = httpx.get(f"http://127.0.0.1:{port}/_emulator/ledger", timeout=5).json()
        assert [(j["job_id"], j["billable"]) for j in ledger["jobs"]] == [(clip["taskUUID"], True)]
    finally:
        server.send_signal(signal.SIGINT)
        try:
            server.wait(10)
        except subprocess.TimeoutExpired:
            server.kill()
            raise
    assert server.returncode == 130
