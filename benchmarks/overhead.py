"""1. Overhead: ``Gateway.agenerate`` through each adapter vs the minimal raw-httpx sequence.

Both sides talk to one emulator through the same in-process transport
(``httpx.AsyncClient(transport=emulator.transport())``) with zero job time, so every job finishes
at once and what is left is client-side work: request building, validation, parsing, routing,
retry bookkeeping, the runner's loop, and (for the gateway) one poll sleep on a ``VirtualClock``
(virtual time, so it costs no wall time — only the clock's scheduling). The raw sequence is what a
hand-written client must do at minimum: submit, one immediate status call, read the result.

Two gateway configurations run beside the raw sequence, each named on its row: the lean one
(``journal=None``) and the default a user gets (the SQLite journal in a file, its SQL on the store's
writer thread as on a real clock: ``Journal(path, offload=True)``). Both use the default learning
``PollPolicy()``, so re-planning the poll schedule from the zero job times seen is in both.

Each round builds a fresh emulator per vendor (its job tables grow, and fal's submit scans them) and
alternates the three sides job by job, so all meet the same emulator state; the time spent inside
the emulator's handler is summed per side, so client-side work can be compared alone.
"""

from __future__ import annotations

import asyncio
import gc
import os
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import httpx

from benchmarks.common import IMAGE, median, prompt
from gateway import Gateway, OviRequest
from gateway.clock import VirtualClock
from gateway.emulator import Emulator
from gateway.store.journal import Journal

VENDORS = ("runware", "fal", "wavespeed")
CONFIGS = {"lean": "gateway, journal=None", "default": "gateway, default SQLite journal"}
KEY = "emulator-key"


# ---- the raw sequences: the least a hand-written client sends -------------------------------------
async def raw_runware(http: httpx.AsyncClient, i: int) -> str:
    headers = {"authorization": f"Bearer {KEY}"}
    task_uuid = str(uuid.uuid4())
    task = {"taskType": "videoInference", "taskUUID": task_uuid, "model": "runware:190@1",
            "positivePrompt": prompt(i), "inputs": {"image": IMAGE}, "deliveryMethod": "async",
            "includeCost": True}
    submitted = await http.post("https://api.runware.ai/v1", json=[task], headers=headers)
    submitted.raise_for_status()
    polled = await http.post("https://api.runware.ai/v1", json=[{"taskType": "getResponse", "taskUUID": task_uuid}],
                             headers=headers)
    item = polled.json()["data"][0]
    assert item["status"] == "success", item
    return item["videoURL"]


async def raw_fal(http: httpx.AsyncClient, i: int) -> str:
    headers = {"authorization": f"Key {KEY}"}
    submitted = await http.post("https://queue.fal.run/fal-ai/ovi/image-to-video",
                                json={"prompt": prompt(i), "image_url": IMAGE}, headers=headers)
    submitted.raise_for_status()
    ack = submitted.json()
    status = await http.get(ack["status_url"], headers=headers)
    assert status.json()["status"] == "COMPLETED", status.text
    result = await http.get(ack["response_url"], headers=headers)
    result.raise_for_status()
    return result.json()["video"]["url"]


async def raw_wavespeed(http: httpx.AsyncClient, i: int) -> str:
    headers = {"authorization": f"Bearer {KEY}"}
    submitted = await http.post("https://api.wavespeed.ai/api/v3/character-ai/ovi/image-to-video",
                                json={"image": IMAGE, "prompt": prompt(i), "seed": -1}, headers=headers)
    submitted.raise_for_status()
    job_id = submitted.json()["data"]["id"]
    polled = await http.get(f"https://api.wavespeed.ai/api/v3/predictions/{job_id}/result", headers=headers)
    data = polled.json()["data"]
    assert data["status"] == "completed", data
    return data["outputs"][0]


RAW: dict[str, Callable[[httpx.AsyncClient, int], Awaitable[str]]] = {
    "runware": raw_runware, "fal": raw_fal, "wavespeed": raw_wavespeed}


# ---- timing -------------------------------------------------------------------------------------
class _Setup:
    """One emulator, two gateways on it (VirtualClock; no journal, and a fresh SQLite journal in
    ``folder``) and a raw httpx client on the same transport; the emulator's own time per request is
    summed in ``in_emulator``."""

    def __init__(self, seed: int, folder: str) -> None:
        self.clock = VirtualClock()
        self.emulator = Emulator(clock=self.clock, job_time=lambda rng: 0.0, seed=seed)
        serve = self.emulator.handle
        self.in_emulator = 0.0

        def timed_handle(request: httpx.Request) -> httpx.Response:
            began = time.perf_counter()
            try:
                return serve(request)
            finally:
                self.in_emulator += time.perf_counter() - began

        self.emulator.handle = timed_handle  # type: ignore[method-assign]  (before transport() is taken)
        self.journal = Journal(os.path.join(folder, f"journal-{seed}.sqlite3"), offload=True)
        self.gateways = {"lean": Gateway(emulator=self.emulator, clock=self.clock, journal=None, jitter_seed=seed),
                         "default": Gateway(emulator=self.emulator, clock=self.clock, journal=self.journal,
                                            jitter_seed=seed)}
        self.http = httpx.AsyncClient(transport=self.emulator.transport())

    async def aclose(self) -> None:
        await self.http.aclose()
        for gateway in self.gateways.values():
            await gateway.aclose()
        self.journal.close()


