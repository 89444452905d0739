"""Job handles against the emulator in virtual time: submit returns at the intent, the follower
finishes the clip, another gateway re-attaches through the journal, and cancel never pretends."""

from __future__ import annotations

import asyncio

import pytest

from gateway import CannotCancel, Gateway, JobCancelled, JobNotFinished, NoRoute, OviRequest, Route
from gateway.clock import VirtualClock
from gateway.emulator import Emulator
from gateway.jobs.runner import Event

pytestmark = pytest.mark.anyio

IMAGE = "https://example.com/knight.png"


def _request(**fields) -> OviRequest:
    return OviRequest(prompt="A knight in the rain. <S>I will defend this land.<E>", image=IMAGE, **fields)


def _world(tmp_path, *, queue_time: float = 0.0, faults=None):
    clock = VirtualClock()
    emulator = Emulator(clock=clock, seed=3, queue_time=queue_time, faults=faults, job_time=lambda rng: 60.0)
    journal = str(tmp_path / "journal.sqlite3")
    return clock, emulator, journal


async def test_submit_returns_at_the_intent_and_the_follower_finishes(tmp_path) -> None:
    clock, emulator, journal = _world(tmp_path)
    async with Gateway(emulator=emulator, clock=clock, journal=journal, jitter_seed=1) as gw:
        job = await gw.submit(_request())
        first = await job.status()
        assert first.state in ("submitting", "queued") and clock.now() < 60.0
        with pytest.raises(JobNotFinished):
            job.result()
        result = await job.wait()
        assert result.provider == "runware" and job.result() == result
        done = await job.status()
        assert done.state == "succeeded" and done.cost_usd == result.cost_usd and done.vendor_job_id == result.job_id
        assert job.to_json() == {"id": job.id, "idempotency_key": job.id}
    assert set(emulator.ledger.billed_per_clip().values()) == {1}


async def test_a_clip_no_vendor_can_take_fails_at_submit(tmp_path) -> None:
    clock, emulator, journal = _world(tmp_path)
    async with Gateway(emulator=emulator, clock=clock, journal=journal) as gw:
        with pytest.raises(NoRoute):
            await gw.submit(_request(steps=80), provider="fal")
    assert emulator.ledger.jobs == []


async def test_the_same_key_is_the_same_job(tmp_path) -> None:
    clock, emulator, journal = _world(tmp_path)
    async with Gateway(emulator=emulator, clock=clock, journal=journal) as gw:
        one = await gw.submit(_request(), idempotency_key="clip-1")
        two = await gw.submit(_request(), idempotency_key="clip-1")
        assert one.id == two.id == "clip-1"
        assert (await one.wait()) == (await two.wait())
    assert len(emulator.ledger.jobs) == 1


async def test_another_gateway_reattaches_after_the_first_closes(tmp_path) -> None:
    clock, emulator, journal = _world(tmp_path)
    first = Gateway(emulator=emulator, clock=clock, journal=journal, jitter_seed=1)
    job = await first.submit(_request())
    await asyncio.sleep(0)
    await first.aclose()  # lets the submit on the wire be answered, then stops following
    assert (await job.status()).state in ("queued", "running")
    second = Gateway(emulator=emulator, clock=clock, journal=journal, jitter_seed=2)
    again = second.job(job.id)
    result = await again.wait()
    assert (await again.status()).state == "succeeded" and result.job_id == emulator.ledger.jobs[0].job_id
    await second.aclose()
    assert len(emulator.ledger.jobs) == 1  # resumed, not paid twice


async def test_an_unknown_id_is_a_key_error(tmp_path) -> None:
    clock, emulator, journal = _world(tmp_path)
    async with Gateway(emulator=emulator, clock=clock, journal=journal) as gw:
        with pytest.raises(KeyError):
            await gw.job("nope").status()


@pytest.mark.parametrize("vendor", ["runware", "wavespeed"])
async def test_vendors_without_a_cancel_say_so(tmp_path, vendor) -> None:
    clock, emulator, journal = _world(tmp_path)
    async with Gateway(emulator=emulator, clock=clock, journal=journal) as gw:
        job = await gw.submit(_request(), provider=vendor)
        while (await job.status()).state == "submitting":
            await clock.sleep(0.5)
        with pytest.raises(CannotCancel, match="no way to cancel"):
            await job.cancel()
        result = await job.wait()  # it keeps running to its end
        assert result.provider == vendor


async def test_fal_cancels_a_queued_job_and_nothing_fails_over(tmp_path) -> None:
    clock, emulator, journal = _world(tmp_path, queue_time=300.0)
    async with Gateway(emulator=emulator, clock=clock, journal=journal) as gw:
        job = await gw.submit(_request(), route=Route(order=["fal", "runware"]))
        while (await job.status()).state == "submitting":
            await clock.sleep(0.5)
        view = await job.cancel()
        assert view.state in ("queued", "cancelled")
        with pytest.raises(JobCancelled):
            await job.wait()
        assert (await job.status()).state == "cancelled"
    assert [j.vendor for j in emulator.ledger.jobs] == ["fal"]  # no failover to runware after the cancel
    assert emulator.ledger.jobs[0].billable is False


def test_sync_callers_submit_and_wait(tmp_path) -> None:
    clock, emulator, journal = _world(tmp_path)
    gw = Gateway(emulator=emulator, clock=clock, journal=journal)
    try:
        job = gw.submit_sync(_request())
        # Virtual time on the background loop: the follower may finish the 60 s job before this line
        # runs (it used to lose that race only because every journal commit waited for an fsync).
        assert job.status_sync().state in ("submitting", "queued", "running", "succeeded")
        assert job.wait_sync(timeout=30).provider == "runware"
    finally:
        gw.close()
    assert len(emulator.ledger.jobs) == 1


async def test_the_intent_event_comes_after_the_journal_intent(tmp_path) -> None:
    """The hook submit() relies on: the runner's ``submit`` event follows ``journal.intent``."""
    clock, emulator, journal = _world(tmp_path)
    seen: list[str] = []
    async with Gateway(emulator=emulator, clock=clock, journal=journal) as gw:

        def on_event(event: Event) -> None:
            if event.kind == "submit":
                seen.extend(r.state for r in gw.journal.submits("k"))

        await gw.agenerate(_request(), idempotency_key="k", on_event=on_event)
    assert seen[:1] == ["intent"]


async def test_result_scrubs_the_error_it_re_raises(tmp_path, monkeypatch) -> None:
    # A value that becomes a secret after the clip failed (a key registered later) must not leave result():
    # it re-raises the follower's own exception object, as wait() does, so it scrubs it the same way.
    import gateway.secrets as secrets

    monkeypatch.setattr(secrets, "_values", set(secrets._values))  # this test's registrations end with it
    monkeypatch.setattr(secrets, "_pattern", secrets._pattern)
    clock, emulator, journal = _world(tmp_path)
    emulator["runware"].faults.add("job", "fail")
    async with Gateway(emulator=emulator, clock=clock, journal=journal) as gw:
        job = await gw.submit(_request(), route=Route(provider="runware", job_retries=0))
        for _ in range(100):
            if (await job.status()).final:
                break
            await clock.sleep(5.0)
        await asyncio.sleep(0)
        with pytest.raises(Exception) as first:
            job.result()
        late = "Inference failed for this task"
        assert late in str(first.value)
        secrets.register(late)
        with pytest.raises(Exception) as caught:
            job.result()
        assert late not in str(caught.value) and "***" in str(caught.value)
