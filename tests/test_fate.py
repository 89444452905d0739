"""The fate table (gateway/jobs/fate.py): its docstring is the table, and every row is run for real.

Each row has a scenario against the emulator in virtual time. A spy on ``fate.decide`` proves the row
was the one deciding, and the scenario's outcome and the emulator's ledger prove what the fate did.
"""

from __future__ import annotations

import itertools
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from gateway import Gateway, GatewayError, OviRequest, Route
from gateway.clock import VirtualClock
from gateway.emulator import Emulator
from gateway.jobs import fate
from gateway.jobs.fate import TABLE, Answer, Fate, Phase

pytestmark = pytest.mark.anyio

REQUEST = OviRequest(prompt="A knight. <S>Hold the line.<E>", image="https://example.com/k.png")


def test_the_docstring_is_the_table() -> None:
    rows = {}
    for line in (fate.__doc__ or "").splitlines():
        parts = line.split()
        if len(parts) >= 3 and parts[0] in {p.value for p in Phase} and parts[1] in {a.value for a in Answer}:
            rows[(Phase(parts[0]), Answer(parts[1]))] = Fate(parts[2])
    assert rows == TABLE


def test_a_pair_outside_the_table_is_a_bug_not_a_default() -> None:
    with pytest.raises(ValueError, match="no fate"):
        fate.decide(Phase.FOLLOW, Answer.ACK)


def test_conflict_ownership() -> None:
    assert fate.conflict_is_ours("k", sent_here={"k"})
    assert not fate.conflict_is_ours("k", sent_here=set())
    assert fate.conflict_is_ours("k", sent_here=set(), journal_hash="h", request_hash="h")
    assert not fate.conflict_is_ours("k", sent_here=set(), journal_hash="h", request_hash="other")


def test_retention() -> None:
    now = datetime(2026, 1, 10, tzinfo=UTC)
    assert not fate.past_retention((now - timedelta(hours=1)).isoformat(), 3600.0, now=now)
    assert fate.past_retention((now - timedelta(hours=2, seconds=1)).isoformat(), 3600.0, now=now)
    assert not fate.past_retention("2000-01-01T00:00:00+00:00", None, now=now)


class World:
    """One scenario's gateway, emulator and the rows ``fate.decide`` was asked."""

    def __init__(self, faults: str | None, decided: list[tuple[Phase, Answer]], **options: Any) -> None:
        self.clock = VirtualClock()
        self.emulator = Emulator(clock=self.clock, faults=faults, seed=21, queue_time=options.pop("queue_time", 0.0))
        self.gateway = Gateway(emulator=self.emulator, clock=self.clock, journal=":memory:", **options)
        self.decided = decided

    async def run(self, **kwargs: Any) -> tuple[str, Any]:
        try:
            return "ok", await self.gateway.agenerate(REQUEST, **kwargs)
        except GatewayError as error:
            return type(error).__name__, error

    def billed(self, vendor: str | None = None) -> int:
        self.emulator.deliver_late(everything=True)
        return len(self.emulator.ledger.billable(vendor))


Scenario = Callable[[World], Awaitable[None]]
SCENARIOS: dict[tuple[Phase, Answer], tuple[str | None, Scenario]] = {}


def row(phase: Phase, answer: Answer, faults: str | None) -> Callable[[Scenario], Scenario]:
    def register(scenario: Scenario) -> Scenario:
        SCENARIOS[(phase, answer)] = (faults, scenario)
        return scenario
    return register


@row(Phase.SEND, Answer.NOT_SENT, "runware.submit=refuse")
async def _refused_connect_is_retried(w: World) -> None:
    outcome, result = await w.run(provider="runware")
    assert outcome == "ok" and [a.outcome for a in result.attempts] == ["retried", "succeeded"]
    assert w.billed() == 1


@row(Phase.SEND, Answer.REFUSED, "runware.submit=401")
async def _refusal_fails_over_unbilled(w: World) -> None:
    outcome, result = await w.run()
    assert outcome == "ok" and result.provider != "runware" and result.possible_extra_charges == 0
    assert w.billed("runware") == 0 and w.billed() == 1


@row(Phase.SUBMIT, Answer.ACK, None)
async def _ack_is_followed(w: World) -> None:
    outcome, result = await w.run(provider="wavespeed")
    assert outcome == "ok" and w.billed() == 1 and result.job_id == w.emulator.ledger.billable()[0].job_id


@row(Phase.SUBMIT, Answer.JOB_IN_ANSWER, "fal.submit=500_id")
async def _request_id_in_a_5xx_is_followed(w: World) -> None:
    outcome, result = await w.run(provider="fal")
    assert outcome == "ok" and w.emulator.ledger.calls("fal", "submit") == 1 and w.billed() == 1
    assert result.job_id == w.emulator.ledger.billable()[0].job_id  # the id the 500 named


