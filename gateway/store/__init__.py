"""Storage: every shared fact of the gateway behind one async interface (``base.SqlStore``), with two
backends — SQLite, embedded and the default (``sqlite``), and PostgreSQL for many processes and
machines (``postgres``) — the numbered migrations of both (``migrate``, ``migrations/<dialect>/``),
and ``journal.Journal``, the synchronous face of the same operations for the CLI.

``open_store(target)`` picks the backend: a ``postgresql://`` URL, a path, ``":memory:"``, or by default
``$OVI_GATEWAY_DATABASE_URL`` and then the journal file under the user's data directory.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from gateway.store.url import from_env, is_postgres

if TYPE_CHECKING:
    from gateway.store.base import SqlStore

__all__ = ["open_store"]


def open_store(target: str | os.PathLike[str] | None = None, *, emulator_instance: str | None = None,
               offload: bool = True) -> SqlStore:
    """The async store at ``target`` (see the module docstring). ``offload``: SQLite runs its SQL on a
    writer thread (default) or inline (deterministic, for virtual clocks)."""
    from gateway.store.journal import default_path

    where = target if target is not None else (from_env() or default_path())
    if is_postgres(where):
        from gateway.store.postgres import PostgresStore
        return PostgresStore(str(where), emulator_instance=emulator_instance)
    from gateway.store.sqlite import SqliteStore
    return SqliteStore(where, offload=offload, emulator_instance=emulator_instance)
