"""Budgets' running totals and spend reads, on either backend.

Each submit remembers the USD it holds against spend (``held_usd``); every change of it moves the day,
month and all-time rows of its scopes (``budget_totals``) in the same transaction, in sorted order (so
two PostgreSQL transactions never lock them in opposite orders). ``SpendQueries`` is mixed into
``Queries``: each method runs inside one transaction ``tx``.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from gateway.store.records import SpendRow
from gateway.store.values import _SQL, Tx, _after_prefix, _dec, _iso, _periods, held

__all__ = ["SpendQueries"]

class SpendQueries:
    """Running totals (locked and moved with every held USD change) and spend reads."""

    utcnow: Callable[[], datetime]

    # -- running totals ------------------------------------------------------------------------
    def _lock_totals(self, tx: Tx, scopes: str, emulated: int, created_at: str) -> dict[tuple[str, ...], Decimal]:
        """Lock (creating) the total rows a submit counts in: all spend ("") and each of its ``scopes``
        (space-separated, as stored in ``submits.budget_scope``), per day, month and all time."""
        names = sorted({"", *scopes.split()}) if scopes else [""]
        periods = _periods(created_at)
        args = (emulated, *names, *(value for pair in periods for value in pair))
        select = _SQL.get(("totals", len(names), tx.lock))
        if select is None:  # the text depends only on how many scopes, and the engine: made once each
            where = (f"emulated = ? AND scope IN ({', '.join('?' * len(names))}) AND ("
                     + " OR ".join("(period = ? AND start = ?)" for _ in periods) + ")")
            select = _SQL[("totals", len(names), tx.lock)] = (
                f"SELECT scope, period, start, held_usd FROM budget_totals WHERE {where}"
                f" ORDER BY scope, period{tx.lock}")
        rows = tx.all(select, args)
        if len(rows) < len(names) * len(periods):  # a new day, month or scope: its rows start at 0
            missing = sorted({(s, p, start) for s in names for p, start in periods}
                             - {(r[0], r[1], r[2]) for r in rows})
            tx.run("INSERT INTO budget_totals (scope, emulated, period, start, held_usd) VALUES "
                   + ", ".join("(?, ?, ?, ?, '0')" for _ in missing) + " ON CONFLICT DO NOTHING",
                   tuple(value for s, p, start in missing for value in (s, emulated, p, start)))
            rows = tx.all(select, args)
        return {(s, str(emulated), p, start): Decimal(str(value)) for s, p, start, value in rows}

    def _move_totals(self, tx: Tx, totals: dict[tuple[str, ...], Decimal], delta: Decimal) -> None:
        """Add ``delta`` to every row of ``totals``: one UPDATE per scope (its day, month and all time)."""
        if not delta:
            return
        by_scope: dict[tuple[str, str], list[tuple[str, str, str]]] = {}
        for (s, e, p, start), value in totals.items():
            by_scope.setdefault((s, e), []).append((p, start, str(value + delta)))
        for (s, e), rows in by_scope.items():
            update = _SQL.get(("move", len(rows)))
            if update is None:
                update = _SQL[("move", len(rows))] = (
                    "UPDATE budget_totals SET held_usd = CASE " + " ".join("WHEN period = ? THEN ?" for _ in rows)
                    + " END WHERE scope = ? AND emulated = ? AND ("
                    + " OR ".join("(period = ? AND start = ?)" for _ in rows) + ")")
            tx.run(update, (*(v for p, _, total in rows for v in (p, total)), s, int(e),
                            *(v for p, start, _ in rows for v in (p, start))))

    def backfill_held(self, tx: Tx) -> int:
        """Give submits written before running totals existed their held USD (once, at open)."""
        rows = tx.all("SELECT submit_key, state, quote_usd, reserved_usd, cost_usd, cost_source, may_be_billed,"
                      " created_at, emulator_instance, budget_scope FROM submits WHERE held_usd IS NULL")
        for key, state, quote, reserved, cost, source, billed, created, emulated, scope in rows:
            hold = held(state, quote, reserved, cost, source, billed)
            tx.run("UPDATE submits SET held_usd = ? WHERE submit_key = ?", (str(hold), key))
            self._move_totals(tx, self._lock_totals(tx, scope, int(emulated is not None), created), hold)
        return len(rows)

    # -- spend ---------------------------------------------------------------------------------
    def spend(self, tx: Tx, *, since: datetime | None = None, emulated: bool | None = None) -> list[SpendRow]:
        where, args = self._since(since, emulated)
        groups: dict[tuple[str, str], list[Any]] = {}
        for provider, created, state, quote, cost, source, billed in tx.all(
                "SELECT provider, created_at, state, quote_usd, cost_usd, cost_source, may_be_billed FROM submits"
                f"{where} ORDER BY seq", args):
            acc = groups.setdefault((created[:10], provider), [0, Decimal(0), Decimal(0), 0])
            reported = source == "reported" and cost is not None
            if state == "succeeded":
                acc[0] += 1
                if not reported:
                    acc[1] += _dec(quote if quote is not None else cost) or Decimal(0)
            if reported:
                acc[2] += Decimal(cost)
            if state in ("unknown", "expired", "abandoned") or (state == "failed" and billed):
                acc[3] += 1
        return [SpendRow(provider=provider, day=day, clips=a[0], estimated_usd=a[1], reported_usd=a[2],
                         possibly_billed=a[3]) for (day, provider), a in sorted(groups.items())]

    def reserved_and_spent(self, tx: Tx, *, since: datetime | None = None, emulated: bool | None = None,
                           scope: str = "", clip_prefix: str | None = None) -> Decimal:
        """USD held by submits created since ``since``. The current day, month or all time is one read of
        the running totals; any other ``since`` scans the submits from then (by the creation index)."""
        flags = (0, 1) if emulated is None else (int(emulated),)
        now = self.utcnow().astimezone(UTC)
        day, month = now.strftime("%Y-%m-%d"), now.strftime("%Y-%m")
        period: tuple[str, str] | None = ("total", "") if since is None else None
        if since is not None:
            start = _iso(since)
            if start == _iso(datetime.fromisoformat(day).replace(tzinfo=UTC)):
                period = ("day", day)
            elif start == _iso(datetime.fromisoformat(month + "-01").replace(tzinfo=UTC)):
                period = ("month", month)
        if period is not None and clip_prefix is None:
            marks = ", ".join("?" * len(flags))
            rows = tx.all(f"SELECT held_usd FROM budget_totals WHERE scope = ? AND emulated IN ({marks})"
                          " AND period = ? AND start = ?", (scope, *flags, *period))
            return sum((Decimal(str(r[0])) for r in rows), Decimal(0))
        where, args = self._since(since, emulated)
        extra: list[tuple[str, tuple[Any, ...]]] = []
        if scope:  # a submit's scopes are stored space-separated
            extra.append(("(' ' || budget_scope || ' ') LIKE ?", (f"% {scope} %",)))
        if clip_prefix is not None:  # a batch's clips share a key prefix: a range of the clip-key index
            column, after = f"clip_key{tx.bytewise}", _after_prefix(clip_prefix)
            extra.append((f"{column} >= ?" + ("" if after is None else f" AND {column} < ?"),
                          (clip_prefix,) if after is None else (clip_prefix, after)))
            extra.append(("substr(clip_key, 1, ?) = ?", (len(clip_prefix), clip_prefix)))
        for clause, values in extra:
            where = f"{where} AND {clause}" if where else f" WHERE {clause}"
            args = (*args, *values)
        total = Decimal(0)
        for state, quote, reserved, cost, source, billed in tx.all(
                f"SELECT state, quote_usd, reserved_usd, cost_usd, cost_source, may_be_billed FROM submits{where}",
                args):
            total += held(state, quote, reserved, cost, source, billed)
        return total

    @staticmethod
    def _since(since: datetime | None, emulated: bool | None) -> tuple[str, tuple[Any, ...]]:
        clauses, args = [], []
        if since is not None:
            clauses.append("created_at >= ?")
            args.append(_iso(since))
        if emulated is not None:
            clauses.append(f"emulator_instance IS {'NOT ' if emulated else ''}NULL")
        return ("" if not clauses else " WHERE " + " AND ".join(clauses)), tuple(args)

    def reported_costs(self, tx: Tx, provider: str, limit: int = 20,
                       emulated: bool = False) -> list[tuple[Decimal, Decimal | None, int | None]]:
        rows = tx.all("SELECT cost_usd, quote_usd, steps FROM submits WHERE provider = ? AND"
                      f" emulator_instance IS {'NOT ' if emulated else ''}NULL AND"
                      " cost_source = 'reported' AND cost_usd IS NOT NULL"
                      " ORDER BY updated_at DESC, seq DESC LIMIT ?", (provider, limit))
        return [(Decimal(str(cost)), _dec(quote), steps) for cost, quote, steps in rows]
