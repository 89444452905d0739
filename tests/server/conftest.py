"""An in-process server on the emulator in virtual time, reached through httpx's ASGI transport."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from gateway.client import Gateway
from gateway.clock import VirtualClock
from gateway.emulator import Emulator
from gateway.jobs.polling import PollPolicy
from gateway.server import create_app

KEY, OTHER = "sk-test-one", "sk-test-two"


@dataclass
class World:
    app: Any
    gateway: Gateway
    emulator: Emulator
    clock: VirtualClock
    http: httpx.AsyncClient
    other: httpx.AsyncClient

    async def until_final(self, video_id: str, client: httpx.AsyncClient | None = None) -> dict:
        for _ in range(200):
            body = (await (client or self.http).get(f"/v1/videos/{video_id}")).json()
            if body["status"] in ("completed", "failed"):
                return body
            await self.clock.sleep(5.0)
        raise AssertionError(f"video {video_id} never finished")


@pytest.fixture
async def world(tmp_path, journal_target):
    clock = VirtualClock()
    emulator = Emulator(clock=clock, seed=5, job_time=lambda rng: 30.0)
    gateway = Gateway(emulator=emulator, clock=clock, journal=journal_target, jitter_seed=5,
                      poll=PollPolicy(expected=30.0, interval=2.0, min_interval={}))
    app = create_app(gateway, api_keys=[KEY, OTHER], media_dir=tmp_path / "media", emulator=True,
                     poll_after_ms=250)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://gw",
                                 headers={"authorization": f"Bearer {KEY}"}) as http, \
            httpx.AsyncClient(transport=transport, base_url="http://gw",
                              headers={"authorization": f"Bearer {OTHER}"}) as other:
        yield World(app, gateway, emulator, clock, http, other)
    await gateway.aclose()
    app.state.server.store.close()
