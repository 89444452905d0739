"""Deadlines bound every wait, in virtual time: a vendor trickling its answer one byte a second cannot
hold a ``Route(deadline=...)`` past its deadline (gateway/jobs/bounds.py, Clock.timeout)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable

import httpx
import pytest

from gateway import Gateway, OviRequest, Route
from gateway.clock import VirtualClock
from gateway.emulator import Emulator
from gateway.errors import DeadlineExceeded, SubmitOutcomeUnknown

pytestmark = pytest.mark.anyio
REQUEST = OviRequest(prompt="A knight. <S>Hold the line.<E>", image="https://example.com/k.png")
KEYS = {"runware": "rw-key-000000", "fal": "fal-id-0000:fal-secret-000", "wavespeed": "ws-key-000000"}


class Trickle(httpx.AsyncByteStream):
    """An answer's body sent one byte every ``per_byte`` seconds of the clock."""

    def __init__(self, body: bytes, clock: VirtualClock, per_byte: float) -> None:
        self.body, self.clock, self.per_byte = body, clock, per_byte

    async def __aiter__(self) -> AsyncIterator[bytes]:
        for index in range(len(self.body)):
            await self.clock.sleep(self.per_byte)
            yield self.body[index:index + 1]


def trickling(emulator: Emulator, clock: VirtualClock, slow: Callable[[int], bool],
              per_byte: float = 1.0) -> httpx.MockTransport:
    """The emulator, with the answers to the requests numbered by ``slow`` (from 1) trickled."""
    count = 0

    async def handler(request: httpx.Request) -> httpx.Response:
        nonlocal count
        count += 1
        answer = emulator.handle(request)
        if not slow(count):
            return answer
        return httpx.Response(answer.status_code, headers=answer.headers,
                              stream=Trickle(answer.content, clock, per_byte))

    return httpx.MockTransport(handler)


@pytest.mark.parametrize("vendor", ["runware", "fal", "wavespeed"])
async def test_a_trickled_status_answer_ends_at_the_deadline_and_the_job_stays_open(vendor: str) -> None:
    clock = VirtualClock()
    emulator = Emulator(clock=clock, seed=7, job_time=lambda rng: 600.0)
    gateway = Gateway(transport=trickling(emulator, clock, slow=lambda n: n > 1), keys=KEYS, clock=clock,
                      journal=":memory:")
    with pytest.raises(DeadlineExceeded) as caught:
        await gateway.agenerate(REQUEST, route=Route(provider=vendor, deadline=20))
    await gateway.aclose()
    assert clock.now() == pytest.approx(20.0)  # not the minutes the trickled body would take
    assert caught.value.may_be_billed and caught.value.job is not None
    open_rows = [r for r in gateway.journal.unfinished() if r.provider == vendor]
    assert len(open_rows) == 1 and open_rows[0].job_id  # the paid job is kept for resume()
    assert emulator.ledger.calls(vendor) >= 2


@pytest.mark.parametrize("vendor", ["runware", "fal", "wavespeed"])
async def test_a_trickled_submit_answer_is_an_unknown_outcome_at_the_deadline(vendor: str) -> None:
    clock = VirtualClock()
    emulator = Emulator(clock=clock, seed=8)
    gateway = Gateway(transport=trickling(emulator, clock, slow=lambda n: True), keys=KEYS, clock=clock,
                      journal=":memory:")
    with pytest.raises(SubmitOutcomeUnknown) as caught:
        await gateway.agenerate(REQUEST, route=Route(provider=vendor, deadline=5))
    await gateway.aclose()
    assert clock.now() == pytest.approx(5.0)
    assert caught.value.may_be_billed
    assert [r.state for r in gateway.journal.unfinished()] == ["unknown"]  # open: the vendor may hold it


async def test_without_a_deadline_one_call_is_still_bounded_and_a_trickled_check_is_only_a_failed_check() -> None:
    clock = VirtualClock()
    emulator = Emulator(clock=clock, seed=9, job_time=lambda rng: 30.0)
    # The first status answer trickles for ~an hour; the per-call bound (300 s) cuts it, the next check reads.
    gateway = Gateway(transport=trickling(emulator, clock, slow=lambda n: n == 2, per_byte=20.0), keys=KEYS,
                      clock=clock, journal=":memory:")
    result = await gateway.agenerate(REQUEST, route=Route(provider="fal"))
    await gateway.aclose()
    assert result.provider == "fal" and result.possible_extra_charges == 0
    assert 300.0 <= clock.now() < 400.0
    assert len([j for j in emulator.ledger.jobs if j.billable]) == 1
    assert json.loads(result.model_dump_json())["job_id"] == result.job_id


@pytest.mark.parametrize("vendor", ["runware", "fal", "wavespeed"])
async def test_the_emulators_trickle_fault_cannot_hold_a_deadline(vendor: str) -> None:
    """The same bound against the emulator's own fault kind (``status=trickle:1``: one byte a second)."""
    clock = VirtualClock()
    emulator = Emulator(clock=clock, seed=10, job_time=lambda rng: 600.0, faults=f"{vendor}.status=trickle:1*50")
    gateway = Gateway(emulator=emulator, clock=clock, journal=":memory:")
    with pytest.raises(DeadlineExceeded):
        await gateway.agenerate(REQUEST, route=Route(provider=vendor, deadline=15))
    await gateway.aclose()
    assert clock.now() == pytest.approx(15.0)
    assert [r.provider for r in gateway.journal.unfinished()] == [vendor]
