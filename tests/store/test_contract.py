"""The storage contract: the same tests against both backends (SQLite on its writer thread, PostgreSQL).

PostgreSQL cases need ``OVI_GATEWAY_TEST_DATABASE_URL`` (scripts/test.sh starts a cluster) and run in
the slow tier. Wall time is injected, so lease and bucket expiry are tested without sleeping.
"""

from __future__ import annotations

import json
from datetime import timedelta
from decimal import Decimal

import pytest

from gateway.errors import BudgetExceeded, InvalidRequest
from gateway.store import open_store
from gateway.store.base import SqlStore
from gateway.store.records import HEARTBEAT_S, STALE_BEATS, BreakerRecord, request_hash

pytestmark = pytest.mark.anyio
REQ = json.dumps({"prompt": "a cat <S>hello<E>", "seed": 0})
HANDLE = {"provider": "fal", "job_id": "job-1", "data": {"status_url": "https://queue.fal.run/x"}}


async def clip(store: SqlStore, key: str = "c1") -> None:
    await store.open_clip(key, REQ, request_hash(REQ))


async def test_open_clip_is_idempotent_per_request(store: SqlStore) -> None:
    first = await store.open_clip("k", REQ, request_hash(REQ))
    again = await store.open_clip("k", REQ, request_hash(REQ))
    assert first == again and first.state == "open"
    other = json.dumps({"prompt": "a dog <S>hi<E>"})
    with pytest.raises(InvalidRequest, match="different request"):
        await store.open_clip("k", other, request_hash(other))
    with pytest.raises(InvalidRequest, match="non-empty"):
        await store.open_clip("", REQ, request_hash(REQ))


async def test_submit_lifecycle_and_final_states(store: SqlStore) -> None:
    await clip(store)
    await store.intent(clip_key="c1", submit_key="s1", provider="fal", quote_usd=Decimal("0.20"), steps=30,
                       dropped=("steps",))
    await store.accepted("s1", HANDLE)
    await store.state("s1", "running")
    [open_one] = await store.unfinished()
    assert (open_one.state, open_one.job_id, open_one.handle, open_one.dropped) == (
        "running", "job-1", HANDLE, ("steps",))
    await store.finish_clip("c1", '{"ok": true}')
    await store.finished("s1", cost_usd=Decimal("0.1875"), cost_source="reported")
    [done] = await store.submits("c1")
    assert done.state == "succeeded" and done.cost_usd == Decimal("0.1875")
    assert await store.unfinished() == []
    with pytest.raises(ValueError, match="already succeeded"):
        await store.failed("s1", error="late", may_be_billed=False)
    with pytest.raises(ValueError, match="already succeeded"):
        await store.fail_clip("c1", "late")
    assert await store.reported_costs("fal") == [(Decimal("0.1875"), Decimal("0.20"), 30)]


async def test_lease_heartbeat_rule(store: SqlStore) -> None:
    await clip(store)
    h = 2.0
    assert await store.claim_clip("c1", "a", heartbeat=h) is None
    assert await store.claim_clip("c1", "b", heartbeat=h) == "a"
    for _ in range(10):  # a holder that beats on time keeps the clip however long the call runs
        store.wall.now += h
        assert await store.renew_clip("c1", "a", heartbeat=h)
        assert await store.claim_clip("c1", "b", heartbeat=h) == "a"
    store.wall.now += STALE_BEATS * h - 0.01  # just short of 3 missed beats: still live
    assert await store.claim_clip("c1", "b", heartbeat=h) == "a"
    store.wall.now += 0.02  # 3 beats missed: stale, taken over
    assert await store.claim_clip("c1", "b", heartbeat=h) is None
    assert not await store.renew_clip("c1", "a", heartbeat=h)  # the old holder learns it lost the clip
    await store.release_clip("c1", "a")  # a non-holder's release does nothing
    assert await store.claim_clip("c1", "c", heartbeat=h) == "b"
    await store.release_clip("c1", "b")
    assert await store.claim_clip("c1", "c") is None
    assert HEARTBEAT_S * STALE_BEATS == 30.0


