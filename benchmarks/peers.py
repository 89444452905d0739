"""5. Peers over loopback HTTP: what each client adds per fal job over a raw httpx sequence.

The emulator runs in its own process behind the loopback server (uvicorn, real sockets), with jobs that
are done at once (``job_time = 0``), so what remains is each client's own work per job. Sides, each
making the same three calls per job (submit, one status check, the result):

- ``raw httpx``: the shortest hand-written sequence (``POST`` the queue, ``GET`` status, ``GET`` result);
- ``fal-client``: its ``AsyncClient.submit`` + ``handle.get()`` (what a user of the bare SDK writes);
- ``gateway, journal=None`` and ``gateway, default journal`` (a SQLite file in a temporary directory, what
  ``Gateway()`` uses): ``Gateway.agenerate(request, provider="fal")`` with a zero-wait ``PollPolicy``;
- ``LiteLLM``: ``litellm.avideo_generation`` + ``avideo_status`` for ``fal_ai/fal-ai/ovi/image-to-video``,
  installed by this benchmark into its own virtual environment (``benchmarks/.venvs/litellm``; its pins may
  move httpx or pydantic, so it is never a dependency of ours) with ``LITELLM_LOCAL_MODEL_COST_MAP=True``.

Method: warm-up jobs, then rounds in which the in-process sides alternate job by job, in a shuffled order
for every job (no side always follows the same one); LiteLLM runs in its
venv's process right after, against the same server. Figures are medians of per-round medians. The cost
of one fsync on this disk (4 KiB write + ``os.fsync``) is measured in the same run, since the default
journal flushes twice per job (the intent before the POST, the job id after the ack).
"""

from __future__ import annotations

import asyncio
import json
import math
import os
import random
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path
from typing import Any

from benchmarks.common import IMAGE, median, prompt

HERE = Path(__file__).resolve().parent
LITELLM_VERSION = "1.110.2"
LITELLM_VENV = HERE / ".venvs" / "litellm"
APP = "fal-ai/ovi/image-to-video"
KEY = "emulator-key"

SERVER = textwrap.dedent("""
    import sys
    from gateway.emulator import Emulator
    server = Emulator(job_time=lambda rng: 0.0, seed=11).serve(0)
    print(server.server_port, flush=True)
    sys.stdin.read()
""")

LITELLM_CHILD = textwrap.dedent("""
    import asyncio, json, os, statistics, sys, time
    os.environ["LITELLM_LOCAL_MODEL_COST_MAP"] = "True"
    import litellm
    base, jobs, warmup, image = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]

    async def one(i):
        began = time.perf_counter()
        video = await litellm.avideo_generation(model="fal_ai/fal-ai/ovi/image-to-video",
                                                prompt=f"Clip {i}: a knight. <S>Hold.<E>", input_reference=image,
                                                api_base=base, api_key="emulator-key")
        status = await litellm.avideo_status(video_id=video.id, api_base=base, api_key="emulator-key")
        assert status.status == "completed", status
        return time.perf_counter() - began

    async def main():
        for i in range(warmup):
            await one(10_000_000 + i)
        times = [await one(i) for i in range(jobs)]
        print(json.dumps({"per_job_s": statistics.median(times), "jobs": jobs,
                          "version": getattr(litellm, "__version__", None) or
                          __import__("importlib.metadata").metadata.version("litellm")}))

    asyncio.run(main())
""")


def flush_cost_ms(samples: int = 200) -> float:
    """Median milliseconds of a 4 KiB write plus ``os.fsync`` in a temporary file on this disk."""
    with tempfile.NamedTemporaryFile(dir=tempfile.gettempdir()) as handle:
        times = []
        for _ in range(samples):
            began = time.perf_counter()
            os.write(handle.fileno(), b"x" * 4096)
            os.fsync(handle.fileno())
            times.append(time.perf_counter() - began)
    return 1000 * median(times)


def _start_server() -> tuple[subprocess.Popen[str], str]:
    process = subprocess.Popen([sys.executable, "-c", SERVER], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                               text=True, cwd=HERE.parent)
    assert process.stdout is not None
    return process, f"http://127.0.0.1:{int(process.stdout.readline())}"


def ensure_litellm() -> Path | None:
    """The LiteLLM venv's python, installing it on first use; ``None`` (and a note) if it cannot be had."""
    python = LITELLM_VENV / "bin" / "python"
    if python.exists():
        return python
    try:
        subprocess.run([sys.executable, "-m", "venv", str(LITELLM_VENV)], check=True, capture_output=True)
        subprocess.run([str(python), "-m", "pip", "install", "-q", f"litellm=={LITELLM_VERSION}"], check=True,
                       capture_output=True, timeout=900)
    except (subprocess.SubprocessError, OSError):
        return None
    return python


