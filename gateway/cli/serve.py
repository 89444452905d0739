"""``ovi-gateway serve``: the ``/v1/videos`` HTTP API (``gateway.server``) under uvicorn.

SIGTERM (or Ctrl-C) drains: uvicorn stops accepting connections and finishes open requests, then the
app's shutdown lets submits on the wire be answered and hands every followed job back to the journal
(leases released), so another replica, or the next start, finishes them.
"""

from __future__ import annotations

import json
import os
import signal
import sys
from types import FrameType
from typing import Any

import click

__all__ = ["serve"]


def _draining_server_class() -> type:
    import uvicorn

    class DrainingServer(uvicorn.Server):
        """uvicorn's server, refusing new creates (503) from the moment SIGTERM arrives, not only once the
        listener closes about 0.1 s later (uvicorn's main loop tick)."""

        def handle_exit(self, sig: int, frame: FrameType | None) -> None:
            server = getattr(getattr(self.config.app, "state", None), "server", None)
            if server is not None:
                server.draining = True
            super().handle_exit(sig, frame)

    return DrainingServer


def _draining_server(config: Any) -> Any:
    """A ``DrainingServer`` for ``config`` (the class is built on first use: uvicorn is imported lazily)."""
    return _draining_server_class()(config)


def _keys(given: tuple[str, ...]) -> tuple[str, ...]:
    from_env = tuple(k.strip() for k in os.environ.get("OVI_GATEWAY_API_KEYS", "").split(",") if k.strip())
    return tuple(k for k in given if k) or from_env


@click.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", default=8000, show_default=True, type=click.IntRange(0, 65535), help="Port to listen on.")
@click.option("--api-key", "api_keys", multiple=True, metavar="KEY",
              help="A bearer key clients may use (repeatable; default: OVI_GATEWAY_API_KEYS, comma-separated).")
@click.option("--emulator", is_flag=True, help="Run against the built-in emulator: offline, nothing billed.")
@click.option("--emulator-url", metavar="URL", help="Run against a loopback emulator (`ovi-gateway emulate`), "
              "shared by several replicas: offline, nothing billed.")
@click.option("--journal", metavar="PATH|URL", help="Journal file or postgresql:// URL (default: "
              "OVI_GATEWAY_DATABASE_URL, else the user data directory's file).")
@click.option("--media-dir", type=click.Path(file_okay=False), help="Where finished clips are kept for /content.")
@click.option("--public-url", metavar="URL", help="Where vendors can reach this server (enables webhooks); "
              "without it, jobs are polled.")
@click.option("--workers", default=1, show_default=True, type=click.IntRange(min=1),
              help="Worker processes (needs a PostgreSQL journal).")
@click.option("--poll-after-ms", default=5000, show_default=True, type=click.IntRange(min=0),
              help="The openai-poll-after-ms hint on unfinished videos.")
@click.option("--emulator-job-seconds", default=2.0, show_default=True, type=click.FloatRange(min=0, min_open=True),
              help="With --emulator: how long each emulated job runs.")
@click.option("--emulator-faults", metavar="SPEC", help="With --emulator: vendor faults, e.g. 'fal.submit=503'.")
@click.option("--rate-limit", type=click.FloatRange(min=0, min_open=True), metavar="PER_SECOND",
              help="Requests per second each API key may make, shared by every replica (past it: 429).")
@click.option("--rate-burst", type=click.FloatRange(min=1), metavar="N",
              help="Requests a key may make at once before --rate-limit applies (default: one second's worth).")
@click.option("--key-budget", metavar="USD", help="Each API key's spend cap per --key-budget-period (e.g. 20); "
              "past it creates answer 402 budget_exceeded, nothing sent. Counted in the journal for every replica.")
@click.option("--key-budget-period", type=click.Choice(["day", "month", "total"]), default="day", show_default=True,
              help="The window --key-budget counts: UTC day, UTC month or all time.")
@click.option("--lose-create-answers", default=0, type=click.IntRange(min=0), hidden=True,
              help="With --emulator (tests): the first N creates answer 502 after the intent.")
