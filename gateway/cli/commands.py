"""The ``ovi-gateway`` command: quote, generate, providers, emulate, jobs, spend and demo (``generate`` and
``demo`` live in ``gateway.cli.generate``, shared options and error reporting in ``gateway.cli.common``).

With no vendor API key in the environment, ``quote``, ``generate`` and ``demo`` run against the built-in
emulator and say so on stderr; with any key set they use only the real vendors that have one.

Exit codes: 0 ok; 2 usage, invalid request, configuration or no route; 3 vendor or generation failure;
4 a paid job may exist but its outcome is unsettled (rerun the command, or ``ovi-gateway jobs resume``);
130 interrupted.
"""

from __future__ import annotations

import threading
from datetime import timedelta
from pathlib import Path
from typing import Any

import click

from gateway.cli import cli, main, render
from gateway.cli.common import (
    EMULATOR_NOTICE,
    JOB_SECONDS_ENV,
    build_request,
    cheapest_usable,
    echo_json,
    emulator_option,
    emulator_url_option,
    faults_option,
    journal_option,
    json_option,
    make_emulator,
    open_gateway,
    open_journal,
    quote_setup,
    reports_errors,
    request_options,
)
from gateway.registry import Registry
from gateway.routing.quoting import quotes_for, ranked

__all__ = ["cli", "emulate", "jobs", "main", "providers", "quote", "spend"]

# Re-exported for tests and callers of the old single module.
__all__ += ["EMULATOR_NOTICE", "JOB_SECONDS_ENV", "build_request", "cheapest_usable", "open_gateway"]


# ---- commands (each loads on use through the lazy group in gateway.cli) ----------------------
@click.command()
@request_options
@emulator_option
@click.option("--journal", "journal", metavar="PATH",
              help="Job journal whose recent reported costs calibrate estimated prices (read only, and only "
                   "if it exists). Default: the gateway's journal file; with the emulator the offline journal.")
@json_option
@reports_errors
def quote(request_file: Path | None, emulator: bool, journal: str | None, as_json: bool, **flags: Any) -> None:
    """Price a request on every vendor.

    Shows each vendor's price, whether it is estimated (compute-billed) or fixed, and whether the
    vendor can honor the request or why not."""
    request = build_request(request_file, **flags)
    setup = quote_setup(emulator=emulator, journal=journal)
    quotes, unusable = ranked(quotes_for(setup.classes, setup.book, request).values()), setup.unusable
    best = cheapest_usable(quotes, unusable)
    if as_json:
        echo_json({"emulated": setup.emulated, "cheapest": best and best.provider,
                    "quotes": [q.model_dump(mode="json") | {"usable": not unusable.get(q.provider)}
                               for q in quotes]})
        return
    console = render.stdout_console()
    console.print(render.quote_table(quotes, unusable, best.provider if best else None))
    console.print(f"cheapest: {best.provider} at {render.money(best.price_usd)}"
                  f" ({'estimated' if best.estimated else 'fixed'})" if best else "no vendor can take this request",
                  markup=False)


@click.command()
@json_option
@reports_errors
def providers(as_json: bool) -> None:
    """Installed vendors: keys, capabilities, health.

    Whether each vendor's API key is set (never the key), the modes and fields it honors with their
    limits, its breaker state, and any vendor that failed to load."""
    from gateway.client import Gateway

    gw = Gateway(registry=Registry.load(), journal=None)
    keys = gw.configured()
    health = {state.provider: state for state in gw.health()}
    if as_json:
        echo_json({"providers": [{"name": name, "env_key": cls.env_key, "key_set": keys[name],
                                   "health": health[name].state,
                                   "capabilities": render.capabilities_json(cls.capabilities)}
                                  for name, cls in gw.classes.items()], "load_failures": gw.load_failures})
        return
    console = render.stdout_console()
    console.print(render.providers_table(gw.classes, keys, health))
    for name, failure in gw.load_failures.items():
        console.print(f"failed to load {name}: {failure}", style="red", markup=False)


def block_until_interrupted(server: Any) -> None:
    """Wait for Ctrl-C (tests replace this)."""
    threading.Event().wait()


@click.command()
@click.option("--port", type=click.IntRange(0, 65535), default=8765, show_default=True,
              help="Loopback port (0 picks a free one).")
@faults_option
@click.option("--job-seconds", type=click.FloatRange(min=0), help="Each job's running time (default 45–75 s).")
def emulate(port: int, faults: str | None, job_seconds: float | None) -> None:
    """Serve the emulated vendors on loopback until Ctrl-C.

    /v1 answers as Runware (REST, and its WebSocket for the official SDK at ws://127.0.0.1:PORT/v1),
    /api/v3 as WaveSpeed, /fal-ai as the fal queue, /fal-run as fal's synchronous fal.run."""
    emu = make_emulator(faults, None if job_seconds is None else (lambda rng: job_seconds))
    try:
        server = emu.serve(port)
    except OSError as error:
        raise click.BadParameter(f"cannot listen on 127.0.0.1:{port}: {error.strerror or error}",
                                 param_hint="--port") from None
    from gateway.emulator.server import ROUTES

    click.echo("\n".join(render.emulator_banner(f"http://127.0.0.1:{server.server_port}", faults, ROUTES)))
    try:
        block_until_interrupted(server)
    except KeyboardInterrupt:
        click.echo("emulator stopped", err=True)
        click.get_current_context().exit(130)
    finally:
        server.shutdown()
        server.server_close()


