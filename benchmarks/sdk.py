"""The vendors' own SDKs, their real code, against the loopback emulator: status calls per job, detection delay.

One row per SDK, each in its own process, rows in parallel; each row starts its own emulator server process
(``Emulator(job_time=U(low, high)).serve()``), so the SDK and the emulator never share an interpreter:

- ``fal-client`` ``AsyncClient.subscribe`` (its default 0.1 s poll interval), jobs gathered on one client;
- ``wavespeed`` ``Client.run`` (default 1 s poll interval), one thread per job (the SDK is synchronous);
- ``runware`` over its WebSocket: ``videoInference`` then ``getResponse`` per job, gathered on one client.
  The SDK drops ``processing`` answers and waits ``RUNWARE_VIDEO_INITIAL_TIMEOUT`` (30 s) per poll, then
  ``RUNWARE_VIDEO_POLLING_DELAY`` (3 s); ``getResponse`` holds its request semaphore
  (``RUNWARE_MAX_CONCURRENT_REQUESTS``, 15) while polling, so beyond 15 jobs the rest wait their turn.

Detection delay = when the SDK call returned − when the emulated job finished (both ``time.monotonic()``,
which is one system-wide clock on Linux, so comparable across the two processes). Status calls per job =
the emulator ledger's status checks ÷ jobs. Full: 30 concurrent jobs per row, U(45–75 s) jobs, SDK defaults;
``--quick``: 5 jobs, U(2–4 s), and the Runware waits cut to 1 s / 0.2 s (named on the row).

    .venv/bin/python -m benchmarks.run --only sdk [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from benchmarks import common

SDKS = ("fal", "wavespeed", "runware")
FULL = {"jobs": 30, "low": 45.0, "high": 75.0, "row_timeout_s": 480.0}
QUICK = {"jobs": 5, "low": 2.0, "high": 4.0, "row_timeout_s": 120.0}
QUICK_RUNWARE_ENV = {"RUNWARE_VIDEO_INITIAL_TIMEOUT": "1000", "RUNWARE_VIDEO_POLLING_DELAY": "200"}
PROMPT_KEY = {"fal": "prompt", "wavespeed": "prompt", "runware": "positivePrompt"}


# ---- the emulator server process ----------------------------------------------------------------------
def serve(low: float, high: float, seed: int) -> None:
    """Child: serve the emulator, print the port; on stdin ``report``, print each job's end and the calls."""
    from gateway.emulator import Emulator

    emulator = Emulator(job_time=lambda rng: rng.uniform(low, high), seed=seed)
    with emulator.serve(0) as server:
        print(server.server_port, flush=True)
        sys.stdin.readline()
        ends = {}
        for name, vendor in emulator.vendors.items():
            for job in vendor.jobs.values():
                prompt = job.payload.get(PROMPT_KEY[name]) if isinstance(job.payload, dict) else None
                ends[prompt] = job.created_at + job.queue_time + job.duration
        calls: dict[str, int] = {}
        for vendor_name, operation, _ in emulator.ledger.requests:
            calls[f"{vendor_name}.{operation}"] = calls.get(f"{vendor_name}.{operation}", 0) + 1
        print(json.dumps({"ends": ends, "calls": calls, "billable": len(emulator.ledger.billable())}), flush=True)


# ---- the SDK side ----------------------------------------------------------------------------------------
async def _fal(base: str, prompts: list[str], done: dict[str, float]) -> None:
    import fal_client
    import fal_client.client

    fal_client.client.QUEUE_URL_FORMAT = base + "/"  # the queue host, on loopback (as the loopback tests do)
    client = fal_client.AsyncClient(key="bench:key")

    async def one(prompt: str) -> None:
        await client.subscribe("fal-ai/ovi/image-to-video", {"prompt": prompt, "image_url": common.IMAGE})
        done[prompt] = time.monotonic()

    await asyncio.gather(*(one(p) for p in prompts))


def _wavespeed(base: str, prompts: list[str], done: dict[str, float]) -> None:
    import wavespeed

    client = wavespeed.Client(api_key="bench-key", base_url=base)

    def one(prompt: str) -> None:
        client.run("character-ai/ovi/image-to-video", {"image": common.IMAGE, "prompt": prompt})
        done[prompt] = time.monotonic()

    with ThreadPoolExecutor(len(prompts)) as pool:
        list(pool.map(one, prompts))


async def _runware(base: str, prompts: list[str], done: dict[str, float]) -> None:
    import runware  # reads its RUNWARE_* environment now
    from runware import IVideoInference, IVideoInputs

    client = runware.Runware(api_key="bench-key", url="ws" + base[4:] + "/v1")
    await client.connect()

    async def one(prompt: str) -> None:
        request = IVideoInference(model="runware:190@1", positivePrompt=prompt, inputs=IVideoInputs(image=common.IMAGE))
        first = await client.videoInference(request)
        if not isinstance(first, list):
            await client.getResponse(first.taskUUID, numberResults=1)
        done[prompt] = time.monotonic()

    try:
        await asyncio.gather(*(one(p) for p in prompts))
    finally:
        await client.disconnect()


