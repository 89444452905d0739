"""10. The server over loopback: ``ovi-gateway serve --emulator`` under concurrent clients, beside LiteLLM's proxy.

Every side is a real process on loopback HTTP, driven by the same asyncio client (httpx, keep-alive, 25 clients
at once, 250 jobs a row after a warm-up, 1,000 in all): each client creates a video, then retrieves it every
``POLL_S`` seconds until it is final. Emulated jobs run ``JOB_S`` seconds. Rows, each naming its configuration:

- ``emulator straight``: the same two calls made to the fal queue of ``ovi-gateway emulate`` itself
  (``POST /fal-ai/ovi/image-to-video``, ``GET …/status``): the baseline every "added" figure subtracts,
  percentile by percentile;
- ``ovi-gateway serve --emulator`` with its default SQLite journal (the server always needs one; there is
  no ``journal=None`` server) and webhooks on (``--public-url`` set: the in-process emulated vendors push
  to it over loopback, signed as each vendor documents), then the same with polling (port 0, so no
  ``--public-url`` is derived). Jobs are spread over the three vendors (``provider`` per create), so
  status calls per job are counted per vendor from the emulator's ledger (``/_emulator/ledger``);
- ``LiteLLM proxy``: LiteLLM's own proxy (``litellm --config``, no database, its default single uvicorn
  worker) serving ``/v1/videos`` for ``fal_ai/fal-ai/ovi/image-to-video`` against another
  ``ovi-gateway emulate``, from its own virtual environment (``benchmarks/.venvs/litellm``, see
  ``peers.ensure_litellm_proxy``) with ``LITELLM_LOCAL_MODEL_COST_MAP=True``. Its retrieve asks the vendor
  each time (a status GET, plus the result GET once done), so its status calls follow the client's polling.

Our create answers once the intent is durable (the vendor submit follows in the background) and our retrieve
reads the journal; LiteLLM's calls wait for the vendor's answer. "Added" is therefore what a client waits
beyond calling the vendor directly, for either. Detection is read from the server's journal after it stops:
a submit's last update (it turned ``succeeded``) minus the first verified delivery for that job
(``webhook_events.received_at``), and minus (the intent + ``JOB_S``) for "after the job ended". Peak RSS is
the process's ``VmHWM``. Targets (issue 12): added latency per call <= 1/2 of LiteLLM proxy's (p50 and p99,
fal, create and retrieve); with webhooks 0 status calls per job for fal and WaveSpeed, 1 (the confirming
``getResponse``) for Runware, detection within 0.1 s of delivery.
"""

from __future__ import annotations

import asyncio
import sqlite3
import tempfile
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx

from benchmarks.common import IMAGE, percentile, prompt
from benchmarks.serving import (
    API_KEY,
    APP,
    EMULATOR_KEY,
    JOB_S,
    LITELLM_KEY,
    POLL_S,
    emulator_process,
    gateway_server,
    litellm_proxy,
    peak_rss_mb,
)

VENDORS = ("fal", "runware", "wavespeed")
FINAL = ("completed", "failed")
ROW_S = 60.0
"""Seconds after which a row starts no more jobs (a healthy row of 250 jobs takes about 15 s)."""


def _sizes(quick: bool) -> dict[str, int]:
    # 1,000 jobs over the four rows: at 50 clients x 1,000 jobs a row the client and the servers saturated both
    # cores (the straight emulator's create p50 was 136 ms) and the suite ran 6 minutes for this module.
    return ({"jobs": 60, "clients": 12, "warmup": 6} if quick else {"jobs": 250, "clients": 25, "warmup": 10})


# ---- the clients -------------------------------------------------------------------------------------------
@dataclass
class Target:
    """How one side is called: ``create(i)`` returns a handle, ``retrieve(handle)`` its status word."""

    create: Callable[[httpx.AsyncClient, int], Awaitable[Any]]
    retrieve: Callable[[httpx.AsyncClient, Any], Awaitable[str]]


