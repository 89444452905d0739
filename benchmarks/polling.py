"""2. Polling efficiency: status calls per job and detection delay, ``PollPolicy`` vs fixed intervals.

Every vendor (Runware, fal, WaveSpeed) and three job-time distributions, seeded so every poller sees the
same job times: narrow uniform 45–75 s, wide uniform 20–120 s, and lognormal around 60 s (σ = 0.35). Jobs
run one after another on a ``VirtualClock`` through the vendor's adapter against the emulator.

- ``gateway default``: ``Gateway.agenerate`` with the default ``PollPolicy`` and the default journal off
  the hot path (``journal=None``: polling does not touch it), learning from the jobs it has seen; the
  first ``min_samples`` jobs of each row run on the prior schedule and are included in the figures.
- fixed-interval pollers with the defaults of popular clients: fal-client ``subscribe`` (0.1 s),
  the WaveSpeed SDK (1 s), the Vercel AI SDK's fal provider (2 s) and the Runware SDK (3 s), simulated
  over the same adapter's ``status()`` (the real SDKs' code runs in ``sdk.py``).
- a calls-vs-delay curve: the same policy with other delay targets, on the wide distribution.

Completion time comes from the emulator's job (``created_at + queue_time + duration``); detection is
the clock when a status call first reports success. Status calls come from the emulator's ledger.
"""

from __future__ import annotations

import asyncio
import math
import uuid
from collections.abc import Callable
from typing import Any

import httpx
from pydantic import SecretStr

from benchmarks.common import IMAGE, median, percentile, prompt
from gateway import Gateway, OviRequest
from gateway.clock import VirtualClock
from gateway.contract import JobState, ProviderContext, SubmitContext
from gateway.emulator import Emulator
from gateway.jobs.polling import PollPolicy
from gateway.jobs.runner import Event
from gateway.registry import Registry

VENDORS = ("runware", "fal", "wavespeed")
DISTRIBUTIONS: dict[str, Callable[[Any], float]] = {
    "narrow U(45-75 s)": lambda rng: rng.uniform(45.0, 75.0),
    "wide U(20-120 s)": lambda rng: rng.uniform(20.0, 120.0),
    "lognormal ~60 s": lambda rng: 60.0 * math.exp(rng.gauss(0.0, 0.35)),
}
CURVE_TARGETS = ((1.0, 3.0), (1.5, 4.5), (1.8, 5.6), (3.0, 8.0), (4.0, 12.0))

FIXED = {
    "fal-client subscribe (0.1 s)": 0.1,
    "WaveSpeed SDK (1 s)": 1.0,
    "Vercel AI SDK fal (2 s)": 2.0,
    "Runware SDK (3 s)": 3.0,
}
TARGETS = {"narrow U(45-75 s)": (8.0, 2.0, None), "wide U(20-120 s)": (12.0, 2.0, 6.0),
           "lognormal ~60 s": (12.0, 2.0, 6.0)}
"""Per distribution: most status calls per job, median delay and p90 delay (s) the gateway aims at."""


def _ended(emulator: Emulator, vendor: str, job_id: str) -> float:
    job = emulator[vendor].jobs[job_id]
    return job.created_at + job.queue_time + job.duration


def _summary(name: str, calls: int, delays: list[float], jobs: int, durations: list[float]) -> dict[str, Any]:
    return {"poller": name, "jobs": jobs, "status_calls_per_job": calls / jobs,
            "delay_median_s": median(delays), "delay_p90_s": percentile(delays, 90), "delay_max_s": max(delays),
            "job_time_median_s": median(durations)}


async def _gateway(vendor: str, dist: str, jobs: int, seed: int, name: str,
                   policy: PollPolicy | None = None) -> dict[str, Any]:
    clock = VirtualClock()
    emulator = Emulator(clock=clock, job_time=DISTRIBUTIONS[dist], seed=seed)
    gateway = Gateway(emulator=emulator, clock=clock, journal=None, jitter_seed=seed, poll=policy or PollPolicy())
    delays, durations = [], []
    try:
        for i in range(jobs):
            seen: list[float] = []

            def on_event(event: Event, seen: list[float] = seen) -> None:
                if event.kind == "status" and event.state == JobState.SUCCEEDED and not seen:
                    seen.append(clock.now())

            result = await gateway.agenerate(OviRequest(prompt=prompt(i), image=IMAGE), provider=vendor,
                                             on_event=on_event)
            delays.append(seen[0] - _ended(emulator, vendor, result.job_id))
            durations.append(emulator[vendor].jobs[result.job_id].duration)
    finally:
        await gateway.aclose()
    return _summary(name, emulator.ledger.calls(vendor, "status"), delays, jobs, durations)


