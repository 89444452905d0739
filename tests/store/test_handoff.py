"""How the SQLite store hands operations over (``gateway.store.sqlite``): a commit that needs no flush
runs at once on the loop's thread while the writer is idle (no thread hop for one job at a time);
a flush, or a busy writer, goes to the writer thread as one batch (group commit); a BATCHED write
rides with the next operation, or commits on its own within ``BATCH_DELAY_S``; and the loop never
waits for another process's write lock."""

from __future__ import annotations

import asyncio
import json
import sqlite3
import threading
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest

import gateway.store.sqlite as sqlite_backend
import gateway.store.sqlite_engine as sqlite_engine
from gateway import Gateway, OviRequest
from gateway.emulator import Emulator
from gateway.jobs.polling import PollPolicy
from gateway.store.futures import watch
from gateway.store.journal import Journal
from gateway.store.queries import Queries
from gateway.store.records import Durability, request_hash
from gateway.store.sqlite import SqliteStore

pytestmark = pytest.mark.anyio
REQ = json.dumps({"prompt": "a cat <S>hello<E>", "seed": 0})


class Transactions:
    """Counts the engine's transactions and names the thread each ran on."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.seen: list[tuple[str, list[str]]] = []
        original = sqlite_backend.SqliteEngine.batch

        def batch(engine: Any, ops: list[Any], **kw: Any) -> Any:
            out = original(engine, ops, **kw)
            if out is not None:
                self.seen.append((threading.current_thread().name, [op[1].__name__ for op in ops]))
            return out

        monkeypatch.setattr(sqlite_backend.SqliteEngine, "batch", batch)


@pytest.fixture
def journal(tmp_path: Path):
    face = Journal(str(tmp_path / "journal.sqlite3"))
    yield face
    face.close()


def _thread_name(queries: Queries, tx: Any) -> str:
    return threading.current_thread().name


async def _submit(store: SqliteStore, key: str = "c1") -> None:
    await store.open_clip(key, REQ, request_hash(REQ))
    await store.intent(clip_key=key, submit_key=f"{key}-s", provider="fal", quote_usd=Decimal("0.2"))


async def test_an_unflushed_commit_runs_on_the_loop_while_the_writer_is_idle(journal: Journal, monkeypatch) -> None:
    seen = Transactions(monkeypatch)
    store = journal.store(offload=True)
    here = threading.current_thread().name
    assert await store._run(Durability.COMMITTED, _thread_name) == here
    assert store._thread is None and store.inline_commits == 1  # no writer thread was needed at all
    await _submit(store)  # the intent is FLUSHED, and no flush was measured yet: fsync on the writer thread
    assert seen.seen[-1] == ("ovi-store-writer", ["intent"])
    assert await store._run(Durability.COMMITTED, _thread_name) == here  # idle again: inline again


async def test_a_flush_runs_on_the_loop_only_while_flushes_are_measured_quick(journal: Journal, monkeypatch) -> None:
    seen = Transactions(monkeypatch)
    store = journal.store(offload=True)
    monkeypatch.setattr(sqlite_engine, "FLUSH_ON_LOOP_S", 3600.0)  # any measured flush counts as quick
    here = threading.current_thread().name
    await _submit(store, "c1")  # unmeasured: the writer thread flushes (and measures) it
    assert seen.seen[-1] == ("ovi-store-writer", ["intent"]) and journal._engine.quick_flush
    await _submit(store, "c2")  # measured quick, the writer idle: committed and flushed on the loop
    assert seen.seen[-1] == (here, ["intent"]) and journal._engine.flushes == 2
    monkeypatch.setattr(sqlite_engine, "FLUSH_ON_LOOP_S", 0.0)  # the disk turned slow: never on the loop
    await _submit(store, "c3")
    assert seen.seen[-1] == ("ovi-store-writer", ["intent"]) and journal._engine.flushes == 3


async def test_operations_of_one_loop_iteration_share_one_transaction(journal: Journal, monkeypatch) -> None:
    """20 callers in one loop turn: the first runs at once (the writer is idle), the other 19 are
    gathered into ONE transaction — concurrent jobs share commits, one job at a time waits for none."""
    store = journal.store(offload=True)
    await store.open_clip("c1", REQ, request_hash(REQ))
    seen = Transactions(monkeypatch)
    found = await asyncio.gather(*(store.get_clip("c1") for _ in range(20)))
    assert all(f is not None and f.key == "c1" for f in found)
    assert [len(names) for _, names in seen.seen] == [1, 19]


async def test_one_callers_operations_run_at_once_without_a_loop_turn(journal: Journal, monkeypatch) -> None:
    """One caller's operations, one after another, each commit before ``_run`` returns (no loop turn
    spent waiting for the hand-over), in order, one transaction each — also within one loop turn; and
    a BATCHED write made before one of them rides with it."""
    monkeypatch.setattr(sqlite_backend, "BATCH_DELAY_S", 3600.0)
    store = journal.store(offload=True)
    seen = Transactions(monkeypatch)
    opened = store._run(Durability.COMMITTED, Queries.open_clip, "c1", REQ, request_hash(REQ))
    assert isinstance(opened, asyncio.Future) and opened.done() and opened.result().key == "c1"
    again = store._run(Durability.COMMITTED, Queries.get_clip, "c1")  # the same loop turn, the same caller
    assert isinstance(again, asyncio.Future) and again.done()
    written = await store._later(Queries.clip_to, "c1", "failed", error="x")
    assert written is not None and not written.done()
    read = store._run(Durability.COMMITTED, Queries.get_clip, "c1")
    assert isinstance(read, asyncio.Future) and read.done() and read.result().state == "failed"
    assert written.done()
    assert [names for _, names in seen.seen] == [["open_clip"], ["get_clip"], ["clip_to", "get_clip"]]


async def test_an_operation_at_once_never_takes_a_slow_flush_onto_the_loop(journal: Journal, monkeypatch) -> None:
    """Another caller's flushed write gathered in this loop turn goes with the writer thread while flushes
    are slow, even when the next operation could otherwise run at once and take it along."""
    monkeypatch.setattr(sqlite_engine, "FLUSH_ON_LOOP_S", 0.0)  # every flush is slow
    store = journal.store(offload=True)
    await store.open_clip("c1", REQ, request_hash(REQ))
    seen = Transactions(monkeypatch)
    loop = asyncio.get_running_loop()
    flushed: asyncio.Future[Any] = loop.create_future()
    store._submit(loop, (Durability.FLUSHED, Queries.intent, (), {"clip_key": "c1", "submit_key": "s1",
                  "provider": "fal", "quote_usd": Decimal("0.2")}, loop, flushed))  # another caller's, gathered
    assert await store._run(Durability.COMMITTED, _thread_name) == "ovi-store-writer"
    await flushed
    assert seen.seen == [("ovi-store-writer", ["intent", "_thread_name"])] and journal._engine.flushes == 1


async def test_a_busy_writer_takes_everything_as_one_group_commit(journal: Journal, monkeypatch) -> None:
    store = journal.store(offload=True)
    for i in range(10):
        await store.open_clip(f"c{i}", REQ, request_hash(REQ))
    seen = Transactions(monkeypatch)
    entered, gate = threading.Event(), threading.Event()

    def held(queries: Queries, tx: Any) -> None:
        entered.set()
        gate.wait(5)

    first = asyncio.ensure_future(store._run(Durability.FLUSHED, held))  # occupies the writer
    assert await asyncio.to_thread(entered.wait, 5)
    rest = asyncio.gather(*(store.intent(clip_key=f"c{i}", submit_key=f"s{i}", provider="fal",
                                         quote_usd=Decimal("0.2")) for i in range(10)),
                          store.get_clip("c0"))
    for _ in range(3):
        await asyncio.sleep(0)
    gate.set()
    await first
    await rest
    assert [names for _, names in seen.seen] == [["held"], ["intent"] * 10 + ["get_clip"]]
    assert {thread for thread, _ in seen.seen} == {"ovi-store-writer"}


async def test_a_batched_write_rides_with_the_next_operation(journal: Journal, monkeypatch) -> None:
    store = journal.store(offload=True)
    await _submit(store)
    seen = Transactions(monkeypatch)
    written = await store.state("c1-s", "running")
    assert written is not None and not written.done()  # not waited for, not yet written
    [record] = await store.submits("c1")  # the next operation carries it, in order
    assert record.state == "running" and written.done()
    assert [names for _, names in seen.seen] == [["submit_to", "submits"]]


async def test_a_lone_batched_write_commits_within_the_batch_delay(journal: Journal, monkeypatch) -> None:
    monkeypatch.setattr(sqlite_backend, "BATCH_DELAY_S", 0.0)
    store = journal.store(offload=True)
    await _submit(store)
    written = await store.state("c1-s", "running")
    assert written is not None
    await asyncio.wait_for(written, 5)
    with sqlite3.connect(journal.path) as other:  # what another process sees
        assert other.execute("SELECT state FROM submits").fetchall() == [("running",)]


async def test_the_sync_face_reads_this_loops_unsent_writes(journal: Journal) -> None:
    store = journal.store(offload=True)
    await _submit(store)
    written = await store.state("c1-s", "running")
    assert written is not None and not written.done()
    assert [s.state for s in journal.submits("c1")] == ["running"]  # taken along, in order
    await asyncio.sleep(0)
    assert written.done() and written.exception() is None


async def test_the_loop_never_waits_for_another_processs_write_lock(journal: Journal) -> None:
    store = journal.store(offload=True)
    await store.open_clip("c1", REQ, request_hash(REQ))
    other = sqlite3.connect(journal.path, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")  # another process is writing
    try:
        pending = asyncio.ensure_future(store._run(Durability.COMMITTED, _thread_name))
        ticks = 0
        while not pending.done() and ticks < 20:  # the loop keeps turning meanwhile
            await asyncio.sleep(0)
            ticks += 1
        assert not pending.done() and ticks == 20
    finally:
        other.execute("COMMIT")
        other.close()
    assert await asyncio.wait_for(pending, 10) == "ovi-store-writer"  # the writer thread waited for it


async def test_checkpoints_run_on_the_writer_thread_never_the_loop(journal: Journal, monkeypatch) -> None:
    monkeypatch.setattr(sqlite_engine, "CHECKPOINT_OPS", 3)
    threads: list[str] = []
    original = sqlite_backend.SqliteEngine.checkpoint

    def spied(engine: Any) -> None:
        threads.append(threading.current_thread().name)
        original(engine)

    monkeypatch.setattr(sqlite_backend.SqliteEngine, "checkpoint", spied)
    store = journal.store(offload=True)
    for i in range(6):  # inline commits, one operation each
        await store.open_clip(f"c{i}", REQ, request_hash(REQ))
    await store.drain()
    await asyncio.to_thread(lambda: None)
    store._stop()  # the writer finished whatever it was asked
    assert threads and set(threads) == {"ovi-store-writer"} and store.inline_commits >= 3
    with sqlite3.connect(journal.path) as other:  # the WAL was copied into the database file
        assert other.execute("SELECT COUNT(*) FROM clips").fetchone() == (6,)


def test_a_checkpoint_beside_commits_still_lets_the_wal_start_over(journal: Journal) -> None:
    """The bulk of a checkpoint is copied on a connection of its own while commits go on; the frames
    committed meanwhile are copied too, so the next commit starts the WAL over from its beginning (a
    new header salt) — else every frame written beside a checkpoint would keep the WAL growing."""
    engine = journal._engine
    journal.open_clip("c0", REQ, request_hash(REQ))
    side = sqlite3.connect(journal.path, isolation_level=None, check_same_thread=False)

    class Beside:
        """The side connection; a commit lands on the engine's right after its copy, as an inline one can."""

        def execute(self, sql: str) -> Any:
            done = side.execute(sql)
            engine.db.execute("UPDATE clips SET error = 'beside' WHERE key = 'c0'")
            return done

        def close(self) -> None:
            side.close()

    engine._checkpointer = Beside()  # type: ignore[assignment]
    wal = Path(journal.path + "-wal")
    for round_ in range(2):
        engine.checkpoint()
        salt = wal.read_bytes()[16:24]
        journal.fail_clip("c0", f"round {round_}")  # the next commit
        assert wal.read_bytes()[16:24] != salt  # it started the WAL over


