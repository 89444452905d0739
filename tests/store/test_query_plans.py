"""Every query a generation runs is answered through an index: per-job cost must not grow with the table.

The statements are caught as SQLite runs them (``set_trace_callback`` on the store's own connection,
with their bound values), during whole generations — with a monthly budget and with an idempotency key
used twice — and each is then asked ``EXPLAIN QUERY PLAN``. A ``SCAN`` of a table (a full pass over it)
fails the test, naming the statement (tables with a row per vendor, ``BOUNDED``, excepted).
"""

from __future__ import annotations

import sqlite3
from datetime import timedelta
from decimal import Decimal
from pathlib import Path

import pytest

from gateway import Gateway, OviRequest
from gateway.clock import VirtualClock
from gateway.emulator import Emulator
from gateway.routing.pricing import Budget
from gateway.store.journal import Journal

pytestmark = pytest.mark.anyio

REQUEST = OviRequest(prompt="A lighthouse. <S>Keep the light on.<E>", image="https://example.com/l.png")
WRITES = ("SELECT", "UPDATE", "DELETE", "INSERT")
BOUNDED = {"breakers", "rate_buckets", "vendor_slots"}
"""Tables with a row per vendor (or per request in flight): their size never grows with the journal."""


async def _statements(path: Path) -> list[str]:
    clock = VirtualClock()
    journal = Journal(str(path))
    seen: list[str] = []
    journal._engine.db.set_trace_callback(seen.append)  # type: ignore[union-attr]
    gateway = Gateway(emulator=Emulator(clock=clock, seed=4), clock=clock, journal=journal,
                      budget=Budget(limit_usd=Decimal("100"), period="month"))
    for vendor in ("runware", "fal", "wavespeed"):  # Runware reports costs: the calibration path too
        await gateway.agenerate(REQUEST, provider=vendor, idempotency_key=f"k-{vendor}")
    await gateway.agenerate(REQUEST, provider="runware", idempotency_key="k-runware")  # the key again
    await gateway.aclose()
    journal._engine.db.set_trace_callback(None)  # type: ignore[union-attr]
    journal.close()
    return [s for s in dict.fromkeys(" ".join(s.split()) for s in seen) if s.upper().startswith(WRITES)]


def _scans(db: sqlite3.Connection, statement: str) -> list[str]:
    plan = [row[3] for row in db.execute("EXPLAIN QUERY PLAN " + statement)]
    # "SCAN t" is a pass over the whole table; "SCAN t USING (COVERING) INDEX" walks an index range in
    # order, and a "SEARCH" is a lookup — both independent of the table's size for these queries.
    return [step for step in plan if step.startswith("SCAN ") and " INDEX " not in step
            and step.split()[1] not in BOUNDED and "CONSTANT ROW" not in step]


async def test_every_statement_of_a_generation_uses_an_index(tmp_path: Path) -> None:
    path = tmp_path / "journal.sqlite3"
    statements = await _statements(path)
    assert any("FROM submits" in s for s in statements) and any("budget_totals" in s for s in statements)
    with sqlite3.connect(path) as db:
        full = {s: scans for s in statements if (scans := _scans(db, s))}
    assert full == {}


def test_the_plan_check_catches_a_scan(tmp_path: Path) -> None:
    """The check above can fail: an unindexed filter is reported as a SCAN."""
    path = tmp_path / "journal.sqlite3"
    Journal(str(path)).close()
    with sqlite3.connect(path) as db:
        assert _scans(db, "SELECT 1 FROM submits WHERE error = 'x'") == ["SCAN submits"]
        assert _scans(db, "SELECT 1 FROM submits WHERE submit_key = 'x'") == []


def _scans_per_row(db: sqlite3.Connection, statement: str) -> list[str]:
    """Passes over a whole table made once per row of another: a bare ``SCAN`` inside a correlated
    subquery (quadratic as both tables grow)."""
    plan = {row[0]: (row[1], row[3]) for row in db.execute("EXPLAIN QUERY PLAN " + statement)}

    def correlated(node: int) -> bool:
        while node in plan:
            parent, detail = plan[node]
            if detail.startswith("CORRELATED"):
                return True
            node = parent
        return False

    return [detail for node, (parent, detail) in plan.items() if detail.startswith("SCAN ")
            and " INDEX " not in detail and correlated(parent)]


def test_pruning_makes_no_pass_over_a_table_per_row(tmp_path: Path) -> None:
    """``jobs prune`` on a big journal: every statement it runs is linear in the tables, never a pass over
    clips for each image (the images delete was, before)."""
    path = tmp_path / "journal.sqlite3"
    journal = Journal(str(path))
    seen: list[str] = []
    journal._engine.db.set_trace_callback(seen.append)  # type: ignore[union-attr]
    journal.prune(timedelta(days=1))
    journal._engine.db.set_trace_callback(None)  # type: ignore[union-attr]
    journal.close()
    statements = [s for s in dict.fromkeys(" ".join(s.split()) for s in seen) if s.upper().startswith("DELETE")]
    assert any("FROM images" in s for s in statements)
    with sqlite3.connect(path) as db:
        quadratic = {s: scans for s in statements if (scans := _scans_per_row(db, s))}
        assert _scans_per_row(db, "DELETE FROM images WHERE NOT EXISTS (SELECT 1 FROM clips c WHERE"
                                  " c.image_sha256 = images.sha256)") == ["SCAN c"]  # the check can fail
    assert quadratic == {}
