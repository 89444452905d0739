"""What one job writes to the SQLite journal, transaction by transaction, and who may submit a key.

A call without an idempotency key makes its own, which no other call can know before the key's first
intent: that intent's flushed transaction creates the clip leased to the call (``ClipOpening``), one
commit less per job than opening it first. These tests pin the shape (a spy on SQLite's trace and on
the WAL flushes) and what the move must not cost: two calls that end up with one key still submit once,
and a call that ends before any intent still leaves its failed clip on record.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import gateway.store.sqlite_engine as sqlite_engine
from gateway import Gateway, OviRequest
from gateway.clock import VirtualClock
from gateway.emulator import Emulator
from gateway.errors import ClipInProgress, GatewayError
from gateway.store.journal import Journal

pytestmark = pytest.mark.anyio
REQUEST = OviRequest(prompt="A cat. <S>Hello.<E>", image="https://example.com/cat.png")


def _gateway(emulator: Emulator, clock: VirtualClock, path: Path, seed: int = 3) -> Gateway:
    return Gateway(emulator=emulator, clock=clock, journal=Journal(str(path)), jitter_seed=seed)


def _transactions(statements: list[str]) -> list[list[str]]:
    """The writes to clips and submits of each transaction that made any, with "FLUSH" after a flush."""
    out: list[list[str]] = []
    current: list[str] = []
    for statement in statements:
        words = statement.split()
        if words[0] == "BEGIN":
            current = []
        elif words[0] == "COMMIT" and current:
            out.append(current)
        elif words[0] == "FLUSH" and out:
            out[-1].append("FLUSH")
        elif words[0] in ("INSERT", "UPDATE") and words[2 if words[0] == "INSERT" else 1] in ("clips", "submits"):
            current.append(" ".join(words[:3] if words[0] == "INSERT" else words[:2]))
    return out


async def test_a_fresh_job_opens_its_clip_in_its_flushed_intent(tmp_path: Path,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    clock = VirtualClock()
    gateway = _gateway(Emulator(clock=clock, job_time=lambda rng: 0.0, seed=3), clock, tmp_path / "j.sqlite3")
    try:
        await gateway.agenerate(REQUEST, provider="runware")  # warm-up: breakers, quotes, calibration
        assert gateway.journal is not None
        seen: list[str] = []
        real_fsync = sqlite_engine._fsync

        def fsync(fd: int) -> None:
            real_fsync(fd)
            seen.append("FLUSH")

        monkeypatch.setattr(sqlite_engine, "_fsync", fsync)
        gateway.journal._db.set_trace_callback(seen.append)
        result = await gateway.agenerate(REQUEST, provider="runware")
        assert gateway.store is not None
        await gateway.store.drain()  # and any batched write the job left behind
        gateway.journal._db.set_trace_callback(None)
        holder = gateway.journal.lease_holder(result.idempotency_key)
    finally:
        await gateway.aclose()
    assert result.provider == "runware" and holder is None
    transactions = _transactions(seen)
    flushed = [t for t in transactions if "FLUSH" in t]
    assert flushed == [
        ["INSERT INTO clips", "INSERT INTO submits", "FLUSH"],  # the claim in the intent's transaction, flushed
        ["UPDATE submits", "FLUSH"],  # the ack (no lease renewal: the claim is moments old)
    ], transactions
    assert seen.count("FLUSH") == 2 and sum("INSERT INTO clips" in t for t in transactions) == 1, transactions
    assert any(t[i:i + 2] == ["UPDATE clips", "UPDATE submits"] for t in transactions for i in range(len(t)))
    # The result's UPDATE gives the lease back itself: no release of its own, now or batched for later.
    assert sum(s.startswith("UPDATE clips") for s in seen) == 1, transactions
    assert any("lease_owner = CASE WHEN lease_owner" in s for s in seen if s.startswith("UPDATE clips"))


def _first_key(gateway: Gateway, key: str) -> None:
    """``gateway`` makes ``key`` as its next clip key (and UUIDs after it, for its submits)."""
    keys = iter([key])
    made: Callable[[], str] = lambda: next(keys, None) or str(uuid.uuid4())  # noqa: E731
    gateway._new_key = made  # type: ignore[method-assign]


async def test_two_calls_that_make_one_key_submit_once(tmp_path: Path) -> None:
    """Two processes (two journals on one file) whose calls made the same key (a stand-in for any way two
    calls could share one before its intent): the second intent finds the clip and sends nothing."""
    clock = VirtualClock()
    emulator = Emulator(clock=clock, job_time=lambda rng: 1.0, seed=3)
    gateways = [_gateway(emulator, clock, tmp_path / "j.sqlite3", seed) for seed in (3, 4)]
    for gateway in gateways:
        _first_key(gateway, "one-key")
    try:
        outcomes: list[Any] = await asyncio.gather(
            *(gateway.agenerate(REQUEST, provider="runware") for gateway in gateways), return_exceptions=True)
    finally:
        for gateway in gateways:
            await gateway.aclose()
    assert sum(isinstance(o, ClipInProgress) for o in outcomes) == 1, outcomes
    assert [o.idempotency_key for o in outcomes if not isinstance(o, BaseException)] == ["one-key"]
    assert len(emulator.ledger.jobs) == 1  # one paid job: the refused call POSTed nothing
    journal = Journal(str(tmp_path / "j.sqlite3"))
    try:
        assert [s.state for s in journal.submits("one-key")] == ["succeeded"]
    finally:
        journal.close()


async def test_a_call_that_ends_before_any_intent_leaves_its_failed_clip(tmp_path: Path) -> None:
    clock = VirtualClock()
    gateway = _gateway(Emulator(clock=clock, job_time=lambda rng: 0.0, seed=3), clock, tmp_path / "j.sqlite3")
    _first_key(gateway, "never-sent")
    breaker = gateway.health_state["runware"]
    breaker.allow = lambda: False  # type: ignore[method-assign]  # the call skips the vendor: no intent, ever
    try:
        with pytest.raises(GatewayError):
            await gateway.agenerate(REQUEST, provider="runware")
        assert gateway.journal is not None
        clip = gateway.journal.get_clip("never-sent")
        assert clip is not None and clip.state == "failed" and clip.request_json  # on record, as before
        assert gateway.journal.submits("never-sent") == [] and gateway.journal.lease_holder("never-sent") is None
    finally:
        await gateway.aclose()
