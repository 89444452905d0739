"""A batch's spend (``reserved_and_spent(clip_prefix=…)``, which ``ovi-gateway batch`` reads after every
row) counts exactly the clips whose key starts with the prefix, and reads a range of a clip-key index
instead of every submit — on both backends (issue 13: no per-job cost that grows with the table)."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest

from gateway import Gateway, OviRequest
from gateway.clock import VirtualClock
from gateway.emulator import Emulator
from gateway.store import postgres, sqlite_engine
from gateway.store.journal import Journal
from gateway.store.values import _after_prefix

pytestmark = pytest.mark.anyio

REQUEST = OviRequest(prompt="A lighthouse. <S>Keep the light on.<E>", image="https://example.com/l.png")
PREFIX = "batch-a-"
KEYS = ("batch-a-1", "batch-a-\u00e9t\u00e9", "batch-a-\U0001f600", "batch-a-", "batch-ab-1", "batch-a.1",
        "Batch-a-1", "batch-a", "other")


def test_after_prefix_is_the_least_text_after_every_text_with_the_prefix() -> None:
    assert _after_prefix("batch-a-") == "batch-a."
    assert _after_prefix("a\U0010ffff") == "b"
    assert _after_prefix("\ud7ff") == "\ue000"  # skips the surrogates, which UTF-8 cannot hold
    assert _after_prefix("\U0010ffff") is None


async def test_a_batch_spend_counts_exactly_its_prefix(journal_target: str) -> None:
    clock = VirtualClock()
    journal = Journal(journal_target, emulator_instance="any")
    gateway = Gateway(emulator=Emulator(clock=clock, seed=2), clock=clock, journal=journal)
    costs: dict[str, Decimal] = {}
    for key in KEYS:
        result = await gateway.agenerate(REQUEST, provider="runware", idempotency_key=key)
        assert result.cost_usd is not None
        costs[key] = result.cost_usd
    await gateway.aclose()
    try:
        want = sum((cost for key, cost in costs.items() if key.startswith(PREFIX)), Decimal(0))
        assert want > 0 and len([k for k in KEYS if k.startswith(PREFIX)]) == 4
        assert journal.reserved_and_spent(clip_prefix=PREFIX) == want
        wider = want + sum(costs[k] for k in ("batch-ab-1", "batch-a.1", "batch-a"))
        assert journal.reserved_and_spent(clip_prefix="batch-a") == wider
    finally:
        journal.close()


def _statement(monkeypatch: pytest.MonkeyPatch, tx_class: Any, journal: Journal) -> tuple[str, tuple[Any, ...]]:
    seen: list[tuple[str, tuple[Any, ...]]] = []
    real = tx_class.all

    def spy(self: Any, sql: str, args: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        seen.append((sql, args))
        return real(self, sql, args)  # type: ignore[no-any-return]

    monkeypatch.setattr(tx_class, "all", spy)
    journal.reserved_and_spent(clip_prefix=PREFIX)
    monkeypatch.setattr(tx_class, "all", real)
    (found,) = [(sql, args) for sql, args in seen if "FROM submits" in sql]
    return found


def test_sqlite_reads_a_range_of_the_clip_key_index(tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    journal = Journal(str(tmp_path / "j.sqlite3"))
    try:
        sql, args = _statement(monkeypatch, sqlite_engine._Tx, journal)
        plan = [row[3] for row in journal._engine.db.execute(  # type: ignore[union-attr]
            "EXPLAIN QUERY PLAN " + sql, args)]
    finally:
        journal.close()
    assert plan == ["SEARCH submits USING INDEX submits_by_clip (clip_key>? AND clip_key<?)"]


@pytest.mark.slow
def test_postgresql_reads_a_range_of_the_bytewise_index(pg_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    import psycopg

    journal = Journal(pg_url)
    try:
        sql, args = _statement(monkeypatch, postgres._Tx, journal)
    finally:
        journal.close()
    with psycopg.connect(pg_url) as conn:
        conn.execute("SET enable_seqscan = off")  # an empty table: make the planner show what it can use
        plan = "\n".join(r[0] for r in conn.execute("EXPLAIN " + sql.replace("?", "%s"), args))
    assert "submits_by_clip_bytewise" in plan, plan