def serve(host: str, port: int, api_keys: tuple[str, ...], emulator: bool, emulator_url: str | None,
          journal: str | None, media_dir: str | None, public_url: str | None, workers: int, poll_after_ms: int,
          emulator_job_seconds: float, emulator_faults: str | None, rate_limit: float | None, rate_burst: float | None,
          key_budget: str | None, key_budget_period: str, lose_create_answers: int) -> None:
    """Serve the OpenAI-shaped /v1/videos API (any HTTP client, the openai SDK included)."""
    import uvicorn

    from gateway.server import SETTINGS_ENV, from_settings
    from gateway.store.journal import default_path
    from gateway.store.url import from_env, is_postgres, redact

    keys = _keys(api_keys)
    if not keys:
        raise click.UsageError("give at least one --api-key (or set OVI_GATEWAY_API_KEYS)")
    where = journal or from_env() or str(default_path())
    if workers > 1 and not is_postgres(where):
        raise click.UsageError(f"--workers {workers} needs a PostgreSQL journal (--journal postgresql://... or "
                               "OVI_GATEWAY_DATABASE_URL): a SQLite file takes one writer at a time, so worker "
                               "processes would queue every create, webhook and status write behind one file lock "
                               "(and fail requests on busy timeouts under load); run one worker on SQLite")
    if emulator and emulator_url:
        raise click.UsageError("give --emulator (built in) or --emulator-url (a loopback emulator), not both")
    emulated = emulator or bool(emulator_url)
    if (emulator_faults or lose_create_answers) and not emulated:
        raise click.UsageError("--emulator-faults and --lose-create-answers need --emulator")
    if emulator_faults and emulator_url:
        raise click.UsageError("--emulator-faults applies to the built-in emulator; give them to `ovi-gateway "
                               "emulate --faults` where the loopback emulator runs")
    if emulator and workers > 1:
        raise click.UsageError("--workers with the built-in emulator would give each worker its own emulated "
                               "vendors (a job would exist in one process only); run `ovi-gateway emulate` and "
                               "pass --emulator-url")
    if emulated and public_url is None and port:
        public_url = f"http://{host}:{port}"  # the emulated vendors push to this server on loopback
    settings = {"api_keys": list(keys), "journal": where, "media_dir": media_dir, "public_url": public_url,
                "emulator": emulator, "emulator_url": emulator_url, "emulator_job_seconds": emulator_job_seconds,
                "emulator_faults": emulator_faults, "poll_after_ms": poll_after_ms,
                "lose_create_answers": lose_create_answers, "rate_limit": rate_limit, "rate_burst": rate_burst,
                "key_budget_usd": key_budget, "key_budget_period": key_budget_period}
    if key_budget is not None:
        from decimal import Decimal, InvalidOperation

        try:
            if not Decimal(key_budget).is_finite() or Decimal(key_budget) < 0:
                raise InvalidOperation
        except InvalidOperation:
            raise click.BadParameter(f"{key_budget!r} is not a USD amount (e.g. 20 or 0.50)",
                                     param_hint="--key-budget") from None
    mode = "emulator (offline, nothing billed)" if emulated else "real vendors"
    push = f"webhooks to {public_url}" if public_url else "polling (no --public-url)"
    shown = redact(where) if is_postgres(where) else where
    click.echo(f"ovi-gateway serving /v1/videos on http://{host}:{port} — {mode}; {push}; journal {shown}; "
               f"{workers} worker(s)", err=True)
    # uvicorn drains on SIGTERM, then re-raises the signal; with this handler in place the process then
    # exits 0 (a drained stop is a clean stop) instead of dying by the signal.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    try:
        if workers > 1:  # each worker process builds the same app from the settings (uvicorn spawns them)
            os.environ[SETTINGS_ENV] = json.dumps(settings)
            uvicorn.run("gateway.server:create_app", factory=True, host=host, port=port, workers=workers,
                        log_level="warning", timeout_graceful_shutdown=30, lifespan="on")
        else:
            app = from_settings(settings)
            _draining_server(uvicorn.Config(app, host=host, port=port, log_level="warning",
                                            timeout_graceful_shutdown=30, lifespan="on")).run()
    finally:
        click.echo("ovi-gateway stopped; unfinished jobs are in the journal for the next start or another replica",
                   err=True)