@click.group(invoke_without_command=True)
@journal_option
@json_option
@click.pass_context
@reports_errors
def jobs(ctx: click.Context, journal: str | None, as_json: bool) -> None:
    """List unfinished submits (each may hold a paid job), abandoned ones (may have been billed), and
    finished clips not yet downloaded.

    `ovi-gateway jobs resume` re-attaches to unfinished jobs and finishes them instead of paying again.
    A finished clip lives at the vendor's URL only until its retention ends (shown when documented):
    download it before then. JSON: {"unfinished": [...], "not_downloaded": [...]}."""
    ctx.obj = {"journal": journal, "as_json": as_json}
    if ctx.invoked_subcommand is not None:
        return
    opened = open_journal(journal)
    records, pending = opened.unfinished() + opened.abandoned_submits(), opened.undownloaded()
    if as_json:
        echo_json({"unfinished": [{k: v for k, v in vars(r).items() if k != "request_json"} for r in records],
                   "not_downloaded": [vars(p) for p in pending]})
        return
    console = render.stdout_console()
    if records:
        console.print(render.jobs_table(records))
    else:
        click.echo("no unfinished submits")
    if pending:
        console.print(render.pending_table(pending))


@jobs.command()
@journal_option
@emulator_url_option
@json_option
@click.pass_context
@reports_errors
def resume(ctx: click.Context, journal: str | None, emulator_url: str | None, as_json: bool) -> None:
    """Finish every unfinished paid job instead of paying again.

    Uses the real vendors whose keys are set (or, with --emulator-url, that loopback emulator's jobs).
    Exit 4 if any job's outcome is still unknown, 3 if any failed."""
    parent = ctx.obj or {}
    path = journal or parent.get("journal")
    if emulator_url:
        gw = open_gateway(emulator=True, journal=path, emulator_url=emulator_url)
    else:
        from gateway.client import Gateway

        gw = Gateway(registry=Registry.load(), journal=open_journal(path))
    outcomes = gw.resume()
    if as_json or parent.get("as_json"):
        echo_json([vars(o) | {"result": o.result and o.result.model_dump(mode="json")} for o in outcomes])
    elif outcomes:
        render.stdout_console().print(render.resume_table(outcomes))
    else:
        click.echo("nothing to resume")
    kinds = {o.outcome for o in outcomes}
    ctx.exit(4 if "unknown" in kinds else 3 if "failed" in kinds else 0)


def _age(text: str) -> timedelta:
    """``30d``, ``12h``, ``90m``, ``3600s`` or ``2w`` as a timedelta."""
    units = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}
    number, unit = text[:-1], text[-1:].lower()
    if unit not in units or not number.replace(".", "", 1).isdigit():
        raise click.BadParameter(f"{text!r}: expected a number and a unit (s, m, h, d, w), e.g. 30d")
    return timedelta(**{units[unit]: float(number)})


@jobs.command()
@journal_option
@click.option("--older-than", "older_than", required=True, metavar="AGE",
              help="Delete finished rows last changed more than AGE ago: 30d, 12h, 90m, 2w.")
@json_option
@click.pass_context
@reports_errors
def prune(ctx: click.Context, journal: str | None, older_than: str, as_json: bool) -> None:
    """Delete finished clips, their submits and unused stored images older than AGE.

    A clip with an unfinished (possibly paid) job is never deleted."""
    parent = ctx.obj or {}
    age = _age(older_than)
    counts = open_journal(journal or parent.get("journal")).prune(age)
    if as_json or parent.get("as_json"):
        echo_json(counts)
    else:
        click.echo(", ".join(f"{n} {table}" for table, n in counts.items()) + " deleted")


@click.command()
@journal_option
@click.option("--since", type=click.DateTime(["%Y-%m-%d"]), help="Only submits from this UTC day on.")
@json_option
@reports_errors
def spend(journal: str | None, since: Any, as_json: bool) -> None:
    """Spend per vendor and day, estimated vs reported.

    From the journal: estimated is the quotes of clips whose vendor reports no cost, reported is what
    the vendors billed; possibly billed counts failed-maybe-billed and unsettled submits."""
    from datetime import UTC

    rows = open_journal(journal).spend(since=since.replace(tzinfo=UTC) if since else None)
    if as_json:
        echo_json([vars(r) for r in rows])
    else:
        render.stdout_console().print(render.spend_table(rows))


