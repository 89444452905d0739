"""What a clip's row keeps of its call (issue 13, review finding 5), on SQLite and PostgreSQL (slow tier):
the request image stored once by content hash (a resume worker elsewhere reads the bytes, not a path),
and the caller's route, used when a re-attached job needs a fresh submit."""

from __future__ import annotations

import base64
import hashlib
from datetime import timedelta

import pytest

from gateway import Gateway, OviRequest, Route
from gateway.clock import VirtualClock
from gateway.emulator import Emulator
from gateway.errors import GatewayError, InvalidRequest
from gateway.store.intake import load_request, stored_request
from gateway.store.records import request_hash
from tests.conftest import PNG_BYTES

pytestmark = pytest.mark.anyio
DATA_URI = "data:image/png;base64," + base64.b64encode(PNG_BYTES).decode()
SHA = hashlib.sha256(PNG_BYTES).hexdigest()


def test_a_stored_request_round_trips_every_image_kind(png_file) -> None:
    store: dict[str, bytes] = {}
    for image in (DATA_URI, base64.b64encode(PNG_BYTES).decode(), png_file, "https://example.com/a.png"):
        request = OviRequest(prompt="A cat. <S>Hi.<E>", image=image)
        text, stored = stored_request(request)
        if stored is None:
            assert request.image is not None and request.image.kind == "url"
            assert load_request(text, store.get) == request
            continue
        assert stored.sha256 == SHA and stored.data == PNG_BYTES and "iVBOR" not in text  # no bytes in the row
        store[stored.sha256], kept = stored.data, text
        again = load_request(text, store.get)
        assert again == request and again.image is not None and again.image.read_bytes() == PNG_BYTES
    with pytest.raises(InvalidRequest, match="no longer holds the request's image"):
        load_request(kept, {SHA: b"other bytes"}.get)


async def test_a_clip_row_refers_to_its_image_and_a_worker_elsewhere_rebuilds_it(journal_target: str, tmp_path) -> None:
    clock = VirtualClock()
    emulator = Emulator(clock=clock, seed=6, job_time=lambda rng: 60.0)
    picture = tmp_path / "only-here.png"
    picture.write_bytes(PNG_BYTES)
    first = Gateway(emulator=emulator, clock=clock, journal=journal_target)
    for key in ("a", "b"):  # two clips of one image: its bytes are stored once
        await first.submit(OviRequest(prompt=f"A cat {key}. <S>Hi.<E>", image=picture), provider="fal",
                           idempotency_key=key)
    await first.aclose()  # the followers stop; both paid jobs stay open
    assert first.journal is not None
    rows = first.journal._query("SELECT request_json, image_sha256 FROM clips ORDER BY key")
    assert [r[1] for r in rows] == [SHA, SHA] and all("iVBOR" not in r[0] for r in rows)
    assert first.journal._query("SELECT COUNT(*) FROM images")[0][0] == 1
    picture.unlink()  # "another machine": the file is not there
    worker = Gateway(emulator=emulator, clock=clock, journal=journal_target)
    resumed = worker.aresume()
    await clock.sleep(120.0)
    outcomes = await resumed
    assert sorted(o.outcome for o in outcomes) == ["succeeded", "succeeded"]
    assert worker.journal is not None
    assert worker.journal.prune(timedelta(days=1)) == {"submits": 0, "clips": 0, "images": 0}
    text, image = stored_request(OviRequest(prompt="A third. <S>Hi.<E>", image=PNG_BYTES))
    worker.journal.open_clip("c", text, request_hash(text), image=image)  # still open: kept, with its image
    assert worker.journal.prune(timedelta(seconds=-1)) == {"submits": 2, "clips": 2, "images": 0}
    worker.journal.fail_clip("c", "gave up")
    assert worker.journal.prune(timedelta(seconds=-1))["images"] == 1  # no kept row refers to it now
    await worker.aclose()


