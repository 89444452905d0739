"""``/v1/videos`` in process: create (JSON, multipart, bracket keys), follow, download, list, delete,
auth per key, refusals naming the field, and creates that must never buy a second clip."""

from __future__ import annotations

import pytest

from tests.conftest import PNG_BYTES
from tests.server.conftest import KEY

pytestmark = pytest.mark.anyio

PROMPT = "A knight in the rain. <S>I will defend this land.<E>"


async def test_multipart_create_with_an_image_and_bracket_keys_runs_to_the_clip(world) -> None:
    files = {"input_reference": ("knight.png", PNG_BYTES, "image/png")}
    data = {"prompt": PROMPT, "model": "ovi", "seconds": "5", "seed": "0",
            "provider[order][]": ["wavespeed", "runware"], "provider[allow_fallbacks]": "false"}
    answer = await world.http.post("/v1/videos", data=data, files=files)
    assert answer.status_code == 200, answer.text
    video = answer.json()
    assert video["status"] == "queued" and video["object"] == "video" and video["seconds"] == "5"
    assert answer.headers["openai-poll-after-ms"] == "250"
    done = await world.until_final(video["id"])
    assert done["status"] == "completed" and done["progress"] == 100
    assert done["ovi"]["provider"] == "wavespeed" and done["usage"]["cost"] == "0.15"
    assert [job.vendor for job in world.emulator.ledger.jobs] == ["wavespeed"]
    clip = await world.http.get(f"/v1/videos/{video['id']}/content")
    assert clip.status_code == 200 and clip.headers["content-type"] == "video/mp4" and len(clip.content) > 100
    again = await world.http.get(f"/v1/videos/{video['id']}/content")  # served from the media directory
    assert again.content == clip.content


async def test_json_create_lists_and_deletes(world) -> None:
    ids = []
    for seed in (1, 2, 3):
        answer = await world.http.post("/v1/videos", json={"prompt": PROMPT, "input_reference": {
            "image_url": "https://example.com/k.png"}, "seed": seed})
        assert answer.status_code == 200, answer.text
        ids.append(answer.json()["id"])
    page = (await world.http.get("/v1/videos", params={"limit": 2, "order": "asc"})).json()
    assert [v["id"] for v in page["data"]] == ids[:2] and page["has_more"] is True and page["last_id"] == ids[1]
    rest = (await world.http.get("/v1/videos", params={"limit": 2, "order": "asc", "after": ids[1]})).json()
    assert [v["id"] for v in rest["data"]] == ids[2:] and rest["has_more"] is False
    running = await world.http.delete(f"/v1/videos/{ids[0]}")  # Runware cannot cancel a running job
    assert running.status_code == 409 and running.json()["error"]["code"] == "cannot_cancel"
    await world.until_final(ids[0])
    gone = await world.http.delete(f"/v1/videos/{ids[0]}")
    assert gone.json() == {"id": ids[0], "deleted": True, "object": "video.deleted"}
    assert (await world.http.get(f"/v1/videos/{ids[0]}")).status_code == 404


async def test_each_key_sees_only_its_own_videos_and_a_wrong_key_gets_401(world) -> None:
    video = (await world.http.post("/v1/videos", json={"prompt": PROMPT})).json()
    assert (await world.other.get(f"/v1/videos/{video['id']}")).status_code == 404
    assert (await world.other.get("/v1/videos")).json()["data"] == []
    assert (await world.other.get(f"/v1/videos/{video['id']}/content")).status_code == 404
    wrong = await world.http.get("/v1/videos", headers={"authorization": "Bearer nope"})
    assert wrong.status_code == 401 and wrong.json()["error"]["code"] == "invalid_api_key"
    assert KEY not in wrong.text


@pytest.mark.parametrize(("fields", "param"), [
    ({"seconds": "8"}, "seconds"),
    ({"size": "1280x720", "input_reference": "https://example.com/k.png"}, "size"),
    ({"model": "sora-2"}, "model"),
    ({"colour": "red"}, "colour"),
    ({"steps": "many"}, "steps"),
    ({"provider[bogus]": "x"}, "provider.bogus"),
])
async def test_refusals_name_the_field(world, fields, param) -> None:
    answer = await world.http.post("/v1/videos", data={"prompt": PROMPT, **fields})
    assert answer.status_code == 400, answer.text
    assert answer.json()["error"]["param"] == param
    assert world.emulator.ledger.jobs == []


