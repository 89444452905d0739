"""The server's rows on the storage interface, the same tests on both backends (PostgreSQL in the slow tier):
videos per owner, webhook dedupe, shared settings and the callback outbox's claims, retries and hand-backs."""

from __future__ import annotations

import asyncio
import json

import pytest

from gateway.store import open_store
from gateway.store.records import request_hash
from gateway.store.server_rows import VideoRow

pytestmark = pytest.mark.anyio
REQ = json.dumps({"prompt": "a cat <S>hello<E>", "seed": 0})


class Wall:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.slow)])
async def store(request: pytest.FixtureRequest, tmp_path):
    target = str(tmp_path / "store.sqlite3") if request.param == "sqlite" else request.getfixturevalue("pg_url")
    s = open_store(target)
    s.wall = Wall()
    yield s
    await s.aclose()


def video(video_id: str, owner: str = "o1", *, idem: str | None = None, fingerprint: str = "f", created: float = 1.0,
          callback: str | None = None) -> VideoRow:
    return VideoRow(video_id, owner, idem, fingerprint, "ovi", "5", "auto", "p", None, callback, created, None)


async def test_videos_are_per_owner_idempotent_paged_and_deleted(store) -> None:
    first = await store.video_insert(video("v1", idem="k", fingerprint="a"))
    assert await store.video_insert(video("v9", idem="k", fingerprint="b")) == first  # same key: the first row
    for n in (2, 3, 4):
        await store.video_insert(video(f"v{n}", created=float(n), fingerprint="a" if n == 4 else "x"))
    await store.video_insert(video("w1", owner="o2", created=9.0))
    assert await store.video_get("o2", "v1") is None and (await store.video_get("o1", "v1")) == first
    page, more = await store.video_page("o1", after=None, limit=2, ascending=True)
    assert [v.id for v in page] == ["v1", "v2"] and more
    page, more = await store.video_page("o1", after="v2", limit=5, ascending=True)
    assert [v.id for v in page] == ["v3", "v4"] and not more
    page, _ = await store.video_page("o1", after="v3", limit=5, ascending=False)
    assert [v.id for v in page] == ["v2", "v1"]
    assert (await store.video_recent_twin("o1", "a", since=2.0)).id == "v4"
    assert await store.video_recent_twin("o1", "a", since=5.0) is None
    await store.video_mark_deleted("v4")
    assert await store.video_get("o1", "v4") is None and await store.video_recent_twin("o1", "a", 2.0) is None
    await store.video_remove("v3")
    assert await store.video_get("o1", "v3") is None
    await store.video_ping()


async def test_webhook_deliveries_are_stored_once_per_status(store) -> None:
    args = {"vendor": "fal", "job_id": "j1", "clip_key": "c", "trusted": True, "body": b'{"a": 1}'}
    assert await store.webhook_record(status="succeeded", **args)
    assert not await store.webhook_record(status="succeeded", **args | {"body": b"other"})
    assert await store.webhook_record(status="running", **args | {"trusted": False})
    assert await store.webhook_latest_trusted("fal", "j1") == b'{"a": 1}'
    assert await store.webhook_latest_trusted("fal", "j2") is None
    assert await store.webhook_count(vendor="fal") == 2 and await store.webhook_count(trusted=0) == 1
    with pytest.raises(ValueError):
        await store.webhook_count(**{"1 = 1 OR vendor": "x"})


async def test_a_setting_is_made_once_and_shared(store, tmp_path) -> None:
    value = await store.setting("webhook_url_token_key")
    assert len(value) == 64 and await store.setting("webhook_url_token_key") == value
    assert await store.setting("other") != value


async def test_the_outbox_claims_retries_gives_up_and_hands_back(store) -> None:
    await store.open_clip("v1", REQ, request_hash(REQ))
    await store.video_insert(video("v1", callback="https://hooks.example.com/x"))
    assert await store.callbacks_due() == []  # the clip has not ended
    await store.finish_clip("v1", "{}")
    assert await store.callbacks_due() == [("v1", "o1", "https://hooks.example.com/x")]
    assert await store.outbox_put(event_id="evt_v1.completed", clip_key="v1", url="https://hooks.example.com/x",
                                  body='{"x": 1}')
    assert not await store.outbox_put(event_id="evt_v1.completed", clip_key="v1", url="u", body="b")
    assert await store.callbacks_due() == []  # queued: never again
    [row] = await store.outbox_claim("a", lease=60.0)
    assert (row.event_id, row.body, row.attempts) == ("evt_v1.completed", '{"x": 1}', 0)
    assert await store.outbox_claim("b") == []  # a live claim is not shared
    store.wall.now += 61.0  # the claimer died: its claim runs out and another drainer takes the row
    [again] = await store.outbox_claim("b", lease=60.0)
    assert again.id == row.id
    assert not await store.outbox_delivered(row.id, "a")  # "a" lost its claim: its late answer changes nothing
    await store.outbox_retry(row.id, "b", error="HTTP 500", next_at=store.wall.now + 10.0)
    assert await store.outbox_claim("b") == []  # not due yet
    store.wall.now += 10.0
    [third] = await store.outbox_claim("b")
    assert third.attempts == 1
    assert await store.outbox_release("b") == 1  # a draining replica hands it back, due at once
    [fourth] = await store.outbox_claim("c")
    assert await store.outbox_delivered(fourth.id, "c")
    assert await store.outbox_claim("c") == []
    [stored] = await store.outbox_rows("v1")
    assert stored["attempts"] == 2 and stored["delivered_at"] is not None and stored["lease_owner"] is None


async def test_the_outbox_gives_up_when_told(store) -> None:
    await store.open_clip("v2", REQ, request_hash(REQ))
    await store.outbox_put(event_id="e2", clip_key="v2", url="https://h.example.com", body="{}")
    [row] = await store.outbox_claim("a")
    await store.outbox_retry(row.id, "a", error="refused", next_at=None)
    store.wall.now += 1e6
    assert await store.outbox_claim("a") == []
    [stored] = await store.outbox_rows("v2")
    assert stored["given_up_at"] is not None and stored["last_error"] == "refused"


async def test_racing_drainers_split_the_outbox(store, tmp_path) -> None:
    for n in range(12):
        await store.outbox_put(event_id=f"e{n}", clip_key=f"v{n}", url="https://h.example.com", body="{}")
    peer = open_store(store.where if store.dialect == "postgresql" else store.path)
    peer.wall = store.wall
    try:
        claims = await asyncio.gather(*(s.outbox_claim(name, limit=3) for _ in range(3)
                                        for s, name in ((store, "a"), (peer, "b"))))
    finally:
        await peer.aclose()
    ids = [row.id for rows in claims for row in rows]
    assert len(ids) == 12 and len(set(ids)) == 12  # every row claimed once, none twice
