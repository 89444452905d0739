"""One SQLite transaction of several operations (``SqliteEngine.batch``): they run back to back, and
when one fails that pass is undone to a savepoint (the write lock kept) and they run again, each under
its own savepoint — so the failed one's partial writes are gone, every other one is committed once,
and each caller gets its own answer."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from gateway.store.journal import Journal
from gateway.store.queries import Queries
from gateway.store.records import Durability

B = Durability.BATCHED


def _setting(name: str, value: str) -> Any:
    def write(queries: Queries, tx: Any) -> str:
        tx.run("INSERT INTO server_settings (name, value) VALUES (?, ?)", (name, value))
        return value

    write.__name__ = f"set_{name}"
    return write


def _half_then_fail(queries: Queries, tx: Any) -> None:
    tx.run("INSERT INTO server_settings (name, value) VALUES ('partial', 'x')")
    raise KeyError("refused after a partial write")


def _settings(journal: Journal) -> dict[str, str]:
    return dict(journal._query("SELECT name, value FROM server_settings"))  # type: ignore[arg-type]


@pytest.fixture
def journal(tmp_path: Path):
    face = Journal(str(tmp_path / "journal.sqlite3"))
    yield face
    face.close()


def test_a_failed_op_spoils_no_other_and_leaves_nothing_of_its_own(journal: Journal) -> None:
    engine = journal._engine
    calls: list[str] = []

    def counted(queries: Queries, tx: Any) -> int:
        calls.append("counted")
        return int(tx.run("INSERT INTO server_settings (name, value) VALUES ('counted', '1')"))

    out = engine.batch([(B, _setting("a", "1"), (), {}), (B, _half_then_fail, (), {}),
                        (B, counted, (), {}), (B, _setting("c", "3"), (), {})])
    assert out is not None
    assert [value for value, _ in out] == ["1", None, 1, "3"]
    assert [type(error) for _, error in out] == [type(None), KeyError, type(None), type(None)]
    assert _settings(journal) == {"a": "1", "counted": "1", "c": "3"}  # no 'partial'


def test_ops_that_all_succeed_run_once(journal: Journal) -> None:
    calls: list[int] = []

    def once(queries: Queries, tx: Any) -> None:
        calls.append(1)
        tx.run("INSERT INTO server_settings (name, value) VALUES ('once', '1')")

    out = journal._engine.batch([(B, once, (), {}), (B, _setting("b", "2"), (), {})])
    assert out == [(None, None), ("2", None)]
    assert calls == [1]
    assert _settings(journal) == {"once": "1", "b": "2"}


def test_a_lone_failed_op_is_rolled_back(journal: Journal) -> None:
    out = journal._engine.batch([(B, _half_then_fail, (), {})])
    assert out is not None and isinstance(out[0][1], KeyError)
    assert _settings(journal) == {}


def test_a_failed_op_keeps_the_write_lock_through_the_second_pass(journal: Journal) -> None:
    """Rolling back the whole transaction and beginning again would free the file's write lock between
    the two: another process taking it then would fail every op of the batch ("database is locked") for
    one op's refusal. The first pass is undone to a savepoint instead: one BEGIN, no bare ROLLBACK."""
    engine = journal._engine
    statements: list[str] = []
    engine.db.set_trace_callback(statements.append)
    try:
        out = engine.batch([(B, _setting("a", "1"), (), {}), (B, _half_then_fail, (), {}),
                            (B, _setting("c", "3"), (), {})])
    finally:
        engine.db.set_trace_callback(None)
    assert out is not None and [type(error) for _, error in out] == [type(None), KeyError, type(None)]
    control = [s for s in statements if s.split()[0] in ("BEGIN", "ROLLBACK", "COMMIT")]
    assert control[0] == "BEGIN IMMEDIATE" and control[-1] == "COMMIT"
    assert control.count("BEGIN IMMEDIATE") == 1 and "ROLLBACK" not in control, control
    assert _settings(journal) == {"a": "1", "c": "3"}


def test_without_update_returning_a_job_is_journaled_the_same(tmp_path: Path,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """SQLite before 3.35 (Debian 11, Ubuntu 20.04, RHEL 8 system libraries) has no ``UPDATE …
    RETURNING``: a submit's state changes then read the row first. Here every statement naming RETURNING
    fails as such a SQLite fails, and a paid job must still be delivered and journaled to the end."""
    import asyncio
    import sqlite3

    import gateway.store.sqlite_engine as backend
    from gateway import Gateway, OviRequest
    from gateway.clock import VirtualClock
    from gateway.emulator import Emulator

    def like_old_sqlite(real: Any) -> Any:
        def run(self: Any, sql: str, args: tuple[Any, ...] = ()) -> Any:
            if "RETURNING" in sql.upper():
                raise sqlite3.OperationalError('near "RETURNING": syntax error')
            return real(self, sql, args)
        return run

    monkeypatch.setattr(backend._Tx, "returning", False)
    for name in ("one", "all", "run"):
        monkeypatch.setattr(backend._Tx, name, like_old_sqlite(getattr(backend._Tx, name)))

    async def one_job() -> tuple[Any, Any]:
        clock = VirtualClock()
        emulator = Emulator(clock=clock, seed=2)
        face = Journal(str(tmp_path / "old.sqlite3"))
        gateway = Gateway(emulator=emulator, providers=["fal"], journal=face, clock=clock)
        try:
            result = await gateway.agenerate(OviRequest(prompt="A cat. <S>Hello.<E>"), provider="fal")
            await gateway.aclose()
            return result, face._query("SELECT state, job_id FROM submits")
        finally:
            face.close()

    result, rows = asyncio.run(one_job())
    assert result.provider == "fal" and rows == [("succeeded", result.job_id)]
