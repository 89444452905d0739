"""The ``ovi-gateway`` command: quote, generate, providers, emulate, jobs, spend and demo.

With no vendor API key in the environment, ``quote``, ``generate`` and ``demo`` run against the built-in
emulator and say so on stderr; with any key set they use only the real vendors that have one.

Exit codes: 0 ok; 2 usage or invalid request; 3 vendor or generation failure; 4 a paid job may exist
but its outcome is unsettled (finish it with ``ovi-gateway jobs resume``); 130 interrupted.
"""

from __future__ import annotations

import base64
import functools
import json
import os
import tempfile
import threading
from collections.abc import Callable
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any, NoReturn

import click
import httpx
from pydantic import ValidationError

from gateway.cli import render
from gateway.client import Gateway
from gateway.errors import DeadlineExceeded, GatewayError, InvalidRequest, JobUnresolved, SubmitOutcomeUnknown
from gateway.jobs.polling import PollPolicy
from gateway.registry import Registry
from gateway.request import OviRequest
from gateway.result import OviResult
from gateway.routing.planner import Route
from gateway.routing.pricing import Quote
from gateway.store.journal import Journal

__all__ = ["cli", "main"]

EMULATOR_NOTICE = "no vendor API keys set: using the built-in emulator (offline); nothing is billed"
JOB_SECONDS_ENV = "OVI_GATEWAY_EMULATOR_JOB_SECONDS"
"""Hidden: a fixed emulated job time (seconds) for ``quote``/``generate``/``demo`` in emulator mode."""
SAMPLE_PROMPT = "A knight in the rain. <S>I will defend this land.<E> <AUDCAP>Thunder, war drums.<ENDAUDCAP>"
SAMPLE_PNG = base64.b64decode(  # 8x8 grey PNG
    "iVBORw0KGgoAAAANSUhEUgAAAAgAAAAIAQMAAAD+wSzIAAAABlBMVEX///+/v7+jQ3Y5AAAADklEQVQI12P4AIX8EAgALgAD/aNpbtEAAAAASUVORK5CYII=")
_UNSETTLED = (SubmitOutcomeUnknown, JobUnresolved, DeadlineExceeded)


# ---- errors and exit codes ---------------------------------------------------------------------
def _fail(message: str, code: int, *details: str) -> NoReturn:
    click.echo(f"error: {render.one_line(message)}", err=True)
    for line in details:
        click.echo(f"  {line}", err=True)
    click.get_current_context().exit(code)


def reports_errors(command: Callable[..., Any]) -> Callable[..., Any]:
    """Turn gateway errors into one line on stderr and the documented exit code."""

    @functools.wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return command(*args, **kwargs)
        except KeyboardInterrupt:
            _fail("interrupted", 130)
        except ValidationError as error:
            _fail(render.validation_line(error), 2)
        except _UNSETTLED as error:
            emulated = bool(click.get_current_context().meta.get("ovi.emulated"))
            _fail(render.error_line(error), 4, *render.attempt_lines(error), *render.unsettled_lines(error, emulated))
        except InvalidRequest as error:
            _fail(render.one_line(str(error)), 2)
        except GatewayError as error:
            _fail(render.error_line(error), 3, *render.attempt_lines(error))

    return wrapper


# ---- building requests and gateways ------------------------------------------------------------
def request_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """The OviRequest fields as flags, plus ``--request FILE`` (JSON with the same fields; flags win)."""
    options = [
        click.option("--request", "request_file", type=click.Path(exists=True, dir_okay=False, path_type=Path),
                     help="JSON file with OviRequest fields (flags override it)."),
        click.option("--prompt", help="Ovi prompt: scene, <S>speech<E>, one <AUDCAP>sound<ENDAUDCAP>."),
        click.option("--image", help="https URL, data URI, base64 or local file (omit for text-to-video)."),
        click.option("--seed", type=int),
        click.option("--steps", type=int, help="Inference steps (vendor default when omitted)."),
        click.option("--negative-prompt", help="What to keep out of the video."),
        click.option("--audio-negative-prompt", help="What to keep out of the audio."),
        click.option("--video-guidance", type=float),
        click.option("--audio-guidance", type=float),
        click.option("--slg-layer", type=int),
        click.option("--fps", type=int),
        click.option("--output-format", type=click.Choice(["MP4", "WEBM", "MOV"], case_sensitive=False)),
        click.option("--output-quality", type=int),
        click.option("--size", help="Text-to-video frame size, WIDTHxHEIGHT."),
    ]
    for option in reversed(options):
        command = option(command)
    return command