PROXY_READY = LITELLM_VENV / ".proxy-installed"
"""Written once LiteLLM's proxy extra is installed in the venv (its JSON: what was installed)."""
UNPUBLISHED = {"litellm-proxy": None, "litellm-proxy-extras": "0.4.110", "litellm-enterprise": "0.1.83"}
"""Pins of ``litellm[proxy]==1.110.2`` that the package index reachable here does not have (``pip install
'litellm[proxy]==1.110.2'`` fails: "No matching distribution found for litellm-proxy==1.110.2"), and what
stands in: ``litellm-proxy`` is left out (the proxy's code ships in the litellm wheel, ``litellm/proxy/``),
the other two take the newest release the index has."""

PROXY_REQUIREMENTS = textwrap.dedent("""
    import importlib.metadata, json, sys
    from packaging.requirements import Requirement
    skip = set(json.loads(sys.argv[1]))
    wanted = []
    for text in importlib.metadata.requires("litellm") or []:
        requirement = Requirement(text)
        if requirement.marker is None or not requirement.marker.evaluate({"extra": "proxy"}):
            continue
        if requirement.marker.evaluate({"extra": ""}) or requirement.name in skip:
            continue  # a base requirement (installed already), or an unpublished pin
        requirement.marker = None
        wanted.append(str(requirement))
    print(json.dumps(wanted))
""")


def ensure_litellm_proxy() -> tuple[Path | None, dict[str, Any]]:
    """The LiteLLM venv's python with its proxy extra installed (once), and the facts to record: versions,
    and the stand-ins for pins the index lacks. ``(None, {"error": …})`` if it cannot be had."""
    python = ensure_litellm()
    if python is None:
        return None, {"error": f"litellm=={LITELLM_VERSION} could not be installed into {LITELLM_VENV.name}"}
    if not PROXY_READY.exists():
        whole = subprocess.run([str(python), "-m", "pip", "install", "-q", f"litellm[proxy]=={LITELLM_VERSION}"],
                               capture_output=True, text=True, timeout=1200)
        installed: dict[str, Any] = {"extra": f"litellm[proxy]=={LITELLM_VERSION}"}
        if whole.returncode != 0:  # the index lacks some pins: the extra's other requirements, and stand-ins
            listed = subprocess.run([str(python), "-c", PROXY_REQUIREMENTS, json.dumps(list(UNPUBLISHED))],
                                    capture_output=True, text=True, timeout=120)
            if listed.returncode != 0:
                return None, {"error": "could not read litellm's proxy requirements: " + listed.stderr[-300:]}
            stand_ins = [f"{name}=={version}" for name, version in UNPUBLISHED.items() if version]
            done = subprocess.run([str(python), "-m", "pip", "install", "-q", f"litellm=={LITELLM_VERSION}",
                                   *json.loads(listed.stdout), *stand_ins], capture_output=True, text=True,
                                  timeout=1200)
            if done.returncode != 0:
                tail = (done.stderr.strip().splitlines() or ["pip failed"])[-1]
                return None, {"error": f"LiteLLM's proxy extra could not be installed: {tail}"}
            installed = {"extra": f"litellm[proxy]=={LITELLM_VERSION} without litellm-proxy (not on the index)",
                         "stand_ins": stand_ins}
        PROXY_READY.write_text(json.dumps(installed) + "\n")
    facts: dict[str, Any] = json.loads(PROXY_READY.read_text())
    versions = subprocess.run([str(python), "-c", "import importlib.metadata as m, json; print(json.dumps("
                               "{n: m.version(n) for n in ('litellm', 'fastapi', 'uvicorn', 'httpx')}))"],
                              capture_output=True, text=True, timeout=60)
    if versions.returncode == 0:
        facts["versions"] = json.loads(versions.stdout)
    return python, facts


