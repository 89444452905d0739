"""The result step asks again instead of re-reading a stale body, and a journal that cannot write after
acceptance never drops the paid job (review findings 6 and 1; proofs turned into tests)."""

from __future__ import annotations

import json
import sqlite3

import httpx
import pytest

from gateway import Gateway, OviRequest
from gateway.clock import VirtualClock
from gateway.store.journal import Journal
from gateway.store.sqlite import SqliteStore

pytestmark = pytest.mark.anyio

REQUEST = OviRequest(prompt="A knight. <S>Hold the line.<E>", image="https://example.com/k.png")
VIDEO = "https://cdn.wavespeed.ai/v.mp4"


def wavespeed(gets: list[str], posts: list[str], *, empty_first: bool = False):
    def handler(request: httpx.Request) -> httpx.Response:
        if request.method == "POST":
            posts.append(str(request.url))
            return httpx.Response(200, json={"code": 200, "data": {"id": f"pred{len(posts)}", "status": "created"}})
        gets.append(str(request.url))
        outputs = [] if empty_first and len(gets) == 1 else [VIDEO]
        return httpx.Response(200, json={"code": 200, "data": {"id": "pred1", "status": "completed",
                                                                "outputs": outputs}})
    return handler


def gateway_for(name: str, handler, journal: SqliteStore | str = ":memory:") -> Gateway:
    keys = {"wavespeed": "ws-secret-key-123", "runware": "rw-secret-key-123"}
    return Gateway(transport=httpx.MockTransport(handler), keys={name: keys[name]}, providers=[name],
                   journal=journal, clock=VirtualClock())


# ---- finding 6: a "done" answer without outputs yet is asked again, not re-parsed ---------------------
async def test_wavespeed_completed_without_outputs_is_polled_again() -> None:
    gets: list[str] = []
    gateway = gateway_for("wavespeed", wavespeed(gets, [], empty_first=True))
    try:
        result = await gateway.agenerate(REQUEST)
    finally:
        await gateway.aclose()
    assert result.video_url == VIDEO and len(gets) == 2


async def test_runware_success_without_a_url_is_polled_again() -> None:
    polls: list[int] = []

    def handler(request: httpx.Request) -> httpx.Response:
        task = json.loads(request.content)[0]
        if task["taskType"] == "videoInference":
            return httpx.Response(200, json={"data": [{"taskType": "videoInference", "taskUUID": task["taskUUID"]}]})
        polls.append(1)
        item = {"taskType": "videoInference", "taskUUID": task["taskUUID"], "status": "success", "videoUUID": "v"}
        if len(polls) > 1:
            item["videoURL"] = "https://vm.runware.ai/v.mp4"
        return httpx.Response(200, json={"data": [item]})

    gateway = gateway_for("runware", handler)
    try:
        result = await gateway.agenerate(REQUEST)
    finally:
        await gateway.aclose()
    assert result.video_url == "https://vm.runware.ai/v.mp4" and len(polls) == 2


# ---- finding 1: disk full at acceptance keeps following with the handle in memory ---------------------
class FullDisk(SqliteStore):
    """The async store whose disk is full for the writes named in ``failing``; ``face`` is its sync
    ``Journal`` (same connection) for reading what was recorded."""

    def __init__(self, path: str) -> None:
        super().__init__(path, offload=False)
        self.failing: set[str] = set()
        self.face = Journal.over(self)

    async def accepted(self, submit_key, handle_json):  # type: ignore[no-untyped-def]
        if "accepted" in self.failing:
            raise sqlite3.OperationalError("database or disk is full")
        return await super().accepted(submit_key, handle_json)

    async def state(self, submit_key, state):  # type: ignore[no-untyped-def]
        if "state" in self.failing:
            raise sqlite3.OperationalError("database or disk is full")
        return await super().state(submit_key, state)


async def test_disk_full_at_acceptance_still_delivers_and_never_pays_twice() -> None:
    gets: list[str] = []
    posts: list[str] = []
    journal = FullDisk(":memory:")
    journal.failing = {"accepted", "state"}
    gateway = gateway_for("wavespeed", wavespeed(gets, posts), journal)
    try:
        first = await gateway.agenerate(REQUEST, idempotency_key="k1")
        assert first.video_url == VIDEO and first.job_id == "pred1"
        assert [s.state for s in journal.face.submits("k1")] == ["succeeded"]
        journal.failing = set()
        again = await gateway.agenerate(REQUEST, idempotency_key="k1")  # the clip is on record: no new submit
    finally:
        await gateway.aclose()
    assert again.job_id == "pred1" and len(posts) == 1


async def test_a_write_refused_once_is_written_before_the_next_check() -> None:
    """The disk frees up while the job runs: the kept ``accepted`` write lands (with the handle), so a
    crash from then on leaves resume() a job to find."""
    gets: list[str] = []
    journal = FullDisk(":memory:")
    journal.failing = {"accepted"}
    seen: list[str | None] = []

    def handler(request: httpx.Request) -> httpx.Response:
        if request.method == "GET":
            journal.failing = set()  # freed after the first check
            seen.append(journal.face.submits("k1")[0].job_id)
            if len(seen) == 1:
                return httpx.Response(200, json={"code": 200, "data": {"id": "pred1", "status": "processing"}})
        return wavespeed(gets, [])(request)

    gateway = gateway_for("wavespeed", handler, journal)
    try:
        result = await gateway.agenerate(REQUEST, idempotency_key="k1")
    finally:
        await gateway.aclose()
    assert result.job_id == "pred1"
    assert seen[0] is None and seen[1] == "pred1"  # written before the second check