def build_request(request_file: Path | None, **flags: Any) -> OviRequest:
    """The request from ``--request`` JSON and the flags; raises ``ValidationError`` when invalid."""
    data: dict[str, Any] = {}
    if request_file is not None:
        try:
            data = json.loads(request_file.read_text(encoding="utf-8"))
        except (ValueError, OSError) as error:
            raise click.BadParameter(f"cannot read a JSON object from it: {error}", param_hint="--request") from None
        if not isinstance(data, dict):
            raise click.BadParameter("must hold a JSON object of OviRequest fields", param_hint="--request")
    if flags.get("output_format"):
        flags["output_format"] = flags["output_format"].upper()
    data.update({name: value for name, value in flags.items() if value is not None})
    if "prompt" not in data:
        raise click.UsageError("give a prompt: --prompt TEXT, or --request FILE with a \"prompt\" field")
    return OviRequest.model_validate(data)


def make_emulator(faults: str | None, job_time: Callable[[Any], float] | None = None) -> Any:
    """An ``Emulator`` with a fault spec and a job-time draw (``None``: its default 45–75 s) whose clips
    show the request's own image (rendered on download when PyAV is installed); a bad fault spec is a
    usage error."""
    from gateway.emulator import Emulator

    try:
        return Emulator(faults=faults or None, job_time=job_time, render_media=True)
    except ValueError as error:
        raise click.BadParameter(str(error), param_hint="--faults") from None


def _keyed_vendors(registry: Registry) -> list[str]:
    return [name for name, cls in registry.classes.items() if os.environ.get(cls.env_key)]


def open_gateway(*, emulator: bool, journal: str | None, faults: str | None = None,
                 notice: str | None = None) -> Gateway:
    """The gateway for ``quote``/``generate``/``demo``: the emulator when forced or when no key is set,
    else only the real vendors that have keys. Says which on stderr (``notice`` overrides the emulator
    line; ``""`` says nothing); never mixes the two."""
    registry = Registry.load()
    keyed = _keyed_vendors(registry)
    if emulator or not keyed:
        if notice is None:
            notice = EMULATOR_NOTICE if not keyed else "--emulator: using the built-in emulator (offline); " \
                                                       "nothing is billed"
        if notice:
            click.echo(notice, err=True)
        click.get_current_context().meta["ovi.emulated"] = True
        fixed = float(os.environ[JOB_SECONDS_ENV]) if os.environ.get(JOB_SECONDS_ENV) else None
        job_time = (lambda rng: rng.uniform(2.0, 4.0)) if fixed is None else (lambda rng: fixed)
        expected = 3.0 if fixed is None else max(fixed, 0.01)
        # Emulated jobs take seconds, not a minute: poll and back off on the same short scale.
        return Gateway(registry=registry, emulator=make_emulator(faults, job_time), journal=journal or ":memory:",
                       poll=PollPolicy(expected=expected, interval=min(0.5, expected), min_interval={}),
                       backoff_base=min(1.0, expected / 10))
    if faults:
        raise click.UsageError("--faults applies to the emulator only (add --emulator)")
    click.echo(f"using the real vendors with API keys: {', '.join(keyed)} (billed); "
               "vendors without a key are not used", err=True)
    return Gateway(registry=registry, **_journal_arg(journal))


def _journal_arg(journal: str | None) -> dict[str, Any]:
    """``journal=`` only when given, so the gateway's default journal applies otherwise."""
    return {} if journal is None else {"journal": journal}


def _blocked(gw: Gateway) -> dict[str, str | None]:
    """Per vendor, why it cannot be used at all here (no key), or ``None``."""
    keys = gw.configured()
    return {name: None if keys[name] else f"no API key (set {cls.env_key})" for name, cls in gw.classes.items()}


def cheapest_usable(quotes: list[Quote], blocked: dict[str, str | None]) -> Quote | None:
    """The first feasible, priced quote of a usable vendor (quotes come cheapest first)."""
    return next((q for q in quotes if q.feasible and q.price_usd is not None and not blocked.get(q.provider)), None)


def _names(value: str | None, gw: Gateway, flag: str) -> list[str]:
    names = [n.strip() for n in (value or "").split(",") if n.strip()]
    unknown = [n for n in names if n not in gw.classes]
    if unknown:
        raise click.BadParameter(f"unknown vendor {', '.join(unknown)}; installed: {', '.join(gw.classes)}",
                                 param_hint=flag)
    return names


def _download(result: OviResult, out: Path, gw: Gateway) -> Path:
    try:
        return gw.download(result, out)
    except (httpx.HTTPError, OSError) as error:
        _fail(f"download of {result.video_url} failed: {error}", 3,
              "the clip is made (and paid); fetch it from that URL before it expires")


def _echo_json(value: Any) -> None:
    click.echo(json.dumps(value, indent=2, default=str))