async def test_budget_reservation_is_atomic_with_the_intent(store: SqlStore) -> None:
    await clip(store)
    budget = (Decimal("0.50"), "day", "")
    for key in ("a", "b"):
        await store.intent(clip_key="c1", submit_key=key, provider="fal", quote_usd=Decimal("0.20"), budget=budget)
    with pytest.raises(BudgetExceeded, match="over the"):
        await store.intent(clip_key="c1", submit_key="c", provider="fal", quote_usd=Decimal("0.20"), budget=budget)
    refused = next(s for s in await store.submits("c1") if s.submit_key == "c")
    assert refused.state == "failed" and not refused.may_be_billed
    from gateway.routing.pricing import Budget

    since = Budget(limit_usd=Decimal(1), period="day").since()
    assert await store.reserved_and_spent(since=since) == Decimal("0.40")
    await store.failed("a", error="refused by vendor", may_be_billed=False)  # releases its hold
    await store.intent(clip_key="c1", submit_key="d", provider="fal", quote_usd=Decimal("0.20"), budget=budget)
    await store.finished("d", cost_usd=Decimal("0.1171"), cost_source="reported")  # reported cost replaces quote
    assert await store.reserved_and_spent(since=since) == Decimal("0.3171")
    assert await store.reserved_and_spent() == Decimal("0.3171")
    with pytest.raises(BudgetExceeded, match="no known price"):
        await store.intent(clip_key="c1", submit_key="e", provider="fal", quote_usd=None, budget=budget)


async def test_running_totals_match_a_rescan(store: SqlStore) -> None:
    await clip(store)
    await store.intent(clip_key="c1", submit_key="x", provider="runware", quote_usd=Decimal("0.13"))
    await store.reserve("x", Decimal("0.15"))
    await store.unknown("x", error="?")
    await store.intent(clip_key="c1", submit_key="y", provider="runware", quote_usd=Decimal("0.13"))
    await store.failed("y", error="x", may_be_billed=True)
    from datetime import UTC, datetime

    total = await store.reserved_and_spent()  # one read of the running totals
    scanned = await store.reserved_and_spent(since=datetime(2000, 1, 2, tzinfo=UTC))  # a scan
    assert total == scanned == Decimal("0.28")


async def test_breakers_are_shared_with_wall_clock_times(store: SqlStore, journal_target: str) -> None:
    record = BreakerRecord("fal", failures=3, opened=1, open_until=store.wall() + 30, probe_until=None,
                           last_error="ProviderUnavailable: 503")
    await store.save_breaker(record)  # BATCHED: other processes see it once committed
    await store.drain()
    other = open_store(journal_target)
    try:
        assert (await other.load_breakers())["fal"] == record
    finally:
        await other.aclose()


async def test_concurrency_slots_and_rate_tokens(store: SqlStore) -> None:
    assert await store.take_slot("fal", "p1", cap=2, ttl=10)
    assert await store.take_slot("fal", "p2", cap=2, ttl=10)
    assert not await store.take_slot("fal", "p3", cap=2, ttl=10)
    assert await store.take_slot("runware", "p3", cap=2, ttl=10)  # per vendor
    await store.free_slot("fal", "p1")
    assert await store.take_slot("fal", "p3", cap=2, ttl=10)
    store.wall.now += 11  # holders that died without freeing expire
    assert await store.take_slot("fal", "p4", cap=1, ttl=10)
    assert await store.take_token("fal", per_second=2.0, burst=2.0) == 0.0
    assert await store.take_token("fal", per_second=2.0, burst=2.0) == 0.0
    assert await store.take_token("fal", per_second=2.0, burst=2.0) == pytest.approx(0.5)
    store.wall.now += 0.5
    assert await store.take_token("fal", per_second=2.0, burst=2.0) == 0.0


