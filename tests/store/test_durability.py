"""The write classes, observed: the intent is flushed (fsync) before the vendor sees the submit POST,
and the vendor's job id is flushed before the gateway goes on (its first status check).

A SIGKILL test cannot show a missing fsync (a killed process keeps its committed pages), so this spy
counts the store's fsyncs and, at every fsync and every vendor request, reads the journal file from a
separate connection (what another process — or the disk after a power cut — would find).
"""

from __future__ import annotations

import os
import sqlite3
import threading
from pathlib import Path

import httpx
import pytest

import gateway.store.sqlite_engine as sqlite_engine
from gateway import Gateway, OviRequest
from gateway.clock import VirtualClock
from gateway.emulator import Emulator
from gateway.store.journal import Journal

pytestmark = pytest.mark.anyio


def _rows(path: Path) -> dict[str, tuple[str, str | None]]:
    with sqlite3.connect(path) as db:
        return {key: (state, job) for key, state, job in db.execute("SELECT submit_key, state, job_id FROM submits")}


class Spy(httpx.AsyncBaseTransport):
    def __init__(self, inner: httpx.AsyncBaseTransport, path: Path, events: list) -> None:
        self.inner, self.path, self.events = inner, path, events

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.events.append(("request", request.method, _rows(self.path)))
        return await self.inner.handle_async_request(request)


@pytest.mark.parametrize(("offload", "quick"), [(False, False), (True, False), (True, True)],
                         ids=["inline", "writer-thread", "writer-thread-quick-disk"])
async def test_intent_is_flushed_before_the_submit_post_and_the_job_id_before_polling(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, offload: bool, quick: bool) -> None:
    path = tmp_path / "journal.sqlite3"
    events: list = []

    threads: set[str] = set()

    def spy_fsync(fd: int) -> None:
        os.fsync(fd)
        threads.add(threading.current_thread().name)
        events.append(("fsync", None, _rows(path)))

    monkeypatch.setattr(sqlite_engine, "_fsync", spy_fsync)
    # a slow disk (every flush over the limit): flushes on the writer thread; a quick one: once measured,
    # on the loop's thread while the writer is idle (``FLUSH_ON_LOOP_S``) — the order holds either way
    monkeypatch.setattr(sqlite_engine, "FLUSH_ON_LOOP_S", 3600.0 if quick else 0.0)
    clock = VirtualClock()
    emulator = Emulator(clock=clock, seed=1)
    gateway = Gateway(transport=Spy(emulator.transport(), path, events), keys={"fal": "k"}, providers=["fal"],
                      journal=Journal(str(path), offload=offload), clock=clock)
    result = await gateway.agenerate(OviRequest(prompt="A cat. <S>Hello.<E>"), provider="fal")
    await gateway.aclose()
    assert gateway.store is not None and getattr(gateway.store, "offload", None) is offload
    # the flushes ran on the writer thread (never the event loop's while flushes are slow), or inline on it
    here = threading.current_thread().name
    assert threads == ({here} if not offload else {"ovi-store-writer", here} if quick else {"ovi-store-writer"})

    post = next(i for i, e in enumerate(events) if e[0] == "request" and e[1] == "POST")
    [(key, (state, _))] = events[post][2].items()
    assert state == "intent"  # committed: another process sees the intent before the POST
    flushed = [e for e in events[:post] if e[0] == "fsync"]
    assert flushed and flushed[-1][2] == {key: ("intent", None)}  # and it was flushed after being written
    first_poll = next(i for i, e in enumerate(events) if i > post and e[0] == "request")
    acked = [e for e in events[post:first_poll] if e[0] == "fsync"]
    assert acked and acked[-1][2][key] == ("accepted", result.job_id)