def row(sdk: str, jobs: int, low: float, high: float, seed: int) -> dict[str, Any]:
    """Child: one SDK row against its own emulator server process."""
    server = subprocess.Popen([sys.executable, "-m", "benchmarks.sdk", "--serve", str(low), str(high), str(seed)],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert server.stdin is not None and server.stdout is not None
    try:
        base = f"http://127.0.0.1:{int(server.stdout.readline())}"
        prompts = [common.prompt(seed * 1000 + i) for i in range(jobs)]
        done: dict[str, float] = {}
        started = time.perf_counter()
        errors: list[str] = []
        try:
            if sdk == "fal":
                asyncio.run(_fal(base, prompts, done))
            elif sdk == "wavespeed":
                _wavespeed(base, prompts, done)
            else:
                asyncio.run(_runware(base, prompts, done))
        except Exception as error:  # reported on the row, never hidden
            errors.append(f"{type(error).__name__}: {error}"[:200])
        elapsed = time.perf_counter() - started
        server.stdin.write("report\n")
        server.stdin.flush()
        report = json.loads(server.stdout.readline())
    finally:
        server.stdin.close()
        server.wait(10)
    delays = [done[p] - report["ends"][p] for p in prompts if p in done and p in report["ends"]]
    calls = report["calls"]
    return {"sdk": sdk, "jobs": jobs, "completed": len(done), "errors": errors, "elapsed_s": round(elapsed, 1),
            "status_calls_per_job": round(calls.get(f"{sdk}.status", 0) / jobs, 1),
            "requests_per_job": round(sum(v for k, v in calls.items() if k.startswith(sdk + ".")) / jobs, 1),
            "delay_median_s": round(common.median(delays), 2), "delay_p90_s": round(common.percentile(delays, 90), 2),
            "delay_max_s": round(max(delays, default=float("nan")), 2), "billable_jobs": report["billable"],
            "job_time_s": [low, high], "calls": calls}


# ---- the parent --------------------------------------------------------------------------------------------
def _version(name: str) -> str | None:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(name)
    except PackageNotFoundError:
        return None


def run(quick: bool = False) -> dict[str, Any]:
    size = QUICK if quick else FULL
    children = {}
    for index, sdk in enumerate(SDKS):
        env = {**os.environ, **(QUICK_RUNWARE_ENV if quick and sdk == "runware" else {})}
        children[sdk] = subprocess.Popen(
            [sys.executable, "-m", "benchmarks.sdk", "--row", sdk, str(size["jobs"]), str(size["low"]),
             str(size["high"]), str(random.Random(index).randrange(1, 1000))],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    rows_out: dict[str, Any] = {}
    deadline = time.monotonic() + size["row_timeout_s"]
    for sdk, child in children.items():
        try:
            out, err = child.communicate(timeout=max(1.0, deadline - time.monotonic()))
            lines = out.strip().splitlines()
            rows_out[sdk] = json.loads(lines[-1]) if child.returncode == 0 and lines else {
                "sdk": sdk, "errors": [f"row exited {child.returncode}: {err.strip()[-300:]}"]}
        except subprocess.TimeoutExpired:
            child.kill()
            child.communicate()
            rows_out[sdk] = {"sdk": sdk, "errors": [f"row timed out after {size['row_timeout_s']:g} s"]}
    versions = {name: _version(name) for name in ("fal-client", "wavespeed", "runware")}
    return {"rows": rows_out, "size": size, "versions": versions,
            "runware_env": QUICK_RUNWARE_ENV if quick else "SDK defaults"}


LABELS = {"fal": "fal-client {v} AsyncClient.subscribe (interval 0.1 s)",
          "wavespeed": "wavespeed {v} Client.run (poll 1 s), a thread per job",
          "runware": "runware {v} videoInference + getResponse (WebSocket)"}


def rows(result: dict[str, Any]) -> tuple[list[str], list[list[Any]], list[str]]:
    headers = ["SDK (its own code, defaults)", "jobs done", "status calls/job", "requests/job",
               "delay median s", "delay p90 s", "delay max s", "row wall s"]
    body = []
    for sdk, r in result["rows"].items():
        label = LABELS[sdk].format(v=result["versions"].get({"fal": "fal-client"}.get(sdk, sdk)))
        if sdk == "runware" and result["runware_env"] != "SDK defaults":
            label += " [waits 1 s / 0.2 s]"
        if "jobs" not in r:
            body.append([label, "-", "-", "-", "-", "-", "-", "; ".join(r["errors"])])
            continue
        done = f"{r['completed']}/{r['jobs']}" + (f" ({r['errors'][0]})" if r["errors"] else "")
        body.append([label, done, r["status_calls_per_job"], r["requests_per_job"], r["delay_median_s"],
                     r["delay_p90_s"], r["delay_max_s"], r["elapsed_s"]])
    s = result["size"]
    notes = [f"{s['jobs']} concurrent jobs per row, job times U({s['low']:g}–{s['high']:g} s) drawn by the emulator; "
             "rows run in parallel processes, each against its own emulator server process (ovi-gateway's loopback).",
             "Delay: SDK call returned − emulated job finished (time.monotonic, one clock across processes on Linux). "
             f"Each row is bounded at {s['row_timeout_s']:g} s.",
             "runware: getResponse holds the SDK's request semaphore (15) while it polls, and each 'processing' answer "
             "costs one RUNWARE_VIDEO_INITIAL_TIMEOUT wait (30 s by default)."]
    return headers, body, notes


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.sdk")
    parser.add_argument("--serve", nargs=3, metavar=("LOW", "HIGH", "SEED"))
    parser.add_argument("--row", nargs=5, metavar=("SDK", "JOBS", "LOW", "HIGH", "SEED"))
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args(argv)
    if args.serve:
        serve(float(args.serve[0]), float(args.serve[1]), int(args.serve[2]))
    elif args.row:
        sdk, jobs, low, high, seed = args.row
        print(json.dumps(row(sdk, int(jobs), float(low), float(high), int(seed))), flush=True)
    else:
        result = run(args.quick)
        print(common.table("SDK rows", *rows(result)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
