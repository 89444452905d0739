"""The command line, killed mid-run and run again, pays once: checked against the loopback emulator's ledger.

Uses the shared kill/ledger harness (tests/harness.py): the emulator lives in its own process, so its
billing ledger outlives every kill of the ``ovi-gateway`` process under test.
"""

from __future__ import annotations

import contextlib
import json
import shlex
import signal
import sqlite3
import sys
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.harness import billable, cli_process, emulator_process, jobs_before, ledger, run_cli, stop_when

pytestmark = [pytest.mark.slow, pytest.mark.skipif(sys.platform == "win32", reason="SIGKILL")]

PROMPT = "A knight in the rain. <S>I will defend this land.<E>"


def journal_shows(path: Path, sql: str, at_least: int = 1) -> Callable[[], bool]:
    """A condition: ``sql`` (a COUNT) on the journal file is at least ``at_least``."""
    def check() -> bool:
        if not path.exists():
            return False
        try:
            with contextlib.closing(sqlite3.connect(path, timeout=1)) as db:
                return int(db.execute(sql).fetchone()[0]) >= at_least
        except sqlite3.Error:
            return False
    return check


ACCEPTED = "SELECT COUNT(*) FROM submits WHERE job_id IS NOT NULL AND state IN ('accepted', 'running')"


@pytest.mark.parametrize(("vendor", "sig"), [("runware", signal.SIGKILL), ("fal", signal.SIGKILL),
                                             ("wavespeed", signal.SIGINT)])
def test_generate_killed_after_the_vendor_took_the_job_then_rerun_pays_once(tmp_path: Path, vendor: str,
                                                                            sig: int) -> None:
    journal = tmp_path / "journal.sqlite3"
    with emulator_process(job_time=2.0) as base:
        before = jobs_before(base)
        args = ["generate", "--prompt", PROMPT, "--image", "https://example.com/knight.png", "--provider", vendor,
                "--out", "clip.mp4", "--emulator-url", base, "--journal", str(journal)]
        code, _out, err = stop_when(cli_process(args, cwd=tmp_path), journal_shows(journal, ACCEPTED), sig=sig)
        assert code == (130 if sig == signal.SIGINT else -signal.SIGKILL), err
        [paid] = billable(base, before)
        if sig == signal.SIGINT:  # Ctrl-C names the vendor, the job and the exact command that finishes it
            assert f"job {paid['job_id']} on {vendor} may still be running" in err
            command = err.split("to finish it without paying again, run: ", 1)[1].strip().splitlines()[0]
            assert shlex.split(command)[1:] == args
        again = run_cli(args, cwd=tmp_path)
        assert again.returncode == 0, again.stderr
        assert f"resuming job {paid['job_id']} on {vendor}, paid for by an earlier run" in again.stderr
        assert (tmp_path / "clip.mp4").stat().st_size > 0
        third = run_cli([*args, "--json"], cwd=tmp_path)
        assert third.returncode == 0 and "already saved" in third.stderr
        assert json.loads(third.stdout)["job_id"] == paid["job_id"]
        assert [j["job_id"] for j in billable(base, before)] == [paid["job_id"]]


def test_a_batch_of_50_with_faults_killed_mid_run_then_rerun_bills_every_row_exactly_once(tmp_path: Path) -> None:
    faults = "runware.submit=503@0.1,drop@0.05; runware.status=500@0.1; runware.job=fail@0.08"
    rows = tmp_path / "rows.csv"
    rows.write_text("prompt,image,seed,route.provider\n" + "".join(
        f'"Knight {i} in the rain. <S>Row {i} holds.<E>",https://example.com/k{i}.png,{i},runware\n'
        for i in range(50)))
    journal = tmp_path / "journal.sqlite3"
    args = ["batch", str(rows), "--concurrency", "8", "--out-dir", "clips", "--emulator-url", "", "--journal",
            str(journal), "--json"]
    with emulator_process(job_time=0.4, seed=11, faults=faults) as base:
        args[args.index("--emulator-url") + 1] = base
        code, _out, err = stop_when(cli_process(args, cwd=tmp_path),
                                    journal_shows(journal, "SELECT COUNT(*) FROM clips WHERE state = 'succeeded'", 15))
        assert code == -signal.SIGKILL, err
        time.sleep(1.0)  # a submit already on the wire when the process died still lands at the vendor
        made_before_kill = jobs_before(base)
        with contextlib.closing(sqlite3.connect(journal)) as db:  # the jobs the killed run knew it had
            acked_before_kill = {j for (j,) in db.execute("SELECT job_id FROM submits WHERE job_id IS NOT NULL")}
        runs = []
        for _ in range(6):  # failed rows (job fate "fail" twice) are made again by the next rerun
            done = run_cli(args, cwd=tmp_path, timeout=300)
            runs.append(done)
            assert done.returncode in (0, 3), done.stderr
            if done.returncode == 0:
                break
        report = json.loads(runs[-1].stdout)
        assert runs[-1].returncode == 0 and report["totals"]["done"] == 50, report["totals"]
        jobs = ledger(base)["jobs"]
        per_clip = Counter(j["clip"] for j in jobs if j["billable"])
        assert len(per_clip) == 50 and set(per_clip.values()) == {1}  # every row billed exactly once
        assert len({r["job_id"] for r in report["rows"]}) == 50
        assert {j["job_id"] for j in jobs if j["billable"]} == {r["job_id"] for r in report["rows"]}
        # The reruns paid for exactly the rows whose job the killed run had not recorded (a job it had sent
        # but not recorded is found again by its taskUUID, so it may count either way; none is paid twice).
        final = {j["job_id"] for j in jobs if j["billable"]}
        paid_by_killed_run = len(final & acked_before_kill)
        assert paid_by_killed_run <= len(final & made_before_kill)
        assert sum(json.loads(r.stdout)["totals"]["paid_now"] for r in runs) == 50 - paid_by_killed_run
        print(f"batch kill test: 50 rows; {paid_by_killed_run} paid before the kill, {50 - paid_by_killed_run} by "
              f"{len(runs)} rerun(s); {sum(1 for j in jobs if not j['billable'])} failed (unbilled) jobs; "
              f"{len(ledger(base)['requests'])} vendor requests; every row billed exactly once")
