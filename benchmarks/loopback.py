"""The loopback emulator server as a fair peer: keep-alive latency and a burst of new connections.

Two configurations, each on its own row: ``ovi-gateway emulate`` in its own process (what other processes
and SDKs talk to), and ``Emulator().serve()`` in a thread of the measuring process (what the tests use;
client and server share one interpreter). Per configuration:

- keep-alive: sequential requests on one ``httpx.Client`` connection, ``GET /_emulator/ledger`` (tiny JSON)
  and ``POST /v1`` (a Runware ``getResponse`` for an unknown task: the REST task path, 400 answer);
- burst: 200 clients open a new connection at once (asyncio), send one request each and read the answer;
  rounds repeated, the worst round reported. Before this server, the listen backlog of 5 reset or stalled
  such bursts, and Nagle's algorithm held every keep-alive answer ~40 ms.
"""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx

from benchmarks import common

BURST = 200
POLL_TASK = [{"taskType": "getResponse", "taskUUID": "00000000-0000-4000-8000-000000000000"}]


@contextmanager
def _own_process() -> Iterator[str]:
    """``ovi-gateway emulate --port 0`` in a child process; yields its base URL."""
    child = subprocess.Popen([sys.executable, "-m", "gateway", "emulate", "--port", "0"], stdout=subprocess.PIPE,
                             stderr=subprocess.DEVNULL, text=True)
    try:
        assert child.stdout is not None
        banner = child.stdout.readline()
        if "listening on " not in banner:
            raise RuntimeError(f"ovi-gateway emulate did not start: {banner!r}")
        yield banner.split("listening on ", 1)[1].split()[0]
    finally:
        child.send_signal(signal.SIGINT)
        try:
            child.wait(10)
        except subprocess.TimeoutExpired:
            child.kill()


@contextmanager
def _in_process() -> Iterator[str]:
    from gateway.emulator import Emulator

    with Emulator().serve(0) as server:
        yield server.url


def _keep_alive(base: str, requests: int) -> dict[str, Any]:
    out: dict[str, Any] = {}
    with httpx.Client(base_url=base, timeout=10) as client:
        for name, call in (("get", lambda: client.get("/_emulator/ledger")),
                           ("post", lambda: client.post("/v1", json=POLL_TASK, headers={"authorization": "Bearer k"}))):
            call()  # the connection is open before timing starts
            times = []
            for _ in range(requests):
                started = time.perf_counter()
                call()
                times.append((time.perf_counter() - started) * 1000)
            out[name] = {"p50_ms": round(common.median(times), 3), "p90_ms": round(common.percentile(times, 90), 3),
                         "p99_ms": round(common.percentile(times, 99), 3), "requests": requests}
    return out


async def _connect_once(host: str, port: int) -> float:
    started = time.perf_counter()
    reader, writer = await asyncio.open_connection(host, port)
    try:
        writer.write(b"GET /_emulator/ledger HTTP/1.1\r\nhost: " + host.encode() + b"\r\nconnection: close\r\n\r\n")
        await writer.drain()
        answer = await reader.read()
    finally:
        writer.close()
    if not answer.startswith(b"HTTP/1.1 200"):
        raise ConnectionError(answer[:80])
    return (time.perf_counter() - started) * 1000


def _burst(base: str, rounds: int) -> dict[str, Any]:
    url = httpx.URL(base)
    worst: dict[str, Any] | None = None
    for _ in range(rounds):
        async def one_round() -> tuple[list[Any], float]:
            started = time.perf_counter()
            results = await asyncio.wait_for(asyncio.gather(
                *(_connect_once(url.host, url.port or 80) for _ in range(BURST)), return_exceptions=True), 60)
            return results, (time.perf_counter() - started) * 1000

        results, wall = asyncio.run(one_round())
        times = [r for r in results if isinstance(r, float)]
        row = {"completed": len(times), "clients": BURST, "wall_ms": round(wall, 1),
               "p50_ms": round(common.median(times), 2), "max_ms": round(max(times, default=float("nan")), 2),
               "errors": sorted({type(r).__name__ for r in results if not isinstance(r, float)})}
        if worst is None or (row["completed"], -row["wall_ms"]) < (worst["completed"], -worst["wall_ms"]):
            worst = row
    assert worst is not None
    return {**worst, "rounds": rounds}


def run(quick: bool = False) -> dict[str, Any]:
    requests, rounds = (200, 1) if quick else (2000, 5)
    configs = {}
    for name, serve in (("ovi-gateway emulate (own process)", _own_process),
                        ("Emulator.serve (in-process thread)", _in_process)):
        with serve() as base:
            configs[name] = {"keep_alive": _keep_alive(base, requests), "burst": _burst(base, rounds)}
    return {"configs": configs, "targets": {"keep_alive_p50_ms": 5.0, "burst_completed": BURST}}


def rows(result: dict[str, Any]) -> tuple[list[str], list[list[Any]], list[str]]:
    headers = ["configuration", "keep-alive GET p50/p90/p99 ms", "keep-alive POST p50/p90 ms",
               f"{BURST} new connections at once: completed", "burst wall ms", "per-connection p50/max ms"]
    body = []
    for name, r in result["configs"].items():
        get, post, burst = r["keep_alive"]["get"], r["keep_alive"]["post"], r["burst"]
        body.append([name, f"{get['p50_ms']:.2f} / {get['p90_ms']:.2f} / {get['p99_ms']:.2f}",
                     f"{post['p50_ms']:.2f} / {post['p90_ms']:.2f}",
                     f"{burst['completed']}/{burst['clients']}" + (f" ({', '.join(burst['errors'])})"
                                                                  if burst["errors"] else ""),
                     burst["wall_ms"], f"{burst['p50_ms']:.1f} / {burst['max_ms']:.1f}"])
    first = next(iter(result["configs"].values()))
    notes = [f"Targets: keep-alive p50 < {result['targets']['keep_alive_p50_ms']:g} ms; all {BURST} connects "
             "complete. uvicorn (h11) over asyncio, TCP_NODELAY on every accepted socket, listen backlog 1024.",
             f"{first['keep_alive']['get']['requests']} sequential requests per kind on one connection; burst: worst "
             f"of {first['burst']['rounds']} rounds. POST /v1 is a Runware getResponse for an unknown task (400)."]
    return headers, body, notes
