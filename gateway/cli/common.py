"""What the ``ovi-gateway`` commands share: exit codes and error reporting (text or one JSON object),
request flags, and opening a gateway on the real vendors, the built-in emulator or a loopback one.

Exit codes: 0 ok; 2 usage, invalid request, configuration or no route; 3 vendor or generation failure;
4 a paid job may exist but its outcome is unsettled; 130 interrupted.
"""

from __future__ import annotations

import functools
import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn, TypeVar

import click
from pydantic import ValidationError

from gateway.cli import render
from gateway.errors import (
    ConfigurationError,
    DeadlineExceeded,
    GatewayError,
    InvalidRequest,
    JobUnresolved,
    NoRoute,
    SubmitOutcomeUnknown,
)
from gateway.registry import Registry
from gateway.request import OviRequest
from gateway.routing.pricing import PriceBook, Quote
from gateway.routing.quoting import calibrate_from

# The client (with the runner's modules and asyncio) loads where a command makes a gateway, the store (and
# SQLite) where a journal opens: a quote needs neither (start-up, issue 14).
if TYPE_CHECKING:
    from gateway.client import Gateway
    from gateway.contract import Provider
    from gateway.store.journal import Journal

__all__ = [
    "EMULATOR_NOTICE",
    "JOB_SECONDS_ENV",
    "Interrupted",
    "QuoteSetup",
    "build_request",
    "cheapest_usable",
    "echo_json",
    "fail",
    "open_gateway",
    "open_journal",
    "quote_setup",
    "reports_errors",
    "request_options",
    "run_options",
]

EMULATOR_NOTICE = "no vendor API keys set: using the built-in emulator (offline); nothing is billed"
JOB_SECONDS_ENV = "OVI_GATEWAY_EMULATOR_JOB_SECONDS"
"""Hidden: a fixed emulated job time (seconds) for ``quote``/``generate``/``demo`` in emulator mode."""
UNSETTLED = (SubmitOutcomeUnknown, JobUnresolved, DeadlineExceeded)


class Interrupted(Exception):
    """Ctrl-C during a generation; ``jobs`` are the (vendor, job id) pairs accepted before it."""

    def __init__(self, jobs: list[tuple[str, str]]) -> None:
        super().__init__("interrupted")
        self.jobs = jobs


# ---- errors and exit codes ---------------------------------------------------------------------
def fail(message: str, code: int, *details: str, error: BaseException | None = None,
         extra: dict[str, Any] | None = None) -> NoReturn:
    """End the command: one ``error:`` line (and detail lines) on stderr, exit ``code``. Under ``--json``,
    also one JSON object on stdout: error type, message, job id and vendor when known, ``emulated``,
    ``saved_to`` (null), the exit code, and whatever ``extra`` adds (a resume command)."""
    ctx = click.get_current_context()
    click.echo(f"error: {render.one_line(message)}", err=True)
    for line in details:
        click.echo(f"  {line}", err=True)
    if ctx.meta.get("ovi.json"):
        job = getattr(error, "job", None)
        hint = getattr(error, "job_hint", None) or {}
        echo_json({"ok": False, "error": type(error).__name__ if error is not None else "Error",
                   "message": render.one_line(message), "exit_code": code,
                   "provider": getattr(error, "provider", None) or hint.get("provider"),
                   "job_id": getattr(job, "job_id", None) or hint.get("job_id"),
                   "emulated": bool(ctx.meta.get("ovi.emulated")), "saved_to": None, **(extra or {})})
    ctx.exit(code)


def reports_errors(command: Callable[..., Any]) -> Callable[..., Any]:
    """Turn errors into one line on stderr (and one JSON object on stdout under ``--json``) and the
    documented exit code. Commands that know more (``generate``) catch unsettled errors first."""

    @functools.wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        ctx = click.get_current_context()
        ctx.meta["ovi.json"] = bool(kwargs.get("as_json")) or bool(ctx.meta.get("ovi.json"))
        try:
            return command(*args, **kwargs)
        except (KeyboardInterrupt, Interrupted):
            fail("interrupted", 130, extra={"error": "Interrupted"})
        except ValidationError as error:
            fail(render.validation_line(error), 2, error=error)
        except UNSETTLED as error:
            emulated = bool(ctx.meta.get("ovi.emulated"))
            fail(render.error_line(error), 4, *render.attempt_lines(error), *render.unsettled_lines(error, emulated),
                 error=error)
        except (InvalidRequest, ConfigurationError, NoRoute) as error:
            fail(render.error_line(error) if isinstance(error, NoRoute) else render.one_line(str(error)), 2,
                 error=error)
        except GatewayError as error:
            fail(render.error_line(error), 3, *render.attempt_lines(error), error=error)
        except click.ClickException as error:
            if not ctx.meta.get("ovi.json"):
                raise
            error.show()
            fail(error.format_message(), error.exit_code, error=error)

    return wrapper


