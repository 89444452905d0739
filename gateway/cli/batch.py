"""``ovi-gateway batch FILE``: many clips from a JSON Lines or CSV file, resumable, under one spend cap.

Each row runs under an idempotency key scoped to the batch file (``batch-<id>-<row key>``), so rerunning
the same command pays nothing again for rows already done and finishes jobs already paid for. Rows run
``--concurrency`` at a time; ``--max-spend`` is a ``Budget`` over this batch's clips (each submit reserves
its quote, settled at the vendor's reported cost). Columns: ``gateway.cli.batch_rows``.

Report (``--report``, default ``<out-dir>/<file stem>.report.json``; on stdout with ``--json``), schema
``gateway/cli/batch-report.schema.json``: ``batch``, ``batch_id``, ``emulated``, ``exit_code``, ``totals``
(rows, done, failed, unsettled, bad, over_budget, paid_now, cost_usd) and ``rows``: per row ``line``,
``key``, ``status`` (done, failed, unsettled, over-budget, bad), ``vendor``, ``job_id``, ``cost_usd``,
``cost_source``, ``file``, ``error``, ``paid_now`` (whether this run paid for it).

Exit codes: 0 every row done; 4 some row's paid job is unsettled (rerun to finish it); 3 some row failed
or was over the spend cap; 2 only bad rows kept it from all done (each reported with its line number).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
from decimal import Decimal
from pathlib import Path
from typing import Any

import click
from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table
from rich.text import Text

from gateway.cli import render
from gateway.cli.batch_rows import BadRow, Row, read_rows, safe_name
from gateway.cli.common import (
    UNSETTLED,
    echo_json,
    fail,
    open_gateway,
    reports_errors,
    run_options,
)
from gateway.cli.generate import derive_key, fetch, file_sha256, resume_command
from gateway.client import Gateway
from gateway.errors import BudgetExceeded, GatewayError
from gateway.jobs.many import ManyOutcome, run_many
from gateway.request import OviRequest
from gateway.result import OviResult
from gateway.routing.planner import Route
from gateway.routing.pricing import Budget

__all__ = ["batch"]

SCHEMA = "ovi-gateway.batch-report/1"


class _Tally:
    """Counts for the live progress line."""

    def __init__(self, total: int) -> None:
        self.total, self.done, self.failed, self.running = total, 0, 0, 0
        self.spent = Decimal(0)

    def line(self) -> str:
        return (f"{self.done} done · {self.failed} failed · {self.running} running · "
                f"{render.money(self.spent)} spent")


def _entry(row: Row | BadRow, key: str | None, status: str, **fields: Any) -> dict[str, Any]:
    return {"line": row.line, "key": key, "status": status, "vendor": None, "job_id": None, "cost_usd": None,
            "cost_source": None, "file": None, "error": None, "paid_now": False, **fields}


def _done_entry(row: Row, key: str, result: OviResult, saved: Path, paid_now: bool) -> dict[str, Any]:
    return _entry(row, key, "done", vendor=result.provider, job_id=result.job_id,
                  cost_usd=None if result.cost_usd is None else str(result.cost_usd), cost_source=result.cost_source,
                  file=str(saved), paid_now=paid_now)


@click.command()
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--concurrency", type=click.IntRange(min=1), default=4, show_default=True,
              help="Clips generated at the same time.")
@click.option("--out-dir", type=click.Path(file_okay=False, path_type=Path), default=Path("."), show_default=True,
              help="Folder for the clips (a row's `out` is relative to it).")
@click.option("--max-spend", metavar="USD", help="Spend cap for this batch (all its runs): each submit reserves "
                                                  "its quote, settled at the vendor's reported cost.")
@click.option("--report", "report_path", type=click.Path(dir_okay=False, path_type=Path),
              help="Where to write the JSON report (default: <out-dir>/<file stem>.report.json).")
@click.option("--provider", help="Run every row on this vendor only (a row's route.provider wins).")
@click.option("--force", is_flag=True, help="Overwrite existing files that are not the row's recorded clip.")
@run_options
@reports_errors
def batch(file: Path, concurrency: int, out_dir: Path, max_spend: str | None, report_path: Path | None,
          provider: str | None, force: bool, emulator: bool, emulator_url: str | None, faults: str | None,
          journal: str | None, as_json: bool) -> None:
    """Make many clips from a JSON Lines or CSV file; rerun to resume.

    One row per clip: a column per request field (prompt, image, seed, steps, …), route fields
    prefixed `route.`, optional `key` and `out`. Image paths are relative to the file's folder. Shows
    live progress, then a summary table, and writes a JSON report. Exit 0 all done, 3 some failed,
    4 some unsettled (rerun to finish), 2 only bad rows."""
    ctx = click.get_current_context()
    try:
        rows, bad = read_rows(file)
    except ValueError as error:
        fail(f"{file}: {error}", 2)
    limit = _usd(max_spend)
    _check_folder(out_dir)
    batch_id = hashlib.sha256(str(file.resolve()).encode()).hexdigest()[:12]
    prefix = f"batch-{batch_id}-"
    gw = open_gateway(emulator=emulator, journal=journal, faults=faults, emulator_url=emulator_url)
    if limit is not None:
        # The batch's own cap (its named scope), beside any budget the gateway already has.
        kept = [] if gw.budget is None else [gw.budget] if isinstance(gw.budget, Budget) else list(gw.budget)
        gw.budget = [*kept, Budget(limit_usd=limit, period="total", scope=prefix)]
    entries: dict[int, dict[str, Any]] = {b.line: _entry(b, None, "bad", error=b.error) for b in bad}
    for b in bad:
        click.echo(f"{file}:{b.line}: skipped: {b.error}", err=True)
    pending: list[tuple[Row, str, Path]] = []
    seen: dict[str, int] = {}
    for row in rows:
        key, target = _key_and_target(row, prefix, out_dir)
        if key in seen:
            entries[row.line] = _entry(row, key, "bad", error=f"same request and output as line {seen[key]}; "
                                                              "give the row its own key or out")
            click.echo(f"{file}:{row.line}: skipped: {entries[row.line]['error']}", err=True)
            continue
        seen[key] = row.line
        entry = _precheck(gw, row, key, target, force)
        if entry is not None:
            entries[row.line] = entry
            if entry["status"] == "bad":
                click.echo(f"{file}:{row.line}: skipped: {entry['error']}", err=True)
        else:
            pending.append((row, key, target))
    resume = None if ctx.meta.get("ovi.emulated") and not ctx.meta.get("ovi.loopback") else (
        resume_command(ctx, "", derived=True))
    try:
        asyncio.run(_run(gw, pending, provider, concurrency, entries, prefix))
    except KeyboardInterrupt:
        report = _report(file, batch_id, gw, entries, rows, bad, 130)
        _write(report, report_path or out_dir / f"{file.stem}.report.json")
        fail("interrupted", 130, *(["rerun the same command to resume (nothing done is paid again): " + resume]
                                   if resume else []), extra={"resume": resume})
    code = _exit_code(entries)
    report = _report(file, batch_id, gw, entries, rows, bad, code)
    written = _write(report, report_path or out_dir / f"{file.stem}.report.json")
    if as_json:
        echo_json(report)
    else:
        render.stdout_console().print(_table(report))
        click.echo(f"report: {written}", err=True)
    if code == 4 and resume:
        click.echo(f"some paid jobs are unsettled; to finish them without paying again, run: {resume}", err=True)
    ctx.exit(code)


def _usd(text: str | None) -> Decimal | None:
    if text is None:
        return None
    try:
        value = Decimal(text)
    except ArithmeticError:
        value = Decimal(-1)
    if not value.is_finite() or value < 0:
        raise click.BadParameter(f"{text!r} is not a USD amount", param_hint="--max-spend")
    return value


def _check_folder(out_dir: Path) -> None:
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        probe = out_dir / f".ovi-probe-{time.monotonic_ns()}"
        probe.touch()
        probe.unlink()
    except OSError as error:
        fail(f"--out-dir {out_dir}: cannot write there ({error.strerror or error}); nothing was paid", 2)


def _key_and_target(row: Row, prefix: str, out_dir: Path) -> tuple[str, Path]:
    ext = (row.request.output_format or "MP4").lower()
    if row.key is not None:
        key = prefix + row.key
        return key, out_dir / (row.out or f"{safe_name(row.key)}.{ext}")
    if row.out is not None:
        target = out_dir / row.out
        return prefix + derive_key(row.request, target).removeprefix("cli-"), target
    hexed = derive_key(row.request, None).removeprefix("cli-")
    return prefix + hexed, out_dir / f"ovi-{hexed[:16]}.{ext}"


def _recorded(gw: Gateway, key: str) -> tuple[OviResult | None, dict[str, Any]]:
    clip = gw.journal.get_clip(key) if gw.journal is not None else None
    if clip is None or clip.state != "succeeded" or not clip.result_json:
        return None, {}
    result = OviResult.model_validate_json(clip.result_json)
    return (result.model_copy(update={"emulated": True}) if gw.emulated else result), (clip.media or {})


def _precheck(gw: Gateway, row: Row, key: str, target: Path, force: bool) -> dict[str, Any] | None:
    """A row that needs no run: its clip is already saved (done), or its output file is someone else's (bad)."""
    if not target.exists() or force:
        return None
    result, media = _recorded(gw, key)
    if result is not None and media.get("sha256") == file_sha256(target):
        return _done_entry(row, key, result, target, paid_now=False)
    return _entry(row, key, "bad", file=str(target), error=f"{target} exists and is not this row's recorded clip; "
                                                           "kept (pass --force to overwrite)")


