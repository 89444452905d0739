"""Per-key request rates: past its rate a key gets 429 in the error envelope with ``Retry-After`` (which
the openai SDK honours), other keys are unaffected, and the bucket refills on the store's wall clock."""

from __future__ import annotations

import httpx
import pytest

from gateway.client import Gateway
from gateway.clock import VirtualClock
from gateway.emulator import Emulator
from gateway.server import create_app

pytestmark = pytest.mark.anyio

KEY, OTHER = "sk-rate-one", "sk-rate-two"


async def test_a_key_past_its_rate_gets_429_with_retry_after(tmp_path) -> None:
    clock = VirtualClock()
    gateway = Gateway(emulator=Emulator(clock=clock, seed=2), clock=clock, journal=str(tmp_path / "j.sqlite3"))
    gateway.journal.wall = lambda: 1_000_000.0 + clock.now()  # the bucket refills on virtual time
    app = create_app(gateway, api_keys=[KEY, OTHER], media_dir=tmp_path / "media", emulator=True,
                     rate_limit=0.5, rate_burst=2)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://gw",
                                 headers={"authorization": f"Bearer {KEY}"}) as http, \
            httpx.AsyncClient(transport=transport, base_url="http://gw",
                              headers={"authorization": f"Bearer {OTHER}"}) as other:
        assert [(await http.get("/v1/videos")).status_code for _ in range(2)] == [200, 200]  # the burst
        limited = await http.get("/v1/videos")
        assert limited.status_code == 429
        assert limited.json()["error"]["code"] == "rate_limit_exceeded"
        assert limited.headers["retry-after"] == "2" and limited.headers["retry-after-ms"] == "2000"
        assert (await other.get("/v1/videos")).status_code == 200  # another key has its own bucket
        await clock.sleep(1.0)
        assert (await http.get("/v1/videos")).status_code == 429  # half a token back: not yet
        await clock.sleep(1.0)
        assert (await http.get("/v1/videos")).status_code == 200
        async with httpx.AsyncClient(transport=transport, base_url="http://gw") as anonymous:
            assert (await anonymous.get("/v1/videos")).status_code == 401  # no key: no bucket touched
    await gateway.aclose()