async def test_a_batched_write_someone_waits_for_is_sent_at_once(journal: Journal, monkeypatch) -> None:
    monkeypatch.setattr(sqlite_backend, "BATCH_DELAY_S", 3600.0)  # it would otherwise wait an hour
    store = journal.store(offload=True)
    await _submit(store)
    written = await store.state("c1-s", "running")
    assert written is not None
    await asyncio.wait_for(asyncio.wait([written]), 5)  # what the runner does before its next check
    assert written.done() and written.exception() is None
    with sqlite3.connect(journal.path) as other:
        assert other.execute("SELECT state FROM submits").fetchall() == [("running",)]
    again = await store.state("c1-s", "queued")
    assert again is not None
    await asyncio.wait_for(again, 5)  # a plain await too


async def test_an_operation_at_once_never_scans_what_was_gathered(journal: Journal, monkeypatch) -> None:
    """Whether a flushed write is among the gathered ones is known without reading them: with ten
    thousand jobs in flight every operation asked it, and a scan each made a group commit's turn quadratic."""
    monkeypatch.setattr(sqlite_engine, "FLUSH_ON_LOOP_S", 0.0)  # flushes slow: the question is asked
    store = journal.store(offload=True)
    await store.open_clip("c1", REQ, request_hash(REQ))
    loop = asyncio.get_running_loop()

    class Unread(list):  # type: ignore[type-arg]
        def __iter__(self) -> Any:
            raise AssertionError("the gathered operations were scanned")

    gathered: asyncio.Future[Any] = loop.create_future()
    store._submit(loop, (Durability.COMMITTED, _thread_name, (), {}, loop, gathered))  # another caller's
    store._turn[loop] = object()  # ... who made an operation in this loop turn: this one is gathered too
    kept = store._pending[loop]
    store._pending[loop] = Unread(kept)
    mine: asyncio.Future[Any] = loop.create_future()
    try:
        assert not store._at_once(loop, (Durability.COMMITTED, _thread_name, (), {}, loop, mine))
    finally:
        store._pending[loop] = kept
    assert await asyncio.wait_for(gathered, 5) == threading.current_thread().name  # the kick runs it