def direct_target(base: str) -> Target:
    headers = {"authorization": f"Key {EMULATOR_KEY}"}

    async def create(http: httpx.AsyncClient, i: int) -> Any:
        answer = await http.post(f"{base}/{APP}", json={"prompt": prompt(i), "image_url": IMAGE}, headers=headers)
        answer.raise_for_status()
        return answer.json()["status_url"]

    async def retrieve(http: httpx.AsyncClient, status_url: Any) -> str:
        answer = await http.get(status_url, headers=headers)
        answer.raise_for_status()
        return "completed" if answer.json()["status"] == "COMPLETED" else "running"

    return Target(create, retrieve)


def videos_target(base: str, key: str, body: Callable[[int], dict[str, Any]]) -> Target:
    """An OpenAI-shaped ``/v1/videos`` server (ours or LiteLLM's)."""
    headers = {"authorization": f"Bearer {key}"}

    async def create(http: httpx.AsyncClient, i: int) -> Any:
        answer = await http.post(f"{base}/v1/videos", json=body(i), headers=headers)
        answer.raise_for_status()
        return answer.json()["id"]

    async def retrieve(http: httpx.AsyncClient, video_id: Any) -> str:
        answer = await http.get(f"{base}/v1/videos/{video_id}", headers=headers)
        answer.raise_for_status()
        status: str = answer.json()["status"]
        return status

    return Target(create, retrieve)


def ours_body(i: int) -> dict[str, Any]:
    return {"prompt": prompt(i), "input_reference": IMAGE, "provider": VENDORS[i % len(VENDORS)]}


def litellm_body(i: int) -> dict[str, Any]:
    return {"model": "ovi", "prompt": prompt(i), "input_reference": IMAGE}


async def drive(target: Target, *, jobs: int, clients: int, warmup: int, first: int = 0,
                deadline_s: float = 30.0, row_s: float = ROW_S) -> dict[str, Any]:
    """``warmup`` jobs (not measured), then ``jobs`` jobs by ``clients`` concurrent clients; per-call times.

    A job still unfinished ``deadline_s`` seconds after its create counts as ``unfinished``; no job starts
    ``row_s`` seconds into the measured phase (the rest count as ``not started``), so a server that slows
    down as jobs accumulate bounds the suite's run time instead of stretching it."""
    calls: dict[str, list[tuple[int, float]]] = {"create": [], "retrieve": []}
    outcomes: Counter[str] = Counter()
    errors: Counter[str] = Counter()
    limits = httpx.Limits(max_connections=clients + 8, max_keepalive_connections=clients + 8)
    async with httpx.AsyncClient(limits=limits, timeout=httpx.Timeout(60.0)) as http:

        async def one(i: int, measured: bool) -> None:
            try:
                began = time.perf_counter()
                handle = await target.create(http, i)
                took = time.perf_counter() - began
                if measured:
                    calls["create"].append((i, took))
                until = began + deadline_s
                while True:
                    await asyncio.sleep(POLL_S)
                    began = time.perf_counter()
                    state = await target.retrieve(http, handle)
                    took = time.perf_counter() - began
                    if measured:
                        calls["retrieve"].append((i, took))
                    if state in FINAL:
                        if measured:
                            outcomes[state] += 1
                        return
                    if time.perf_counter() > until:
                        outcomes["unfinished"] += 1
                        return
            except (httpx.HTTPError, KeyError, ValueError) as failure:
                errors[type(failure).__name__] += 1
                if measured:
                    outcomes["error"] += 1

        async def phase(indices: range, width: int, measured: bool) -> float:
            feed = iter(indices)
            stop = time.perf_counter() + row_s

            async def client() -> None:
                for i in feed:
                    if time.perf_counter() > stop:
                        outcomes["not started"] += 1
                        continue
                    await one(i, measured)

            began = time.perf_counter()
            await asyncio.gather(*(client() for _ in range(width)))
            return time.perf_counter() - began

        await phase(range(first, first + warmup), max(1, min(clients, warmup)), False)
        wall = await phase(range(first + warmup, first + warmup + jobs), clients, True)
    return {"calls": calls, "outcomes": dict(outcomes), "errors": dict(errors), "wall_s": wall}


def _stats(samples: list[tuple[int, float]], keep: Callable[[int], bool] = lambda i: True) -> dict[str, float]:
    values = [1000 * took for i, took in samples if keep(i)]
    return {"n": len(values), "p50_ms": percentile(values, 50), "p99_ms": percentile(values, 99),
            "mean_ms": sum(values) / len(values) if values else float("nan")}