@row(Phase.SUBMIT, Answer.NO_ANSWER, "runware.submit=timeout")
async def _no_answer_is_reconciled(w: World) -> None:
    outcome, _ = await w.run(provider="runware")
    assert outcome == "ok" and w.emulator.ledger.calls("runware", "submit") == 2 and w.billed() == 1


@row(Phase.SETTLE, Answer.ACK, "runware.submit=timeout,502")
async def _a_resend_acked_is_followed(w: World) -> None:
    outcome, _ = await w.run(provider="runware")
    assert outcome == "ok" and w.emulator.ledger.calls("runware", "submit") == 3 and w.billed() == 1


@row(Phase.SETTLE, Answer.CONFLICT_OURS, "runware.submit=drop")
async def _a_resend_that_conflicts_follows_the_first(w: World) -> None:
    outcome, _ = await w.run(provider="runware")
    assert outcome == "ok" and w.emulator.ledger.calls("runware", "submit") == 2 and w.billed() == 1


async def test_a_conflict_on_a_key_this_process_never_sent_is_not_followed() -> None:
    """Two processes with the same key factory (seeded keys, as Gateway(seed=) once made): the second,
    asking for a different clip, must not receive the first one's video."""
    clock = VirtualClock()
    emulator = Emulator(clock=clock, seed=21)

    def seeded() -> Callable[[], str]:  # the same sequence of keys in every "process"
        counter = itertools.count(1)
        return lambda: str(uuid.UUID(int=next(counter), version=4))

    first = Gateway(emulator=emulator, clock=clock, journal=":memory:", key_factory=seeded())
    mine = await first.agenerate(REQUEST, provider="runware")
    other = Gateway(emulator=emulator, clock=clock, journal=":memory:", key_factory=seeded())
    theirs = await other.agenerate(OviRequest(prompt="Another clip. <S>Mine.<E>", image="https://example.com/o.png"))
    assert theirs.provider != "runware" and theirs.job_id != mine.job_id  # refused, then the next vendor
    assert {j.clip for j in emulator.ledger.billable()} == {e.clip for e in emulator.ledger.jobs}
    assert len(emulator.ledger.billable()) == 2
    await first.aclose()
    await other.aclose()


@row(Phase.SETTLE, Answer.NO_ANSWER, "wavespeed.submit=drop")
async def _an_unsettled_submit_stops_and_stays_open(w: World) -> None:
    outcome, error = await w.run(route=Route(order=["wavespeed"]))  # failover allowed; nothing else is paid
    assert outcome == "SubmitOutcomeUnknown" and error.may_be_billed
    assert w.billed() == 1 and w.billed("wavespeed") == 1
    assert [r.state for r in w.gateway.journal.unfinished()] == ["unknown"]


@row(Phase.FOLLOW, Answer.PENDING, "fal.status=flap")
async def _pending_is_polled(w: World) -> None:
    outcome, _ = await w.run(provider="fal")  # the first check lags (running), the next says done
    assert outcome == "ok" and w.emulator.ledger.calls("fal", "status") >= 2


@row(Phase.FOLLOW, Answer.DONE, None)
async def _done_reads_the_result(w: World) -> None:
    outcome, result = await w.run(provider="runware")
    assert outcome == "ok" and result.video_url


@row(Phase.FOLLOW, Answer.JOB_FAILED, "runware.job=fail_item")
async def _a_verdict_ends_the_job(w: World) -> None:
    outcome, result = await w.run(provider="runware")  # job_retries=1: a new job after the verdict
    assert outcome == "ok" and [a.outcome for a in result.attempts] == ["failed", "succeeded"]
    assert len(w.emulator.ledger.jobs) == 2 and w.billed() == 1


@row(Phase.FOLLOW, Answer.JOB_REFUSED, "wavespeed.job=nsfw")
async def _a_refusal_stops(w: World) -> None:
    outcome, _ = await w.run(route=Route(order=["wavespeed"]))
    assert outcome == "ContentRejected" and len(w.emulator.ledger.jobs) == 1


@row(Phase.FOLLOW, Answer.CHECK_FAILED, "wavespeed.status=404,400,422")
async def _failed_checks_are_checked_again(w: World) -> None:
    outcome, result = await w.run(route=Route(order=["wavespeed"]))  # failover allowed, never taken
    assert outcome == "ok" and result.provider == "wavespeed" and w.billed() == 1
    assert w.emulator.ledger.calls("wavespeed", "status") >= 4  # three failed checks, then more


