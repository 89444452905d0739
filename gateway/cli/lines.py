"""What the ``ovi-gateway`` command prints as plain text: its two consoles, money, and the one-line
forms of errors, attempts, unsettled jobs and the cheapest-vendor reason. The tables and the live
progress display are ``gateway.cli.render``, which names these too (``render.one_line`` etc.).
"""

from __future__ import annotations

from collections.abc import Sequence
from decimal import Decimal
from typing import Any

from pydantic import ValidationError
from rich.console import Console

from gateway.errors import AllProvidersFailed, GatewayError
from gateway.request import OviRequest
from gateway.routing.pricing import Compute, PriceBook, Quote

__all__ = ["attempt_lines", "error_line", "money", "one_line", "stderr_console", "stdout_console",
           "unsettled_lines", "validation_line", "why_cheapest"]


def stdout_console() -> Console:
    """A console on the current ``sys.stdout`` (looked up when printing, so test runners can capture it).
    No ``:name:`` emoji codes: vendor and user text is printed as it is (and rich's emoji table, ~2 ms,
    never loads)."""
    return Console(highlight=False, emoji=False)


def stderr_console() -> Console:
    """A console on the current ``sys.stderr``: progress and notices, never results (no emoji codes)."""
    return Console(stderr=True, highlight=False, emoji=False)


def money(amount: Decimal | None) -> str:
    """USD for display: ``$0.1171``, or ``unknown``."""
    return "unknown" if amount is None else f"${amount}"


# ---- one-line texts -----------------------------------------------------------------------------
def one_line(text: str, limit: int = 300) -> str:
    """``text`` on one line (vendor bodies can hold HTML), cut at ``limit`` characters."""
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[:limit - 1] + "…"


def validation_line(error: ValidationError) -> str:
    """A pydantic error on one line: each field and what is wrong with it (prompt errors name the position)."""
    parts = []
    for item in error.errors():
        where = ".".join(str(p) for p in item["loc"]) or "request"
        parts.append(f"{where}: {item['msg'].removeprefix('Value error, ').removeprefix(where + ': ')}")
    return "invalid request: " + "; ".join(parts)


def error_line(error: GatewayError) -> str:
    """``Type: message``; for ``AllProvidersFailed`` without the inlined attempts (they follow as lines)."""
    text = str(error).split(" — ", 1)[0] if isinstance(error, AllProvidersFailed) else str(error)
    return f"{type(error).__name__}: {text}"


def attempt_lines(error: GatewayError) -> list[str]:
    """One line per attempt carried by ``error``."""
    return [one_line(f"attempt {a.provider}: {a.outcome}" + (f" ({a.error_type}: {a.error})" if a.error_type else ""))
            for a in error.attempts]


def unsettled_lines(error: GatewayError, emulated: bool) -> list[str]:
    """What is known of a job that may be paid for, and how to finish it."""
    hint: dict[str, Any] = {"provider": error.provider} if error.provider else {}
    hint |= getattr(error, "job_hint", None) or {}
    job = getattr(error, "job", None)
    if job is not None:
        hint["job"] = getattr(job, "job_id", job)
    lines = [f"job: {', '.join(f'{k}={v}' for k, v in hint.items())}"] if hint else []
    if emulated:
        return [*lines, "(emulator: nothing was billed)"]
    return [*lines, "a paid job may exist: run `ovi-gateway jobs resume` to finish it instead of paying again"]


def why_cheapest(book: PriceBook, request: OviRequest, quotes: Sequence[Quote], best: Quote) -> str:
    """Which vendor is cheapest for ``request``, how its price is made, and what the others charge."""
    rule = book.rule(best.provider, request.mode)
    if isinstance(rule, Compute):
        steps = request.steps if request.steps is not None else rule.default_steps
        how = f"an estimate: billed by compute time, {steps} steps"
    else:
        how = "a fixed price"
    others = ", ".join(f"{q.provider} {money(q.price_usd)}" for q in quotes
                       if q is not best and q.feasible and q.price_usd is not None)
    return f"cheapest: {best.provider} at {money(best.price_usd)} ({how})" + (
        f", below {others}" if others else "") + "."
