"""A journal write that the journal itself refuses — here a "running" write after another process ended
the submit — stops the follower with ``JobUnresolved`` naming the vendor job (``held_by`` set: no failover,
no new submit), whether the refusal comes at once (a write awaited inline) or from a group commit later
(a batched write). Before, the batched one was kept and tried again at every check, and the refusal
finally came out of the follower as a raw ``ValueError``: the caller could not tell which job it was."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from gateway import Gateway, JobUnresolved, OviRequest, Route
from gateway.clock import VirtualClock
from gateway.emulator import Emulator
from gateway.store.sqlite import SqliteStore

pytestmark = pytest.mark.anyio

REQUEST = OviRequest(prompt="A knight. <S>Hold the line.<E>", image="https://example.com/k.png")


class EndedElsewhere(SqliteStore):
    """A store whose submit is ended by another connection (another process) just before the follower
    records "running"; the journal then refuses that write, as it refuses any move out of a final state."""

    def __init__(self, path: str, *, offload: bool) -> None:
        super().__init__(path, offload=offload)
        self.other = SqliteStore(path)
        self.running_writes = 0

    async def state(self, submit_key: str, state: str) -> Any:
        if state == "running":
            self.running_writes += 1
            if self.running_writes == 1:
                await self.other.failed(submit_key, error="ended by another process", may_be_billed=True)
        return await super().state(submit_key, state)


@pytest.mark.parametrize("offload", [True, False], ids=["batched", "inline"])
async def test_a_write_the_journal_refuses_names_the_vendor_job_and_never_fails_over(
        tmp_path: Path, offload: bool) -> None:
    clock = VirtualClock()
    emulator = Emulator(clock=clock, seed=8, job_time=lambda rng: 120.0)  # checks while it runs
    store = EndedElsewhere(str(tmp_path / "j.sqlite3"), offload=offload)
    gateway = Gateway(emulator=emulator, clock=clock, journal=store)
    route = Route(order=["wavespeed", "fal"], failover_on_unknown=True)  # even so: never a second job
    with pytest.raises(JobUnresolved) as caught:
        await gateway.agenerate(REQUEST, route=route, idempotency_key="k")
    await gateway.aclose()
    error = caught.value
    [job] = emulator.ledger.jobs
    assert job.vendor == "wavespeed"
    assert error.job is not None and error.job.job_id == job.job_id and job.job_id in str(error)
    assert error.provider == "wavespeed" and error.may_be_billed and error.held_by is not None
    assert "running" in str(error) and isinstance(error.__cause__, ValueError)
    assert store.running_writes == 1  # a refusal is not retried
    [record] = gateway.journal.submits("k")
    assert record.state == "failed"  # the other process's end stands
    store.other.close()
    store.close()
