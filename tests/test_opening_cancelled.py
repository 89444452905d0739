"""A call without a key whose opening intent committed but whose await did not return (the task was
cancelled while the flush ran on the writer thread, or the commit's answer was lost): the clip that
intent created leased to the call must be given back on the way out, so a resume settles it at once
instead of reporting it held by a live process until the lease goes stale."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from gateway import Gateway, OviRequest
from gateway.clock import VirtualClock
from gateway.emulator import Emulator
from gateway.store.base import Durability
from gateway.store.queries import Queries
from gateway.store.sqlite import SqliteStore

pytestmark = pytest.mark.anyio

REQUEST = OviRequest(prompt="A knight. <S>Hold the line.<E>", image="https://example.com/k.png")


class LostAnswer(SqliteStore):
    """The async store whose first intent commits and then raises ``error`` instead of returning."""

    def __init__(self, path: str, error: BaseException) -> None:
        self.error: BaseException | None = error
        super().__init__(path, offload=False)

    def _run(self, durability: Durability, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Awaitable[Any]:
        done = super()._run(durability, fn, *args, **kwargs)
        if fn is not Queries.intent or self.error is None:
            return done
        error, self.error = self.error, None

        async def lost() -> Any:
            await done  # committed (and flushed)
            raise error

        return lost()


@pytest.mark.parametrize("error", [asyncio.CancelledError(), sqlite3.OperationalError("disk I/O error")],
                         ids=["cancelled", "commit-answer-lost"])
async def test_an_opening_intent_that_committed_without_answering_leaves_no_lease(
        tmp_path: Path, error: BaseException) -> None:
    clock = VirtualClock()
    emulator = Emulator(clock=clock, seed=3)
    path = tmp_path / "j.sqlite3"
    gateway = Gateway(emulator=emulator, clock=clock, journal=LostAnswer(str(path), error))
    with pytest.raises(BaseException) as raised:
        await gateway.agenerate(REQUEST, provider="fal")
    assert isinstance(raised.value, type(error)) or raised.value.__cause__ is error or raised.value.__context__ is error
    assert emulator.ledger.calls("fal", "submit") == 0  # the POST follows the intent's return: nothing sent
    with sqlite3.connect(path) as db:
        assert db.execute("SELECT state, lease_owner FROM clips").fetchall() == [("open", None)]
    outcomes = await gateway.aresume()
    assert [o.outcome for o in outcomes] != ["in-progress"] and len(outcomes) == 1
    await gateway.aclose()
