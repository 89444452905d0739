"""Runware's WebSocket framing (``gateway.emulator.runware_ws``), driven frame by frame without a socket.

The framing follows runware 0.5.24 (research notes §C); the same module against the official SDK over a
real socket is ``test_runware_sdk_loopback.py`` (slow tier).
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from gateway.clock import VirtualClock
from gateway.emulator import Emulator
from gateway.emulator.runware_ws import RunwareSocket, Sessions

pytestmark = pytest.mark.anyio

BASE = "http://127.0.0.1:8765/v1"
TASK = "1f0e7a52-3c1e-4c2f-9a55-2b1c0d9e8f01"
VIDEO = {"taskType": "videoInference", "taskUUID": TASK, "model": "runware:190@1", "deliveryMethod": "async",
         "positivePrompt": "A knight. <S>Hold the line.<E>", "inputs": {"image": "https://example.com/k.png"}}
AUTH = {"taskType": "authentication", "apiKey": "good-key"}


def socket(emulator: Emulator, sessions: Sessions | None = None) -> RunwareSocket:
    return RunwareSocket(emulator["runware"], sessions or Sessions(), BASE)


async def frames(conn: RunwareSocket, *tasks: Any) -> list[dict[str, Any]]:
    reply = await conn.answer(json.dumps(list(tasks)))
    assert not reply.hang_up
    return [json.loads(frame) for frame in reply.frames]


@pytest.fixture
def emulator(clock: VirtualClock) -> Emulator:
    return Emulator(clock=clock, job_time=lambda rng: 10.0, api_keys={"runware": "good-key"})


async def test_authentication_answers_a_session_and_a_ping_a_pong(emulator: Emulator) -> None:
    conn = socket(emulator)
    [pong] = await frames(conn, {"taskType": "ping", "ping": True})  # the SDK pings before auth is answered
    assert pong == {"data": [{"taskType": "ping", "pong": True}]}
    [auth] = await frames(conn, AUTH)
    session = auth["data"][0]["connectionSessionUUID"]
    assert auth == {"data": [{"taskType": "authentication", "connectionSessionUUID": session}]} and len(session) == 36
    assert emulator.ledger.requests == []  # auth and ping are no REST calls


@pytest.mark.parametrize(("key", "code"), [("bad-key", "invalidApiKey"), ("", "missingApiKey")])
async def test_a_bad_key_gets_the_rest_error_tagged_authentication(emulator: Emulator, key: str, code: str) -> None:
    conn = socket(emulator)
    [refused] = await frames(conn, {"taskType": "authentication", "apiKey": key})
    [error] = refused["errors"]
    assert error["taskType"] == "authentication" and error["code"] == code  # what the SDK's login listener reads
    assert "data" not in refused
    assert not key or key not in json.dumps(refused)  # a key is never echoed
    [blocked] = await frames(conn, VIDEO)  # still unauthenticated: the task fails at once, by its taskUUID
    assert blocked["errors"][0]["code"] == "missingApiKey" and blocked["errors"][0]["taskUUID"] == TASK
    assert emulator.ledger.jobs == []


async def test_tasks_are_answered_as_the_rest_route_answers(emulator: Emulator, clock: VirtualClock) -> None:
    conn = socket(emulator)
    await frames(conn, AUTH)
    [ack] = await frames(conn, VIDEO)
    assert ack == {"data": [{"taskType": "videoInference", "taskUUID": TASK}]}
    [processing] = await frames(conn, {"taskType": "getResponse", "taskUUID": TASK})
    assert processing["data"][0]["status"] == "processing"
    clock.advance(11)
    [done] = await frames(conn, {"taskType": "getResponse", "taskUUID": TASK})
    item = done["data"][0]
    assert item["status"] == "success" and item["taskUUID"] == TASK
    assert item["videoURL"].startswith(BASE + "/video/")  # served back by the loopback server
    [conflict] = await frames(conn, VIDEO)
    assert conflict["errors"][0]["code"] == "conflictTaskUUID" and conflict["errors"][0]["taskUUID"] == TASK
    [missing] = await frames(conn, {"taskType": "getResponse", "taskUUID": "00000000-0000-4000-8000-000000000000"})
    assert missing["errors"][0]["code"] == "taskFailedOrNotFound"
    assert [op for _, op, _ in emulator.ledger.requests] == ["submit", "status", "status", "submit", "status"]
    assert len(emulator.ledger.billable("runware")) == 1


async def test_failed_and_refused_jobs_are_error_frames(emulator: Emulator, clock: VirtualClock) -> None:
    emulator["runware"].faults.add("job", "fail", "nsfw")
    conn = socket(emulator)
    await frames(conn, AUTH)
    refused_task = {**VIDEO, "taskUUID": "1f0e7a52-3c1e-4c2f-9a55-2b1c0d9e8f02"}
    await frames(conn, VIDEO)
    await frames(conn, refused_task)
    clock.advance(11)
    [failed] = await frames(conn, {"taskType": "getResponse", "taskUUID": TASK})
    assert failed["errors"][0]["code"] == "inferenceError" and failed["errors"][0]["taskUUID"] == TASK
    [refused] = await frames(conn, {"taskType": "getResponse", "taskUUID": refused_task["taskUUID"]})
    assert refused["data"][0]["status"] == "error"
    assert refused["data"][0]["error"]["code"] == "contentPolicyViolation"


async def test_frames_that_are_not_task_arrays(emulator: Emulator) -> None:
    conn = socket(emulator)
    for text in ("not json", "{}", "[]"):
        reply = await conn.answer(text)
        assert json.loads(reply.frames[0])["errors"][0]["code"] == "invalidRequestBody"


@pytest.mark.parametrize(("fault", "hang_up", "made"), [("timeout", False, 0), ("refuse", True, 0),
                                                         ("drop", True, 1), ("drop_body", True, 1)])
async def test_network_faults_keep_their_meaning(emulator: Emulator, fault: str, hang_up: bool, made: int) -> None:
    emulator["runware"].faults.add("submit", fault)
    conn = socket(emulator)
    await frames(conn, AUTH)
    reply = await conn.answer(json.dumps([VIDEO]))
    assert reply.frames == [] and reply.hang_up is hang_up
    assert len(emulator.ledger.billable("runware")) == made


async def test_http_level_faults_arrive_as_error_frames(emulator: Emulator) -> None:
    emulator["runware"].faults.add("submit", "429", "bad_json")
    conn = socket(emulator)
    await frames(conn, AUTH)
    [limited] = await frames(conn, VIDEO)
    assert limited["errors"][0]["code"] == "rateLimitExceeded"
    reply = await conn.answer(json.dumps([VIDEO]))
    with pytest.raises(ValueError):
        json.loads(reply.frames[0])
    assert len(emulator.ledger.jobs) == 1  # 429 made nothing; bad_json answers junk after making the job


async def test_a_known_session_resumes_with_its_undelivered_answers(emulator: Emulator) -> None:
    sessions = Sessions()
    first = socket(emulator, sessions)
    [auth] = await frames(first, AUTH)
    session = auth["data"][0]["connectionSessionUUID"]
    first.undelivered(['{"data": [{"taskType": "videoInference", "taskUUID": "t"}]}'])
    second = socket(emulator, sessions)
    resumed = await frames(second, {**AUTH, "connectionSessionUUID": session})
    assert resumed == [auth, {"data": [{"taskType": "videoInference", "taskUUID": "t"}]}]
    again = await frames(socket(emulator, sessions), {**AUTH, "connectionSessionUUID": session})
    assert again == [auth]  # delivered once
    [fresh] = await frames(socket(emulator, sessions), {**AUTH, "connectionSessionUUID": "not-a-session"})
    assert fresh["data"][0]["connectionSessionUUID"] not in (session, "not-a-session")