async def test_a_watched_batched_write_keeps_its_group_commit(journal: Journal, monkeypatch) -> None:
    """``watch`` (a callback that does not wait: the runner's keep-if-failed bookkeeping) leaves a batched
    write to ride with the next operation; a plain ``add_done_callback`` is taken for a waiter and sends
    it at the end of the loop turn, alone."""
    monkeypatch.setattr(sqlite_backend, "BATCH_DELAY_S", 3600.0)
    store = journal.store(offload=True)
    await _submit(store)
    seen = Transactions(monkeypatch)
    written = await store.state("c1-s", "running")
    assert written is not None
    called: list[Any] = []
    watch(written, called.append)
    for _ in range(3):
        await asyncio.sleep(0)
    assert not written.done() and seen.seen == [] and called == []  # still gathered, nothing committed
    [record] = await store.submits("c1")
    await asyncio.sleep(0)  # done callbacks run in the next turn
    assert record.state == "running" and called == [written]
    assert [names for _, names in seen.seen] == [["submit_to", "submits"]]
    waited = await store.state("c1-s", "queued")
    assert waited is not None
    waited.add_done_callback(called.append)  # a waiter's callback: sent at the end of this turn, alone
    await asyncio.sleep(0)
    assert waited.done() and [names for _, names in seen.seen][-1] == ["submit_to"]


