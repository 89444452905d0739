"""A journal write that fails after the vendor took the job (disk full, a locked file): the handle is
kept in memory, the write is retried, and a lasting failure ends in a gateway error that names the
vendor job and how to resume — never a raw sqlite3 error that drops a paid job (issue 9 §6)."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import pytest

from gateway import Gateway, JobUnresolved, OviRequest
from gateway.clock import VirtualClock
from gateway.emulator import Emulator
from gateway.store.journal import Journal

pytestmark = pytest.mark.anyio

REQUEST = OviRequest(prompt="A knight. <S>Hold the line.<E>", image="https://example.com/k.png")


class FullDisk(Journal):
    """Fails the first ``failures`` writes of one kind with SQLite's disk-full error."""

    def __init__(self, path: str, *, method: str, failures: int) -> None:
        self.method, self.failures, self.calls = method, failures, 0
        super().__init__(path)

    def _maybe_full(self, name: str) -> None:
        if name == self.method:
            self.calls += 1
            if self.calls <= self.failures:
                raise sqlite3.OperationalError("database or disk is full")

    def accepted(self, submit_key: str, handle_json: dict[str, Any]) -> None:
        self._maybe_full("accepted")
        super().accepted(submit_key, handle_json)

    def finish_clip(self, key: str, result_json: str) -> None:
        self._maybe_full("finish_clip")
        super().finish_clip(key, result_json)


def _setup(tmp_path: Path, method: str, failures: int) -> tuple[Gateway, Emulator, FullDisk]:
    clock = VirtualClock()
    emulator = Emulator(clock=clock, seed=8)
    journal = FullDisk(str(tmp_path / "j.sqlite3"), method=method, failures=failures)
    return Gateway(emulator=emulator, clock=clock, journal=journal), emulator, journal


async def test_a_passing_failure_of_the_ack_write_is_retried_and_the_clip_delivered(tmp_path: Path) -> None:
    gateway, emulator, journal = _setup(tmp_path, "accepted", failures=2)
    result = await gateway.agenerate(REQUEST, provider="wavespeed", idempotency_key="k")
    await gateway.aclose()
    assert journal.calls == 3 and [j.job_id for j in emulator.ledger.billable()] == [result.job_id]
    assert [r.job_id for r in journal.submits("k")] == [result.job_id]


async def test_a_lasting_failure_of_the_ack_write_still_follows_the_job_with_its_handle(tmp_path: Path) -> None:
    gateway, emulator, _ = _setup(tmp_path, "accepted", failures=99)
    result = await gateway.agenerate(REQUEST, provider="wavespeed", idempotency_key="k")
    await gateway.aclose()
    assert [j.job_id for j in emulator.ledger.billable()] == [result.job_id]


@pytest.mark.parametrize("method", ["finish_clip"])
async def test_a_lasting_failure_names_the_paid_job_and_how_to_resume(tmp_path: Path, method: str) -> None:
    gateway, emulator, journal = _setup(tmp_path, method, failures=99)
    with pytest.raises(JobUnresolved) as caught:
        await gateway.agenerate(REQUEST, provider="wavespeed", idempotency_key="k")
    await gateway.aclose()
    error = caught.value
    [job] = emulator.ledger.billable()
    assert error.may_be_billed and error.job is not None and error.job.job_id == job.job_id
    assert job.job_id in str(error) and "ovi-gateway jobs resume" in str(error)
    assert "disk is full" in str(error) and not isinstance(error.__cause__, type(None))
    # the submit stays open in the journal (its intent was written before the POST)
    assert [r.state for r in journal.submits("k")] in (["intent"], ["accepted"], ["running"], ["queued"])
