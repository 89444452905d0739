"""9. Storage: per-job cost of the journal, side by side in one run.

Rows: ``Gateway.agenerate`` per job (Runware, zero job time, VirtualClock, one job at a time) with
``journal=None``, the default SQLite journal — its SQL on the store's writer thread, as every gateway
on a real clock runs it (``Journal(offload=True)``: a virtual clock alone would keep it inline, for
deterministic tests; that inline row is shown too) — and PostgreSQL (when ``OVI_GATEWAY_TEST_DATABASE_URL`` or
``OVI_GATEWAY_BENCH_DATABASE_URL`` names one — scripts/postgres.sh provides a throwaway cluster); the
cost of one flush (4 KiB write + ``os.fsync``) on the journal's disk, measured in the same run; and
the SQLite per-job cost with the journal pre-filled to 100 and to 100,000 rows (10,000 with
``--quick``), without and with a monthly budget. Runware reports costs, so every job also reads the
recalibration query that used to scan the table. Every row's jobs run in ``ROUNDS`` rounds in one event
loop, the rows taking turns in each round (one row after another, each once, drifted with the machine).

Targets (issue 13): SQLite minus ``journal=None`` <= 2 x flush + 0.25 ms per job; flat from 100 to
100,000 rows. 10,000 in flight with the default journal is the concurrency benchmark's row.
"""

from __future__ import annotations

import asyncio
import gc
import os
import sqlite3
import tempfile
import time
import uuid
from decimal import Decimal
from pathlib import Path
from typing import Any

from benchmarks.common import IMAGE, median, prompt
from gateway import Gateway, OviRequest
from gateway.clock import VirtualClock
from gateway.emulator import Emulator
from gateway.routing.pricing import Budget
from gateway.store.journal import Journal


def flush_ms(folder: str, n: int = 50) -> float:
    """Median milliseconds of a 4 KiB write plus ``os.fsync`` in ``folder``."""
    samples = []
    with open(os.path.join(folder, "fsync.probe"), "wb") as handle:
        for _ in range(n):
            began = time.perf_counter()
            handle.write(b"\0" * 4096)
            handle.flush()
            os.fsync(handle.fileno())
            samples.append((time.perf_counter() - began) * 1000)
    return median(samples)


def _prefill(path: str, rows: int) -> None:
    """``rows`` finished clips with one reported-cost submit each, written in bulk (the held USD and the
    running totals consistent with them, as the store keeps them)."""
    Journal(path).close()  # create and migrate
    now = time.strftime("%Y-%m-%dT%H:%M:%S.000000+00:00", time.gmtime())
    with sqlite3.connect(path) as db:
        db.executemany("INSERT INTO clips (key, request_json, request_hash, state, result_json, created_at,"
                       " updated_at) VALUES (?, '{}', 'h', 'succeeded', '{}', ?, ?)",
                       ((f"old-{i}", now, now) for i in range(rows)))
        db.executemany("INSERT INTO submits (submit_key, clip_key, provider, state, quote_usd, cost_usd, cost_source,"
                       " held_usd, created_at, updated_at, steps) VALUES (?, ?, 'runware', 'succeeded', '0.1171',"
                       " '0.1171', 'reported', '0.1171', ?, ?, 30)",
                       ((f"old-s-{i}", f"old-{i}", now, now) for i in range(rows)))
        total = str(Decimal("0.1171") * rows)
        for period, start in (("day", now[:10]), ("month", now[:7]), ("total", "")):
            db.execute("INSERT INTO budget_totals VALUES ('', 0, ?, ?, ?)", (period, start, total))


ROUNDS = 6
"""Every configuration's jobs run in this many rounds, the configurations taking turns in each round, so a
drift in the machine's speed during the run (other processes, the disk) falls on all of them alike."""


class _Side:
    """One configuration's gateway on its own emulator and virtual clock, timed over its rounds."""

    def __init__(self, journal: Any, budget: Budget | None = None, offload: bool = True) -> None:
        clock = VirtualClock()
        if isinstance(journal, str) and not journal.startswith("postgresql"):
            journal = Journal(journal, offload=offload)  # the writer thread, as on a real clock
        self.journal = journal
        self.gateway = Gateway(emulator=Emulator(clock=clock, job_time=lambda rng: 0.0, seed=3), clock=clock,
                               journal=journal, jitter_seed=3, budget=budget)
        self.requests = [OviRequest(prompt=prompt(i), image=IMAGE) for i in range(8)]
        self.seconds, self.jobs = 0.0, 0

    async def run(self, jobs: int, timed: bool = True) -> None:
        began = time.perf_counter()
        for i in range(jobs):
            await self.gateway.agenerate(self.requests[(self.jobs + i) % 8], provider="runware")
        if timed:
            self.seconds += time.perf_counter() - began
            self.jobs += jobs

    async def close(self) -> None:
        await self.gateway.aclose()
        if isinstance(self.journal, Journal):
            self.journal.close()