class _Turns(httpx.AsyncBaseTransport):
    """The emulator's transport, answering a few loop turns later (as a socket does): the result GET no
    longer lands in the loop turn of the status check."""

    def __init__(self, inner: httpx.MockTransport) -> None:
        self.inner = inner

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        for _ in range(3):
            await asyncio.sleep(0)
        return await self.inner.handle_async_request(request)


async def test_a_jobs_running_write_rides_with_its_finish_over_a_socket(tmp_path: Path, monkeypatch) -> None:
    """A fal job whose answers arrive in later loop turns (loopback HTTP): its batched "running" write
    shares the finish's transaction, as in process, instead of being sent alone at the end of the status
    check's turn (the runner watches it, ``gateway.jobs.writes``: three transactions per job, not four)."""
    monkeypatch.setattr(sqlite_backend, "BATCH_DELAY_S", 3600.0)  # never by the clock: by the next operation
    monkeypatch.setattr(sqlite_engine, "FLUSH_ON_LOOP_S", 3600.0)  # any measured flush is quick: all inline
    keys = {"fal": "emulator-key", "runware": "emulator-key", "wavespeed": "emulator-key"}
    gateway = Gateway(transport=_Turns(Emulator(job_time=lambda rng: 0.0, seed=1).transport()), keys=keys,
                      journal=str(tmp_path / "journal.sqlite3"),
                      poll=PollPolicy(expected=0.0, first_fraction=0.0, interval=0.0, learn=False))
    try:
        request = OviRequest(prompt="a knight <S>Hold.<E>", image="https://example.com/a.png")
        await gateway.agenerate(request, provider="fal")  # the first flush is measured on the writer thread
        seen = Transactions(monkeypatch)
        await gateway.agenerate(request.model_copy(update={"prompt": "a queen <S>Hold.<E>"}), provider="fal")
        made = [names for _, names in seen.seen]
    finally:
        await gateway.aclose()
    # The intent opens the keyless call's clip (``ClipOpening``); the ack alone (it renews the lease too
    # unless the claim was moments before: ``ACK_RENEWS_AFTER``); the finish gives the lease back itself.
    assert [made[0], len(made[1]), made[2:]] == [["intent"], 1, [["submit_to", "_finish"]]]
    assert made[1][0] in ("submit_to", "_accepted_renewing")