def echo_json(value: Any) -> None:
    """One JSON document on stdout."""
    click.echo(json.dumps(value, indent=2, default=str))


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


def open_journal(path: str | None, *, emulator_instance: str | None = None) -> Journal:
    """The journal at ``path`` (default file when ``None``); a path that cannot hold one is a one-line
    configuration error naming ``--journal``."""
    import sqlite3

    from gateway.store.journal import Journal

    try:
        return Journal(path, emulator_instance=emulator_instance)
    except (OSError, sqlite3.Error) as error:
        where = path or "the default journal file"
        reason = getattr(error, "strerror", None) or str(error)
        raise ConfigurationError(f"--journal {where}: cannot open a journal there ({reason})") from None


def _price_book() -> PriceBook:
    try:
        return PriceBook.load()
    except (OSError, ValueError, KeyError, TypeError) as error:
        source = os.environ.get("OVI_GATEWAY_PRICES")
        where = f"OVI_GATEWAY_PRICES={source}" if source else "the packaged price book"
        reason = getattr(error, "strerror", None) or str(error) or type(error).__name__
        raise ConfigurationError(f"{where}: not a usable price file ({render.one_line(reason, 160)})") from None


def emulator_url_option(command: Callable[..., Any]) -> Callable[..., Any]:
    from gateway.offline import EMULATOR_URL_ENV

    return click.option("--emulator-url", metavar="URL", envvar=EMULATOR_URL_ENV,
                        help=f"A loopback emulator (`ovi-gateway emulate`), e.g. http://127.0.0.1:8765 "
                             f"(or ${EMULATOR_URL_ENV}).")(command)


def open_gateway(*, emulator: bool, journal: str | None, faults: str | None = None, notice: str | None = None,
                 emulator_url: str | None = None, keep_dir: Path | None = None) -> Gateway:
    """The gateway for ``quote``/``generate``/``batch``/``demo``: a loopback emulator when
    ``--emulator-url`` is given, the built-in one when forced or when no key is set, else only the real
    vendors that have keys. Says which on stderr (``notice`` overrides the emulator line; ``""`` says
    nothing); never mixes the two. Both emulators' default journal is the offline one (never the real
    journal), so a rerun finds what an earlier run made. ``keep_dir``: every finished clip is
    downloaded there at once (``Gateway(keep_dir=...)``)."""
    from gateway.client import Gateway

    registry = Registry.load()
    ctx = click.get_current_context()
    book = _price_book()
    if emulator_url:
        if faults:
            raise click.UsageError("--faults applies to the built-in emulator; give them to `ovi-gateway "
                                   "emulate --faults` where the loopback emulator runs")
        ctx.meta["ovi.emulated"] = ctx.meta["ovi.loopback"] = True
        gw = Gateway.offline(emulator_url=emulator_url, registry=registry, prices=book,
                             journal=_journal_for_offline(journal, emulator_url), keep_dir=keep_dir)
        click.echo(f"using the loopback emulator at {emulator_url}; nothing is billed", err=True)
        return gw
    keyed = _keyed_vendors(registry)
    if emulator or not keyed:
        if notice is None:
            notice = EMULATOR_NOTICE if not keyed else "--emulator: using the built-in emulator (offline); " \
                                                       "nothing is billed"
        if notice:
            click.echo(notice, err=True)
        ctx.meta["ovi.emulated"] = True
        fixed = float(os.environ[JOB_SECONDS_ENV]) if os.environ.get(JOB_SECONDS_ENV) else None
        low, high = (2.0, 4.0) if fixed is None else (fixed, fixed)
        emu = make_emulator(faults, lambda rng: rng.uniform(low, high))
        from gateway.offline import offline_journal_path

        return Gateway.offline(emulator=emu, registry=registry, prices=book, job_seconds=(low, high),
                               journal=open_journal(str(offline_journal_path()) if journal is None else journal),
                               keep_dir=keep_dir)
    if faults:
        raise click.UsageError("--faults applies to the emulator only (add --emulator)")
    click.echo(f"using the real vendors with API keys: {', '.join(keyed)} (billed); "
               "vendors without a key are not used", err=True)
    return Gateway(registry=registry, prices=book, journal=open_journal(journal), keep_dir=keep_dir)


@dataclass(frozen=True)
class QuoteSetup:
    """What ``quote`` prices with: the vendor classes, the (calibrated) price book, whether it stands for
    the built-in emulator, and why each vendor cannot be used at all (no key), or ``None``."""

    classes: dict[str, type[Provider]]
    book: PriceBook
    emulated: bool
    unusable: dict[str, str | None]


