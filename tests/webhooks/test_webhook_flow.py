"""Vendor webhooks end to end, in process and virtual time: the emulated vendors push signed deliveries
to the server's intake, followers wake at once, and a verified push answers the status check."""

from __future__ import annotations

import httpx
import pytest

from gateway.client import Gateway
from gateway.clock import VirtualClock
from gateway.emulator import Emulator
from gateway.emulator.webhooks import FAL_TEST_USER, WAVESPEED_TEST_SECRET, WebhookSender
from gateway.jobs.polling import PollPolicy
from gateway.server import create_app

pytestmark = pytest.mark.anyio

KEY = "sk-webhook-test"
PROMPT = "A knight in the rain. <S>I will defend this land.<E>"
EPOCH = 1_760_000_000.0


@pytest.fixture
def setup(tmp_path, monkeypatch, journal_target):
    monkeypatch.setenv("FAL_WEBHOOK_USER_ID", FAL_TEST_USER)
    monkeypatch.setenv("WAVESPEED_WEBHOOK_SECRET", WAVESPEED_TEST_SECRET)
    monkeypatch.setenv("OVI_GATEWAY_WEBHOOK_SECRET", "test-token-secret")

    def make(faults=None, job_time=10.0):
        clock = VirtualClock()
        emulator = Emulator(clock=clock, seed=9, job_time=lambda rng: job_time)
        # First poll late (at 45 s) so a push at 10 s is seen first; polling stays the fallback.
        gateway = Gateway(emulator=emulator, clock=clock, journal=journal_target,
                          poll=PollPolicy(expected=60.0, interval=5.0, min_interval={}))
        wall = lambda: EPOCH + clock.now()  # noqa: E731
        app = create_app(gateway, api_keys=[KEY], media_dir=tmp_path / "media", emulator=True,
                         public_url="http://gw", wall=wall)
        sender = emulator.deliver_webhooks(WebhookSender(transport=httpx.ASGITransport(app=app), wall=wall,
                                                         faults=faults))
        http = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gw",
                                 headers={"authorization": f"Bearer {KEY}"})
        return clock, emulator, gateway, app, sender, http

    return make


def _calls(emulator: Emulator, vendor: str, operation: str) -> int:
    return sum(1 for v, op, _ in emulator.ledger.requests if v == vendor and op == operation)


async def _run(http, clock, provider: str, **fields) -> dict:
    answer = await http.post("/v1/videos", json={"prompt": PROMPT, "input_reference": "https://example.com/k.png",
                                                 "provider": provider, **fields})
    assert answer.status_code == 200, answer.text
    video_id = answer.json()["id"]
    for _ in range(100):
        body = (await http.get(f"/v1/videos/{video_id}")).json()
        if body["status"] in ("completed", "failed"):
            return body | {"finished_at": clock.now()}
        await clock.sleep(1.0)
    raise AssertionError("never finished")


@pytest.mark.parametrize("vendor", ["fal", "wavespeed"])
async def test_a_signed_push_completes_the_job_with_zero_status_calls(setup, vendor) -> None:
    clock, emulator, _gateway, _app, sender, http = setup()
    done = await _run(http, clock, vendor)
    assert done["status"] == "completed" and done["ovi"]["provider"] == vendor
    assert done["finished_at"] < 15.0  # detected at the push (10 s), not at the first poll (45 s)
    assert _calls(emulator, vendor, "status") == 0 and _calls(emulator, vendor, "result") == 0
    assert [s[2] for s in sender.sent] == [200]
    await http.aclose()


async def test_runware_push_is_confirmed_with_one_get_response(setup) -> None:
    clock, emulator, _gateway, _app, _sender, http = setup()
    done = await _run(http, clock, "runware")
    assert done["status"] == "completed" and done["finished_at"] < 15.0
    assert _calls(emulator, "runware", "status") == 1  # the one confirming getResponse
    await http.aclose()


async def test_an_early_unsigned_push_does_not_end_the_job(setup) -> None:
    clock, emulator, _gateway, _app, sender, http = setup({"runware": ["early"]})
    sender.delay = 8.0
    done = await _run(http, clock, "runware")
    assert done["status"] == "completed" and done["finished_at"] > 10.0
    assert _calls(emulator, "runware", "status") >= 2  # the early confirm said running; polling finished it
    await http.aclose()