# ---- what the server and the emulators recorded ------------------------------------------------------------
def _ledger(url: str, key: str | None = None) -> dict[str, dict[str, int]]:
    """Per vendor: jobs created and vendor calls by operation, from an emulator's ledger."""
    headers = {"authorization": f"Bearer {key}"} if key else {}
    ledger = httpx.get(url, headers=headers, timeout=30.0).json()
    out: dict[str, dict[str, int]] = {}
    for job in ledger["jobs"]:
        out.setdefault(job["vendor"], Counter())["jobs"] += 1
    for request in ledger["requests"]:
        out.setdefault(request["vendor"], Counter())[request["operation"]] += 1
    return {vendor: dict(counts) for vendor, counts in out.items()}


def _stamp(text: str) -> float:
    return datetime.fromisoformat(text).timestamp()


def detection(journal: Path) -> dict[str, dict[str, Any]]:
    """Per vendor, from the journal: seconds from the first verified delivery to the submit's settling, and
    from the job's end (intent + ``JOB_S``) to it. ``polled_first`` counts jobs settled before any delivery."""
    with sqlite3.connect(f"file:{journal}?mode=ro", uri=True) as db:
        submits = db.execute("SELECT provider, job_id, created_at, updated_at FROM submits "
                             "WHERE state = 'succeeded' AND job_id IS NOT NULL").fetchall()
        try:
            pushed = dict(((v, j), t) for v, j, t in db.execute(
                "SELECT vendor, job_id, MIN(received_at) FROM webhook_events GROUP BY vendor, job_id"))
        except sqlite3.OperationalError:  # no webhook table (an older schema)
            pushed = {}
    out: dict[str, dict[str, Any]] = {}
    for vendor, job_id, created, updated in submits:
        row = out.setdefault(vendor, {"after_delivery_s": [], "after_end_s": [], "polled_first": 0, "settled": 0})
        row["settled"] += 1
        done = _stamp(updated)
        row["after_end_s"].append(done - _stamp(created) - JOB_S)
        delivered = pushed.get((vendor, job_id))
        if delivered is not None:
            if done < delivered:
                row["polled_first"] += 1
            else:
                row["after_delivery_s"].append(done - delivered)
    for row in out.values():
        for name in ("after_delivery_s", "after_end_s"):
            values = row.pop(name)
            row[name] = {"n": len(values), "p50": percentile(values, 50), "p99": percentile(values, 99),
                         "max": max(values) if values else float("nan")}
    return out


# ---- the rows ----------------------------------------------------------------------------------------------
def _serve_row(webhooks: bool, sizes: dict[str, int]) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="ovi-bench-server-") as scratch:
        with gateway_server(webhooks, Path(scratch) / "journal.sqlite3") as served:
            driven = asyncio.run(drive(videos_target(served.base, API_KEY, ours_body), **sizes))
            ledger = _ledger(f"{served.base}/_emulator/ledger", API_KEY)
            rss = peak_rss_mb(served.pid)
        detected = detection(served.journal)  # after the server stopped: every write is in
    fal = lambda i: VENDORS[i % len(VENDORS)] == "fal"  # noqa: E731
    return {"wall_s": driven["wall_s"], "outcomes": driven["outcomes"], "errors": driven["errors"],
            "create": _stats(driven["calls"]["create"]), "retrieve": _stats(driven["calls"]["retrieve"]),
            "fal_create": _stats(driven["calls"]["create"], fal),
            "fal_retrieve": _stats(driven["calls"]["retrieve"], fal),
            "peak_rss_mb": rss, "ledger": ledger, "detection": detected}


def _direct_row(sizes: dict[str, int]) -> dict[str, Any]:
    with emulator_process() as base:
        driven = asyncio.run(drive(direct_target(base), **sizes))
        ledger = _ledger(f"{base}/_emulator/ledger")
    return {"wall_s": driven["wall_s"], "outcomes": driven["outcomes"], "errors": driven["errors"],
            "create": _stats(driven["calls"]["create"]), "retrieve": _stats(driven["calls"]["retrieve"]),
            "ledger": ledger}


