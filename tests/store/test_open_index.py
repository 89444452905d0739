"""A submit's writes build no temporary b-tree on SQLite, and the resume queries still use ``submits_open``.

SQLite builds a temporary b-tree for an ``IN (...)`` list each time it evaluates one: in a state change's
own condition (not final) and in the open submits' partial index condition, evaluated on every write of
the row before and after (migration 0013 states it with ``=`` and ``OR``). The statements are caught as a
generation runs them and asked ``EXPLAIN`` (``OpenEphemeral`` is that b-tree); the resume queries are
asked ``EXPLAIN QUERY PLAN`` on both backends (a partial index serves only a query stating its condition
in a form the engine can match).
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from gateway import Gateway, OviRequest
from gateway.clock import VirtualClock
from gateway.emulator import Emulator
from gateway.store import open_store
from gateway.store.journal import Journal
from gateway.store.queries import Queries

pytestmark = pytest.mark.anyio
REQUEST = OviRequest(prompt="A lighthouse. <S>Keep the light on.<E>", image="https://example.com/l.png")


async def test_no_submit_write_of_a_job_builds_a_temporary_btree(tmp_path: Path) -> None:
    path = tmp_path / "journal.sqlite3"
    journal = Journal(str(path))
    seen: list[str] = []
    journal._engine.db.set_trace_callback(seen.append)  # type: ignore[union-attr]
    clock = VirtualClock()
    gateway = Gateway(emulator=Emulator(clock=clock, seed=4), clock=clock, journal=journal)
    for vendor in ("runware", "fal", "wavespeed"):
        await gateway.agenerate(REQUEST, provider=vendor)
    await gateway.aclose()
    journal._engine.db.set_trace_callback(None)  # type: ignore[union-attr]
    journal.close()
    writes = [s for s in dict.fromkeys(seen) if s.split()[0] in ("INSERT", "UPDATE")
              and s.split()[1 if s.startswith("UPDATE") else 2] == "submits"]
    assert any(" state = 'running'" in s for s in writes) and any("INSERT INTO submits" in s for s in writes)
    with sqlite3.connect(path) as db:
        built = {s: n for s in writes if (n := [r[1] for r in db.execute("EXPLAIN " + s)].count("OpenEphemeral"))}
    # Only the one an UPDATE ... RETURNING collects its rows in (the end's held USD is judged from them).
    assert built == {s: 1 for s in writes if " RETURNING " in s}


def _resume_queries(emulated: bool) -> list[str]:
    """The SQL of ``unfinished`` and ``claim_unfinished`` as the store runs them."""
    seen: list[str] = []

    class Tx:
        lock = skip_locked = bytewise = ""
        returning = True

        def all(self, sql: str, args: tuple[object, ...] = ()) -> list[tuple[object, ...]]:
            seen.append(sql)
            return []

        def run(self, sql: str, args: tuple[object, ...] = ()) -> int:
            return 0

    queries = Queries()
    queries.unfinished(Tx(), emulated)  # type: ignore[arg-type]
    queries.claim_unfinished(Tx(), "me", wall=1.0, heartbeat=10.0, limit=5, emulated=emulated)  # type: ignore[arg-type]
    return seen


def test_the_resume_queries_read_the_open_submits_index(tmp_path: Path) -> None:
    path = tmp_path / "journal.sqlite3"
    Journal(str(path)).close()
    with sqlite3.connect(path) as db:
        for sql in _resume_queries(False):
            plan = [row[3] for row in db.execute("EXPLAIN QUERY PLAN " + sql.replace("?", "1"))]
            assert "SCAN s USING INDEX submits_open" in plan, (sql, plan)


@pytest.mark.slow
async def test_the_resume_queries_read_the_open_submits_index_on_postgresql(pg_url: str) -> None:
    store = open_store(pg_url)
    try:
        with store.engine.pool.connection() as conn:  # type: ignore[attr-defined]
            conn.execute("SET enable_seqscan = off")  # the plan the index allows, whatever the table's size
            for sql in _resume_queries(False):
                plan = "\n".join(str(row[0]) for row in conn.execute(
                    "EXPLAIN " + sql.replace("?", "%s"), tuple(1 for _ in range(sql.count("?")))))
                assert "submits_open" in plan, (sql, plan)
    finally:
        await store.aclose()
