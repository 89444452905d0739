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
