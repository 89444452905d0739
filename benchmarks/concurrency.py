"""3. Concurrency: 1,000 and 10,000 jobs in flight at once in one process.

Each size runs in its own subprocess (``python -m benchmarks.run --only concurrency --jobs N
--child``) so peak RSS figures do not mix. Inside: one in-process emulator on the REAL clock, short
jobs (uniform 1–2 s), ``PollPolicy(expected=1.5, interval=0.25, first_fraction=0.75, min_interval={})``,
``journal=None``, every clip on WaveSpeed, all started at once with ``asyncio.gather``.

Reported: wall time beyond the longest job, added latency per job (gateway total minus the job's own
emulated run time), CPU seconds per job (``time.process_time``), peak RSS (``ru_maxrss``), and the
most jobs seen in flight at once (between the vendor's acceptance and the result). The emulator
runs in the same process, so its CPU and memory are included. For context, the baseline RSS of an
idle interpreter with the gateway imported (and with a ``Gateway`` built) is measured the same way.
"""

from __future__ import annotations

import asyncio
import gc
import json
import os
import subprocess
import sys
import time
from typing import Any

from benchmarks.common import IMAGE, current_rss_mb, median, peak_rss_mb, percentile, prompt, ru_maxrss_mb

PROVIDER = "wavespeed"
TARGET_RSS_MB = 300.0
MARK = "@@RESULT@@ "


# ---- inside the child ---------------------------------------------------------------------------
async def _in_flight(jobs: int, learn: bool = True) -> dict[str, Any]:
    from gateway import Gateway, OviRequest
    from gateway.emulator import Emulator
    from gateway.jobs.polling import PollPolicy
    from gateway.jobs.runner import Event

    class FixedExpectation(PollPolicy):
        """The same schedule with learning off: ``expected`` stays 1.5 s (a diagnostic)."""

        def observe(self, provider: str, duration: float) -> None:
            return None

    rss_imported = current_rss_mb()
    emulator = Emulator(job_time=lambda rng: rng.uniform(1.0, 2.0), seed=5)  # the real clock
    # min_interval={}: emulated 1–2 s jobs, so WaveSpeed's documented 5 s floor for real video jobs is off here.
    policy = (PollPolicy if learn else FixedExpectation)(expected=1.5, interval=0.25, first_fraction=0.75,
                                                         min_interval={})
    gateway = Gateway(emulator=emulator, journal=None, jitter_seed=5, poll=policy)
    requests = [OviRequest(prompt=prompt(i), image=IMAGE) for i in range(jobs)]
    live = [0, 0]  # now, peak

    def on_event(event: Event) -> None:
        if event.kind == "accepted":
            live[0] += 1
            live[1] = max(live[1], live[0])
        elif event.kind == "done":
            live[0] -= 1

    gc.collect()
    rss_ready = current_rss_mb()
    cpu0, wall0 = time.process_time(), time.perf_counter()
    results = await asyncio.gather(*(gateway.agenerate(r, provider=PROVIDER, on_event=on_event) for r in requests),
                                   return_exceptions=True)
    wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
    peak = peak_rss_mb()
    await gateway.aclose()
    ok = [r for r in results if not isinstance(r, BaseException)]
    errors = sorted({f"{type(r).__name__}: {r}" for r in results if isinstance(r, BaseException)})
    vendor = emulator[PROVIDER]
    durations = [vendor.jobs[r.job_id].duration for r in ok]
    added = [r.timings.total_s - vendor.jobs[r.job_id].duration for r in ok]
    return {
        "jobs": jobs, "learning": learn, "learned_expected_s": policy.learned.get(PROVIDER),
        "succeeded": len(ok), "errors": errors[:5], "peak_in_flight": live[1],
        "clock": "real", "job_time_s": {"min": min(durations), "max": max(durations)},
        "wall_s": wall, "wall_beyond_longest_job_s": wall - max(durations),
        "added_latency_s": {"median": median(added), "p90": percentile(added, 90), "max": max(added)},
        "cpu_s": cpu, "cpu_ms_per_job": 1000 * cpu / jobs,
        "status_calls_per_job": emulator.ledger.calls(PROVIDER, "status") / jobs,
        "rss_mb": {"imported": rss_imported, "ready": rss_ready, "peak": peak, "ru_maxrss": ru_maxrss_mb()},
        "peak_rss_mb": peak, "kb_per_job_above_ready": 1024 * (peak - (rss_ready or 0)) / jobs,
    }


def _idle(build: bool) -> dict[str, Any]:
    import gateway  # noqa: F401

    if build:
        from gateway import Gateway
        from gateway.emulator import Emulator

        Gateway(emulator=Emulator(), journal=None)
    return {"peak_rss_mb": peak_rss_mb(), "ru_maxrss_mb": ru_maxrss_mb()}


