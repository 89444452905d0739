"""Per-key budgets: ``Budget(per_caller=True)`` on the server's gateway gives each API key its own cap
(creates pass the key's digest as the budget scope); past it a create answers 402 ``budget_exceeded``
with nothing sent to any vendor, while another key still has its whole cap."""

from __future__ import annotations

import httpx
import pytest
from click.testing import CliRunner

from gateway.cli import cli
from gateway.client import Gateway
from gateway.clock import VirtualClock
from gateway.emulator import Emulator
from gateway.routing.pricing import Budget
from gateway.server import create_app

pytestmark = pytest.mark.anyio

KEY, OTHER = "sk-budget-one", "sk-budget-two"
PROMPT = "A knight in the rain. <S>I will defend this land.<E>"
BODY = {"prompt": PROMPT, "input_reference": "https://example.com/k.png", "provider": "wavespeed"}


async def test_each_key_has_its_own_cap(tmp_path) -> None:
    clock = VirtualClock()
    emulator = Emulator(clock=clock, seed=4, job_time=lambda rng: 10.0)
    gateway = Gateway(emulator=emulator, clock=clock, journal=str(tmp_path / "j.sqlite3"),
                      budget=Budget(limit_usd="0.20", period="day", per_caller=True))
    app = create_app(gateway, api_keys=[KEY, OTHER], media_dir=tmp_path / "media", emulator=True)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://gw",
                                 headers={"authorization": f"Bearer {KEY}"}) as http, \
            httpx.AsyncClient(transport=transport, base_url="http://gw",
                              headers={"authorization": f"Bearer {OTHER}"}) as other:
        first = await http.post("/v1/videos", json=BODY | {"seed": 1})
        assert first.status_code == 200, first.text  # $0.15 of this key's $0.20
        refused = await http.post("/v1/videos", json=BODY | {"seed": 2})
        assert refused.status_code == 402, refused.text
        assert refused.json()["error"]["code"] == "budget_exceeded" and "x-should-retry" not in refused.headers
        assert (await other.post("/v1/videos", json=BODY | {"seed": 3})).status_code == 200  # its own cap
        listed = (await http.get("/v1/videos")).json()["data"]
        assert [v["id"] for v in listed] == [first.json()["id"]]  # the refused create left no video
    await gateway.aclose()
    assert len(emulator.ledger.jobs) == 2  # nothing was sent for the refused create


def test_serve_refuses_a_budget_that_is_not_money(tmp_path) -> None:
    result = CliRunner().invoke(cli, ["serve", "--api-key", "k", "--key-budget", "lots", "--journal",
                                      str(tmp_path / "j.sqlite3")])
    assert result.exit_code == 2 and "not a USD amount" in result.output