class _ResultSeen(httpx.AsyncBaseTransport):
    """The emulator's transport that, when fal's result is fetched, first lets the journal commit what
    was written so far and notes the submit's stored state: what a server's ``GET /v1/videos/{id}``
    (another replica, a ``JobView``) shows while the result is read."""

    def __init__(self, inner: httpx.MockTransport) -> None:
        self.inner = inner
        self.gateway: Gateway | None = None
        self.states: list[str] = []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        path = request.url.path
        if request.method == "GET" and "/requests/" in path and not path.endswith("/status"):
            assert self.gateway is not None and self.gateway.store is not None
            await self.gateway.store.drain()
            self.states += [r.state for r in await self.gateway.store.unfinished()]
        return await self.inner.handle_async_request(request)


async def test_a_job_done_at_its_first_look_is_shown_running_while_its_result_is_read(tmp_path: Path) -> None:
    """The vendor said the job is done at the first status check, and the result (and its download) are
    still being read: the journal says "running", so a server shows ``in_progress`` then, not "queued"
    with progress 0 (an OpenAI SDK client would see queued → completed). The batched mark costs one
    UPDATE in the finish's transaction when the read is quick."""
    keys = {"fal": "emulator-key", "runware": "emulator-key", "wavespeed": "emulator-key"}
    transport = _ResultSeen(Emulator(job_time=lambda rng: 0.0, seed=1).transport())
    gateway = transport.gateway = Gateway(
        transport=transport, keys=keys, journal=str(tmp_path / "journal.sqlite3"),
        poll=PollPolicy(expected=0.0, first_fraction=0.0, interval=0.0, learn=False))
    try:
        request = OviRequest(prompt="a knight <S>Hold.<E>", image="https://example.com/a.png")
        await gateway.agenerate(request, provider="fal")
    finally:
        await gateway.aclose()
    assert transport.states == ["running"]


async def test_batched_writes_end_without_a_loop_callback_each_and_a_failure_is_never_unretrieved(
        journal: Journal, monkeypatch) -> None:
    """A batched write nobody waits for schedules no callback when it ends (ten thousand in flight: as
    many loop callbacks per group commit before), and its failure — logged and kept by the store — is
    never reported as an exception nobody retrieved."""
    monkeypatch.setattr(sqlite_backend, "BATCH_DELAY_S", 3600.0)
    store = journal.store(offload=True)
    await _submit(store)
    loop = asyncio.get_running_loop()
    written = await store.state("c1-s", "running")
    refused = await store._later(Queries.submit_to, "no-such-submit", "running")  # fails: KeyError
    assert written is not None and refused is not None
    ended: list[Any] = []
    call_soon = loop.call_soon

    def counting(callback: Any, *args: Any, **kwargs: Any) -> Any:
        if any(arg is written or arg is refused for arg in args):  # a done callback of one of them
            ended.append(callback)
        return call_soon(callback, *args, **kwargs)

    monkeypatch.setattr(loop, "call_soon", counting)
    await store.submits("c1")  # carries both
    monkeypatch.undo()
    assert written.done() and refused.done() and ended == []
    assert isinstance(store.deferred_errors[-1], KeyError)
    assert not refused._log_traceback  # type: ignore[attr-defined]  # retrieved: never "never retrieved"
