"""A gateway built with ``journal=None`` does no store work at all (issue 14 item 3).

Every job used to await a no-op journal's coroutines — the intent, the accepted and running writes, a
flush of kept writes and a lease check before every poll, the result serialized for a store that keeps
nothing. Each test makes those paths fail loudly, then runs jobs through the outcomes that reach them:
a delivered clip, a vendor's verdict, a deadline, a failed check retried.
"""

from __future__ import annotations

from typing import Any

import pytest

import gateway.jobs.results as results
import gateway.jobs.runner as runner
import gateway.jobs.writes as writes
from gateway import DeadlineExceeded, Gateway, GenerationFailed, OviRequest, Route
from gateway.clock import VirtualClock
from gateway.emulator import Emulator
from gateway.result import OviResult

pytestmark = pytest.mark.anyio


@pytest.fixture
def no_store_work(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every store, flush and lease path replaced by one that records its name and raises."""
    called: list[str] = []

    def refuse(name: str) -> Any:
        def refused(*args: Any, **kwargs: Any) -> Any:
            called.append(name)
            raise AssertionError(f"{name} was called for a gateway without a journal")
        return refused

    for module, name in [(runner, "flush"), (results, "flush"), (runner, "check_lease"), (runner, "budget_holds"),
                         (writes, "write_paid"), (runner, "write_paid")]:
        monkeypatch.setattr(module, name, refuse(f"{module.__name__}.{name}"))
    monkeypatch.setattr(OviResult, "model_dump_json", refuse("OviResult.model_dump_json"))
    return called


def _request() -> OviRequest:
    return OviRequest(prompt="A knight in the rain. <S>I will defend this land.<E>", image="https://example.com/k.png")


@pytest.mark.parametrize("vendor", ["runware", "fal", "wavespeed"])
async def test_a_delivered_clip_makes_no_store_call(no_store_work: list[str], vendor: str) -> None:
    clock = VirtualClock()
    emulator = Emulator(clock=clock, seed=4, job_time=lambda rng: 20.0)
    async with Gateway(emulator=emulator, clock=clock, journal=None) as gw:
        assert gw.store is None
        result = await gw.agenerate(_request(), provider=vendor)
    assert result.provider == vendor and result.video_url
    assert no_store_work == []


async def test_a_verdict_a_failed_check_and_a_deadline_make_no_store_call(no_store_work: list[str]) -> None:
    clock = VirtualClock()
    emulator = Emulator(clock=clock, seed=4, job_time=lambda rng: 20.0)
    emulator["wavespeed"].faults.add("job", "fail")
    async with Gateway(emulator=emulator, clock=clock, journal=None) as gw:
        with pytest.raises(GenerationFailed):  # the vendor's verdict: recorded on the result only
            await gw.agenerate(_request(), route=Route(provider="wavespeed", job_retries=0))
        emulator["runware"].faults.add("status", "503")  # one failed check, retried on the same job
        retried = await gw.agenerate(_request(), provider="runware")
        with pytest.raises(DeadlineExceeded):  # still running at the deadline: left for nobody to resume
            await gw.agenerate(_request(), route=Route(provider="fal", deadline=5.0))
    assert [a.outcome for a in retried.attempts] == ["succeeded"]
    assert emulator.ledger.calls("runware", "status") >= 2
    assert no_store_work == []


async def test_the_attempts_are_still_recorded_on_the_error(no_store_work: list[str]) -> None:
    """Skipping the store skips nothing the caller sees: the failed attempt is on the error."""
    clock = VirtualClock()
    emulator = Emulator(clock=clock, seed=4, job_time=lambda rng: 20.0)
    emulator["fal"].faults.add("job", "fail")
    async with Gateway(emulator=emulator, clock=clock, journal=None) as gw:
        with pytest.raises(GenerationFailed) as caught:
            await gw.agenerate(_request(), route=Route(provider="fal", job_retries=0))
    (attempt,) = caught.value.attempts
    assert attempt.provider == "fal" and attempt.outcome == "failed" and attempt.job_id
    assert gw.health_state["fal"].snapshot().consecutive_failures == 1


async def test_nobody_listening_builds_no_event_and_a_job_in_flight_keeps_no_wrapper_frames(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Without ``on_event`` no ``Event`` is built; without a recording tracer no telemetry coroutine wraps
    the job. Both cost every job; the frames stay alive for as long as the job is in flight."""
    import asyncio

    import gateway.jobs.submit as submit

    def built(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("an Event was built with nobody listening")

    for module in (runner, submit, results):
        monkeypatch.setattr(module, "Event", built)
    clock = VirtualClock()
    emulator = Emulator(clock=clock, seed=4, job_time=lambda rng: 20.0)
    async with Gateway(emulator=emulator, clock=clock, journal=None) as gw:
        task = asyncio.ensure_future(gw.agenerate(_request(), provider="wavespeed"))
        while not emulator["wavespeed"].jobs:  # submitted: now sleeping until its first check
            await asyncio.sleep(0)
        await asyncio.sleep(0)
        chain, coroutine = [], task.get_coro()
        while coroutine is not None and hasattr(coroutine, "cr_code"):
            chain.append(coroutine.cr_code.co_qualname)
            coroutine = coroutine.cr_await
        result = await task
    assert "Runner.follow" in chain and not {"clip", "attempt"} & set(chain), chain
    assert result.provider == "wavespeed"
