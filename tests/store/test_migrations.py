"""Numbered migrations: applied in order, recorded, never re-applied, newer databases refused."""

from __future__ import annotations

import sqlite3

import pytest

from gateway.errors import ConfigurationError
from gateway.store.journal import Journal
from gateway.store.migrate import Migration, load, migrate_sqlite, newest


def versions(path) -> list[tuple[int, str]]:
    with sqlite3.connect(path) as db:
        return db.execute("SELECT version, name FROM schema_migrations ORDER BY version").fetchall()


def test_shipped_migrations_are_numbered_without_gaps():
    shipped = load("sqlite")
    assert [m.version for m in shipped] == list(range(1, len(shipped) + 1))
    assert shipped[0].name == "initial" and "CREATE TABLE IF NOT EXISTS clips" in shipped[0].sql


def test_new_journal_records_every_migration_once(tmp_path):
    path = tmp_path / "j.sqlite3"
    Journal(path).close()
    Journal(path).close()  # reopening applies nothing twice
    assert [v for v, _ in versions(path)] == list(range(1, newest("sqlite") + 1))
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA user_version").fetchone()[0] == newest("sqlite")


def test_newer_database_is_refused_with_both_versions(tmp_path):
    path = tmp_path / "j.sqlite3"
    Journal(path).close()
    future = newest("sqlite") + 1
    with sqlite3.connect(path) as db:
        db.execute("INSERT INTO schema_migrations VALUES (?, 'from_the_future', 'x')", (future,))
    with pytest.raises(ConfigurationError, match=f"schema version {future}, newer than this ovi-gateway "
                                                 f"understands \\({newest('sqlite')}\\)"):
        Journal(path)


def test_a_later_migration_applies_in_order_on_an_old_database():
    db = sqlite3.connect(":memory:")
    first = load("sqlite")
    assert migrate_sqlite(db, "mem", first) == len(first)
    extra = Migration(len(first) + 1, "add_note", "ALTER TABLE clips ADD COLUMN note TEXT;")
    assert migrate_sqlite(db, "mem", [*first, extra]) == len(first) + 1
    columns = [row[1] for row in db.execute("PRAGMA table_info(clips)")]
    assert "note" in columns
    assert db.execute("SELECT name FROM schema_migrations WHERE version = ?", (extra.version,)).fetchone() == (
        "add_note",)


def test_journal_from_before_the_version_table_counts_as_0001(tmp_path):
    path = tmp_path / "old.sqlite3"
    with sqlite3.connect(path) as db:  # what the journal wrote before numbered migrations
        db.executescript(load("sqlite")[0].sql)
        db.execute("PRAGMA user_version = 1")
    with Journal(path) as journal:
        journal.open_clip("k", '{"prompt": "p"}', "h")  # the old tables are used as they are
    assert versions(path)[0] == (1, "initial")
