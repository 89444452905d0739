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
from gateway.store.sqlite import SqliteStore

pytestmark = pytest.mark.anyio

REQUEST = OviRequest(prompt="A knight. <S>Hold the line.<E>", image="https://example.com/k.png")


class FullDisk(SqliteStore):
    """The async store, failing the first ``failures`` writes of one kind with SQLite's disk-full error."""

    def __init__(self, path: str, *, method: str, failures: int, offload: bool = False) -> None:
        self.method, self.failures, self.calls = method, failures, 0
        super().__init__(path, offload=offload)

    def _maybe_full(self, name: str) -> None:
        if name == self.method:
            self.calls += 1
            if self.calls <= self.failures:
                raise sqlite3.OperationalError("database or disk is full")

    async def accepted(self, submit_key: str, handle_json: dict[str, Any]) -> None:
        self._maybe_full("accepted")
        await super().accepted(submit_key, handle_json)

    async def finish(self, clip_key: str, result_json: str, submit_key: str, **cost: Any) -> None:
        self._maybe_full("finish")
        await super().finish(clip_key, result_json, submit_key, **cost)


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
    assert [r.job_id for r in gateway.journal.submits("k")] == [result.job_id]


async def test_a_lasting_failure_of_the_ack_write_still_follows_the_job_with_its_handle(tmp_path: Path) -> None:
    gateway, emulator, _ = _setup(tmp_path, "accepted", failures=99)
    result = await gateway.agenerate(REQUEST, provider="wavespeed", idempotency_key="k")
    await gateway.aclose()
    assert [j.job_id for j in emulator.ledger.billable()] == [result.job_id]


@pytest.mark.parametrize("method", ["finish"])
async def test_a_lasting_failure_names_the_paid_job_and_how_to_resume(tmp_path: Path, method: str) -> None:
    gateway, emulator, _ = _setup(tmp_path, method, failures=99)
    with pytest.raises(JobUnresolved) as caught:
        await gateway.agenerate(REQUEST, provider="wavespeed", idempotency_key="k")
    await gateway.aclose()
    error = caught.value
    [job] = emulator.ledger.billable()
    assert error.may_be_billed and error.job is not None and error.job.job_id == job.job_id
    assert job.job_id in str(error) and "ovi-gateway jobs resume" in str(error)
    assert "disk is full" in str(error) and not isinstance(error.__cause__, type(None))
    # the submit stays open in the journal (its intent was written before the POST)
    assert [r.state for r in gateway.journal.submits("k")] in (["intent"], ["accepted"], ["running"], ["queued"])


class RefusedCommit(SqliteStore):
    """The offloaded store whose group commits of the first ``failures`` "running" writes fail."""

    def __init__(self, path: str, failures: int) -> None:
        self.failures, self.running_writes = failures, 0
        super().__init__(path, offload=True)

    async def state(self, submit_key: str, state: str) -> Any:
        self.running_writes += state == "running"
        if state == "running" and self.failures > 0:
            self.failures -= 1
            return await self._later(_disk_full, submit_key)
        return await super().state(submit_key, state)


def _disk_full(queries: Any, tx: Any, submit_key: str) -> None:
    raise sqlite3.OperationalError("database or disk is full")


async def test_a_batched_write_refused_by_its_group_commit_is_kept_on_the_job_and_written_later(
        tmp_path: Path) -> None:
    clock = VirtualClock()
    emulator = Emulator(clock=clock, seed=8, job_time=lambda rng: 120.0)  # checks while it runs
    store = RefusedCommit(str(tmp_path / "j.sqlite3"), failures=1)
    gateway = Gateway(emulator=emulator, clock=clock, journal=store)
    result = await gateway.agenerate(REQUEST, provider="wavespeed", idempotency_key="k")
    await gateway.aclose()
    assert store.failures == 0 and len(store.deferred_errors) == 1  # the refused commit was seen
    assert store.running_writes == 2  # and the write kept on the job was tried again before a later check
    [record] = gateway.journal.submits("k")
    assert record.state == "succeeded" and record.job_id == result.job_id
    store.close()