async def test_a_size_no_vendor_renders_is_refused_not_dropped(world) -> None:
    answer = await world.http.post("/v1/videos", json={"prompt": PROMPT, "size": "1280x720"})
    assert answer.status_code == 400 and answer.json()["error"]["code"] == "no_route"
    assert "size" in answer.json()["error"]["message"]


async def test_idempotency_key_and_sdk_retries_return_the_same_video(world) -> None:
    body = {"prompt": PROMPT, "seed": "7"}
    one = (await world.http.post("/v1/videos", data=body, headers={"idempotency-key": "k1"})).json()
    two = (await world.http.post("/v1/videos", data=body, headers={"idempotency-key": "k1"})).json()
    assert one["id"] == two["id"]
    other = await world.http.post("/v1/videos", data={**body, "seed": "8"}, headers={"idempotency-key": "k1"})
    assert other.status_code == 409 and other.json()["error"]["code"] == "idempotency_key_reused"
    first = (await world.http.post("/v1/videos", data={**body, "seed": "9"})).json()
    retried = (await world.http.post("/v1/videos", data={**body, "seed": "9"},
                                     headers={"x-stainless-retry-count": "1"})).json()
    fresh = (await world.http.post("/v1/videos", data={**body, "seed": "9"})).json()  # a new ask, a new clip
    assert retried["id"] == first["id"] and fresh["id"] != first["id"]
    await world.until_final(fresh["id"])
    assert len(world.emulator.ledger.jobs) == 3


async def test_a_lost_answer_after_the_intent_then_the_sdk_retry_bills_once(world) -> None:
    world.app.state.server._lost = 1
    body = {"prompt": PROMPT, "seed": "11"}
    lost = await world.http.post("/v1/videos", data=body, headers={"x-stainless-retry-count": "0"})
    assert lost.status_code == 502
    retry = await world.http.post("/v1/videos", data=body, headers={"x-stainless-retry-count": "1"})
    assert retry.status_code == 200
    await world.until_final(retry.json()["id"])
    assert set(world.emulator.ledger.billed_per_clip().values()) == {1} and len(world.emulator.ledger.jobs) == 1


async def test_a_5xx_after_the_intent_says_do_not_retry(world, monkeypatch) -> None:
    real = world.gateway.submit

    async def submit_then_break(*args, **kwargs):
        await real(*args, **kwargs)
        raise RuntimeError("broke after the intent")

    monkeypatch.setattr(world.gateway, "submit", submit_then_break)
    answer = await world.http.post("/v1/videos", json={"prompt": PROMPT})
    assert answer.status_code == 500 and answer.headers["x-should-retry"] == "false"
    assert answer.json()["error"]["type"] == "server_error"


async def test_health_readiness_and_the_openapi_document(world) -> None:
    assert (await world.http.get("/healthz")).json() == {"status": "ok"}
    assert (await world.http.get("/readyz")).status_code == 200
    document = (await world.http.get("/openapi.json")).json()
    assert document["openapi"].startswith("3.") and "/v1/videos/{video_id}/content" in document["paths"]


async def test_variant_other_than_video_is_refused(world) -> None:
    video = (await world.http.post("/v1/videos", json={"prompt": PROMPT})).json()
    answer = await world.http.get(f"/v1/videos/{video['id']}/content", params={"variant": "thumbnail"})
    assert answer.status_code == 400 and answer.json()["error"]["param"] == "variant"


async def test_a_defective_clip_is_never_served(world) -> None:
    world.emulator["runware"].faults.add("job", "truncated")  # the vendor says success; the file is cut
    video = (await world.http.post("/v1/videos", json={"prompt": PROMPT, "input_reference":
                                                       "https://example.com/k.png"})).json()
    await world.until_final(video["id"])
    answer = await world.http.get(f"/v1/videos/{video['id']}/content")
    assert answer.status_code == 502 and answer.json()["error"]["code"] == "defective_clip"
    assert answer.headers["x-should-retry"] == "false"
    assert not list(world.app.state.server.config.media_dir.glob("*.mp4"))
