"""kill -9 at every step of a generation, then resume in a new process: no clip lost, none billed twice.

The emulator runs in its own process on loopback (so its billing ledger survives the kill); the
generation runs in a child process that SIGKILLs itself at the chosen step, through a journal subclass
(no crash hooks in the product code). A fresh process then runs ``Gateway.resume()`` on the same
journal file.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import httpx
import pytest

pytestmark = [pytest.mark.slow, pytest.mark.skipif(sys.platform == "win32", reason="SIGKILL")]

EMULATOR = textwrap.dedent("""
    import sys, time
    from gateway.emulator import Emulator
    server = Emulator(job_time=lambda rng: 0.3, seed=3).serve(0)
    print(server.server_port, flush=True)
    sys.stdin.read()  # serve until the test closes our stdin
""")

# Runs one generation (or a resume) against the loopback emulator. argv: base_url journal kill_at mode
CHILD = textwrap.dedent("""
    import asyncio, json, os, signal, sys
    from gateway import Gateway, OviRequest, Route
    from gateway.emulator.loopback import LoopbackTransport
    from gateway.store.journal import Journal
    from gateway.jobs.runner import PollPolicy

    base, path, kill_at, mode, vendor = sys.argv[1:6]

    class CrashingJournal(Journal):
        def _maybe_die(self, step):
            if step == kill_at:
                os.kill(os.getpid(), signal.SIGKILL)

        def intent(self, **kw):
            self._maybe_die("before-intent")
            super().intent(**kw)
            self._maybe_die("after-intent")

        def accepted(self, key, handle):
            super().accepted(key, handle)
            self._maybe_die("after-ack")

        def state(self, key, state):
            super().state(key, state)
            self._maybe_die("mid-poll")

        def finish_clip(self, key, result_json):
            self._maybe_die("after-completion")
            super().finish_clip(key, result_json)

    gateway = Gateway(transport=LoopbackTransport(base), journal=CrashingJournal(path),
                      keys={"runware": "k", "fal": "k", "wavespeed": "k"},
                      poll=PollPolicy(expected=0.3, interval=0.05, first_fraction=0.5))
    request = OviRequest(prompt="A knight. <S>Hold the line.<E>", image="https://example.com/k.png")

    async def main():
        try:
            if mode == "generate":
                result = await gateway.agenerate(request, provider=vendor, idempotency_key="clip-1")
                print(json.dumps({"outcome": "succeeded", "job_id": result.job_id}))
            else:
                outcomes = await gateway.aresume()
                print(json.dumps([{"outcome": o.outcome, "job_id": o.result.job_id if o.result else None}
                                  for o in outcomes]))
        finally:
            await gateway.aclose()

    asyncio.run(main())
""")

KILL_POINTS = ["before-intent", "after-intent", "after-ack", "mid-poll", "after-completion"]


@pytest.fixture(scope="module")
def emulator_url():
    process = subprocess.Popen([sys.executable, "-c", EMULATOR], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                               text=True)
    try:
        port = int(process.stdout.readline())
        yield f"http://127.0.0.1:{port}"
    finally:
        process.stdin.close()
        process.wait(timeout=10)


def _child(base: str, journal: Path, kill_at: str, mode: str, vendor: str = "runware") -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", CHILD, base, str(journal), kill_at, mode, vendor],
                          capture_output=True, text=True, timeout=60)


def _billable(base: str, job_ids_seen: set[str]) -> list[dict]:
    jobs = httpx.get(f"{base}/_emulator/ledger").json()["jobs"]
    return [j for j in jobs if j["billable"] and j["job_id"] not in job_ids_seen]


@pytest.mark.parametrize("kill_at", KILL_POINTS)
def test_kill_at_each_step_then_resume_bills_exactly_once(emulator_url: str, tmp_path: Path, kill_at: str) -> None:
    before = {j["job_id"] for j in httpx.get(f"{emulator_url}/_emulator/ledger").json()["jobs"]}
    journal = tmp_path / "journal.sqlite3"
    crashed = _child(emulator_url, journal, kill_at, "generate")
    assert crashed.returncode == -signal.SIGKILL, crashed.stderr
    resumed = _child(emulator_url, journal, "never", "resume")
    assert resumed.returncode == 0, resumed.stderr
    # The caller retries with the same key: it gets the clip on record, or (if nothing was ever sent)
    # a fresh one — never a second paid job for a clip that already has one.
    again = _child(emulator_url, journal, "never", "generate")
    assert again.returncode == 0, again.stderr
    final = json.loads(again.stdout)
    billable = _billable(emulator_url, before)
    assert [j["job_id"] for j in billable] == [final["job_id"]]
    outcomes = json.loads(resumed.stdout)
    if kill_at in ("after-ack", "mid-poll", "after-completion"):
        assert [o["job_id"] for o in outcomes if o["outcome"] == "succeeded"] == [final["job_id"]]


def test_fal_killed_after_the_ack_is_resumed_by_request_id(emulator_url: str, tmp_path: Path) -> None:
    before = {j["job_id"] for j in httpx.get(f"{emulator_url}/_emulator/ledger").json()["jobs"]}
    journal = tmp_path / "journal.sqlite3"
    crashed = _child(emulator_url, journal, "after-ack", "generate", vendor="fal")
    assert crashed.returncode == -signal.SIGKILL
    resumed = _child(emulator_url, journal, "never", "resume", vendor="fal")
    assert json.loads(resumed.stdout)[0]["outcome"] == "succeeded"
    again = _child(emulator_url, journal, "never", "generate", vendor="fal")
    assert len(_billable(emulator_url, before)) == 1
    assert json.loads(again.stdout)["job_id"] == json.loads(resumed.stdout)[0]["job_id"]


def test_fal_killed_after_intent_is_not_submitted_again_blindly(emulator_url: str, tmp_path: Path) -> None:
    """fal cannot be asked whether it took a job: after a crash between intent and answer, the gateway
    refuses to submit the clip again rather than risk paying twice."""
    before = {j["job_id"] for j in httpx.get(f"{emulator_url}/_emulator/ledger").json()["jobs"]}
    journal = tmp_path / "journal.sqlite3"
    assert _child(emulator_url, journal, "after-intent", "generate", vendor="fal").returncode == -signal.SIGKILL
    resumed = _child(emulator_url, journal, "never", "resume", vendor="fal")
    assert json.loads(resumed.stdout)[0]["outcome"] == "unknown"
    again = _child(emulator_url, journal, "never", "generate", vendor="fal")
    assert again.returncode != 0 and "SubmitOutcomeUnknown" in again.stderr
    assert _billable(emulator_url, before) == []
