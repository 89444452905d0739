"""``PushBox`` keeps per-clip wake-up state only while it is needed: a follower's entry lives while it
sleeps, and pushes for clips no follower here sleeps on (followed elsewhere, or between two sleeps) are
remembered in a bounded map. Before, every clip that was ever pushed for or slept on kept an
``asyncio.Event`` forever, so a long-running server grew with every job that ended without a push."""

from __future__ import annotations

import asyncio

import pytest

from gateway.clock import VirtualClock
from gateway.jobs import push
from gateway.jobs.push import CURRENT_CLIP, PushBox, WakeableClock

pytestmark = pytest.mark.anyio


class _NoEvents:
    def latest_trusted(self, vendor: str, job_id: str) -> bytes | None:
        return None

    def count(self, **where: object) -> int:
        return 0


def _box() -> PushBox:
    return PushBox(public_url="https://gw.example", secret=b"k" * 32, events=_NoEvents())


async def _sleep_as(clip: str, clock: WakeableClock, seconds: float) -> None:
    CURRENT_CLIP.set(clip)
    await clock.sleep(seconds)


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


async def test_followers_that_end_without_a_push_leave_nothing_behind() -> None:
    box, inner = _box(), VirtualClock()
    clock = WakeableClock(inner, box)
    await asyncio.gather(*(asyncio.create_task(_sleep_as(f"clip-{i}", clock, 5.0)) for i in range(300)))
    assert inner.now() == 5.0  # each slept its full wait: no push came
    assert box._wakers == {} and box._woken == {}


async def test_pushes_for_clips_followed_elsewhere_are_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(push, "_TRACKED", 50)
    box = _box()
    for i in range(500):  # e.g. a GET on this replica wakes a clip another replica follows
        box.wake(f"elsewhere-{i}")
    assert len(box._wakers) == 0 and len(box._woken) == 50 and len(box._hinted) == 50
    assert box.woken("elsewhere-499") and not box.woken("elsewhere-0")  # the oldest went first


async def test_a_push_still_ends_the_current_wait_and_one_between_waits_ends_the_next() -> None:
    box, inner = _box(), VirtualClock()
    clock = WakeableClock(inner, box)
    sleeper = asyncio.create_task(_sleep_as("c", clock, 60.0))
    for _ in range(5):  # let it start sleeping; virtual time stands still while another task runs
        await asyncio.sleep(0)
    assert set(box._wakers) == {"c"}
    box.wake("c")
    await sleeper
    assert inner.now() == 0.0 and box._wakers == {}  # woken at once, entry gone
    box.wake("c")  # arrives while no one sleeps: the next sleep returns at once
    await _sleep_as("c", clock, 60.0)
    assert inner.now() == 0.0
    await _sleep_as("c", clock, 1.0)  # consumed: the one after sleeps its full wait
    assert inner.now() == 1.0


async def test_a_push_no_follower_here_sleeps_on_is_relayed_and_a_relayed_one_never_echoes() -> None:
    box, inner = _box(), VirtualClock()
    relayed: list[str] = []
    box.relay = relayed.append
    clock = WakeableClock(inner, box)
    sleeper = asyncio.create_task(_sleep_as("here", clock, 60.0))
    for _ in range(5):
        await asyncio.sleep(0)
    box.wake("here")  # its follower sleeps here: woken, nobody else told
    await sleeper
    box.wake("elsewhere")  # followed by another replica, perhaps: told
    assert not box.wake_here("from-another-replica")  # a notice received: woken here only, never relayed
    assert relayed == ["elsewhere"] and box.woken("from-another-replica")
