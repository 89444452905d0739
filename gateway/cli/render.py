"""What the ``ovi-gateway`` command shows: quote, provider, result, job and spend tables, and the live
progress display of a generation. Rendering only; the commands live in ``gateway.cli``. The plain
one-line texts and the consoles are ``gateway.cli.lines``, named here too (``render.one_line``…).

Every vendor-supplied string goes into a ``rich.text.Text``, never through rich markup, so a message
like ``[runware] HTTP 503`` is printed as written.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from rich.console import Group
from rich.table import Table
from rich.text import Text

from gateway.cli.lines import (
    attempt_lines,
    error_line,
    money,
    one_line,
    stderr_console,
    stdout_console,
    unsettled_lines,
    validation_line,
    why_cheapest,
)
from gateway.contract import Capabilities, Limit, Provider
from gateway.request import OviRequest
from gateway.routing.pricing import Quote

if TYPE_CHECKING:  # annotations only: the runner and the store load where a command uses them
    from gateway.client import Gateway
    from gateway.jobs.events import Event
    from gateway.media.verify import MediaFacts
    from gateway.result import Attempt, OviResult
    from gateway.routing.health import BreakerState
    from gateway.routing.planner import Route
    from gateway.store.media import PendingClip
    from gateway.store.records import SpendRow, SubmitRecord

__all__ = ["GenerationInterrupted", "RunDisplay", "attempt_lines", "attempts_table", "capabilities_json",
           "capabilities_text", "emulator_banner", "error_line", "generate_with_progress", "jobs_table", "money",
           "one_line", "providers_table", "quote_table", "result_table", "resume_table", "spend_table",
           "stderr_console", "stdout_console", "unsettled_lines", "validation_line", "why_cheapest"]


def _text(value: Any, style: str = "") -> Text:
    return Text("" if value is None else str(value), style=style)


# ---- quotes ------------------------------------------------------------------------------------
def quote_table(quotes: Sequence[Quote], usable: Mapping[str, str | None], cheapest: str | None) -> Table:
    """One row per vendor: price, estimated or fixed, and ok or why not. ``usable`` maps a vendor to
    the reason it cannot be used at all (no API key), or ``None``."""
    table = Table(title="Quotes", title_justify="left")
    for column in ("vendor", "price (USD)", "pricing", "feasible", ""):
        table.add_column(column)
    for quote in quotes:
        blocked = usable.get(quote.provider)
        if blocked:
            status = _text(f"unusable: {blocked}", "yellow")
        elif quote.feasible:
            status = _text("yes", "green")
        else:
            status = _text("no: " + "; ".join(quote.reasons), "red")
        table.add_row(_text(quote.provider, "bold"), _text(money(quote.price_usd)),
                      _text("estimated" if quote.estimated else "fixed"), status,
                      _text("← cheapest" if quote.provider == cheapest else "", "bold green"))
    return table


# ---- providers ---------------------------------------------------------------------------------
def _limit(limit: Limit) -> str:
    if limit == Limit():
        return "any"
    return limit.describe()


def capabilities_text(capabilities: Capabilities) -> Text:
    """Each mode with its endpoint, then the honored fields with their limits."""
    text = Text()
    for mode, caps in capabilities.modes.items():
        if text:
            text.append("\n")
        text.append(f"{mode} ({caps.endpoint})\n", style="bold")
        text.append("\n".join(f"  {name}: {_limit(limit)}" for name, limit in caps.fields.items()))
    return text


def capabilities_json(capabilities: Capabilities) -> dict[str, Any]:
    """``{mode: {"endpoint": …, "fields": {field: limit text}}}``."""
    return {str(mode): {"endpoint": caps.endpoint, "fields": {f: _limit(lim) for f, lim in caps.fields.items()}}
            for mode, caps in capabilities.modes.items()}


def providers_table(classes: Mapping[str, type[Provider]], keys_set: Mapping[str, bool],
                    health: Mapping[str, BreakerState]) -> Table:
    """Installed vendors: key set or not (never the key), capabilities, breaker state."""
    table = Table(title="Providers", title_justify="left", show_lines=True)
    for column in ("vendor", "API key", "capabilities (mode, honored fields and limits)", "health"):
        table.add_column(column)
    for name, cls in classes.items():
        key = _text(f"set ({cls.env_key})", "green") if keys_set.get(name) else _text(f"unset ({cls.env_key})",
                                                                                         "yellow")
        state = health.get(name)
        shown = "unknown" if state is None else state.state + (
            f", {state.consecutive_failures} failures" if state.consecutive_failures else "")
        table.add_row(_text(name, "bold"), key, capabilities_text(cls.capabilities), _text(shown))
    return table


# ---- results -----------------------------------------------------------------------------------
def attempts_table(attempts: Iterable[Attempt]) -> Table:
    """Every vendor try, in order: outcome, error, elapsed seconds, whether it may have been billed."""
    table = Table(title="Attempts", title_justify="left")
    for column in ("#", "vendor", "outcome", "error", "elapsed", "may be billed"):
        table.add_column(column)
    styles = {"succeeded": "green", "failed": "red", "retried": "yellow", "unknown": "magenta"}
    for index, attempt in enumerate(attempts, 1):
        error = f"{attempt.error_type}: {attempt.error}" if attempt.error_type else (attempt.error or "")
        table.add_row(_text(index), _text(attempt.provider), _text(attempt.outcome, styles.get(attempt.outcome, "")),
                      _text(error), _text(f"{attempt.elapsed_s:.1f} s"),
                      _text("yes" if attempt.may_be_billed else "no"))
    return table


def result_table(result: OviResult, saved_to: str | None) -> Group:
    """The normalized result as a short two-column table, followed by the attempts."""
    table = Table(title="Result", title_justify="left", show_header=False)
    table.add_column(style="bold")
    table.add_column()
    timings = result.timings
    rows = [
        ("vendor", result.provider),
        ("job id", result.job_id),
        ("video", result.video_url),
        ("saved to", saved_to),
        ("seed", result.seed),
        ("cost", f"{money(result.cost_usd)} ({result.cost_source})"),
        ("quoted", money(result.quoted_usd)),
        ("nsfw", result.nsfw),
        ("time", f"{timings.total_s:.1f} s total" + "".join(
            f", {label} {value:.1f} s" for label, value in (("queued", timings.queued_s),
                                                            ("running", timings.running_s)) if value is not None)),
        ("checked", None if result.media is None else media_line(result.media)),
        ("expires", f"{result.expiry} (the vendor's documented retention)" if result.expires_at is not None
         else "unknown (the vendor documents no retention)"),
        ("dropped fields", ", ".join(result.dropped) or "none"),
        ("possible extra charges", result.possible_extra_charges),
    ]
    for label, value in rows:
        if value is not None:
            table.add_row(label, _text(value))
    return Group(table, attempts_table(result.attempts))


def media_line(facts: MediaFacts | None) -> str:
    """How the saved clip was checked: ``verified: h264 … + aac …``, or plainly that it was not."""
    if facts is None:
        return "not verified: the clip was not downloaded"
    if not facts.verified:
        return facts.summary()
    warned = "".join(f"; warning: {w}" for w in facts.warnings)
    return f"verified: {facts.summary()}{warned}"


# ---- journal -----------------------------------------------------------------------------------
def jobs_table(records: Sequence[SubmitRecord]) -> Table:
    """Unfinished submits (each may still hold a paid job) and abandoned ones (may have been billed)."""
    table = Table(title="Unfinished submits", title_justify="left")
    for column in ("created (UTC)", "clip", "vendor", "state", "job id", "quote", "error"):
        table.add_column(column)
    for r in records:
        table.add_row(_text(r.created_at[:19]), _text(r.clip_key), _text(r.provider),
                      _text("abandoned (may be billed)" if r.state == "abandoned" else r.state),
                      _text(r.job_id or "—"), _text(money(r.quote_usd)), _text(r.error or ""))
    return table


def pending_table(clips: Sequence[PendingClip]) -> Table:
    """Finished clips nobody has downloaded yet, soonest expiry first: fetch them before the vendor drops them."""
    table = Table(title="Finished, not downloaded", title_justify="left")
    for column in ("clip", "vendor", "job id", "expires (UTC)", "video"):
        table.add_column(column)
    for c in clips:
        table.add_row(_text(c.clip_key), _text(c.provider), _text(c.job_id),
                      _text(c.expires_at[:19] if c.expires_at else "unknown"), _text(c.video_url))
    return table


def resume_table(outcomes: Sequence[Any]) -> Table:
    """What ``Gateway.resume()`` did with each unfinished submit."""
    table = Table(title="Resumed", title_justify="left")
    for column in ("clip", "vendor", "outcome", "video / error"):
        table.add_column(column)
    for o in outcomes:
        detail = o.result.video_url if o.result is not None else (o.error or "")
        table.add_row(_text(o.clip_key), _text(o.provider), _text(o.outcome), _text(detail))
    return table


def spend_table(rows: Sequence[SpendRow]) -> Table:
    """Spend per vendor and UTC day: estimated (quotes) vs reported (vendor bills), with totals."""
    table = Table(title="Spend (USD)", title_justify="left", show_footer=bool(rows))
    total: dict[str, Any] = {"clips": 0, "estimated": Decimal(0), "reported": Decimal(0), "possibly": 0}
    for row in rows:
        total["clips"] += row.clips
        total["estimated"] += row.estimated_usd
        total["reported"] += row.reported_usd
        total["possibly"] += row.possibly_billed
    table.add_column("day", footer="total")
    table.add_column("vendor")
    table.add_column("clips", justify="right", footer=str(total["clips"]))
    table.add_column("estimated", justify="right", footer=money(total["estimated"]))
    table.add_column("reported", justify="right", footer=money(total["reported"]))
    table.add_column("possibly billed", justify="right", footer=str(total["possibly"]))
    for row in rows:
        table.add_row(row.day, row.provider, str(row.clips), money(row.estimated_usd), money(row.reported_usd),
                      str(row.possibly_billed))
    return table


def emulator_banner(base: str, faults: str | None, routes: Iterable[tuple[str, str]]) -> list[str]:
    """What ``ovi-gateway emulate`` prints: the base URL and which paths reach which vendor (``routes``:
    the emulator's own ``(path, what)`` list, so the core names no vendor)."""
    lines = [f"emulator listening on {base} (Ctrl-C to stop); nothing is billed"]
    lines += [f"  {base}{path:<20} {what}" for path, what in routes]
    return lines + ([f"  faults: {faults}"] if faults else [])


# ---- live progress -----------------------------------------------------------------------------
@dataclass
class _VendorRow:
    state: str
    started: float
    ended: float | None = None
    queue_position: int | None = None
    job_id: str | None = None


class RunDisplay:
    """The live view of one generation, fed by ``Gateway``'s ``on_event``: a row per vendor tried
    (state, queue position when known, elapsed) and a printed line for every retry and failover.

    Use as the renderable of a ``rich.live.Live``; ``print`` should be that Live's ``console.print``.
    """

    def __init__(self, print_line: Any) -> None:
        self.print_line = print_line
        self._lock = threading.Lock()
        self._rows: dict[str, _VendorRow] = {}
        self._started = time.monotonic()
        self.accepted: list[tuple[str, str]] = []
        """(vendor, job id) of every job a vendor accepted: what may still run after an interrupt."""

    def on_event(self, event: Event) -> None:
        """Update the view for one ``gateway.jobs.runner.Event``."""
        now = time.monotonic()
        if event.kind == "wait":
            self.print_line(Text(one_line(event.message or "waiting", 160), style="yellow"))
            return
        with self._lock:
            row = self._rows.get(event.provider)
            if row is None or event.kind in ("failover", "resubmit"):
                for other in self._rows.values():
                    if other.ended is None:
                        other.ended, other.state = now, "failed"
                row = self._rows[event.provider] = _VendorRow(state="starting", started=now)
            self._apply(row, event, now)
        self._announce(event)

    def _apply(self, row: _VendorRow, event: Event, now: float) -> None:
        if event.kind == "submit":
            row.state = "submitting"
        elif event.kind == "accepted":
            row.state, row.job_id = "accepted", event.message
            self.accepted.append((event.provider, event.message or "?"))
        elif event.kind == "status":
            row.state, row.queue_position = str(event.state), event.queue_position
        elif event.kind == "retry":
            row.state = "retrying"
        elif event.kind == "reconcile":
            row.state = "checking"
        elif event.kind == "done":
            row.state, row.ended = "succeeded", now

    def _announce(self, event: Event) -> None:
        at = f"[{event.elapsed:5.1f} s] "
        message = one_line(event.message or "", 160)
        if event.kind == "failover":
            self.print_line(Text(f"{at}failing over to {event.provider} ({message})", style="bold yellow"))
        elif event.kind == "resubmit":
            self.print_line(Text(f"{at}{event.provider}: its job failed; submitting a new one ({message})",
                                 style="bold yellow"))
        elif event.kind == "retry":
            self.print_line(Text(f"{at}{event.provider}: will retry after: {message}", style="yellow"))
        elif event.kind == "reconcile":
            self.print_line(Text(f"{at}{event.provider}: submit may have reached the vendor; checking "
                             f"before paying elsewhere ({message})", style="dim"))
        elif event.kind == "accepted":
            self.print_line(Text(f"{at}{event.provider} accepted job {event.message}"))
        elif event.kind == "done":
            self.print_line(Text(f"{at}{event.provider} finished", style="green"))

    def __rich__(self) -> Table | Text:
        now = time.monotonic()
        if not self._rows:
            return Text(f"planning… {now - self._started:.1f} s")
        table = Table(title=f"generating… {now - self._started:.1f} s", title_justify="left")
        for column in ("vendor", "state", "queue", "elapsed", "job id"):
            table.add_column(column)
        with self._lock:
            rows = list(self._rows.items())
        for name, row in rows:
            elapsed = (row.ended or now) - row.started
            queue = "—" if row.queue_position is None else str(row.queue_position)
            table.add_row(_text(name, "bold"), _text(row.state), _text(queue), _text(f"{elapsed:.1f} s"),
                          _text(row.job_id or ""))
        return table


class GenerationInterrupted(Exception):
    """Ctrl-C during ``generate_with_progress``; ``accepted`` lists each (vendor, job id) a vendor took."""

    def __init__(self, accepted: list[tuple[str, str]]) -> None:
        super().__init__("interrupted")
        self.accepted = accepted


def generate_with_progress(gw: Gateway, request: OviRequest, *, provider: str | None = None,
                           route: Route | None = None, idempotency_key: str | None = None,
                           emulated: bool) -> OviResult:
    """``gw.generate`` with the live progress display on stderr. Ctrl-C raises ``GenerationInterrupted``
    naming each accepted job, which may still run (and be billed) at a real vendor."""
    console = stderr_console()
    display = RunDisplay(console.print)
    try:
        from rich.live import Live  # only a generation's progress display needs it (start-up, issue 14)

        with Live(display, console=console, refresh_per_second=8, transient=False) as live:
            display.print_line = live.console.print
            return gw.generate(request, provider=provider, route=route, idempotency_key=idempotency_key,
                               on_event=display.on_event)
    except KeyboardInterrupt:
        raise GenerationInterrupted(list(display.accepted)) from None
    finally:
        if not console.is_terminal:
            console.line()  # off-terminal, Live ends its last frame without a newline
