"""Breakers live in memory and are refreshed from the store in the background on an event loop
(``gateway.routing.health``): a look at a breaker never waits for a read, another process's failures
cool the vendor here within ``refresh`` seconds plus one read, and a read that was out while this
process changed a breaker does not undo the change."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from gateway.clock import VirtualClock
from gateway.errors import ProviderUnavailable
from gateway.routing.health import Health
from gateway.store.journal import Journal
from gateway.store.records import BreakerRecord

pytestmark = pytest.mark.anyio


def _processes(tmp_path: Path, clock: VirtualClock, threshold: int = 1) -> tuple[Health, Health, list[Journal]]:
    path = str(tmp_path / "journal.sqlite3")
    here_journal, there_journal = Journal(path, wall=clock.now), Journal(path, wall=clock.now)
    here_journal.store(offload=False)  # this process's async face (inline: deterministic)
    here, there = Health(clock, threshold=threshold, cooldown=30.0), Health(clock, threshold=1, cooldown=30.0)
    here.attach(here_journal, wall=clock.now, refresh=1.0)
    there.attach(there_journal, wall=clock.now, refresh=1.0)
    return here, there, [here_journal, there_journal]


async def _turns(n: int = 5) -> None:
    for _ in range(n):
        await asyncio.sleep(0)


async def test_another_processs_failure_cools_the_vendor_here_within_the_refresh(tmp_path: Path) -> None:
    clock = VirtualClock()
    here, there, journals = _processes(tmp_path, clock)
    await asyncio.to_thread(there["fal"].failure, ProviderUnavailable("503", provider="fal"))  # no loop there
    reads = here.reads
    assert here.unhealthy() == {} and here.reads == reads  # within the refresh: memory only, no read
    clock.advance(1.0)
    assert here.unhealthy() == {} and here.reads == reads  # due: a read starts, the call does not wait
    await _turns()
    assert here.reads == reads + 1 and set(here.unhealthy()) == {"fal"}  # adopted when the read returned
    for journal in journals:
        journal.close()


async def test_a_read_that_was_out_does_not_undo_a_change_made_here(tmp_path: Path) -> None:
    clock = VirtualClock()
    here, there, journals = _processes(tmp_path, clock, threshold=1)
    there.breakers.clear()
    there_breaker = there["fal"]
    there_breaker.threshold = 3
    await asyncio.to_thread(there_breaker.failure, ProviderUnavailable("503", provider="fal"))  # stored: 1 failure
    clock.advance(1.0)
    here.unhealthy()  # a background read is asked for (it will find the closed, 1-failure record)
    here["fal"].failure(ProviderUnavailable("503", provider="fal"))  # meanwhile this process opens fal
    await _turns()
    assert here["fal"].state == "open" and set(here.unhealthy()) == {"fal"}
    for journal in journals:
        journal.close()


def test_without_an_event_loop_the_read_is_made_at_once(tmp_path: Path) -> None:
    clock = VirtualClock()
    here, there, journals = _processes(tmp_path, clock)
    there["fal"].failure(ProviderUnavailable("503", provider="fal"))
    clock.advance(1.0)
    assert set(here.unhealthy()) == {"fal"}  # the CLI and sync code read before answering
    for journal in journals:
        journal.close()



class _SlowFace:
    """An async store whose breaker save is held in flight while a read returns the row as it was before
    the save, as a PostgreSQL read on another pooled connection can."""

    def __init__(self) -> None:
        self.release = asyncio.Event()
        self.saved: list[BreakerRecord] = []

    async def load_breakers(self) -> dict[str, BreakerRecord]:
        return {"fal": BreakerRecord("fal", 0, 0, None, None, None)}  # closed: the save has not landed

    async def save_breaker(self, record: BreakerRecord) -> None:
        await self.release.wait()
        self.saved.append(record)


class _Journal:
    """The journal face ``Health.attach`` uses, with ``_SlowFace`` as its async store."""

    def __init__(self, face: _SlowFace) -> None:
        self.async_store = face

    def load_breakers(self) -> dict[str, BreakerRecord]:
        return {}


async def test_a_read_beside_a_save_in_flight_does_not_undo_it() -> None:
    # Review finding (session 3): a read asked for after a save started (so the change counts agreed) ran
    # beside it and returned the row from before the save; adopted, it closed a breaker opened here.
    clock = VirtualClock()
    face = _SlowFace()
    here = Health(clock, threshold=1, cooldown=30.0)
    here.attach(_Journal(face), wall=clock.now, refresh=1.0)
    here["fal"].failure(ProviderUnavailable("503", provider="fal"))  # opens fal here; its save is held
    assert here["fal"].state == "open"
    clock.advance(1.0)
    here.unhealthy()  # a background read is asked for while the save is in flight
    await _turns()
    assert here["fal"].state == "open" and set(here.unhealthy()) == {"fal"}
    face.release.set()
    await _turns()
    assert [r.provider for r in face.saved] == ["fal"]
