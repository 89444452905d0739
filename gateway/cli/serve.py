"""``ovi-gateway serve``: the ``/v1/videos`` HTTP API (``gateway.server``) under uvicorn.

SIGTERM (or Ctrl-C) drains: uvicorn stops accepting connections and finishes open requests, then the
app's shutdown lets submits on the wire be answered and hands every followed job back to the journal
(leases released), so another replica, or the next start, finishes them.
"""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path

import click

__all__ = ["serve"]


def _keys(given: tuple[str, ...]) -> tuple[str, ...]:
    from_env = tuple(k.strip() for k in os.environ.get("OVI_GATEWAY_API_KEYS", "").split(",") if k.strip())
    return tuple(k for k in given if k) or from_env


@click.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", default=8000, show_default=True, type=click.IntRange(0, 65535), help="Port to listen on.")
@click.option("--api-key", "api_keys", multiple=True, metavar="KEY",
              help="A bearer key clients may use (repeatable; default: OVI_GATEWAY_API_KEYS, comma-separated).")
@click.option("--emulator", is_flag=True, help="Run against the built-in emulator: offline, nothing billed.")
@click.option("--journal", type=click.Path(dir_okay=False), help="Journal file (default: the user data directory's).")
@click.option("--media-dir", type=click.Path(file_okay=False), help="Where finished clips are kept for /content.")
@click.option("--public-url", metavar="URL", help="Where vendors can reach this server (enables webhooks); "
              "without it, jobs are polled.")
@click.option("--workers", default=1, show_default=True, type=click.IntRange(min=1), help="Worker processes.")
@click.option("--poll-after-ms", default=5000, show_default=True, type=click.IntRange(min=0),
              help="The openai-poll-after-ms hint on unfinished videos.")
@click.option("--emulator-job-seconds", default=2.0, show_default=True, type=click.FloatRange(min=0, min_open=True),
              help="With --emulator: how long each emulated job runs.")
@click.option("--emulator-faults", metavar="SPEC", help="With --emulator: vendor faults, e.g. 'fal.submit=503'.")
@click.option("--lose-create-answers", default=0, type=click.IntRange(min=0), hidden=True,
              help="With --emulator (tests): the first N creates answer 502 after the intent.")
def serve(host: str, port: int, api_keys: tuple[str, ...], emulator: bool, journal: str | None,
          media_dir: str | None, public_url: str | None, workers: int, poll_after_ms: int,
          emulator_job_seconds: float, emulator_faults: str | None, lose_create_answers: int) -> None:
    """Serve the OpenAI-shaped /v1/videos API (any HTTP client, the openai SDK included)."""
    import uvicorn

    from gateway.client import Gateway
    from gateway.server import create_app, emulated_gateway
    from gateway.store.journal import default_path

    keys = _keys(api_keys)
    if not keys:
        raise click.UsageError("give at least one --api-key (or set OVI_GATEWAY_API_KEYS)")
    if workers > 1:
        raise click.UsageError(f"--workers {workers} needs the PostgreSQL journal: on SQLite every worker would "
                               "write one file and hold its own followers and webhook state; run one worker per "
                               "journal file (or several servers, each with its own journal)")
    if (emulator_faults or lose_create_answers) and not emulator:
        raise click.UsageError("--emulator-faults and --lose-create-answers need --emulator")
    where = journal or str(default_path())
    gateway = (emulated_gateway(journal=where, job_seconds=emulator_job_seconds, faults=emulator_faults)
               if emulator else Gateway(journal=where))
    if emulator and public_url is None and port:
        public_url = f"http://{host}:{port}"  # the emulated vendors push to this server on loopback
    if emulator and public_url:
        from gateway.emulator.webhooks import WebhookSender, trust_test_keys

        trust_test_keys()  # the adapters verify the emulator's deliveries with its published test keys
        assert gateway.emulator is not None
        gateway.emulator.deliver_webhooks(WebhookSender())
    media = Path(media_dir) if media_dir else Path(where).parent / "media"
    app = create_app(gateway, api_keys=keys, media_dir=media, emulator=emulator, public_url=public_url,
                     poll_after_ms=poll_after_ms, lose_create_answers=lose_create_answers)
    mode = "emulator (offline, nothing billed)" if emulator else "real vendors"
    push = f"webhooks to {public_url}" if public_url else "polling (no --public-url)"
    click.echo(f"ovi-gateway serving /v1/videos on http://{host}:{port} — {mode}; {push}; journal {where}", err=True)
    # uvicorn drains on SIGTERM, then re-raises the signal; with this handler in place the process then
    # exits 0 (a drained stop is a clean stop) instead of dying by the signal.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    try:
        uvicorn.run(app, host=host, port=port, log_level="warning", timeout_graceful_shutdown=30, lifespan="on")
    finally:
        click.echo("ovi-gateway stopped; unfinished jobs are in the journal for the next start or another replica",
                   err=True)
