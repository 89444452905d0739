"""``ovi-gateway serve``: the OpenAI ``/v1/videos`` HTTP API over the gateway (Starlette, run by uvicorn).

``create_app()`` builds the app from the environment, so ``uvicorn --factory gateway.server:create_app``
works as well as the CLI:

* ``OVI_GATEWAY_API_KEYS`` — comma-separated bearer keys (required);
* ``OVI_GATEWAY_JOURNAL`` — the journal: a file, or a ``postgresql://`` URL (default:
  ``OVI_GATEWAY_DATABASE_URL``, else the user data directory's file);
* ``OVI_GATEWAY_MEDIA_DIR`` — where finished clips are kept (default: ``media/`` beside the journal file,
  or under the user data directory for PostgreSQL; a shared volume for replicas);
* ``OVI_GATEWAY_EMULATOR=1`` — run against the built-in emulator, fully offline;
* ``OVI_GATEWAY_PUBLIC_URL`` — where vendors reach this server: turns vendor webhooks on;
* ``OVI_GATEWAY_EMULATOR_JOB_SECONDS`` — the emulator's job time (default 2 s in server mode);
* ``OVI_GATEWAY_CALLBACK_SECRET`` — ``whsec_<base64 key>``: turns client callbacks (``callback_url``) on,
  signed in the Standard Webhooks format (``gateway.server.callbacks``).

``ovi-gateway serve`` passes its own options to every worker process as ``OVI_GATEWAY_SERVE_SETTINGS``
(JSON of ``serve_settings``), read by ``create_app`` with no arguments (``from_settings``).
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from gateway.server.app import ServerConfig, build_app, owner_of

__all__ = ["ServerConfig", "build_app", "create_app", "emulated_gateway", "from_settings", "owner_of"]

KEYS_ENV = "OVI_GATEWAY_API_KEYS"
SETTINGS_ENV = "OVI_GATEWAY_SERVE_SETTINGS"


def emulated_gateway(*, journal: Any, job_seconds: float = 2.0, faults: str | None = None, **options: Any) -> Any:
    """A ``Gateway`` on the built-in emulator (no network), with polling sized to its short jobs;
    ``options`` go to ``Gateway`` (``budget``…)."""
    from gateway.client import Gateway
    from gateway.emulator import Emulator
    from gateway.jobs.polling import PollPolicy

    emulator = Emulator(faults=faults or None, job_time=lambda rng: job_seconds)
    return Gateway(emulator=emulator, journal=journal,
                   poll=PollPolicy(expected=job_seconds, interval=min(0.5, job_seconds), min_interval={}), **options)


def default_media_dir(journal_target: str) -> Path:
    """``media/`` beside a journal file; for a database URL, under the user data directory."""
    from gateway.store.journal import default_path
    from gateway.store.url import is_postgres

    return (default_path().parent if is_postgres(journal_target) else Path(journal_target).parent) / "media"


def from_settings(settings: dict[str, Any]) -> Any:
    """The app ``ovi-gateway serve`` runs, from its options (the same in every worker process)."""
    from gateway.client import Gateway

    where = settings["journal"]
    public_url = settings.get("public_url")
    extra: dict[str, Any] = {}
    if settings.get("key_budget_usd") is not None:  # each API key its own cap (create passes the key's digest)
        from gateway.routing.pricing import Budget

        extra["budget"] = Budget(limit_usd=settings["key_budget_usd"], period=settings.get("key_budget_period")
                                 or "day", per_caller=True)
    if settings.get("emulator_url"):
        from gateway.jobs.polling import PollPolicy

        seconds = float(settings.get("emulator_job_seconds") or 2.0)
        gateway = Gateway.offline(emulator_url=settings["emulator_url"], journal=where, job_seconds=seconds,
                                  poll=PollPolicy(expected=seconds, interval=min(0.5, seconds), min_interval={}),
                                  **extra)
    elif settings.get("emulator"):
        gateway = emulated_gateway(journal=where, job_seconds=float(settings.get("emulator_job_seconds") or 2.0),
                                   faults=settings.get("emulator_faults"), **extra)
    else:
        gateway = Gateway(journal=where, **extra)
    emulated = bool(settings.get("emulator") or settings.get("emulator_url"))
    if emulated and public_url:
        from gateway.emulator.webhooks import WebhookSender, trust_test_keys

        trust_test_keys()  # the adapters verify the emulator's deliveries with its published test keys
        if gateway.emulator is not None:  # in-process: it pushes to this server over loopback
            gateway.emulator.deliver_webhooks(WebhookSender())
    options = {name: settings[name] for name in ("poll_after_ms", "lose_create_answers", "rate_limit", "rate_burst")
               if settings.get(name) is not None}
    return create_app(gateway, api_keys=settings["api_keys"], emulator=emulated, public_url=public_url,
                      media_dir=settings.get("media_dir") or default_media_dir(where), **options)


def create_app(gateway: Any = None, *, api_keys: Sequence[str] | None = None, media_dir: str | os.PathLike[str] |
               None = None, emulator: bool | None = None, journal: str | None = None, public_url: str | None = None,
               **options: Any) -> Any:
    """The ASGI app. Arguments override the environment; ``options`` go to ``ServerConfig``. With
    ``public_url`` (or ``OVI_GATEWAY_PUBLIC_URL``) vendors are asked for webhooks to it; without, jobs
    are polled."""
    from gateway.client import Gateway
    from gateway.store.journal import default_path
    from gateway.store.url import from_env

    if gateway is None and api_keys is None and os.environ.get(SETTINGS_ENV):
        return from_settings(json.loads(os.environ[SETTINGS_ENV]))
    keys = tuple(api_keys) if api_keys is not None else tuple(
        k.strip() for k in os.environ.get(KEYS_ENV, "").split(",") if k.strip())
    emulated = emulator if emulator is not None else os.environ.get("OVI_GATEWAY_EMULATOR") == "1"
    where = journal or os.environ.get("OVI_GATEWAY_JOURNAL") or from_env() or str(default_path())
    if gateway is None:
        if emulated:
            seconds = float(os.environ.get("OVI_GATEWAY_EMULATOR_JOB_SECONDS") or 2.0)
            gateway = emulated_gateway(journal=where, job_seconds=seconds)
        else:
            gateway = Gateway(journal=where)
    else:
        where = gateway.journal.path if gateway.journal is not None else where
    media = Path(media_dir or os.environ.get("OVI_GATEWAY_MEDIA_DIR") or default_media_dir(where))
    public = public_url or os.environ.get("OVI_GATEWAY_PUBLIC_URL")
    if options.get("callback_secret") is None:
        from gateway.server.callbacks import CALLBACK_SECRET_ENV

        options["callback_secret"] = os.environ.get(CALLBACK_SECRET_ENV) or None
    routes = list(options.pop("routes", []))
    intake = None
    if public:
        from gateway.webhooks import enable_webhooks

        intake = enable_webhooks(gateway, public, **({"wall": options.pop("wall")} if "wall" in options else {}))
        routes += intake.routes()
    return build_app(gateway, ServerConfig(api_keys=keys, media_dir=media, emulator=emulated, routes=routes,
                                           intake=intake, **options))
