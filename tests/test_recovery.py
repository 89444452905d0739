"""Paid jobs left open — by a deadline, an unreadable status, a crash — are finished, never paid twice;
and one clip is worked on by one call at a time."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from gateway import (
    ClipInProgress,
    ConfigurationError,
    DeadlineExceeded,
    Gateway,
    GatewayError,
    JobUnresolved,
    OviRequest,
    Route,
)
from gateway.clock import VirtualClock
from gateway.emulator import Emulator

pytestmark = pytest.mark.anyio


def _request(text: str = "A knight. <S>Hold the line.<E>", **fields) -> OviRequest:
    fields.setdefault("image", "https://example.com/k.png")
    return OviRequest(prompt=text, **fields)


def _setup(faults: str | None = None, *, journal: str = ":memory:", job_time=None, **options):
    clock = VirtualClock()
    emulator = Emulator(clock=clock, faults=faults, seed=3, job_time=job_time)
    return Gateway(emulator=emulator, clock=clock, journal=journal, jitter_seed=3, **options), emulator, clock


async def test_a_same_key_retry_never_submits_while_the_paid_job_is_unreadable() -> None:
    gateway, emulator, _ = _setup("runware.status=503@1.0")
    with pytest.raises(JobUnresolved):
        await gateway.agenerate(_request(), idempotency_key="k")
    with pytest.raises(JobUnresolved, match="still open"):
        await gateway.agenerate(_request(), idempotency_key="k")
    assert len(emulator.ledger.billable()) == 1
    emulator["runware"].faults.chance.clear()  # the status endpoint is back
    result = await gateway.agenerate(_request(), idempotency_key="k")
    assert [j.job_id for j in emulator.ledger.billable()] == [result.job_id]
    await gateway.aclose()


async def test_a_job_on_a_vendor_not_configured_here_blocks_a_second_charge(tmp_path: Path) -> None:
    journal = str(tmp_path / "j.sqlite3")
    gateway, emulator, clock = _setup(journal=journal)
    with pytest.raises(DeadlineExceeded):
        await gateway.agenerate(_request(), provider="wavespeed", route=Route(deadline=5), idempotency_key="k")
    await gateway.aclose()
    narrower = Gateway(emulator=emulator, clock=clock, journal=journal, providers=["runware", "fal"])
    with pytest.raises(JobUnresolved):
        await narrower.agenerate(_request(), idempotency_key="k")
    opted_in = await narrower.agenerate(_request(), idempotency_key="k", route=Route(failover_on_unknown=True))
    assert opted_in.provider == "runware" and opted_in.possible_extra_charges == 1  # the open wavespeed job
    await narrower.aclose()


async def test_two_concurrent_calls_with_one_key_make_one_job() -> None:
    gateway, emulator, _ = _setup()
    outcomes = await asyncio.gather(gateway.agenerate(_request(), idempotency_key="k"),
                                    gateway.agenerate(_request(), idempotency_key="k"), return_exceptions=True)
    assert sorted(type(o).__name__ for o in outcomes) == ["ClipInProgress", "OviResult"]
    assert len(emulator.ledger.billable()) == 1
    again = await gateway.agenerate(_request(), idempotency_key="k")
    assert again.job_id == emulator.ledger.billable()[0].job_id
    await gateway.aclose()


async def test_an_idempotency_key_without_a_journal_is_refused() -> None:
    gateway, emulator, _ = _setup(journal=None)
    with pytest.raises(ConfigurationError, match="journal"):
        await gateway.agenerate(_request(), idempotency_key="k")
    assert emulator.ledger.calls() == 0
    await gateway.aclose()


async def test_a_404_never_ends_a_paid_job_until_it_is_past_the_vendors_retention(tmp_path: Path) -> None:
    gateway, emulator, _ = _setup()
    for key, text in (("gone", "First. <S>One.<E>"), ("kept", "Second. <S>Two.<E>")):
        with pytest.raises(DeadlineExceeded):
            await gateway.agenerate(_request(text), provider="wavespeed", route=Route(deadline=5), idempotency_key=key)
    gone = next(r for r in gateway.journal.submits("gone"))
    emulator["wavespeed"].jobs.pop(gone.job_id)  # every poll of it now answers 404
    outcomes = {o.clip_key: o.outcome for o in await gateway.aresume()}
    assert outcomes == {"gone": "unknown", "kept": "succeeded"}  # a 404 is a failed check, not "expired"
    assert [r.state for r in gateway.journal.submits("gone")] == ["running"]
    # eight days on, past WaveSpeed's documented 7-day retention (+ margin): given up, may be billed
    gateway.recovery.wall = lambda: datetime.now(UTC) + timedelta(days=8)
    assert [o.outcome for o in await gateway.aresume()] == ["abandoned"]
    [record] = gateway.journal.submits("gone")
    assert record.state == "abandoned" and record.may_be_billed
    assert sum(row.possibly_billed for row in gateway.journal.spend()) == 1
    assert gateway.journal.unfinished() == []
    await gateway.aclose()


async def test_resume_needs_neither_the_local_image_nor_forgets_dropped_fields(png_file: Path) -> None:
    gateway, _, _ = _setup()
    request = OviRequest(prompt="A frame. <S>Move.<E>", image=png_file, steps=50)
    with pytest.raises(DeadlineExceeded):
        await gateway.agenerate(request, route=Route(order=["wavespeed"], allow_degrade=True, deadline=5),
                                idempotency_key="k")
    png_file.unlink()
    [outcome] = await gateway.aresume()
    assert outcome.outcome == "succeeded" and outcome.result.dropped == ["steps"]
    assert outcome.result.timings.running_s is None  # the job's start before resuming is unknown
    await gateway.aclose()


async def test_a_half_open_probe_that_hits_the_deadline_does_not_block_the_vendor() -> None:
    gateway, _emulator, clock = _setup("fal.submit=503", breaker={"threshold": 1, "cooldown": 10})
    with pytest.raises(GatewayError):
        await gateway.agenerate(_request(), provider="fal", route=Route(max_tries=1))
    clock.advance(11)  # half-open: one probe may go
    with pytest.raises(DeadlineExceeded):
        await gateway.agenerate(_request("Probe. <S>Go.<E>"), provider="fal", route=Route(deadline=5))
    result = await gateway.agenerate(_request("After. <S>Go.<E>"), provider="fal")
    assert result.provider == "fal"
    await gateway.aclose()


async def test_a_deadline_shorter_than_the_first_poll_still_catches_a_quick_job() -> None:
    gateway, _emulator, clock = _setup(job_time=lambda rng: 20.0)
    result = await gateway.agenerate(_request(), route=Route(deadline=44))  # first poll would come at 45 s
    assert result.provider == "runware" and clock.now() <= 44
    await gateway.aclose()


async def test_resume_leaves_a_clip_another_call_holds() -> None:
    gateway, _, _ = _setup()
    with pytest.raises(DeadlineExceeded):
        await gateway.agenerate(_request(), route=Route(deadline=5), idempotency_key="k")
    assert gateway.journal.claim_clip("k", "elsewhere:1:x", seconds=60, alive=lambda owner: True) is None
    assert [o.outcome for o in await gateway.aresume()] == ["in-progress"]
    with pytest.raises(ClipInProgress):
        await gateway.agenerate(_request(), idempotency_key="k")
    await gateway.aclose()