def child(jobs: int | None, idle: str | None, learn: bool = True) -> None:
    """The ``--child`` entry: measure one thing in this fresh process and print it as JSON."""
    if idle is not None:
        out = _idle(build=idle == "built")
    else:
        out = asyncio.run(_in_flight(int(jobs or 1000), learn))
    print(MARK + json.dumps(out), flush=True)


# ---- in the parent ------------------------------------------------------------------------------
def _spawn(*args: str) -> dict[str, Any]:
    command = [sys.executable, "-m", "benchmarks.run", "--only", "concurrency", "--child", *args]
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))  # the repo root: benchmarks/ is importable
    done = subprocess.run(command, capture_output=True, text=True, cwd=root, timeout=600)
    for line in done.stdout.splitlines():
        if line.startswith(MARK):
            return json.loads(line[len(MARK):])
    raise RuntimeError(f"{' '.join(command)} printed no result (exit {done.returncode}):\n{done.stderr[-2000:]}")


def run(quick: bool = False, sizes: list[int] | None = None) -> dict[str, Any]:
    sizes = sizes or ([200, 1000] if quick else [1000, 10_000])
    baseline = {"python + import gateway": _spawn("--idle", "imported"),
                "+ Gateway(emulator=...) built": _spawn("--idle", "built")}
    runs = [_spawn("--jobs", str(n)) for n in sizes]
    largest = max(runs, key=lambda r: r["jobs"])
    # Diagnostic: the smallest size again with PollPolicy learning off (see README: what it learns).
    runs.append(_spawn("--jobs", str(min(sizes)), "--no-learn"))
    return {"provider": PROVIDER, "clock": "real", "job_time": "uniform 1-2 s",
            "poll": "PollPolicy(expected=1.5, interval=0.25, first_fraction=0.75, min_interval={})",
            "baseline_rss_mb": baseline, "runs": runs,
            "target": {"jobs": 10_000, "rss_mb_max": TARGET_RSS_MB, "largest_size": largest["jobs"],
                       "rss_mb": largest["peak_rss_mb"],
                       "met": None if largest["jobs"] < 10_000 else
                       largest["peak_rss_mb"] < TARGET_RSS_MB and largest["succeeded"] == largest["jobs"]}}


def rows(result: dict[str, Any]) -> tuple[list[str], list[list[Any]], list[str]]:
    headers = ["jobs in flight", "ok", "peak in flight", "wall s", "wall beyond longest job s",
               "added latency med/p90 s", "CPU ms/job", "status calls/job", "peak RSS MB", "KB/job"]
    body = [[f"{r['jobs']:,}" + ("" if r["learning"] else " (learning off)"), r["succeeded"], r["peak_in_flight"],
             r["wall_s"], r["wall_beyond_longest_job_s"],
             f"{r['added_latency_s']['median']:.2f} / {r['added_latency_s']['p90']:.2f}", r["cpu_ms_per_job"],
             r["status_calls_per_job"], r["peak_rss_mb"], r["kb_per_job_above_ready"]] for r in result["runs"]]
    for name, idle in result["baseline_rss_mb"].items():
        body.append([f"idle: {name}", "-", "-", "-", "-", "-", "-", "-", idle["peak_rss_mb"], "-"])
    t = result["target"]
    errors = [e for r in result["runs"] for e in r["errors"]]
    learned = ", ".join(f"{r['jobs']:,} jobs: {r['learned_expected_s']:.2f} s" for r in result["runs"]
                        if r["learning"] and r["learned_expected_s"] is not None)
    notes = [f"One process per row; {result['provider']} only; {result['clock']} clock; jobs {result['job_time']}; "
             f"{result['poll']}; journal=None; asyncio.gather; emulator in-process (its CPU/RSS included).",
             "KB/job = (peak RSS - RSS before the jobs started) / jobs. 'learning off': same run with "
             "PollPolicy.observe disabled (expected stays 1.5 s), a diagnostic.",
             f"PollPolicy's learned expected duration at the end ({learned}); the jobs take 1-2 s.",
             "Peak RSS is the child's VmHWM (/proc/self/status): on Linux ru_maxrss survives fork+exec and would "
             "report the parent's RSS (both are in the JSON).",
             f"Target: 10,000 in flight under {t['rss_mb_max']:g} MB -> "
             + ("not measured (largest size {:,})".format(t["largest_size"]) if t["met"] is None
                else "met" if t["met"] else "NOT met") + "."]
    if errors:
        notes.append("Errors: " + "; ".join(errors[:3]))
    return headers, body, notes