def quote_setup(*, emulator: bool, journal: str | None) -> QuoteSetup:
    """The vendors and prices ``quote`` uses (says which vendors on stderr, as ``open_gateway`` does).

    A quote sends nothing and shows no breaker: it needs the adapters' classes (capabilities), the price
    book, the keys set, and of the journal only the recent reported costs that calibrate compute-billed
    estimates. So it makes no gateway (no client, runner, event loop, emulator or recovery) and reads
    those costs only from a journal that exists already: a missing file holds no costs, and a quote must
    not create one. An emulated quote reads the offline journal's emulated rows, as the emulated gateway
    it stands for would."""
    registry = Registry.load()
    book = _price_book()
    keyed = _keyed_vendors(registry)
    emulated = emulator or not keyed
    if emulated:
        click.echo(EMULATOR_NOTICE if not keyed else "--emulator: using the built-in emulator (offline); nothing "
                   "is billed", err=True)
        click.get_current_context().meta["ovi.emulated"] = True
    else:
        click.echo(f"using the real vendors with API keys: {', '.join(keyed)} (billed); "
                   "vendors without a key are not used", err=True)
    target = _existing_journal(journal, emulated)
    if target is not None:
        with open_journal(target, emulator_instance="quote" if emulated else None) as opened:
            calibrate_from(opened, registry.classes, book)
    unusable = {name: None if emulated or name in keyed else f"no API key (set {cls.env_key})"
                for name, cls in registry.classes.items()}
    return QuoteSetup(dict(registry.classes), book, emulated, unusable)


def _existing_journal(journal: str | None, emulated: bool) -> str | None:
    """Where a quote's journal is, if there is one to read: ``--journal``, else (real vendors)
    ``$OVI_GATEWAY_DATABASE_URL`` or the default journal file, (emulated) the offline journal file —
    a file only when it exists. The default paths are ``gateway.store.journal.default_path()`` and
    ``gateway.offline.offline_journal_path()``, spelled here so a quote with no journal imports
    neither SQLite nor the store (``tests/test_cli.py`` keeps them equal)."""
    from gateway.store.url import from_env, is_postgres

    if journal is not None:
        target = journal
    elif emulated:
        target = str(default_journal_path().with_name("offline-journal.sqlite3"))
    else:
        target = from_env() or str(default_journal_path())
    if target == ":memory:":
        return None  # a new, empty journal: no costs to read
    return target if is_postgres(target) or Path(target).is_file() else None


def default_journal_path() -> Path:
    """``gateway.store.journal.default_path()``, without importing the store."""
    import platformdirs

    return platformdirs.user_data_path("ovi-gateway") / "journal.sqlite3"


def _journal_for_offline(journal: str | None, url: str) -> Journal:
    from gateway.offline import emulator_instance, offline_journal_path

    return open_journal(str(offline_journal_path()) if journal is None else journal,
                        emulator_instance=emulator_instance(url))


def blocked(gw: Gateway) -> dict[str, str | None]:
    """Per vendor, why it cannot be used at all here (no key), or ``None``."""
    keys = gw.configured()
    return {name: None if keys[name] else f"no API key (set {cls.env_key})" for name, cls in gw.classes.items()}


def cheapest_usable(quotes: list[Quote], blocked: dict[str, str | None]) -> Quote | None:
    """The first feasible, priced quote of a usable vendor (quotes come cheapest first)."""
    return next((q for q in quotes if q.feasible and q.price_usd is not None and not blocked.get(q.provider)), None)


def names(value: str | None, gw: Gateway, flag: str) -> list[str]:
    """Vendor names from a comma list, each checked to be installed."""
    found = [n.strip() for n in (value or "").split(",") if n.strip()]
    unknown = [n for n in found if n not in gw.classes]
    if unknown:
        raise click.BadParameter(f"unknown vendor {', '.join(unknown)}; installed: {', '.join(gw.classes)}",
                                 param_hint=flag)
    return found


_F = TypeVar("_F", bound=Callable[..., Any])

journal_option: Callable[[_F], _F] = click.option(
    "--journal", "journal", metavar="PATH",
    help="Job journal (SQLite). Default: the gateway's journal file; with an emulator the separate offline "
         "journal beside it.")
json_option: Callable[[_F], _F] = click.option("--json", "as_json", is_flag=True,
                           help="Print one JSON object on stdout (errors too) instead of tables.")
emulator_option: Callable[[_F], _F] = click.option("--emulator", is_flag=True,
                                                   help="Use the built-in emulator even if keys are set.")
faults_option: Callable[[_F], _F] = click.option("--faults", metavar="SPEC",
                             help='Emulator fault script, e.g. "VENDOR.submit=503*3; VENDOR.job=fail".')


def run_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """Where a clip-making command runs and how it answers, as ``generate`` and ``batch`` share them:
    ``--emulator``, ``--emulator-url``, ``--faults``, ``--journal`` and ``--json`` (in that order in
    ``--help``)."""
    for option in (json_option, journal_option, faults_option, emulator_url_option, emulator_option):
        command = option(command)
    return command
