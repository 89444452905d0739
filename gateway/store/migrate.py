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
from typing import Any

from gateway.errors import ConfigurationError

__all__ = ["Migration", "load", "migrate_postgres", "migrate_sqlite", "newest"]

_NAME = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")
_MIN_READER = re.compile(r"^-- min-reader: (\d+)$", re.MULTILINE)
_PG_LOCK = 0x0F1_6A7E  # the advisory lock every replica takes to migrate (one at a time)


@dataclass(frozen=True)
class Migration:
    """One schema change: its version number, short name and SQL text."""

    version: int
    name: str
    sql: str

    @property
    def min_reader(self) -> int:
        """The oldest code (by its newest schema version) that can still use a database after this
        migration: a ``-- min-reader: N`` line, else 1 (additive changes old code can ignore)."""
        found = _MIN_READER.search(self.sql)
        return int(found[1]) if found else 1


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


def migrate_postgres(conn: Any, where: str, migrations: list[Migration] | None = None) -> int:
    """Bring a PostgreSQL database up to the newest migration; return the version it is at.

    Runs in one transaction holding an advisory lock, so N replicas starting at once migrate once.
    ``schema_meta`` records the version and ``min_reader``, the oldest code version that can still
    read it: a database newer than this code is used if this code is at least ``min_reader`` (a
    rolling upgrade leaves old replicas running), else refused. ``conn``: a psycopg connection."""
    steps = load("postgresql") if migrations is None else migrations
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (_PG_LOCK,))
        conn.execute("CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, "
                     "name TEXT NOT NULL, applied_at TEXT NOT NULL)")
        conn.execute("CREATE TABLE IF NOT EXISTS schema_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
        applied = conn.execute("SELECT COALESCE(MAX(version), 0) FROM schema_migrations").fetchone()[0]
        known = len(steps)
        if applied > known:
            row = conn.execute("SELECT value FROM schema_meta WHERE key = 'min_reader'").fetchone()
            reader = int(row[0]) if row else applied
            if reader > known:
                raise ConfigurationError(
                    f"database {where} has schema version {applied}, readable only by ovi-gateway with schema "
                    f"{reader} or newer (this one has {known}); upgrade ovi-gateway")
            return int(applied)
        for migration in steps[applied:]:
            for statement in _statements(migration.sql):
                conn.execute(statement)
            conn.execute("INSERT INTO schema_migrations VALUES (%s, %s, %s)",
                         (migration.version, migration.name, _now()))
        reader = max((m.min_reader for m in steps), default=1)
        for key, value in (("version", known), ("min_reader", reader)):
            conn.execute("INSERT INTO schema_meta VALUES (%s, %s) ON CONFLICT (key) DO UPDATE SET value ="
                         " excluded.value", (key, str(value)))
    return known
