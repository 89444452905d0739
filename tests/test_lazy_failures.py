"""A broken install of one adapter's lazily loaded modules (translation, fal-client's queue) takes that
vendor out when the gateway builds its adapters — before any intent is journaled — as a plugin that
fails to load at start-up does: calls pinned elsewhere still run, unpinned ones route around it, and a
call pinned to it gets a clear error with nothing journaled and nothing held against the budget."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

import providers.fal.provider as fal_provider
import providers.wavespeed.provider as wavespeed_provider
from gateway import Gateway, OviRequest
from gateway.clock import VirtualClock
from gateway.emulator import Emulator
from gateway.errors import GatewayError
from gateway.lazy import LazyModule
from gateway.store.journal import Journal

REQUEST = OviRequest(prompt="A cat. <S>Hello.<E>", image="https://example.com/cat.png")


def _broken(module: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """``module``'s translation module cannot be imported (as with a partial install)."""
    monkeypatch.setattr(module, "translate", LazyModule("providers.no_such_translate", vars(module), key="translate"))


def _run(gateway: Gateway, **kwargs: Any) -> Any:
    async def go() -> Any:
        try:
            return await gateway.agenerate(REQUEST, **kwargs)
        finally:
            await gateway.aclose()
    return asyncio.run(go())


def test_a_broken_adapter_is_left_out_and_calls_pinned_elsewhere_run(monkeypatch: pytest.MonkeyPatch) -> None:
    _broken(wavespeed_provider, monkeypatch)
    clock = VirtualClock()
    gateway = Gateway(emulator=Emulator(clock=clock, seed=4), journal=None, clock=clock)
    result = _run(gateway, provider="fal")
    assert result.provider == "fal"
    assert "ModuleNotFoundError" in gateway.load_failures["wavespeed"]


def test_a_call_pinned_to_a_broken_adapter_journals_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _broken(fal_provider, monkeypatch)
    clock = VirtualClock()
    emulator = Emulator(clock=clock, seed=4)
    journal = Journal(str(tmp_path / "journal.sqlite3"))
    try:
        with pytest.raises(GatewayError, match="failed to load"):
            _run(Gateway(emulator=emulator, journal=journal, clock=clock), provider="fal")
        assert journal._query("SELECT provider, state FROM submits") == []
        assert emulator.ledger.jobs == []
        unpinned = _run(Gateway(emulator=emulator, journal=journal, clock=clock))
        assert unpinned.provider != "fal"
        assert [row[0] for row in journal._query("SELECT provider FROM submits")] == [unpinned.provider]
    finally:
        journal.close()
