"""Values every query module shares: the transaction protocol, money and time as stored, the held-USD
rule and budget checks (``Queries`` and its mixins use them; nothing here touches a connection)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, Protocol

from gateway.secrets import redact
from gateway.store.records import OPEN

__all__ = ["BudgetChecks", "Tx", "held"]

_FOREVER = 1e18
_OPEN_SQL = "(" + ", ".join(f"'{state}'" for state in OPEN) + ")"
_SQL: dict[tuple[Any, ...], str] = {}
"""Statement texts made from their shape (how many scopes or rows, which columns…), once per shape, for
every query module (each key names its statement)."""


class Tx(Protocol):
    """One open transaction of a backend."""

    lock: str
    """`` FOR UPDATE`` where the engine has row locks, else empty."""
    skip_locked: str
    """`` FOR UPDATE OF c SKIP LOCKED`` where the engine has it, else empty."""
    returning: bool
    """The engine has ``UPDATE … RETURNING`` (PostgreSQL; SQLite from 3.35)."""
    bytewise: str
    """`` COLLATE "C"`` where text compares by the database's locale (PostgreSQL), else empty (SQLite
    compares bytes): a prefix range (``>= p AND < p'``) holds exactly the keys starting with ``p``."""

    def one(self, sql: str, args: tuple[Any, ...] = ()) -> tuple[Any, ...] | None: ...
    def all(self, sql: str, args: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]: ...
    def run(self, sql: str, args: tuple[Any, ...] = ()) -> int: ...


def _after_prefix(prefix: str) -> str | None:
    """The least text after every text that starts with ``prefix``, in code-point order (SQLite's and
    PostgreSQL's ``COLLATE "C"`` order for UTF-8); ``None`` when there is none (it ends in U+10FFFF)."""
    kept = prefix.rstrip("\U0010ffff")
    if not kept:
        return None
    point = ord(kept[-1]) + 1
    return kept[:-1] + chr(0xE000 if 0xD800 <= point <= 0xDFFF else point)  # never a lone surrogate


def _iso(moment: datetime) -> str:
    if moment.tzinfo is None:  # naive datetimes are taken as UTC
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).isoformat(timespec="microseconds")


def _money(value: Decimal | None) -> str | None:
    if value is None:
        return None
    if not isinstance(value, Decimal | int) or isinstance(value, bool):
        raise TypeError(f"money must be Decimal, not {type(value).__name__}")
    value = Decimal(value)
    if not value.is_finite():
        raise ValueError(f"money must be finite, got {value}")
    return str(value)


def _dec(text: Any) -> Decimal | None:
    return None if text is None else Decimal(str(text))


def held(state: str, quote: Any, reserved: Any, cost: Any, source: str | None, billed: Any) -> Decimal:
    """USD a submit holds against spend: the reported cost when known; nothing for a failure known to be
    unbilled; else its reservation, quote or estimated cost."""
    if source == "reported" and cost is not None:
        return Decimal(str(cost))
    if state == "failed" and not billed:
        return Decimal(0)
    value = next((v for v in (reserved, quote, cost) if v is not None), None)
    return _dec(value) or Decimal(0)


def _redacted(columns: dict[str, Any]) -> dict[str, Any]:
    """Texts that may quote a vendor's answer (errors, the result with its raw body) are written only
    with every registered secret redacted (``gateway.secrets``)."""
    return {name: redact(value) if name in ("error", "result_json") and isinstance(value, str) else value
            for name, value in columns.items()}


def _instance_filter(table: str, emulated: bool | None) -> str:
    if emulated is None:
        return ""
    return f" AND {table}.emulator_instance IS {'NOT ' if emulated else ''}NULL"


BudgetChecks = tuple[Decimal, str, str] | Sequence[tuple[Decimal, str, str]] | None
"""One (limit USD, period, scope) budget check, several, or none."""


def _checks(budget: BudgetChecks) -> list[tuple[Decimal, str, str]]:
    if budget is None:
        return []
    if len(budget) == 3 and isinstance(budget[0], Decimal | int):
        return [budget]  # type: ignore[list-item]
    return list(budget)  # type: ignore[arg-type]


def _periods(created_at: str) -> list[tuple[str, str]]:
    return [("day", created_at[:10]), ("month", created_at[:7]), ("total", "")]