journal_option = click.option(
    "--journal", "journal", metavar="PATH",
    help="Job journal (SQLite). Default: the gateway's journal file; in emulator mode a temporary one.")
json_option = click.option("--json", "as_json", is_flag=True, help="Print JSON on stdout instead of tables.")
emulator_option = click.option("--emulator", is_flag=True, help="Use the built-in emulator even if keys are set.")
faults_option = click.option("--faults", metavar="SPEC",
                             help='Emulator fault script, e.g. "VENDOR.submit=503*3; VENDOR.job=fail".')


# ---- commands ----------------------------------------------------------------------------------
@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="ovi-gateway")
def cli() -> None:
    """Make Ovi clips on the cheapest healthy vendor (Runware, fal.ai, WaveSpeed), with failover
    that never pays twice. With no API keys set, runs offline against the built-in emulator."""


@cli.command()
@request_options
@emulator_option
@journal_option
@json_option
@reports_errors
def quote(request_file: Path | None, emulator: bool, journal: str | None, as_json: bool, **flags: Any) -> None:
    """Price a request on every vendor.

    Shows each vendor's price, whether it is estimated (compute-billed) or fixed, and whether the
    vendor can honor the request or why not."""
    request = build_request(request_file, **flags)
    gw = open_gateway(emulator=emulator, journal=journal)
    quotes, blocked = gw.quote(request), _blocked(gw)
    best = cheapest_usable(quotes, blocked)
    if as_json:
        _echo_json({"emulated": gw.emulator is not None, "cheapest": best and best.provider,
                    "quotes": [q.model_dump(mode="json") | {"usable": not blocked.get(q.provider)}
                               for q in quotes]})
        return
    console = render.stdout_console()
    console.print(render.quote_table(quotes, blocked, best.provider if best else None))
    console.print(f"cheapest: {best.provider} at {render.money(best.price_usd)}"
                  f" ({'estimated' if best.estimated else 'fixed'})" if best else "no vendor can take this request",
                  markup=False)


@cli.command()
@request_options
@click.option("--provider", help="Run on this vendor only (no failover).")
@click.option("--order", metavar="A,B", help="Try these vendors first, in this order, then the rest by price.")
@click.option("--max-price", metavar="USD", help="Leave out vendors quoting more than this per clip.")
@click.option("--allow-degrade", is_flag=True, help="Let a vendor ignore fields it cannot honor (listed as dropped).")
@click.option("--deadline", type=click.FloatRange(min=0, min_open=True), metavar="SECONDS",
              help="Give up after this many seconds (polling and backoff included).")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path),
              help="Where to save the clip (default: ./ovi-<job id>.<format>).")
@emulator_option
@faults_option
@journal_option
@json_option
@reports_errors
def generate(request_file: Path | None, provider: str | None, order: str | None, max_price: str | None,
             allow_degrade: bool, deadline: float | None, out: Path | None, emulator: bool, faults: str | None,
             journal: str | None, as_json: bool, **flags: Any) -> None:
    """Make one clip, with live progress and failover.

    Runs on the cheapest capable vendor (or as --provider/--order say), shows each vendor's state and
    every retry and failover as it happens, downloads the clip to --out and prints the result."""
    request = build_request(request_file, **flags)
    try:
        price = Decimal(max_price) if max_price is not None else None
    except InvalidOperation:
        raise click.BadParameter(f"{max_price!r} is not a USD amount", param_hint="--max-price") from None
    gw = open_gateway(emulator=emulator, journal=journal, faults=faults)
    _names(provider, gw, "--provider")
    route = Route(order=_names(order, gw, "--order") or None, max_price=price, allow_degrade=allow_degrade,
                  deadline=deadline)
    result = render.generate_with_progress(gw, request, provider=provider, route=route,
                                           emulated=gw.emulator is not None)
    target = out or Path(f"ovi-{result.job_id}.{(request.output_format or 'MP4').lower()}")
    saved = _download(result, target, gw)
    click.echo(f"saved {saved} ({saved.stat().st_size} bytes)", err=True)
    if as_json:
        _echo_json(result.model_dump(mode="json"))
    else:
        render.stdout_console().print(render.result_table(result, str(saved)))


