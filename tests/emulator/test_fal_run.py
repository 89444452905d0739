"""fal's synchronous ``fal.run`` host, emulated: the answer is the result; no queue job is ever booked."""

from __future__ import annotations

import httpx
import pytest

from gateway.clock import VirtualClock
from gateway.emulator import Emulator
from gateway.emulator.clips import ClipStore

PROMPT = "A knight in the rain. <S>I will defend this land.<E>"
RUN = "https://fal.run/fal-ai/ovi/image-to-video"
BODY = {"prompt": PROMPT, "image_url": "https://example.com/knight.png", "seed": 9}
KEY = {"authorization": "Key id:secret"}


@pytest.fixture
def emulator(clock: VirtualClock) -> Emulator:
    return Emulator(clock=clock)


def post(emulator: Emulator, url: str = RUN, **kwargs: object) -> httpx.Response:
    with httpx.Client(transport=emulator.transport()) as client:
        return client.post(url, headers=KEY, **kwargs)  # type: ignore[arg-type]


def test_a_run_answers_the_result_and_books_no_queue_job(emulator: Emulator) -> None:
    answer = post(emulator, json=BODY)
    assert answer.status_code == 200 and answer.json()["seed"] == 9
    with httpx.Client(transport=emulator.transport()) as client:
        assert client.get(answer.json()["video"]["url"]).content == ClipStore.asset("mp4")
        run_id = answer.headers["x-fal-request-id"]
        status = client.get(f"https://queue.fal.run/fal-ai/ovi/requests/{run_id}/status", headers=KEY)
    assert status.status_code == 404  # nothing to poll: it was never queued
    assert emulator["fal"].jobs == {}
    assert emulator.ledger.calls("fal", "run") == 1 and emulator.ledger.calls("fal", "submit") == 0
    [entry] = emulator.ledger.jobs
    assert entry.job_id == run_id and entry.billable and str(entry.price) == "0.20"


@pytest.mark.parametrize(("fate", "status", "billable"), [("fail", 500, False), ("nsfw", 422, True),
                                                          ("stuck", 504, True)])
def test_a_run_that_does_not_succeed(emulator: Emulator, fate: str, status: int, billable: bool) -> None:
    emulator["fal"].faults.add("job", fate)
    answer = post(emulator, json=BODY)
    assert answer.status_code == status and answer.headers["x-fal-request-id"]
    assert [e.billable for e in emulator.ledger.jobs] == [billable]  # fal: 5xx are never charged
    assert emulator["fal"].jobs == {}


def test_a_bad_run_is_refused_before_anything_is_billed(emulator: Emulator) -> None:
    assert post(emulator, json={"prompt": PROMPT}).json()["detail"][0]["loc"] == ["body", "image_url"]
    assert post(emulator, url="https://fal.run/fal-ai/other", json=BODY).status_code == 404
    with httpx.Client(transport=emulator.transport()) as client:
        assert client.post(RUN, json=BODY).status_code == 401
    assert emulator.ledger.jobs == []


def test_the_loopback_prefix_is_the_same_route(emulator: Emulator) -> None:
    answer = post(emulator, url="http://127.0.0.1:8765/fal-run/fal-ai/ovi/image-to-video", json=BODY)
    assert answer.status_code == 200
    assert answer.json()["video"]["url"].startswith("http://127.0.0.1:8765/files/")
    assert emulator["fal"].jobs == {} and len(emulator.ledger.billable("fal")) == 1