async def _run(gw: Gateway, pending: list[tuple[Row, str, Path]], provider: str | None, concurrency: int,
               entries: dict[int, dict[str, Any]], prefix: str) -> None:
    by_key = {key: (row, target) for row, key, target in pending}
    tally = _Tally(len(pending))
    # Vendor jobs on record before this run: a clip delivered by one of them was paid for earlier.
    paid_before = {key: {s.job_id for s in gw.journal.submits(key) if s.job_id} if gw.journal is not None else set()
                   for key in by_key}

    async def generate(request: OviRequest, key: str | None) -> OviResult:
        assert key is not None
        row, _ = by_key[key]
        route = Route.model_validate({**({"provider": provider} if provider else {}), **row.route})
        tally.running += 1
        try:
            return await gw.agenerate(request, route=route, idempotency_key=key)
        finally:
            tally.running -= 1

    console = render.stderr_console()
    columns = (TextColumn("batch"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
               TextColumn("{task.fields[tally]}"), TextColumn("ETA"), TimeRemainingColumn())
    try:
        with Progress(*columns, console=console, transient=False) as progress:
            task = progress.add_task("batch", total=len(pending), tally=tally.line())
            outcomes = run_many(generate, [r.request for r, _, _ in pending], keys=[k for _, k, _ in pending],
                                concurrency=concurrency)
            async for outcome in outcomes:
                row, target = by_key[outcome.key or ""]
                entry = await _settle(gw, row, outcome, target, paid_before)
                entries[row.line] = entry
                if entry["status"] == "done":
                    tally.done += 1
                else:
                    tally.failed += 1
                if gw.journal is not None:
                    tally.spent = gw.journal.reserved_and_spent(clip_prefix=prefix)
                progress.update(task, advance=1, tally=tally.line())
    finally:
        await gw.aclose()


async def _settle(gw: Gateway, row: Row, outcome: ManyOutcome, target: Path,
                  paid_before: dict[str, set[str]]) -> dict[str, Any]:
    key = outcome.key or ""
    if outcome.result is None:
        error = outcome.error
        status = ("unsettled" if isinstance(error, UNSETTLED) else
                  "over-budget" if isinstance(error, BudgetExceeded) else "failed")
        job = getattr(error, "job", None)
        return _entry(row, key, status, vendor=getattr(error, "provider", None),
                      job_id=getattr(job, "job_id", None) or (getattr(error, "job_hint", None) or {}).get("job_id"),
                      error=render.error_line(error) if isinstance(error, GatewayError) else str(error))
    result = outcome.result
    try:
        saved = await asyncio.to_thread(fetch, result, target, gw, key)
    except Exception as error:  # a paid clip that did not download: say so, the rerun fetches it again
        return _entry(row, key, "failed", vendor=result.provider, job_id=result.job_id,
                      error=render.one_line(f"made but not downloaded: {type(error).__name__}: {error}"))
    return _done_entry(row, key, result, saved, paid_now=result.job_id not in paid_before.get(key, set()))


def _exit_code(entries: dict[int, dict[str, Any]]) -> int:
    statuses = {e["status"] for e in entries.values()}
    if "unsettled" in statuses:
        return 4
    if statuses & {"failed", "over-budget"}:
        return 3
    if "bad" in statuses or not entries:
        return 2
    return 0


def _report(file: Path, batch_id: str, gw: Gateway, entries: dict[int, dict[str, Any]], rows: list[Row],
            bad: list[BadRow], code: int) -> dict[str, Any]:
    ordered = [entries[line] for line in sorted(entries)]
    count = {status: sum(e["status"] == status for e in ordered)
             for status in ("done", "failed", "unsettled", "over-budget", "bad")}
    cost = sum((Decimal(e["cost_usd"]) for e in ordered if e["status"] == "done" and e["cost_usd"]), Decimal(0))
    return {"schema": SCHEMA, "batch": str(file), "batch_id": batch_id, "emulated": gw.emulated, "exit_code": code,
            "totals": {"rows": len(rows) + len(bad), "done": count["done"], "failed": count["failed"],
                       "unsettled": count["unsettled"], "over_budget": count["over-budget"], "bad": count["bad"],
                       "paid_now": sum(bool(e["paid_now"]) for e in ordered), "cost_usd": str(cost)},
            "rows": ordered}


def _write(report: dict[str, Any], path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    tmp.replace(path)
    return path


def _table(report: dict[str, Any]) -> Table:
    totals = report["totals"]
    table = Table(title=f"Batch {report['batch']}: {totals['done']}/{totals['rows']} done, "
                        f"{render.money(Decimal(totals['cost_usd']))}", title_justify="left")
    for column in ("line", "status", "vendor", "cost", "job id", "file", "error"):
        table.add_column(column)
    styles = {"done": "green", "failed": "red", "unsettled": "yellow", "over-budget": "yellow", "bad": "red"}
    for e in report["rows"]:
        cost = render.money(Decimal(e["cost_usd"])) if e["cost_usd"] else "—"
        table.add_row(Text(str(e["line"])), Text(e["status"] + ("" if e["paid_now"] or e["status"] != "done"
                                                                 else " (earlier)"), style=styles[e["status"]]),
                      Text(e["vendor"] or "—"), Text(cost), Text(_cut(e["job_id"] or "—", 13)),
                      Text(_cut(Path(e["file"]).name if e["file"] else "", 22)),
                      Text(render.one_line(e["error"] or "", 36)))
    return table


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[:limit - 1] + "…"