async def test_resume_workers_split_unfinished_clips(store: SqlStore) -> None:
    for key in ("c1", "c2", "c3", "c4"):
        await clip(store, key)
        await store.intent(clip_key=key, submit_key=f"s-{key}", provider="fal", quote_usd=Decimal("0.2"))
    await store.claim_clip("c4", "caller", heartbeat=5)  # a live call holds c4: never taken over
    first = await store.claim_unfinished("w1", limit=2)
    second = await store.claim_unfinished("w2", limit=5)
    assert len(first) == 2 and sorted(first + second) == ["c1", "c2", "c3"]
    store.wall.now += 3 * 5 + 1  # the caller stopped beating: its clip is free for a worker
    assert await store.claim_unfinished("w3") == ["c4"]


async def test_images_and_prune(store: SqlStore) -> None:
    await store.put_image("ab" * 32, b"\x89PNG...", "image/png")
    assert await store.get_image("ab" * 32) == b"\x89PNG..."
    for key in ("done", "open"):
        await clip(store, key)
        await store.intent(clip_key=key, submit_key=f"s-{key}", provider="fal", quote_usd=Decimal("0.2"))
    await store.finish_clip("done", "{}")
    await store.finished("s-done", cost_usd=None, cost_source="estimated")
    await store.fail_clip("open", "gave up")  # failed clip, but its paid job is still open
    assert await store.prune(timedelta(days=1)) == {"submits": 0, "clips": 0, "images": 0}
    counts = await store.prune(timedelta(seconds=-1))  # everything is "older" than a moment from now
    assert counts == {"submits": 1, "clips": 1, "images": 1}
    assert await store.get_clip("done") is None and await store.get_clip("open") is not None
    assert [s.submit_key for s in await store.unfinished()] == ["s-open"]


async def test_emulated_rows_never_feed_real_spend(journal_target: str) -> None:
    fake = open_store(journal_target, emulator_instance="emu-1")
    real = open_store(journal_target)
    try:
        await fake.open_clip("e", REQ, request_hash(REQ))
        await fake.intent(clip_key="e", submit_key="se", provider="fal", quote_usd=Decimal("0.2"))
        await fake.finish_clip("e", "{}")
        await fake.finished("se", cost_usd=Decimal("0.2"), cost_source="reported")
        await fake.save_breaker(BreakerRecord("fal", 3, 1, 1e12, None, "x"))
        await fake.drain()
        assert await real.reserved_and_spent() == 0 and await real.spend() == []
        assert await real.reported_costs("fal") == [] and await real.load_breakers() == {}
        assert await fake.reserved_and_spent() == Decimal("0.2")
    finally:
        await fake.aclose()
        await real.aclose()


def test_jobs_prune_command(tmp_path) -> None:
    from click.testing import CliRunner

    from gateway.cli.commands import cli
    from gateway.store.journal import Journal

    path = str(tmp_path / "j.sqlite3")
    with Journal(path) as journal:
        for key in ("done", "open"):
            journal.open_clip(key, REQ, request_hash(REQ))
            journal.intent(clip_key=key, submit_key=f"s-{key}", provider="fal", quote_usd=Decimal("0.2"))
        journal.finish_clip("done", "{}")
        journal.finished("s-done", cost_usd=None, cost_source="estimated")
    kept = CliRunner().invoke(cli, ["jobs", "prune", "--journal", path, "--older-than", "1d", "--json"])
    assert kept.exit_code == 0, kept.output
    assert json.loads(kept.output)["clips"] == 0
    bad = CliRunner().invoke(cli, ["jobs", "prune", "--journal", path, "--older-than", "soon"])
    assert bad.exit_code != 0 and "expected a number and a unit" in bad.output
    with Journal(path) as journal:
        assert journal.prune(timedelta(seconds=-1))["clips"] == 1  # the finished one; the open one stays
        assert journal.get_clip("open") is not None and journal.get_clip("done") is None