@pytest.mark.parametrize("vendor,confirming", [("fal", 0), ("wavespeed", 0), ("runware", 1)])
async def test_a_job_that_asked_for_a_push_is_not_polled_before_it(setup, vendor, confirming) -> None:
    # The job (60 s) outlasts the poll plan's first check (45 s): with webhooks on, polling is only the slow
    # fallback (PUSH_FALLBACK_S), so the push at 60 s ends the job without a status call (Runware: its one
    # confirming getResponse). A vendor whose push then fails to come is polled at the usual pace again.
    clock, emulator, gateway, _app, _sender, http = setup({vendor: ["ok", "never"]}, job_time=60.0)
    done = await _run(http, clock, vendor)
    assert done["status"] == "completed" and done["finished_at"] < 62.0
    assert _calls(emulator, vendor, "status") == confirming
    assert gateway.push.missed == set()
    await _run(http, clock, vendor)  # no push: found by the fallback check at 90 s
    assert vendor in gateway.push.missed
    before = _calls(emulator, vendor, "status")
    started = clock.now()
    third = await _run(http, clock, vendor)  # polled at the plan's pace: found before the 90 s fallback
    assert third["finished_at"] - started < 80.0 and _calls(emulator, vendor, "status") > before
    await http.aclose()


async def test_the_slow_fallback_leaves_a_check_before_the_callers_deadline(setup) -> None:
    # A 70 s deadline is shorter than the 90 s fallback: the job (60 s) whose push never comes is polled on the
    # usual plan and found before the deadline, not failed with DeadlineExceeded at its first check.
    clock, emulator, _gateway, _app, _sender, http = setup({"fal": ["never"]}, job_time=60.0)
    done = await _run(http, clock, "fal", deadline=70)
    # Found by the plan's checks (from 45 s, every 5 s), not at the deadline itself with no time left for
    # the status call (virtual time lets a zero-time call succeed; a real one would be cut off).
    assert done["status"] == "completed" and done["finished_at"] < 68.0, done
    assert _calls(emulator, "fal", "status") >= 1
    await http.aclose()


@pytest.mark.parametrize("vendor", ["fal", "wavespeed"])
async def test_a_bad_signature_is_refused_and_polling_finishes_the_job(setup, vendor) -> None:
    clock, emulator, _gateway, _app, sender, http = setup({vendor: ["bad_signature"]})
    done = await _run(http, clock, vendor)
    assert [s[2] for s in sender.sent] == [401]
    assert done["status"] == "completed" and done["finished_at"] >= 45.0  # found by the fallback poll
    assert _calls(emulator, vendor, "status") >= 1
    await http.aclose()


async def test_duplicates_are_stored_once_and_missing_pushes_fall_back_to_polling(setup) -> None:
    clock, emulator, gateway, _app, sender, http = setup({"fal": ["duplicate", "never"]})
    first = await _run(http, clock, "fal")
    assert _calls(emulator, "fal", "status") == 0
    second = await _run(http, clock, "fal")
    assert first["status"] == second["status"] == "completed"
    assert [s[2] for s in sender.sent] == [200, 200]  # the duplicate answered 200, changed nothing
    assert gateway.push.events.count(vendor="fal") == 1
    assert _calls(emulator, "fal", "status") >= 1  # the second had no push: polling found it
    assert len(emulator.ledger.jobs) == 2  # one job per video, the duplicate bought nothing
    await http.aclose()


async def test_a_forged_or_tokenless_delivery_changes_nothing(setup) -> None:
    _clock, _emulator, gateway, _app, _sender, http = setup({"fal": ["never"]})
    answer = await http.post("/v1/videos", json={"prompt": PROMPT, "provider": "fal"})
    video_id = answer.json()["id"]
    submit = gateway.journal.submits(video_id)[-1]
    body = b'{"request_id": "%s", "status": "OK", "payload": {"video": {"url": "https://evil/x.mp4"}}}' % (
        submit.job_id or "x").encode()
    no_token = await http.post(f"/webhooks/fal/{video_id}/{submit.submit_key}", content=body)
    assert no_token.status_code == 401
    token = gateway.push.token("fal", video_id, submit.submit_key)
    unsigned = await http.post(f"/webhooks/fal/{video_id}/{submit.submit_key}?t={token}", content=body)
    assert unsigned.status_code == 401 and gateway.push.events.count() == 0
    assert (await http.get(f"/v1/videos/{video_id}")).json()["status"] != "completed"
    await http.aclose()


async def test_metrics_show_jobs_spend_deliveries_and_latency(setup) -> None:
    clock, _emulator, _gateway, _app, _sender, http = setup({"wavespeed": ["bad_signature"]})
    await _run(http, clock, "fal")
    await _run(http, clock, "wavespeed")
    text = (await http.get("/metrics")).text
    assert 'ovi_jobs{state="succeeded",vendor="fal"} 1.0' in text
    assert 'ovi_webhook_deliveries_total{outcome="accepted"} 1.0' in text
    assert 'ovi_webhook_deliveries_total{outcome="refused"} 1.0' in text
    assert "ovi_status_answered_by_push_total 1.0" in text
    assert 'ovi_http_request_seconds_count{method="POST",route="/v1/videos"} 2.0' in text
    assert (await http.get("/metrics", headers={"authorization": "Bearer nope"})).status_code == 401
    await http.aclose()
