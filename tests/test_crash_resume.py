"""kill -9 at every step of a generation, then resume in a new process: no clip lost, none billed twice.

Uses the one shared kill/ledger harness (tests/harness.py): the emulator runs in its own process on
loopback (so its billing ledger survives the kill); the generation runs in a child process that
SIGKILLs itself at the chosen step; a fresh process then runs ``Gateway.resume()`` on the same journal.
"""

from __future__ import annotations

import signal
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.harness import KILL_POINTS, billable, emulator_process, jobs_before, output, run_child

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
