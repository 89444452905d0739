"""A fleet on one PostgreSQL: 8 OS processes × 100 clips (1 s emulated jobs) against the loopback emulator,
idempotency keys shared between processes, random SIGKILLs, then resume workers. From the emulator's
ledger (its own process, so it survives every kill): 0 lost, 0 double-billed, the budget never exceeded.

The emulator and ledger come from the shared kill/ledger harness (tests/harness.py); the fleet child
below runs many clips per process, which the harness's one-clip child does not.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import textwrap
import time
from collections import Counter
from decimal import Decimal

import psycopg
import pytest

from tests.harness import emulator_process, ledger

pytestmark = pytest.mark.slow

PROCESSES, CLIPS, KEYS = 8, 100, 400  # 800 calls drawn from 400 keys: most keys are asked for by 2+ processes
BUDGET = Decimal("40.00")  # 400 Runware clips at ~$0.117 quote more than this: the budget binds

# argv: base_url database_url worker_index ("resume" for a resume worker)
FLEET_CHILD = textwrap.dedent("""
    import asyncio, json, random, sys
    from decimal import Decimal
    from gateway import Gateway, GatewayError, OviRequest
    from gateway.emulator.loopback import LoopbackTransport
    from gateway.jobs.polling import PollPolicy
    from gateway.routing.pricing import Budget

    base, url, who, clips, keys, budget = sys.argv[1:7]
    gateway = Gateway(transport=LoopbackTransport(base), journal=url, keys={"runware": "k"}, providers=["runware"],
                      poll=PollPolicy(expected=1.0, interval=0.2, first_fraction=0.8, min_interval={}),
                      backoff_base=0.05, lease_heartbeat=5.0,
                      budget=Budget(limit_usd=Decimal(budget), period="total"))

    def request(key):
        return OviRequest(prompt=f"Clip {key}. <S>Line {key}.<E>", image="https://example.com/k.png")

    async def one(key, gate):
        async with gate:
            try:
                result = await gateway.agenerate(request(key), provider="runware", idempotency_key=key)
                return {"key": key, "outcome": "succeeded", "job_id": result.job_id}
            except GatewayError as error:
                return {"key": key, "outcome": type(error).__name__}

    async def main():
        if who == "resume":
            outcomes = await gateway.aresume()
            print(json.dumps([{"outcome": o.outcome, "clip": o.clip_key} for o in outcomes]), flush=True)
        else:
            rng = random.Random(int(who))
            mine = rng.sample(range(int(keys)), int(clips))
            gate = asyncio.Semaphore(50)
            done = await asyncio.gather(*(one(f"clip-{k}", gate) for k in mine))
            print(json.dumps(done), flush=True)
        await gateway.aclose()

    asyncio.run(main())
""")


def _spawn(base: str, url: str, who: str) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-c", FLEET_CHILD, base, url, who, str(CLIPS), str(KEYS), str(BUDGET)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_eight_processes_share_one_postgresql_without_losing_or_double_billing(pg_url: str) -> None:
    began = time.monotonic()
    rng = random.Random(13)
    with emulator_process(job_time=1.0, seed=13) as base:
        workers = [_spawn(base, pg_url, str(w)) for w in range(PROCESSES)]
        doomed = []
        for w in rng.sample(range(PROCESSES), 3):  # random SIGKILLs, mid-flight (submits, polls, journal writes)
            time.sleep(rng.uniform(0.2, 1.0))
            if workers[w].poll() is None:  # on a quiet machine a worker may already be done: not killed then
                os.kill(workers[w].pid, signal.SIGKILL)
                doomed.append(w)
        assert doomed, "no worker was still running to be killed: the test would prove nothing"
        finished = {}
        for w, process in enumerate(workers):
            out, err = process.communicate(timeout=150)
            if w in doomed:
                assert process.returncode == -signal.SIGKILL
            else:
                assert process.returncode == 0, err[-2000:]
                finished[w] = json.loads(out.strip().splitlines()[-1])
        # Resume workers, two at a time, until nothing is left open (the killed callers' leases are free at
        # once: same kernel and PID namespace, processes gone).
        for _ in range(4):
            resumers = [_spawn(base, pg_url, "resume") for _ in range(2)]
            outcomes = []
            for process in resumers:
                out, err = process.communicate(timeout=120)
                assert process.returncode == 0, err[-2000:]
                outcomes += json.loads(out.strip().splitlines()[-1])
            with psycopg.connect(pg_url) as conn:
                still_open = conn.execute("SELECT COUNT(*) FROM submits WHERE state IN ('intent', 'accepted',"
                                          " 'queued', 'running', 'unknown')").fetchone()[0]
            if still_open == 0:
                break
        jobs = ledger(base)["jobs"]
    elapsed = time.monotonic() - began

    billed = [j for j in jobs if j["billable"]]
    per_clip = Counter(j["clip"] for j in billed)
    assert max(per_clip.values()) == 1, [c for c, n in per_clip.items() if n > 1]  # 0 double-billed
    assert sum(Decimal(j["price"]) for j in billed) <= BUDGET  # the budget held across 8 processes
    with psycopg.connect(pg_url) as conn:
        results = [json.loads(r[0]) for r in conn.execute(
            "SELECT result_json FROM clips WHERE state = 'succeeded'").fetchall()]
        assert still_open == 0
    delivered = {r["job_id"] for r in results}
    lost = [j["job_id"] for j in billed if j["state"] != "failed" and j["job_id"] not in delivered]
    assert lost == []  # every billed job is a finished clip in the shared journal
    for outcomes in finished.values():  # a caller that got a clip got the one under its key
        assert all(o["outcome"] in ("succeeded", "BudgetExceeded", "ClipInProgress", "JobUnresolved")
                   for o in outcomes), Counter(o["outcome"] for o in outcomes)
    assert len(delivered) > 100 and elapsed < 90, (len(delivered), elapsed)
