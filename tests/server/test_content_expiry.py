"""``GET /v1/videos/{id}/content`` without a stored copy: the vendor's clip is fetched (verified, kept)
while its URL lives; ``expires_at`` comes from the vendor's documented URL lifetime (WaveSpeed: 7 days;
fal and Runware document none, so null); past it — by the clock, or by the vendor's own 404 — the answer is
410 ``video_expired``, and a stored copy outlives the vendor's."""

from __future__ import annotations

import time

import httpx
import pytest

from gateway.client import Gateway
from gateway.clock import VirtualClock
from gateway.emulator import Emulator
from gateway.jobs.polling import PollPolicy
from gateway.server import create_app

pytestmark = pytest.mark.anyio

KEY = "sk-content-test"
PROMPT = "A knight in the rain. <S>I will defend this land.<E>"
WEEK = 7 * 86400


@pytest.fixture
async def server(tmp_path):
    clock = VirtualClock()
    emulator = Emulator(clock=clock, seed=6, job_time=lambda rng: 20.0)
    gateway = Gateway(emulator=emulator, clock=clock, journal=str(tmp_path / "j.sqlite3"),
                      poll=PollPolicy(expected=20.0, interval=5.0, min_interval={}))
    shift = {"s": 0.0}
    app = create_app(gateway, api_keys=[KEY], media_dir=tmp_path / "media", emulator=True,
                     wall=lambda: time.time() + shift["s"])
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gw",
                                 headers={"authorization": f"Bearer {KEY}"}) as http:
        yield clock, emulator, http, shift
    await gateway.aclose()
    app.state.server.store.close()


async def _made(clock, http, provider: str) -> dict:
    answer = await http.post("/v1/videos", json={"prompt": PROMPT, "input_reference": "https://example.com/k.png",
                                                 "provider": provider})
    assert answer.status_code == 200, answer.text
    for _ in range(100):
        video = (await http.get(f"/v1/videos/{answer.json()['id']}")).json()
        if video["status"] in ("completed", "failed"):
            assert video["status"] == "completed", video
            return video
        await clock.sleep(5.0)
    raise AssertionError("never finished")


async def test_wavespeed_expires_at_is_its_seven_days_and_a_stored_copy_outlives_it(server) -> None:
    clock, _emulator, http, shift = server
    video = await _made(clock, http, "wavespeed")
    assert video["expires_at"] is not None and abs(video["expires_at"] - (video["created_at"] + WEEK)) <= 1
    clip = await http.get(f"/v1/videos/{video['id']}/content")  # fetched from the vendor, verified, kept
    assert clip.status_code == 200 and clip.headers["content-type"] == "video/mp4"
    assert (await http.get(f"/v1/videos/{video['id']}")).json()["expires_at"] is None  # ours now, until DELETE
    shift["s"] = WEEK + 60.0
    await clock.sleep(WEEK + 60.0)  # the vendor has deleted its copy
    again = await http.get(f"/v1/videos/{video['id']}/content")
    assert again.status_code == 200 and again.content == clip.content


async def test_past_the_documented_lifetime_without_a_copy_is_410_and_asks_the_vendor_nothing(server) -> None:
    clock, emulator, http, shift = server
    video = await _made(clock, http, "wavespeed")
    before = len(emulator.ledger.requests)
    shift["s"] = WEEK + 60.0
    gone = await http.get(f"/v1/videos/{video['id']}/content")
    assert gone.status_code == 410 and gone.json()["error"]["code"] == "video_expired", gone.text
    assert gone.headers["x-should-retry"] == "false"
    assert len(emulator.ledger.requests) == before  # no fetch of a URL documented dead


async def test_the_vendors_own_404_is_410_too(server) -> None:
    clock, _emulator, http, _shift = server
    video = await _made(clock, http, "wavespeed")
    await clock.sleep(WEEK + 60.0)  # the emulated vendor deleted it; our wall clock has not moved
    gone = await http.get(f"/v1/videos/{video['id']}/content")
    assert gone.status_code == 410 and gone.json()["error"]["code"] == "video_expired", gone.text
    assert "HTTP 404" in gone.json()["error"]["message"]


@pytest.mark.parametrize("vendor", ["fal", "runware"])
async def test_an_undocumented_lifetime_is_null_and_the_clip_is_still_fetched(server, vendor) -> None:
    clock, _emulator, http, _shift = server
    video = await _made(clock, http, vendor)
    assert video["expires_at"] is None
    clip = await http.get(f"/v1/videos/{video['id']}/content")
    assert clip.status_code == 200 and len(clip.content) > 100
