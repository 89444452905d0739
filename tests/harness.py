"""One kill/ledger harness for cross-process tests (crash/resume, storage, CLI): reuse it, don't copy it.

- ``emulator_process(...)``: the emulator in its own process on loopback, so its billing ledger survives
  any kill of the gateway's process; read it with ``ledger(base)`` / ``billable(base, before)``.
- ``run_child(base, journal, ...)``: one generation (``mode="generate"``) or ``Gateway.aresume()``
  (``mode="resume"``) in a fresh process, which SIGKILLs itself at a named step (``kill_at``, through a
  journal subclass — no crash hooks in the product code) or after ``kill_after`` real seconds.
- ``ForkServer(folder).run(...)``: the same, forked from a process that imported the gateway once, for
  tests that need many fresh processes (random-time kills) within a minute.
- ``submit_latency`` (seconds) makes the emulator take every submit first, then answer late: a kill in
  that window is a kill mid-submit (the vendor has the job, the journal has only the intent).
- ``cli_process(args)`` / ``run_cli(args)``: the ``ovi-gateway`` command in a fresh process (no vendor
  keys in its environment); ``stop_when(process, condition, sig)`` sends it SIGKILL (or SIGINT, a Ctrl-C)
  as soon as ``condition()`` holds, e.g. once the journal shows an accepted job.

Everything printed by a child is one JSON line on stdout (``{"outcome": ..., "job_id": ...}`` or the
resume outcomes); a killed child prints nothing and returns ``-SIGKILL``.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx

__all__ = ["KILL_POINTS", "ForkServer", "billable", "cli_process", "clip_jobs", "emulator_process", "jobs_before",
           "ledger", "output", "run_child", "run_cli", "stop_when"]

KILL_POINTS = ["before-intent", "after-intent", "after-ack", "mid-poll", "after-completion"]
"""Named steps a child can die at (see ``CHILD``)."""

EMULATOR = textwrap.dedent("""
    import sys, time
    from gateway.emulator import Emulator
    job_time, seed, latency, faults = float(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3]), sys.argv[4]
    emulator = Emulator(job_time=lambda rng: job_time, seed=seed, faults=faults or None)
    if latency:
        for vendor in emulator.vendors.values():
            inner = vendor.handle
            def slow(request, inner=inner, vendor=vendor):
                response = inner(request)  # processed (a submit creates and bills its job) ...
                if vendor.operation(request) == "submit":
                    time.sleep(latency)  # ... then answered late: a kill now is a kill mid-submit
                return response
            vendor.handle = slow
    server = emulator.serve(0)
    print(server.server_port, flush=True)
    sys.stdin.read()  # serve until the test closes our stdin