async def _round(vendor: str, jobs: int, warmup: int, seed: int, requests: list[OviRequest],
                 folder: str) -> dict[str, Any]:
    """``jobs`` jobs per side (each gateway configuration, and raw) on a fresh emulator, alternating
    job by job in a rotating order (so every side meets the same emulator state and runs after each
    other side equally often); per side: (wall s/job, emulator s/job)."""
    setup = _Setup(seed, folder)
    raw = RAW[vendor]

    def gateway_job(config: str) -> Callable[[int], Awaitable[None]]:
        async def job(i: int) -> None:
            result = await setup.gateways[config].agenerate(requests[i % len(requests)], provider=vendor)
            assert result.provider == vendor
        return job

    async def raw_job(i: int) -> None:
        await raw(setup.http, i)

    sides = {**{config: gateway_job(config) for config in CONFIGS}, "raw": raw_job}
    order = list(sides)
    wall = dict.fromkeys(sides, 0.0)
    emulated = dict.fromkeys(sides, 0.0)
    try:
        for i in range(warmup):
            for one in sides.values():
                await one(i)
        gc.collect()
        for i in range(jobs):
            shift = i % len(order)
            for side in order[shift:] + order[:shift]:
                before, began = setup.in_emulator, time.perf_counter()
                await sides[side](i)
                wall[side] += time.perf_counter() - began
                emulated[side] += setup.in_emulator - before
        calls = {op: setup.emulator.ledger.calls(vendor, op) for op in ("submit", "status", "result")}
    finally:
        await setup.aclose()
    out: dict[str, Any] = {side: (wall[side] / jobs, emulated[side] / jobs) for side in sides}
    out["calls_per_job"] = {op: n / (len(sides) * (jobs + warmup)) for op, n in calls.items()}
    return out


async def _measure(jobs: int, rounds: int, warmup: int) -> dict[str, Any]:
    # One request object per clip, built before timing (a caller builds its request either way).
    requests = [OviRequest(prompt=prompt(i), image=IMAGE) for i in range(1000)]
    with tempfile.TemporaryDirectory() as folder:
        for vendor in VENDORS:  # process warm-up: imports, caches, first-use paths, pydantic schemas
            await _round(vendor, warmup, 0, seed=1, requests=requests, folder=folder)
        per_round: dict[str, list[dict[str, Any]]] = {v: [] for v in VENDORS}
        for r in range(rounds):
            for vendor in VENDORS:  # interleaved: every round runs every vendor
                per_round[vendor].append(await _round(vendor, jobs, 5, seed=100 + r, requests=requests,
                                                      folder=folder))
    figures: dict[str, Any] = {}
    for vendor in VENDORS:
        rs = per_round[vendor]
        raw, emu_raw = (median([x["raw"][k] for x in rs]) for k in (0, 1))
        figures[vendor] = {"raw_us_per_job": raw * 1e6, "raw_emulator_us_per_job": emu_raw * 1e6,
                           "calls_per_job": rs[-1]["calls_per_job"], "configs": {}}
        for config in CONFIGS:
            gw, emu_gw = (median([x[config][k] for x in rs]) for k in (0, 1))
            figures[vendor]["configs"][config] = {
                "gateway_us_per_job": gw * 1e6, "added_us_per_job": (gw - raw) * 1e6, "ratio": gw / raw,
                "emulator_us_per_job": emu_gw * 1e6,
                "ratio_excluding_emulator": (gw - emu_gw) / (raw - emu_raw),
                "rounds_us_per_job": [x[config][0] * 1e6 for x in rs]}
        figures[vendor]["rounds_raw_us_per_job"] = [x["raw"][0] * 1e6 for x in rs]
    return figures


def run(quick: bool = False) -> dict[str, Any]:
    jobs, rounds, warmup = (60, 3, 10) if quick else (300, 3, 30)
    figures = asyncio.run(_measure(jobs, rounds, warmup))
    return {"jobs_per_round": jobs, "rounds": rounds, "warmup_jobs": warmup, "vendors": figures}


def rows(result: dict[str, Any]) -> tuple[list[str], list[list[Any]], list[str]]:
    headers = ["vendor", "configuration", "gateway µs/job", "raw httpx µs/job", "added µs/job", "ratio",
               "in emulator µs (gw/raw)", "ratio excl. emulator", "calls/job submit/status/result"]
    body = []
    for vendor, f in result["vendors"].items():
        c = f["calls_per_job"]
        for config, label in CONFIGS.items():
            g = f["configs"][config]
            body.append([vendor + (" (via fal-client)" if vendor == "fal" else ""), label, g["gateway_us_per_job"],
                         f["raw_us_per_job"], g["added_us_per_job"], f"{g['ratio']:.2f}x",
                         f"{g['emulator_us_per_job']:.0f} / {f['raw_emulator_us_per_job']:.0f}",
                         f"{g['ratio_excluding_emulator']:.2f}x",
                         f"{c['submit']:g}/{c['status']:g}/{c['result']:g}"])
    notes = [f"Per round and vendor: a fresh emulator, then {result['jobs_per_round']} jobs per side (both gateway "
             "configurations and raw), alternating job by job in a rotating order, sequential; median of "
             f"{result['rounds']} rounds (vendors interleaved); {result['warmup_jobs']} warm-up jobs per side first; "
             "zero job time.",
             "Both gateway rows use the default learning PollPolicy(); the default journal is a fresh SQLite file "
             "per round with its SQL on the writer thread (as on a real clock).",
             "Both sides include the emulator's handling of each request (in-process); 'in emulator' is that share per "
             "side, and 'ratio excl. emulator' compares client-side work only."]
    return headers, body, notes
