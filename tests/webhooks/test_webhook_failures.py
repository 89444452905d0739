"""Webhook failure deliveries are read with the status poll's own classification (review finding 7):
a content refusal is ``ContentRejected`` (a verdict: no failover, no retry), a platform failure such as
fal's ``internal_error`` is no verdict (the follower keeps following and the poll decides), and an
unsigned Runware failure push only wakes the follower, whose ``getResponse`` decides."""

from __future__ import annotations

import pytest

from tests.webhooks.test_webhook_flow import PROMPT, _calls, setup  # noqa: F401  (the fixture)

pytestmark = pytest.mark.anyio


async def _video(http, clock, route: dict) -> dict:
    answer = await http.post("/v1/videos", json={"prompt": PROMPT, "input_reference": "https://example.com/k.png",
                                                 **route})
    assert answer.status_code == 200, answer.text
    video_id = answer.json()["id"]
    for _ in range(200):
        body = (await http.get(f"/v1/videos/{video_id}")).json()
        if body["status"] in ("completed", "failed"):
            return body
        await clock.sleep(1.0)
    raise AssertionError("never finished")


@pytest.mark.parametrize("vendor", ["fal", "wavespeed"])
async def test_a_pushed_content_refusal_is_content_rejected_and_stops(setup, vendor) -> None:  # noqa: F811
    clock, emulator, _gateway, _app, sender, http = setup()
    emulator[vendor].faults.add("job", "nsfw")
    other = "wavespeed" if vendor == "fal" else "fal"
    done = await _video(http, clock, {"provider": {"order": [vendor, other]}, "job_retries": 1})
    assert [s[2] for s in sender.sent] == [200]
    assert done["status"] == "failed" and done["error"]["code"] == "content_rejected", done
    assert [job.vendor for job in emulator.ledger.jobs] == [vendor]  # no failover, no same-vendor retry
    assert _calls(emulator, vendor, "status") == 0  # the signed push was the vendor's word
    await http.aclose()


async def test_a_fal_internal_error_push_is_no_verdict_and_the_poll_finds_the_clip(setup) -> None:  # noqa: F811
    clock, emulator, _gateway, _app, sender, http = setup({"fal": ["internal_error"]})
    done = await _video(http, clock, {"provider": {"order": ["fal", "wavespeed"]}})
    assert [s[2] for s in sender.sent] == [200]  # accepted (authentic), but it decides nothing
    assert done["status"] == "completed" and done["ovi"]["provider"] == "fal", done
    assert [job.vendor for job in emulator.ledger.jobs] == ["fal"]  # never paid WaveSpeed for it
    assert _calls(emulator, "fal", "status") >= 1  # the poll confirmed it
    await http.aclose()


async def test_a_runware_failure_push_is_decided_by_get_response(setup) -> None:  # noqa: F811
    clock, emulator, _gateway, _app, _sender, http = setup()
    emulator["runware"].faults.add("job", "nsfw")
    done = await _video(http, clock, {"provider": "runware"})
    assert done["status"] == "failed" and done["error"]["code"] == "content_rejected", done
    assert _calls(emulator, "runware", "status") == 1  # the one confirming getResponse read the refusal
    await http.aclose()