""")

# argv: base_url journal kill_at mode vendor key kill_after
CHILD = textwrap.dedent("""
    import asyncio, json, os, signal, sys, threading
    from gateway import Gateway, GatewayError, OviRequest, Route
    from gateway.emulator.loopback import LoopbackTransport
    from gateway.store.sqlite import SqliteStore
    from gateway.jobs.polling import PollPolicy

    base, path, kill_at, mode, vendor, key, kill_after = sys.argv[1:8]
    IMAGE = "https://example.com/k.png"

    if float(kill_after) > 0:
        threading.Timer(float(kill_after), lambda: os.kill(os.getpid(), signal.SIGKILL)).start()

    class CrashingStore(SqliteStore):  # the async store the gateway writes through (writer thread)
        def _maybe_die(self, step):
            if step == kill_at:
                os.kill(os.getpid(), signal.SIGKILL)

        async def intent(self, **kw):
            self._maybe_die("before-intent")
            await super().intent(**kw)
            self._maybe_die("after-intent")

        async def accepted(self, key, handle):
            await super().accepted(key, handle)
            self._maybe_die("after-ack")

        async def state(self, key, state):
            written = await super().state(key, state)
            if written is not None:
                await written  # batched: let its group commit land, so "mid-poll" is after it
            self._maybe_die("mid-poll")

        async def finish(self, clip_key, result_json, submit_key, **cost):
            self._maybe_die("after-completion")
            await super().finish(clip_key, result_json, submit_key, **cost)

    gateway = Gateway(transport=LoopbackTransport(base), journal=CrashingStore(path),
                      keys={"runware": "k", "fal": "k", "wavespeed": "k"},
                      poll=PollPolicy(expected=0.3, interval=0.05, first_fraction=0.5, max_interval=0.2,
                                      min_interval={}),
                      backoff_base=0.05)
    request = OviRequest(prompt=f"A knight ({key}). <S>Hold the line.<E>", image=IMAGE)

    async def generate():
        try:
            result = await gateway.agenerate(request, provider=vendor, idempotency_key=key or None)  # "": none
            return {"outcome": "succeeded", "job_id": result.job_id, "extra": result.possible_extra_charges}
        except GatewayError as error:
            return {"outcome": type(error).__name__, "job_id": None, "may_be_billed": error.may_be_billed,
                    "error": str(error)}

    async def resume():
        return [{"outcome": o.outcome, "clip": o.clip_key, "job_id": o.result.job_id if o.result else None}
                for o in await gateway.aresume()]

    async def main():
        try:
            if mode == "generate":
                print(json.dumps(await generate()))
            elif mode == "resume":
                print(json.dumps(await resume()))
            else:  # "resume+generate": resume, then the caller's same-key call, in one fresh process
                resumed = await resume()
                print(json.dumps({"resumed": resumed, "again": await generate()}))
        finally:
            await gateway.aclose()
        sys.stdout.flush()
        os._exit(0)  # no lingering kill timer

    asyncio.run(main())
""")


@contextmanager
def emulator_process(*, job_time: float = 0.3, seed: int = 3, submit_latency: float = 0.0,
                     faults: str = "") -> Iterator[str]:
    """An emulator serving on loopback in its own process; yields its base URL."""
    process = subprocess.Popen([sys.executable, "-c", EMULATOR, str(job_time), str(seed), str(submit_latency),
                                faults], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert process.stdout is not None
        port = int(process.stdout.readline())
        yield f"http://127.0.0.1:{port}"
    finally:
        assert process.stdin is not None
        process.stdin.close()
        process.wait(timeout=10)


ZYGOTE = textwrap.dedent("""
    import json, os, sys
    import gateway.client, gateway.emulator.loopback, gateway.store.journal  # imported once, forked warm
    child = compile(sys.argv[1], "child", "exec")
    for line in sys.stdin:
        argv, out = json.loads(line)
        pid = os.fork()
        if pid == 0:
            os.dup2(os.open(out, os.O_WRONLY | os.O_CREAT | os.O_TRUNC), 1)
            os.dup2(os.open(out + ".err", os.O_WRONLY | os.O_CREAT | os.O_TRUNC), 2)
            sys.argv = ["child", *argv]
            try:
                exec(child, {"__name__": "__main__"})
            finally:
                os._exit(1)
        _, status = os.waitpid(pid, 0)
        code = -os.WTERMSIG(status) if os.WIFSIGNALED(status) else os.WEXITSTATUS(status)
        print(json.dumps(code), flush=True)
""")


class ForkServer:
    """Starts children by ``fork`` from one process that imported the gateway once (a child then starts
    in milliseconds, not a second). Each child is still a fresh process: the server never runs a gateway,
    opens a journal or starts an event loop, so nothing of one child's state reaches the next."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.count = 0
        self.process = subprocess.Popen([sys.executable, "-c", ZYGOTE, CHILD], stdin=subprocess.PIPE,
                                        stdout=subprocess.PIPE, text=True)

    def run(self, base: str, journal: Path, *, mode: str = "generate", kill_at: str = "never",
            vendor: str = "runware", key: str = "clip-1", kill_after: float = 0.0) -> subprocess.CompletedProcess[str]:
        """Like ``run_child``, forked."""
        assert self.process.stdin is not None and self.process.stdout is not None
        self.count += 1
        out = self.folder / f"child-{self.count}.out"
        argv = [base, str(journal), kill_at, mode, vendor, key, str(kill_after)]
        self.process.stdin.write(json.dumps([argv, str(out)]) + "\n")
        self.process.stdin.flush()
        code = json.loads(self.process.stdout.readline())
        err = Path(str(out) + ".err")
        return subprocess.CompletedProcess(argv, code, out.read_text() if out.exists() else "",
                                           err.read_text() if err.exists() else "")

    def close(self) -> None:
        assert self.process.stdin is not None
        self.process.stdin.close()
        self.process.wait(timeout=10)