@cli.command()
@json_option
@reports_errors
def providers(as_json: bool) -> None:
    """Installed vendors: keys, capabilities, health.

    Whether each vendor's API key is set (never the key), the modes and fields it honors with their
    limits, its breaker state, and any vendor that failed to load."""
    gw = Gateway(registry=Registry.load(), journal=None)
    keys = gw.configured()
    health = {state.provider: state for state in gw.health()}
    if as_json:
        _echo_json({"providers": [{"name": name, "env_key": cls.env_key, "key_set": keys[name],
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


@cli.command()
@click.option("--port", type=click.IntRange(0, 65535), default=8765, show_default=True,
              help="Loopback port (0 picks a free one).")
@faults_option
@click.option("--job-seconds", type=click.FloatRange(min=0), help="Each job's running time (default 45–75 s).")
def emulate(port: int, faults: str | None, job_seconds: float | None) -> None:
    """Serve the emulated vendors on loopback until Ctrl-C.

    /v1 answers as Runware, /api/v3 as WaveSpeed, /fal-ai as the fal queue."""
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


@cli.group(invoke_without_command=True)
@journal_option
@json_option
@click.pass_context
@reports_errors
def jobs(ctx: click.Context, journal: str | None, as_json: bool) -> None:
    """List unfinished submits (each may hold a paid job).

    `ovi-gateway jobs resume` re-attaches to them and finishes them instead of paying again."""
    ctx.obj = {"journal": journal, "as_json": as_json}
    if ctx.invoked_subcommand is not None:
        return
    records = Journal(journal).unfinished()
    if as_json:
        _echo_json([{k: v for k, v in vars(r).items() if k != "request_json"} for r in records])
    elif records:
        render.stdout_console().print(render.jobs_table(records))
    else:
        click.echo("no unfinished submits")


@jobs.command()
@journal_option
@json_option
@click.pass_context
@reports_errors
def resume(ctx: click.Context, journal: str | None, as_json: bool) -> None:
    """Finish every unfinished paid job instead of paying again.

    Uses the real vendors whose keys are set. Exit 4 if any job's outcome is still unknown, 3 if any failed."""
    parent = ctx.obj or {}
    path = journal or parent.get("journal")
    gw = Gateway(registry=Registry.load(), **_journal_arg(path))
    outcomes = gw.resume()
    if as_json or parent.get("as_json"):
        _echo_json([vars(o) | {"result": o.result and o.result.model_dump(mode="json")} for o in outcomes])
    elif outcomes:
        render.stdout_console().print(render.resume_table(outcomes))
    else:
        click.echo("nothing to resume")
    kinds = {o.outcome for o in outcomes}
    ctx.exit(4 if "unknown" in kinds else 3 if "failed" in kinds else 0)


@cli.command()
@journal_option
@click.option("--since", type=click.DateTime(["%Y-%m-%d"]), help="Only submits from this UTC day on.")
@json_option
@reports_errors
def spend(journal: str | None, since: Any, as_json: bool) -> None:
    """Spend per vendor and day, estimated vs reported.

    From the journal: estimated is the quotes of clips whose vendor reports no cost, reported is what
    the vendors billed; possibly billed counts failed-maybe-billed and unsettled submits."""
    from datetime import UTC

    rows = Journal(journal).spend(since=since.replace(tzinfo=UTC) if since else None)
    if as_json:
        _echo_json([vars(r) for r in rows])
    else:
        render.stdout_console().print(render.spend_table(rows))


@cli.command()
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), default=Path("ovi-demo.mp4"),
              show_default=True, help="Where to save the clip.")
@reports_errors
def demo(out: Path) -> None:
    """Offline tour: quote, staged outage, failover.

    Against the built-in emulator: quotes a sample clip, explains which vendor is cheapest, makes that
    vendor fail its submits with HTTP 503, and shows the run fail over and finish elsewhere."""
    console = render.stdout_console()
    with tempfile.TemporaryDirectory(prefix="ovi-demo-") as folder:
        image = Path(folder) / "knight.png"
        image.write_bytes(SAMPLE_PNG)
        request = OviRequest(prompt=SAMPLE_PROMPT, image=image)
        quoting = open_gateway(emulator=True, journal=None,
                               notice="demo: using the built-in emulator (offline); nothing is billed")
        quotes = quoting.quote(request)
        best = cheapest_usable(quotes, _blocked(quoting))
        if best is None:
            _fail("no vendor can take the sample request", 3)
        console.print(render.quote_table(quotes, {}, best.provider))
        console.print(render.why_cheapest(quoting.book, request, quotes, best), markup=False)
        faults = f"{best.provider}.submit=503*3"
        console.print(f"staging an outage: {best.provider} answers its next 3 submits with HTTP 503 "
                      f"(--faults \"{faults}\")", markup=False)
        gw = open_gateway(emulator=True, journal=None, faults=faults, notice="")
        result = render.generate_with_progress(gw, request, emulated=True)
        saved = _download(result, out, gw)
    console.print(render.result_table(result, str(saved)))
    failed_over = result.provider != best.provider
    console.print(f"done: {'failed over from ' + best.provider + ' to ' if failed_over else 'made on '}"
                  f"{result.provider}; clip saved to {saved}", markup=False)


def main() -> None:
    """Entry point of the ``ovi-gateway`` script."""
    cli(prog_name="ovi-gateway")