async def _fixed(vendor: str, dist: str, jobs: int, seed: int, interval: float, name: str) -> dict[str, Any]:
    clock = VirtualClock()
    emulator = Emulator(clock=clock, job_time=DISTRIBUTIONS[dist], seed=seed)
    provider_cls = Registry.load().get(vendor)
    delays, durations = [], []
    async with httpx.AsyncClient(transport=emulator.transport()) as http:
        provider = provider_cls(ProviderContext(api_key=SecretStr("emulator-key"), http=http,
                                                transport=emulator.transport()))
        for i in range(jobs):
            handle = await provider.submit(OviRequest(prompt=prompt(i), image=IMAGE),
                                           SubmitContext(idempotency_key=str(uuid.uuid4())))
            while True:  # check, then sleep the interval: the SDKs' loop
                status = await provider.status(handle)
                if status.state.final:
                    break
                await clock.sleep(interval)
            assert status.state == JobState.SUCCEEDED, status
            await provider.result(handle, status)
            delays.append(clock.now() - _ended(emulator, vendor, handle.job_id))
            durations.append(emulator[vendor].jobs[handle.job_id].duration)
    return _summary(name, emulator.ledger.calls(vendor, "status"), delays, jobs, durations)


async def _all(jobs: int, fast_jobs: int, seed: int) -> dict[str, Any]:
    rows: list[dict[str, Any]] = []
    for dist in DISTRIBUTIONS:
        for vendor in VENDORS:
            ours = await _gateway(vendor, dist, jobs, seed, "gateway PollPolicy() default")
            floor = getattr(Registry.load().get(vendor), "min_poll_interval", 0.0)
            ours.update(vendor=vendor, distribution=dist, **_verdict(dist, ours, floor))
            rows.append(ours)
    for name, interval in FIXED.items():
        # The 0.1 s poller makes ~600 calls per job: it runs fewer jobs to keep the run short (its
        # figures barely vary from job to job: calls = job time / 0.1 s).
        for dist in DISTRIBUTIONS:
            row = await _fixed("runware", dist, fast_jobs if interval < 0.5 else jobs, seed, interval, name)
            row.update(vendor="runware", distribution=dist)
            rows.append(row)
    curve = []
    for median_target, p90_target in CURVE_TARGETS:
        policy = PollPolicy(target_median_delay=median_target, target_p90_delay=p90_target)
        row = await _gateway("runware", "wide U(20-120 s)", jobs, seed,
                             f"targets median {median_target:g} s / p90 {p90_target:g} s", policy)
        curve.append(row)
    return {"pollers": rows, "curve": curve}


def _verdict(dist: str, row: dict[str, Any], floor: float = 0.0) -> dict[str, Any]:
    calls, p50, p90 = TARGETS[dist]
    p50 = max(p50, 0.55 * floor)  # a floor between checks forces a median delay of about half of it
    met = row["status_calls_per_job"] <= calls and row["delay_median_s"] <= p50 and (
        p90 is None or row["delay_p90_s"] <= p90)
    return {"target": f"<= {calls:g} calls, median <= {p50:g} s" + (f", p90 <= {p90:g} s" if p90 else ""),
            "met": met}


def run(quick: bool = False) -> dict[str, Any]:
    jobs, fast_jobs = (30, 8) if quick else (200, 60)
    result = asyncio.run(_all(jobs, fast_jobs, seed=2024))
    return {"job_times": list(DISTRIBUTIONS), "clock": "VirtualClock", **result}


def rows(result: dict[str, Any]) -> tuple[list[str], list[list[Any]], list[str]]:
    headers = ["poller", "vendor", "job times", "jobs", "status calls/job", "delay median s", "delay p90 s",
               "target", "met"]
    body = [[p["poller"], p["vendor"], p["distribution"], p["jobs"], p["status_calls_per_job"], p["delay_median_s"],
             p["delay_p90_s"], p.get("target", ""), {True: "yes", False: "NO"}.get(p.get("met"), "")]
            for p in result["pollers"]]
    body += [[c["poller"], "runware", "wide U(20-120 s)", c["jobs"], c["status_calls_per_job"], c["delay_median_s"],
              c["delay_p90_s"], "curve", ""] for c in result["curve"]]
    notes = ["Jobs run one at a time on a VirtualClock; every poller sees the same seeded job times per row.",
             "Gateway rows include the first 8 jobs on the prior schedule (before anything is learned).",
             "WaveSpeed documents a 5 s minimum between result polls: its rows can not reach a median delay "
             "under ~2.5 s (half the floor); the policy then aims at what the floor allows.",
             "Fixed-interval rows simulate the SDKs' default intervals over our adapter; table 8 (sdk.py) runs "
             "the SDKs' own code over loopback."]
    return headers, body, notes
