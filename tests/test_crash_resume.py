"""kill -9 at every step of a generation, then resume in a new process: no clip lost, none billed twice.

Uses the one shared kill/ledger harness (tests/harness.py): the emulator runs in its own process on
loopback (so its billing ledger survives the kill); the generation runs in a child process that
SIGKILLs itself at the chosen step; a fresh process then runs ``Gateway.resume()`` on the same journal.
"""

from __future__ import annotations

import random
import signal
import sqlite3
import sys
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from gateway.store.journal import OPEN, Journal
from tests.harness import (
    KILL_POINTS,
    ForkServer,
    billable,
    clip_jobs,
    emulator_process,
    jobs_before,
    output,
    run_child,
)

pytestmark = [pytest.mark.slow, pytest.mark.skipif(sys.platform == "win32", reason="SIGKILL")]


@pytest.fixture(scope="module")
def emulator_url() -> Iterator[str]:
    with emulator_process() as base:
        yield base


@pytest.mark.parametrize("kill_at", KILL_POINTS)
def test_kill_at_each_step_then_resume_bills_exactly_once(emulator_url: str, tmp_path: Path, kill_at: str) -> None:
    before = jobs_before(emulator_url)
    journal = tmp_path / "journal.sqlite3"
    crashed = run_child(emulator_url, journal, kill_at=kill_at)
    assert crashed.returncode == -signal.SIGKILL, crashed.stderr
    resumed = run_child(emulator_url, journal, mode="resume")
    assert resumed.returncode == 0, resumed.stderr
    # The caller retries with the same key: it gets the clip on record, or (if nothing was ever sent)
    # a fresh one — never a second paid job for a clip that already has one.
    again = run_child(emulator_url, journal)
    assert again.returncode == 0, again.stderr
    final = output(again)
    assert final["outcome"] == "succeeded", final
    assert [j["job_id"] for j in billable(emulator_url, before)] == [final["job_id"]]
    if kill_at in ("after-ack", "mid-poll", "after-completion"):
        assert [o["job_id"] for o in output(resumed) if o["outcome"] == "succeeded"] == [final["job_id"]]


@pytest.mark.parametrize("kill_at", ["before-intent", "after-intent"])
def test_a_call_without_a_key_is_on_record_from_its_flushed_intent(emulator_url: str, tmp_path: Path,
                                                                   kill_at: str) -> None:
    """A call without an idempotency key makes its own, and its clip is created (leased) in its first
    intent's transaction: killed before it, nothing is on record (an open clip nobody could ever resume,
    before) and nothing was sent; killed after it, the intent and its clip are, and resume pays once."""
    before = jobs_before(emulator_url)
    journal = tmp_path / "journal.sqlite3"
    crashed = run_child(emulator_url, journal, kill_at=kill_at, key="")
    assert crashed.returncode == -signal.SIGKILL, crashed.stderr
    with sqlite3.connect(journal) as db:
        clips = db.execute("SELECT key, state, lease_owner IS NOT NULL FROM clips").fetchall()
        submits = db.execute("SELECT clip_key, state FROM submits").fetchall()
    resumed = output(run_child(emulator_url, journal, mode="resume"))
    if kill_at == "before-intent":
        assert clips == [] and submits == [] and resumed == []
        assert billable(emulator_url, before) == []
    else:
        [(key, state, leased)] = clips
        assert state == "open" and leased and submits == [(key, "intent")]
        assert [o["outcome"] for o in resumed] == ["succeeded"]
        assert [j["job_id"] for j in billable(emulator_url, before)] == [resumed[0]["job_id"]]


def test_fal_killed_after_the_ack_is_resumed_by_request_id(emulator_url: str, tmp_path: Path) -> None:
    before = jobs_before(emulator_url)
    journal = tmp_path / "journal.sqlite3"
    crashed = run_child(emulator_url, journal, kill_at="after-ack", vendor="fal")
    assert crashed.returncode == -signal.SIGKILL
    resumed = output(run_child(emulator_url, journal, mode="resume", vendor="fal"))
    assert resumed[0]["outcome"] == "succeeded"
    again = output(run_child(emulator_url, journal, vendor="fal"))
    assert len(billable(emulator_url, before)) == 1
    assert again["job_id"] == resumed[0]["job_id"]