async def _per_job(configs: dict[str, tuple[Any, Budget | None, bool]], jobs: int) -> dict[str, float]:
    """Milliseconds per job of each configuration (journal, budget, offload): ``jobs`` each, in ``ROUNDS``."""
    sides = {name: _Side(*config) for name, config in configs.items()}
    try:
        for side in sides.values():
            await side.run(3, timed=False)  # warm-up
        for _ in range(ROUNDS):
            gc.collect()
            for side in sides.values():
                await side.run(max(1, jobs // ROUNDS))
        return {name: side.seconds / side.jobs * 1000 for name, side in sides.items()}
    finally:
        for side in sides.values():
            await side.close()


def _pg_url() -> str | None:
    base = os.environ.get("OVI_GATEWAY_BENCH_DATABASE_URL") or os.environ.get("OVI_GATEWAY_TEST_DATABASE_URL")
    if not base:
        return None
    import psycopg

    schema = f"bench_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(base, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {schema}")
    return f"{base}{'&' if '?' in base else '?'}options=-csearch_path%3D{schema}"


def run(quick: bool = False) -> dict[str, Any]:
    jobs = 40 if quick else 300
    big = 10_000 if quick else 100_000
    monthly = Budget(limit_usd=Decimal("1000000"), period="month")
    out: dict[str, Any] = {"jobs": jobs, "big_rows": big}
    with tempfile.TemporaryDirectory() as scratch:
        out["flush_ms"] = flush_ms(scratch)
        url = _pg_url()
        configs: dict[str, tuple[Any, Budget | None, bool]] = {
            "none_ms": (None, None, True),
            "sqlite_ms": (os.path.join(scratch, "fresh.sqlite3"), None, True),
            "sqlite_inline_ms": (os.path.join(scratch, "inline.sqlite3"), None, False)}
        if url is not None:
            configs["postgres_ms"] = (url, None, True)
        for rows in (100, big):
            for label, budget in (("", None), ("_budget", monthly)):
                path = os.path.join(scratch, f"rows-{rows}{label}.sqlite3")
                _prefill(path, rows)
                configs[f"rows_{rows}{label}_ms"] = (path, budget, True)
        out.update(asyncio.run(_per_job(configs, jobs)))
        out.setdefault("postgres_ms", None)
        out["fsync_dir_is_tmp"] = Path(scratch).is_relative_to(tempfile.gettempdir())
    return out


def rows(result: dict[str, Any]) -> tuple[list[str], list[list[Any]], list[str]]:
    header = ["configuration", "ms per job"]
    none = result["none_ms"]
    body: list[list[Any]] = [
        ["journal=None", f"{none:.3f}"],
        ["default SQLite journal (writer thread)", f"{result['sqlite_ms']:.3f}"],
        ["SQLite journal inline on the loop (virtual-clock tests)",
         f"{result['sqlite_inline_ms']:.3f}" if "sqlite_inline_ms" in result else "not run"],
        ["PostgreSQL journal (Unix socket)",
         "not run (no database URL)" if result["postgres_ms"] is None else f"{result['postgres_ms']:.3f}"],
        ["one flush on this disk (4 KiB write + fsync)", f"{result['flush_ms']:.3f}"],
    ]
    big = result["big_rows"]
    for rows_ in (100, big):
        body.append([f"SQLite, {rows_:,} rows already in the journal", f"{result[f'rows_{rows_}_ms']:.3f}"])
        body.append([f"SQLite, {rows_:,} rows, monthly budget", f"{result[f'rows_{rows_}_budget_ms']:.3f}"])
    extra = result["sqlite_ms"] - none
    target = 2 * result["flush_ms"] + 0.25
    notes = [f"{result['jobs']} sequential Runware jobs per row (zero job time, virtual clock), in {ROUNDS} rounds the"
             " rows take turns in.",
             f"SQLite minus journal=None: {extra:.3f} ms per job (target <= 2 x flush + 0.25 = {target:.3f} ms).",
             f"{big:,} vs 100 rows: {result[f'rows_{big}_ms'] / result['rows_100_ms']:.2f}x without a budget, "
             f"{result[f'rows_{big}_budget_ms'] / result['rows_100_budget_ms']:.2f}x with a monthly budget "
             "(target: flat)."]
    return header, body, notes