def _litellm_row(sizes: dict[str, int]) -> dict[str, Any]:
    from benchmarks.peers import ensure_litellm_proxy

    python, facts = ensure_litellm_proxy()
    if python is None:
        return {"not_runnable": facts.get("error", "LiteLLM's proxy could not be installed"), "facts": facts}
    with emulator_process() as emulator:
        try:
            with litellm_proxy(python, emulator) as (base, pid):
                driven = asyncio.run(drive(videos_target(base, LITELLM_KEY, litellm_body), **sizes))
                rss = peak_rss_mb(pid)
        except RuntimeError as failure:
            return {"not_runnable": str(failure), "facts": facts}
        ledger = _ledger(f"{emulator}/_emulator/ledger")
    return {"wall_s": driven["wall_s"], "outcomes": driven["outcomes"], "errors": driven["errors"],
            "create": _stats(driven["calls"]["create"]), "retrieve": _stats(driven["calls"]["retrieve"]),
            "peak_rss_mb": rss, "ledger": ledger, "facts": facts}


def _guarded(make: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """One row; a side that cannot start or breaks becomes a 'not runnable' row, so the suite still ends."""
    try:
        return make()
    except Exception as failure:  # any failure of one side: report it, run the others
        return {"not_runnable": f"{type(failure).__name__}: {failure}"}


def run(quick: bool = False) -> dict[str, Any]:
    sizes = _sizes(quick)
    rows = {"emulator straight": _guarded(lambda: _direct_row(sizes)),
            "serve, webhooks": _guarded(lambda: _serve_row(True, sizes)),
            "serve, polling": _guarded(lambda: _serve_row(False, sizes)),
            "LiteLLM proxy": _guarded(lambda: _litellm_row(sizes))}
    return {"sizes": sizes, "job_s": JOB_S, "poll_s": POLL_S, "rows": rows, "targets": _targets(rows)}


def _added(row: dict[str, Any], base: dict[str, Any], call: str, q: str) -> float:
    return float(row[call][q] - base[call][q])


def _targets(rows: dict[str, Any]) -> dict[str, Any]:
    base, ours, peer = rows["emulator straight"], rows["serve, webhooks"], rows["LiteLLM proxy"]
    targets: dict[str, Any] = {}
    if "not_runnable" in ours:
        return targets
    if "not_runnable" not in peer and "not_runnable" not in base:
        for call in ("create", "retrieve"):
            for q in ("p50_ms", "p99_ms"):
                mine = float(ours[f"fal_{call}"][q] - base[call][q])
                theirs = _added(peer, base, call, q)
                targets[f"added {call} {q[:3]} <= 1/2 of LiteLLM proxy's"] = {
                    "value_ms": mine, "limit_ms": theirs / 2, "met": mine <= theirs / 2}
    want = {"fal": 0, "wavespeed": 0, "runware": 1}
    for vendor, calls in want.items():
        counts = ours["ledger"].get(vendor, {})
        per_job = counts.get("status", 0) / counts["jobs"] if counts.get("jobs") else float("nan")
        targets[f"webhooks: {vendor} status calls per job == {calls}"] = {"value": per_job, "limit": calls,
                                                                         "met": per_job == calls}
        seen = ours["detection"].get(vendor, {}).get("after_delivery_s", {})
        p99 = seen.get("p99", float("nan"))
        targets[f"webhooks: {vendor} detection p99 <= 0.1 s after delivery"] = {
            "value": p99, "limit": 0.1, "met": seen.get("n", 0) > 0 and p99 <= 0.1}
    return targets


def rows(result: dict[str, Any]) -> tuple[list[str], list[list[Any]], list[str]]:
    headers = ["configuration", "jobs ok", "wall s", "create p50/p99 ms", "retrieve p50/p99 ms",
               "added create p50/p99 ms", "added retrieve p50/p99 ms", "peak RSS MB", "vendor status calls/job",
               "push first: detection after delivery p50/p99 s"]
    names = {"emulator straight": "emulator straight (ovi-gateway emulate, fal queue calls)",
             "serve, webhooks": "ovi-gateway serve --emulator, default SQLite journal, webhooks (--public-url)",
             "serve, polling": "ovi-gateway serve --emulator, default SQLite journal, polling (no --public-url)",
             "LiteLLM proxy": "LiteLLM proxy /v1/videos (fal), no database"}
    base = result["rows"]["emulator straight"]
    body: list[list[Any]] = []
    notes: list[str] = []
    for key, row in result["rows"].items():
        if "not_runnable" in row:
            body.append([names[key], "-", "-", "-", "-", "-", "-", "-", "-", "not runnable"])
            notes.append(f"{key}: not runnable: {row['not_runnable']}")
            continue
        ok = row["outcomes"].get("completed", 0)
        total = sum(row["outcomes"].values())

        def pair(a: float, b: float) -> str:
            return f"{a:.2f} / {b:.2f}"

        if "not_runnable" in base:
            added_c = added_r = "-"
        else:
            added_c = pair(_added(row, base, "create", "p50_ms"), _added(row, base, "create", "p99_ms"))
            added_r = pair(_added(row, base, "retrieve", "p50_ms"), _added(row, base, "retrieve", "p99_ms"))
        calls = "; ".join(f"{v} {c.get('status', 0) / c['jobs']:.2f}" for v, c in sorted(row["ledger"].items())
                          if c.get("jobs"))
        seen = row.get("detection", {})
        found = "; ".join(f"{v} {d['after_delivery_s']['n']}/{d['settled']}: {d['after_delivery_s']['p50']:.3f} / "
                          f"{d['after_delivery_s']['p99']:.3f}" for v, d in sorted(seen.items())
                          if d["after_delivery_s"]["n"]) or "-"
        rss = row.get("peak_rss_mb")
        body.append([names[key], f"{ok}/{total}", row["wall_s"], pair(row["create"]["p50_ms"], row["create"]["p99_ms"]),
                     pair(row["retrieve"]["p50_ms"], row["retrieve"]["p99_ms"]),
                     "0 (baseline)" if key == "emulator straight" else added_c,
                     "0 (baseline)" if key == "emulator straight" else added_r,
                     "-" if rss is None else rss, calls, found])
        others = {k: v for k, v in row["outcomes"].items() if k != "completed"}
        if others or row.get("errors"):
            notes.append(f"{key}: outcomes {others} besides completed; errors {row.get('errors') or {}}")
    sizes = result["sizes"]
    notes.append(f"{sizes['jobs']:,} jobs a row by {sizes['clients']} concurrent clients after {sizes['warmup']} "
                 f"warm-up jobs; each client creates, then retrieves every {result['poll_s']} s until final; "
                 f"emulated jobs take {result['job_s']} s; every side is its own process on loopback HTTP, "
                 "driven by one httpx client.")
    notes.append("Added = this row's percentile minus the emulator-straight row's (create: the fal queue submit; "
                 "retrieve: its status GET). Our rows spread jobs over fal / runware / wavespeed; our create "
                 "answers once the intent is durable and our retrieve reads the journal, LiteLLM's wait on the vendor.")
    for key in ("serve, webhooks", "serve, polling"):
        row = result["rows"][key]
        if "detection" not in row:
            continue
        ended = "; ".join(f"{v} {d['after_end_s']['p50']:.3f} / {d['after_end_s']['p99']:.3f}"
                          + (f" ({d['polled_first']} settled by a poll before the push)" if d["polled_first"] else "")
                          for v, d in sorted(row["detection"].items()))
        notes.append(f"{key}: detection after the job ended (intent + {result['job_s']} s) p50/p99 s: {ended}.")
    peer = result["rows"]["LiteLLM proxy"]
    facts = peer.get("facts", {})
    if facts:
        notes.append("LiteLLM: " + ", ".join(f"{k} {v}" for k, v in facts.items() if k != "error"))
    for name, target in result["targets"].items():
        if "value_ms" in target:
            notes.append(f"Target {name}: {target['value_ms']:.2f} ms vs limit {target['limit_ms']:.2f} ms -> "
                         f"{'met' if target['met'] else 'NOT met'}.")
        else:
            notes.append(f"Target {name}: {target['value']:.3f} vs {target['limit']} -> "
                         f"{'met' if target['met'] else 'NOT met'}.")
    return headers, body, notes
