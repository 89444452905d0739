"""One half-open probe per cooling vendor across processes (issue 13): a short probe lease in the store,
on SQLite and PostgreSQL (slow tier). Two ``Health`` objects on one store stand for two processes."""

from __future__ import annotations

from gateway.clock import VirtualClock
from gateway.errors import ProviderUnavailable
from gateway.routing.health import PROBE_TTL_S, Health
from gateway.store.journal import Journal


def _process(journal_target: str, clock: VirtualClock) -> tuple[Health, Journal]:
    journal = Journal(journal_target, wall=clock.now)
    health = Health(clock, threshold=1, cooldown=30.0)
    health.attach(journal, wall=clock.now, refresh=0.0)
    return health, journal


def test_only_one_process_probes_a_cooling_vendor(journal_target: str) -> None:
    clock = VirtualClock()
    (one, j1), (two, j2) = _process(journal_target, clock), _process(journal_target, clock)
    one["fal"].failure(ProviderUnavailable("503", provider="fal"))  # opens it for every process
    assert not two["fal"].allow()  # open: nobody calls
    clock.advance(31.0)  # half-open for both
    assert one["fal"].allow()  # the probe is one's
    assert not two["fal"].allow() and "probe is out" in two["fal"].reason()
    one["fal"].release()  # it ended with no verdict: the next process may probe at once
    assert two["fal"].allow()
    assert not one["fal"].allow()
    clock.advance(PROBE_TTL_S + 1)  # two died mid-probe: its lease runs out
    two["fal"].probing = False  # (a dead process's memory)
    assert one["fal"].allow()
    one["fal"].success()  # a verdict: closed for all
    assert two["fal"].allow() and two["fal"].allow()  # closed: no probe needed, everyone calls
    j1.close()
    j2.close()


def test_a_failed_probe_reopens_the_vendor_for_everyone(journal_target: str) -> None:
    clock = VirtualClock()
    (one, j1), (two, j2) = _process(journal_target, clock), _process(journal_target, clock)
    one["wavespeed"].failure(ProviderUnavailable("503", provider="wavespeed"))
    clock.advance(31.0)
    assert two["wavespeed"].allow()
    two["wavespeed"].failure(ProviderUnavailable("503 again", provider="wavespeed"))  # reopened, doubled
    assert not one["wavespeed"].allow()
    clock.advance(31.0)
    assert not one["wavespeed"].allow()  # 60 s this time
    clock.advance(30.0)
    assert one["wavespeed"].allow() and not two["wavespeed"].allow()
    j1.close()
    j2.close()
