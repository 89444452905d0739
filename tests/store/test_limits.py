"""Per-vendor concurrency caps shared through the journal: two gateways with their own connections to
one journal file (as two processes would have) never have more than ``max_parallel`` requests in flight
at a vendor together; without the cap they do. Rate tokens are covered by the storage contract tests."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from gateway import Gateway, OviRequest
from gateway.clock import VirtualClock
from gateway.emulator import Emulator
from gateway.errors import ConfigurationError
from gateway.jobs.limits import VendorLimits
from gateway.store.journal import Journal

pytestmark = pytest.mark.anyio


class Slow(httpx.AsyncBaseTransport):
    """Each fal request takes a little real time; counts how many are in flight at once."""

    def __init__(self, inner: httpx.AsyncBaseTransport) -> None:
        self.inner, self.now, self.most = inner, 0, 0

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        counted = "fal" in request.url.host
        if counted:
            self.now += 1
            self.most = max(self.most, self.now)
        try:
            await asyncio.sleep(0.01)
            return await self.inner.handle_async_request(request)
        finally:
            if counted:
                self.now -= 1


async def _most_in_flight(tmp_path, limits) -> int:
    clock = VirtualClock()
    emulator = Emulator(clock=clock, seed=6, job_time=lambda rng: 5.0)
    slow = Slow(emulator.transport())
    path = str(tmp_path / "journal.sqlite3")
    gateways = [Gateway(transport=slow, keys={"fal": "k"}, providers=["fal"], clock=clock, journal=Journal(path),
                        limits=limits) for _ in range(2)]
    calls = [gw.agenerate(OviRequest(prompt=f"Clip {i}. <S>Hi {g}.<E>"), provider="fal")
             for g, gw in enumerate(gateways) for i in range(3)]
    results = await asyncio.gather(*calls)
    assert {r.provider for r in results} == {"fal"}
    for gw in gateways:
        await gw.aclose()
    return slow.most


async def test_a_cap_holds_across_gateways_sharing_the_journal(tmp_path) -> None:
    assert await _most_in_flight(tmp_path, {"fal": VendorLimits(max_parallel=1)}) == 1


async def test_without_a_cap_requests_overlap(tmp_path) -> None:
    assert await _most_in_flight(tmp_path, None) > 1


def test_limits_need_the_journal() -> None:
    with pytest.raises(ConfigurationError, match="counted in the journal"):
        Gateway(emulator=Emulator(), journal=None, limits={"fal": VendorLimits(max_parallel=2)})
