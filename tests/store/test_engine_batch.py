"""One SQLite transaction of several operations (``SqliteEngine.batch``): they run back to back, and
when one fails the transaction is rolled back and they run again, each under its own savepoint — so
the failed one's partial writes are gone, every other one is committed once, and each caller gets
its own answer."""

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