def run_child(base: str, journal: Path, *, mode: str = "generate", kill_at: str = "never", vendor: str = "runware",
              key: str = "clip-1", kill_after: float = 0.0, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """Run one generation or resume in a fresh process (see the module docstring)."""
    return subprocess.run([sys.executable, "-c", CHILD, base, str(journal), kill_at, mode, vendor, key,
                           str(kill_after)], capture_output=True, text=True, timeout=timeout)


def output(child: subprocess.CompletedProcess[str]) -> Any:
    """The JSON a child printed (``None`` when it printed nothing, e.g. killed)."""
    line = child.stdout.strip().splitlines()[-1:] if child.stdout.strip() else []
    return json.loads(line[0]) if line else None


def ledger(base: str) -> dict[str, Any]:
    """The emulator process's ledger: ``{"requests": [...], "jobs": [...]}``."""
    answer: dict[str, Any] = httpx.get(f"{base}/_emulator/ledger").json()
    return answer


def jobs_before(base: str) -> set[str]:
    """Every job id the ledger holds now (to tell a trial's jobs from earlier trials')."""
    return {j["job_id"] for j in ledger(base)["jobs"]}


def billable(base: str, before: set[str]) -> list[dict[str, Any]]:
    """Billable jobs created since ``before`` was taken."""
    return [j for j in ledger(base)["jobs"] if j["billable"] and j["job_id"] not in before]


def _cli_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    keys = ("RUNWARE_API_KEY", "FAL_KEY", "WAVESPEED_API_KEY", "OVI_GATEWAY_EMULATOR_URL", "OVI_GATEWAY_PRICES")
    env = {k: v for k, v in os.environ.items() if k not in keys}
    env["COLUMNS"] = "200"
    return {**env, **(extra or {})}


def cli_process(args: Sequence[str], *, cwd: Path, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    """``ovi-gateway ARGS`` started in a fresh process (``python -m gateway``), output captured."""
    return subprocess.Popen([sys.executable, "-m", "gateway", *args], cwd=cwd, env=_cli_env(env),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def run_cli(args: Sequence[str], *, cwd: Path, env: dict[str, str] | None = None,
            timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """``ovi-gateway ARGS`` run to its end in a fresh process."""
    return subprocess.run([sys.executable, "-m", "gateway", *args], cwd=cwd, env=_cli_env(env),
                          capture_output=True, text=True, timeout=timeout)


def stop_when(process: subprocess.Popen[str], condition: Callable[[], bool], *, sig: int = signal.SIGKILL,
              timeout: float = 60) -> tuple[int, str, str]:
    """Send ``sig`` to ``process`` once ``condition()`` holds (polled every 20 ms); returns its exit code,
    stdout and stderr. Fails if the process ends first or the condition never holds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if process.poll() is not None:
            out, err = process.communicate()
            raise AssertionError(f"the process ended (exit {process.returncode}) before the condition held: {err}")
        if time.monotonic() > deadline:
            process.kill()
            raise AssertionError("the condition never held")
        time.sleep(0.02)
    process.send_signal(sig)
    out, err = process.communicate(timeout=timeout)
    return process.returncode, out, err


def clip_jobs(base: str, key: str) -> list[dict[str, Any]]:
    """Billable jobs of the clip a child makes under ``key`` (children's prompts name their key, so
    trials running side by side on one emulator are told apart)."""
    from gateway.emulator.base import clip_fingerprint

    clip = clip_fingerprint(f"A knight ({key}). <S>Hold the line.<E>", "https://example.com/k.png")
    return [j for j in ledger(base)["jobs"] if j["billable"] and j["clip"] == clip]