@row(Phase.FOLLOW, Answer.OUT_OF_TIME, "runware.status=404@1.0")
async def _unreadable_until_max_wait_is_unresolved_and_open(w: World) -> None:
    outcome, error = await w.run()  # failover allowed, yet the paid job is never bought again
    assert outcome == "JobUnresolved" and error.may_be_billed and w.billed() == 1
    assert [r.state for r in w.gateway.journal.unfinished()] == ["accepted"]


@row(Phase.RESULT, Answer.CLIP, None)
async def _a_clip(w: World) -> None:
    outcome, result = await w.run(provider="fal")
    assert outcome == "ok" and result.provider == "fal"


@row(Phase.RESULT, Answer.JOB_FAILED, "fal.job=fail")
async def _a_result_verdict_ends_the_job(w: World) -> None:
    outcome, result = await w.run(provider="fal")
    assert outcome == "ok" and [a.outcome for a in result.attempts] == ["failed", "succeeded"]
    assert len(w.emulator.ledger.jobs) == 2


@row(Phase.RESULT, Answer.JOB_REFUSED, "fal.job=nsfw")
async def _a_result_refusal_stops(w: World) -> None:
    outcome, _ = await w.run(route=Route(order=["fal"]))
    assert outcome == "ContentRejected" and len(w.emulator.ledger.jobs) == 1


@row(Phase.RESULT, Answer.CHECK_FAILED, "fal.result=404,400")
async def _failed_result_reads_are_read_again(w: World) -> None:
    outcome, _ = await w.run(route=Route(order=["fal"]))
    assert outcome == "ok" and w.billed() == 1 and w.emulator.ledger.calls("fal", "result") == 3


@row(Phase.RESULT, Answer.OUT_OF_TIME, "fal.result=404@1.0")
async def _an_unreadable_result_is_unresolved(w: World) -> None:
    outcome, error = await w.run(route=Route(order=["fal"]))
    assert outcome == "JobUnresolved" and error.may_be_billed and w.billed() == 1


@row(Phase.RESUME, Answer.NOTHING_FOUND, "fal.submit=timeout")
async def _a_resume_that_finds_nothing_leaves_it_open(w: World) -> None:
    outcome, _ = await w.run(provider="fal", idempotency_key="k")
    assert outcome == "SubmitOutcomeUnknown"
    assert [o.outcome for o in await w.gateway.aresume()] == ["unknown"]
    assert [r.state for r in w.gateway.journal.unfinished()] == ["unknown"]


@row(Phase.RESUME, Answer.PAST_RETENTION, "fal.submit=timeout")
async def _given_up_after_retention_or_n_resumes(w: World) -> None:
    import gateway.store.journal as journal_module
    outcome, _ = await w.run(provider="fal", idempotency_key="k")
    assert outcome == "SubmitOutcomeUnknown"
    real = journal_module._utcnow
    try:
        # back-to-back resumes are one (review finding 10): they never abandon a submit
        assert [o.outcome for _ in range(8) for o in await w.gateway.aresume()] == ["unknown"] * 8
        outcomes = []
        for n in range(1, fate.ABANDON_AFTER_RESUMES + 1):  # resumes RESUME_SPACING_S apart count
            later = real() + timedelta(seconds=n * (fate.RESUME_SPACING_S + 1))
            journal_module._utcnow = lambda later=later: later  # type: ignore[misc]
            outcomes += [o.outcome for o in await w.gateway.aresume()]
    finally:
        journal_module._utcnow = real
    assert outcomes == ["unknown"] * (fate.ABANDON_AFTER_RESUMES - 1) + ["abandoned"]
    [record] = w.gateway.journal.abandoned_submits()
    assert record.may_be_billed and w.gateway.journal.unfinished() == []
    # the key is free again; the abandoned submit is reported on the new clip as a possible charge
    outcome, result = await w.run(provider="fal", idempotency_key="k")
    assert outcome == "ok" and result.possible_extra_charges == 1


def test_every_row_has_a_scenario() -> None:
    assert set(SCENARIOS) == set(TABLE)


@pytest.mark.parametrize(("phase", "answer"), sorted(TABLE, key=str), ids=lambda v: str(v))
async def test_row(phase: Phase, answer: Answer, monkeypatch: pytest.MonkeyPatch) -> None:
    decided: list[tuple[Phase, Answer]] = []
    real = fate.decide

    def spy(p: Phase, a: Answer) -> Fate:
        decided.append((p, a))
        return real(p, a)

    monkeypatch.setattr(fate, "decide", spy)
    faults, scenario = SCENARIOS[(phase, answer)]
    world = World(faults, decided, queue_time=5.0 if answer is Answer.PENDING else 0.0)
    try:
        await scenario(world)
    finally:
        await world.gateway.aclose()
    assert (phase, answer) in decided, f"the scenario never reached row {phase} × {answer}: {decided}"