def test_fal_killed_after_intent_is_not_submitted_again_blindly(emulator_url: str, tmp_path: Path) -> None:
    """fal cannot be asked whether it took a job: after a crash between intent and answer, the gateway
    refuses to submit the clip again rather than risk paying twice."""
    before = jobs_before(emulator_url)
    journal = tmp_path / "journal.sqlite3"
    assert run_child(emulator_url, journal, kill_at="after-intent", vendor="fal").returncode == -signal.SIGKILL
    resumed = output(run_child(emulator_url, journal, mode="resume", vendor="fal"))
    assert resumed[0]["outcome"] == "unknown"
    again = output(run_child(emulator_url, journal, vendor="fal"))
    assert again["outcome"] == "SubmitOutcomeUnknown"
    assert billable(emulator_url, before) == []


TRIALS = 24
"""Random-time kills (seeded): at most ~30, under a minute together (three fork servers side by side)."""


def _phase_at_kill(journal: Path, key: str, jobs: list[dict[str, Any]]) -> str:
    """Where the killed child was, read back from the journal and the ledger."""
    if not journal.exists():
        return "before-intent"
    with Journal(journal) as opened:
        clip = opened.get_clip(key)
        submits = opened.submits(key) if clip else []
    if not submits:
        return "before-intent"
    if clip is not None and clip.state == "succeeded":
        return "after-completion"
    if submits[-1].handle is None:
        return "mid-submit" if jobs else "after-intent"
    return "mid-poll"


def _trial(server: ForkServer, base: str, folder: Path, trial: int, vendor: str, kill_after: float) -> dict[str, Any]:
    key = f"trial-{trial}"
    journal = folder / f"journal-{trial}.sqlite3"
    first = server.run(base, journal, vendor=vendor, key=key, kill_after=kill_after)
    phase = _phase_at_kill(journal, key, clip_jobs(base, key)) if first.returncode == -signal.SIGKILL else "finished"
    after = server.run(base, journal, mode="resume+generate", vendor=vendor, key=key)
    assert after.returncode == 0, after.stderr
    again = output(after)["again"]
    jobs = clip_jobs(base, key)
    with Journal(journal) as opened:
        records = opened.submits(key)
    kept = {r.job_id for r in records if r.state in OPEN}
    unknown = any(r.state in OPEN and r.job_id is None for r in records)
    lost = [j for j in jobs if j["job_id"] != again["job_id"] and j["job_id"] not in kept and not unknown]
    return {"trial": trial, "vendor": vendor, "phase": phase, "billed": len(jobs), "lost": lost, "again": again}


def test_random_time_kills_then_resume_in_a_fresh_process_lose_nothing_and_bill_once(tmp_path: Path) -> None:
    """SIGKILL at a random moment (seeded) — before the intent, mid-submit (the emulator holds every submit
    answer 0.3 s after taking the job), mid-poll, after completion — on a random vendor; then resume and
    the caller's same-key call in a fresh process. 0 lost: every billable job is the clip returned or
    open in the journal. 0 double-billed: at most one billable job per clip."""
    rng = random.Random(90)
    plan = [(t, rng.choice(("runware", "fal", "wavespeed")), rng.uniform(0.3, 2.4)) for t in range(TRIALS)]
    for i in range(3):
        (tmp_path / f"s{i}").mkdir()
    servers = [ForkServer(tmp_path / f"s{i}") for i in range(3)]
    try:
        with emulator_process(job_time=0.8, seed=9, submit_latency=0.3) as base:
            def lane(i: int) -> list[dict[str, Any]]:
                return [_trial(servers[i], base, tmp_path, *p) for p in plan[i::len(servers)]]
            with ThreadPoolExecutor(len(servers)) as pool:
                trials = [t for lane_trials in pool.map(lane, range(len(servers))) for t in lane_trials]
    finally:
        for server in servers:
            server.close()
    phases = Counter(t["phase"] for t in trials)
    print(f"\n{len(trials)} kills at: {dict(phases)}; outcomes after resume: "
          f"{dict(Counter(t['again']['outcome'] for t in trials))}")
    assert [t for t in trials if t["lost"]] == [] and [t for t in trials if t["billed"] > 1] == []
    assert phases["mid-submit"] >= 1 and phases["mid-poll"] >= 1, phases