async def _in_process(base: str, jobs: int, rounds: int, warmup: int,
                      streak: int) -> dict[str, dict[str, list[float]]]:
    import fal_client
    import fal_client.client
    import httpx

    from gateway import Gateway, OviRequest
    from gateway.emulator.loopback import LoopbackTransport
    from gateway.jobs.polling import PollPolicy

    fal_client.client.QUEUE_URL_FORMAT = base + "/"  # what the SDK loopback test does: the queue host only
    fal = fal_client.AsyncClient(key=KEY)
    http = httpx.AsyncClient()
    keys = {"fal": KEY, "runware": KEY, "wavespeed": KEY}
    zero_wait = PollPolicy(expected=0.0, first_fraction=0.0, interval=0.0, learn=False)
    scratch = tempfile.TemporaryDirectory()
    lean = Gateway(transport=LoopbackTransport(base), keys=keys, journal=None, poll=zero_wait)
    default = Gateway(transport=LoopbackTransport(base), keys=keys, poll=zero_wait,
                      journal=os.path.join(scratch.name, "journal.sqlite3"))
    headers = {"authorization": f"Key {KEY}"}

    async def raw(i: int) -> None:
        submitted = (await http.post(f"{base}/{APP}", json={"prompt": prompt(i), "image_url": IMAGE},
                                     headers=headers)).json()
        status = (await http.get(submitted["status_url"], headers=headers)).json()
        assert status["status"] == "COMPLETED", status
        result = await http.get(submitted["response_url"], headers=headers)
        result.raise_for_status()

    async def sdk(i: int) -> None:
        handle = await fal.submit(APP, {"prompt": prompt(i), "image_url": IMAGE})
        await handle.get()

    async def lean_job(i: int) -> None:
        await lean.agenerate(OviRequest(prompt=prompt(i), image=IMAGE), provider="fal")

    async def default_job(i: int) -> None:
        await default.agenerate(OviRequest(prompt=prompt(i), image=IMAGE), provider="fal")

    sides = {"raw httpx": raw, "fal-client": sdk, "gateway, journal=None": lean_job,
             "gateway, default journal": default_job}
    per_round: dict[str, list[float]] = {name: [] for name in sides}
    cpu_round: dict[str, list[float]] = {name: [] for name in sides}
    streaks: dict[str, list[float]] = {name: [] for name in sides}
    streak_cpu: dict[str, list[float]] = {name: [] for name in sides}
    counter = 0
    # The order of the sides is shuffled for every job (seeded): in a fixed order the same side always
    # ran right after the default journal's job, while that job's batched writes were still being
    # committed on the journal's writer thread (CPU and the GIL taken from whoever runs next), so that
    # side (raw httpx) was slowed and fal-client came out faster than raw httpx.
    order = random.Random(14)
    try:
        for side in sides.values():
            for _ in range(warmup):
                counter += 1
                await side(1_000_000 + counter)
        for _ in range(rounds):
            times: dict[str, list[float]] = {name: [] for name in sides}
            cpu: dict[str, list[float]] = {name: [] for name in sides}
            for _ in range(jobs):
                for name in order.sample(list(sides), len(sides)):
                    side = sides[name]
                    counter += 1
                    began, began_cpu = time.perf_counter(), time.thread_time()
                    await side(counter)
                    times[name].append(time.perf_counter() - began)
                    cpu[name].append(time.thread_time() - began_cpu)
            for name in sides:
                per_round[name].append(median(times[name]))
                cpu_round[name].append(median(cpu[name]))
        # A diagnostic, not a target: streaks of one side's jobs back to back (sides in a shuffled order per
        # streak, ten streaks each, the first job of a streak not counted), so a counted job finds the caches
        # holding its own side's code and data, where in the rounds above it finds the previous side's.
        for _ in range(10):
            for name in order.sample(list(sides), len(sides)):
                side = sides[name]
                for at in range(streak + 1):
                    counter += 1
                    began, began_cpu = time.perf_counter(), time.thread_time()
                    await side(counter)
                    if at:
                        streaks[name].append(time.perf_counter() - began)
                        streak_cpu[name].append(time.thread_time() - began_cpu)
    finally:
        await lean.aclose()
        await default.aclose()
        await http.aclose()
        scratch.cleanup()
    return {"wall": per_round, "cpu": cpu_round, "streak": {name: [median(v)] for name, v in streaks.items()},
            "streak_cpu": {name: [median(v)] for name, v in streak_cpu.items()}}


