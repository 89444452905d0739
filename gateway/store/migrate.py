"""Numbered schema migrations: one SQL file per change, applied in order, recorded in a version table.

Files live in ``migrations/<dialect>/NNNN_name.sql`` (``NNNN`` is the version, from 1, with no gaps).
A database records what it has in ``schema_migrations``; opening one whose newest version is above the
code's newest is refused with ``ConfigurationError`` (the code would misread rows it does not know).
A later change adds a file; nobody writes "version 2" by hand.

Journals from before this table (SQLite ``PRAGMA user_version = 1``, the 0001 schema) are taken as
having 0001 applied.
"""

from __future__ import annotations

import re
import sqlite3
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import resources

from gateway.errors import ConfigurationError

__all__ = ["Migration", "load", "migrate_sqlite", "newest"]

_NAME = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")


@dataclass(frozen=True)
class Migration:
    """One schema change: its version number, short name and SQL text."""

    version: int
    name: str
    sql: str


def load(dialect: str) -> list[Migration]:
    """The migrations shipped for ``dialect`` (``"sqlite"``, ``"postgresql"``), oldest first."""
    folder = resources.files("gateway.store").joinpath("migrations", dialect)
    found: list[Migration] = []
    for entry in folder.iterdir():
        match = _NAME.match(entry.name)
        if match:
            found.append(Migration(int(match[1]), match[2], entry.read_text(encoding="utf-8")))
    found.sort(key=lambda m: m.version)
    for expected, migration in enumerate(found, start=1):
        if migration.version != expected:
            raise ConfigurationError(f"{dialect} migrations skip from {expected - 1} to {migration.version}")
    return found


def newest(dialect: str) -> int:
    """The newest schema version this code knows for ``dialect``."""
    return len(load(dialect))


def migrate_sqlite(db: sqlite3.Connection, where: str, migrations: list[Migration] | None = None) -> int:
    """Bring ``db`` up to the newest migration inside the caller's write transaction; return its version.

    ``where`` names the database in errors (a path, never a secret)."""
    steps = load("sqlite") if migrations is None else migrations
    db.execute("CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, "
               "name TEXT NOT NULL, applied_at TEXT NOT NULL)")
    applied = db.execute("SELECT COALESCE(MAX(version), 0) FROM schema_migrations").fetchone()[0]
    if applied == 0:
        legacy = db.execute("PRAGMA user_version").fetchone()[0]
        if legacy:  # a journal written before the version table: it carries the 0001 schema
            applied = min(legacy, 1)
            db.execute("INSERT INTO schema_migrations VALUES (1, 'initial', ?)", (_now(),))
    known = len(steps)
    if applied > known:
        raise ConfigurationError(
            f"journal {where} has schema version {applied}, newer than this ovi-gateway understands "
            f"({known}); upgrade ovi-gateway or use another journal path")
    for migration in steps[applied:]:
        for statement in _statements(migration.sql):
            db.execute(statement)
        db.execute("INSERT INTO schema_migrations VALUES (?, ?, ?)",
                   (migration.version, migration.name, _now()))
    db.execute(f"PRAGMA user_version = {known}")
    return known


def _statements(sql: str) -> list[str]:
    """Split a migration file on ``;`` at line ends (our files hold no ``;`` inside literals)."""
    body = "\n".join(line for line in sql.splitlines() if not line.lstrip().startswith("--"))
    return [part.strip() for part in body.split(";\n") if part.strip().rstrip(";").strip()]


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")