async def test_a_reattached_job_keeps_the_callers_route(journal_target: str) -> None:
    clock = VirtualClock()
    emulator = Emulator(clock=clock, seed=9, faults="runware.job=fail", job_time=lambda rng: 60.0)
    request = OviRequest(prompt="A knight. <S>Hold the line.<E>", image="https://example.com/k.png")
    first = Gateway(emulator=emulator, clock=clock, journal=journal_target)
    await first.submit(request, route=Route(provider="runware", job_retries=0), idempotency_key="pinned")
    await first.aclose()  # the follower stops; the Runware job stays open
    second = Gateway(emulator=emulator, clock=clock, journal=journal_target)  # a new process, default route
    waiting = second.job("pinned").wait()
    with pytest.raises(GatewayError) as caught:
        await waiting
    assert caught.value.provider == "runware"  # Runware's verdict ends it: the route pinned Runware
    assert second.journal is not None
    assert [s.provider for s in second.journal.submits("pinned")] == ["runware"]  # nothing bought elsewhere
    assert sum(emulator.ledger.calls(name) for name in ("fal", "wavespeed")) == 0
    await second.aclose()


async def test_a_route_changed_in_place_is_stored_as_it_runs(tmp_path) -> None:
    """``Route`` is frozen but its lists are not: a call after ``route.ignore.append(...)`` stores the
    route it runs with, not the one an earlier call cached (a later call of the key adopts what is stored)."""
    import json

    clock = VirtualClock()
    gateway = Gateway(emulator=Emulator(clock=clock, seed=1, job_time=lambda rng: 0.0), clock=clock,
                      journal=str(tmp_path / "j.sqlite3"))
    route = Route(ignore=[])
    request = OviRequest(prompt="A cat. <S>Hi.<E>", image="https://example.com/a.png")
    await gateway.agenerate(request, route=route, idempotency_key="first")
    route.ignore.append("runware")
    later = await gateway.agenerate(request.model_copy(update={"prompt": "A dog. <S>Hi.<E>"}), route=route,
                                    idempotency_key="second")
    assert gateway.journal is not None
    stored = [json.loads(gateway.journal.get_clip(k).options_json)["route"] for k in ("first", "second")]  # type: ignore[union-attr,arg-type]
    assert stored == [{}, {"ignore": ["runware"]}] and later.provider != "runware"
    await gateway.aclose()


async def test_the_async_store_keeps_images_options_probes_and_lease_holders(journal_target: str) -> None:
    from gateway.store import open_store
    from gateway.store.intake import CallOptions
    from gateway.store.records import BreakerRecord

    store = open_store(journal_target)
    wall = [1_000_000.0]
    store.wall = lambda: wall[0]
    try:
        text, image = stored_request(OviRequest(prompt="A cat. <S>Hi.<E>", image=DATA_URI))
        options = CallOptions(Route(provider="fal", max_price="0.30"), caller="c" * 32).to_json()
        clip = await store.open_clip("k", text, request_hash(text), image=image, options_json=options)
        assert (clip.image_sha256, CallOptions.from_json(clip.options_json)) == (
            SHA, CallOptions(Route(provider="fal", max_price="0.30"), "c" * 32))
        assert load_request(clip.request_json, {SHA: await store.get_image(SHA)}.get).image.read_bytes() == PNG_BYTES
        assert await store.claim_clip("k", "me") is None and await store.lease_holder("k") == "me"
        await store.save_breaker(BreakerRecord("fal", 3, 1, wall[0] - 1, None, "503"))  # half-open
        await store.drain()
        assert await store.take_probe("fal", "p1", ttl=60) and not await store.take_probe("fal", "p2", ttl=60)
        await store.end_probe("fal", "p1")
        assert await store.take_probe("fal", "p2", ttl=60) and not await store.take_probe("fal", "p1", ttl=60)
        wall[0] += 61
        assert await store.take_probe("fal", "p1", ttl=60)  # p2's probe lease ran out
    finally:
        await store.aclose()