def run(quick: bool = False) -> dict[str, Any]:
    jobs, rounds, warmup, streak = (40, 2, 10, 3) if quick else (200, 3, 30, 10)
    flush = flush_cost_ms(50 if quick else 200)
    process, base = _start_server()
    try:
        measured = asyncio.run(_in_process(base, jobs, rounds, warmup, streak))
        per_round = measured["wall"]
        litellm: dict[str, Any] | None = None
        python = ensure_litellm()
        if python is not None:
            done = subprocess.run([str(python), "-c", LITELLM_CHILD, base, str(jobs * rounds), str(warmup), IMAGE],
                                  capture_output=True, text=True, timeout=900,
                                  env={**os.environ, "LITELLM_LOCAL_MODEL_COST_MAP": "True"})
            if done.returncode == 0:
                litellm = json.loads(done.stdout.strip().splitlines()[-1])
            else:
                litellm = {"error": done.stderr.strip().splitlines()[-1] if done.stderr.strip() else "failed"}
    finally:
        assert process.stdin is not None
        process.stdin.close()
        process.wait(timeout=10)
    per_job = {name: median(values) for name, values in per_round.items()}
    if litellm is not None and "per_job_s" in litellm:
        per_job["LiteLLM"] = litellm["per_job_s"]
    raw = per_job["raw httpx"]
    added_ms = {name: 1000 * (value - raw) for name, value in per_job.items()}
    sdk, lean, default = added_ms["fal-client"], added_ms["gateway, journal=None"], added_ms["gateway, default journal"]
    peer = added_ms.get("LiteLLM")
    targets = {
        "lean <= 1.5 x fal-client": {"limit_ms": 1.5 * sdk, "value_ms": lean, "met": lean <= 1.5 * sdk},
        "default <= that + 2 flushes + 0.1 ms": {"limit_ms": 1.5 * sdk + 2 * flush + 0.1, "value_ms": default,
                                                 "met": default <= 1.5 * sdk + 2 * flush + 0.1},
    }
    if peer is not None:
        targets["lean <= 1/5 of LiteLLM"] = {"limit_ms": peer / 5, "value_ms": lean, "met": lean <= peer / 5}
    diagnostics = {key: {name: 1000 * median(values) for name, values in measured[key].items()}
                   for key in ("cpu", "streak", "streak_cpu")}
    return {"jobs_per_round": jobs, "rounds": rounds, "warmup": warmup, "streak": streak, "flush_ms": flush,
            "per_job_ms": {k: 1000 * v for k, v in per_job.items()}, "added_ms": added_ms, "litellm": litellm,
            "cpu_per_job_ms": diagnostics["cpu"], "back_to_back_ms": diagnostics["streak"],
            "back_to_back_cpu_ms": diagnostics["streak_cpu"], "targets": targets}


def rows(result: dict[str, Any]) -> tuple[list[str], list[list[Any]], list[str]]:
    headers = ["client (fal, loopback HTTP)", "ms per job", "added over raw httpx, ms", "x raw httpx",
               "added CPU, ms", "back to back: added, ms", "back to back: added CPU, ms"]
    raw = result["per_job_ms"]["raw httpx"]

    def added(key: str, name: str) -> float:  # over raw httpx; NaN for LiteLLM (its own process) or older results
        figures = result.get(key, {})
        return figures[name] - figures["raw httpx"] if name in figures else math.nan

    body = [[name, value, result["added_ms"][name], value / raw, added("cpu_per_job_ms", name),
             added("back_to_back_ms", name), added("back_to_back_cpu_ms", name)]
            for name, value in result["per_job_ms"].items()]
    notes = [f"{result['rounds']} rounds x {result['jobs_per_round']} jobs per side after {result['warmup']} warm-up "
             "jobs; in-process sides alternate job by job, in a shuffled order per job; the emulator is another "
             "process behind uvicorn.",
             "CPU: this thread's (user + system) per job, median of the same rounds. Back to back (a diagnostic, "
             f"not a target): after the rounds, 10 streaks per side of {result.get('streak', '?')} jobs in a row "
             "(sides shuffled per streak, the first job of a streak not counted): a job then finds the caches "
             "holding its own side's code and data, where in the rounds it finds the previous side's.",
             f"One fsync on this disk (4 KiB write + fsync): {result['flush_ms']:.3f} ms.",
             "LiteLLM: " + (f"{result['litellm'].get('version')} in benchmarks/.venvs/litellm, "
                            "LITELLM_LOCAL_MODEL_COST_MAP=True" if result["litellm"] and "version" in result["litellm"]
                            else f"not measured ({(result['litellm'] or {}).get('error', 'could not be installed')})")]
    for name, target in result["targets"].items():
        notes.append(f"Target {name}: {target['value_ms']:.3f} ms vs limit {target['limit_ms']:.3f} ms -> "
                     f"{'met' if target['met'] else 'NOT met'}.")
    return headers, body, notes
