"""``ovi-gateway serve``: the OpenAI ``/v1/videos`` HTTP API over the gateway (Starlette, run by uvicorn).

``create_app()`` builds the app from the environment, so ``uvicorn --factory gateway.server:create_app``
works as well as the CLI:

* ``OVI_GATEWAY_API_KEYS`` — comma-separated bearer keys (required);
* ``OVI_GATEWAY_JOURNAL`` — the journal file (default: the user data directory's);
* ``OVI_GATEWAY_MEDIA_DIR`` — where finished clips are kept (default: ``media/`` beside the journal);
* ``OVI_GATEWAY_EMULATOR=1`` — run against the built-in emulator, fully offline;
* ``OVI_GATEWAY_PUBLIC_URL`` — where vendors reach this server: turns vendor webhooks on;
* ``OVI_GATEWAY_EMULATOR_JOB_SECONDS`` — the emulator's job time (default 2 s in server mode).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from gateway.server.app import ServerConfig, build_app, owner_of

__all__ = ["ServerConfig", "build_app", "create_app", "emulated_gateway", "owner_of"]

KEYS_ENV = "OVI_GATEWAY_API_KEYS"


def emulated_gateway(*, journal: Any, job_seconds: float = 2.0, faults: str | None = None) -> Any:
    """A ``Gateway`` on the built-in emulator (no network), with polling sized to its short jobs."""
    from gateway.client import Gateway
    from gateway.emulator import Emulator
    from gateway.jobs.polling import PollPolicy

    emulator = Emulator(faults=faults or None, job_time=lambda rng: job_seconds)
    return Gateway(emulator=emulator, journal=journal,
                   poll=PollPolicy(expected=job_seconds, interval=min(0.5, job_seconds), min_interval={}))


def create_app(gateway: Any = None, *, api_keys: Sequence[str] | None = None, media_dir: str | os.PathLike[str] |
               None = None, emulator: bool | None = None, journal: str | None = None, public_url: str | None = None,
               **options: Any) -> Any:
    """The ASGI app. Arguments override the environment; ``options`` go to ``ServerConfig``. With
    ``public_url`` (or ``OVI_GATEWAY_PUBLIC_URL``) vendors are asked for webhooks to it; without, jobs
    are polled."""
    from gateway.client import Gateway
    from gateway.store.journal import default_path

    keys = tuple(api_keys) if api_keys is not None else tuple(
        k.strip() for k in os.environ.get(KEYS_ENV, "").split(",") if k.strip())
    emulated = emulator if emulator is not None else os.environ.get("OVI_GATEWAY_EMULATOR") == "1"
    if gateway is None:
        where = journal or os.environ.get("OVI_GATEWAY_JOURNAL") or str(default_path())
        if emulated:
            seconds = float(os.environ.get("OVI_GATEWAY_EMULATOR_JOB_SECONDS") or 2.0)
            gateway = emulated_gateway(journal=where, job_seconds=seconds)
        else:
            gateway = Gateway(journal=where)
    media = Path(media_dir or os.environ.get("OVI_GATEWAY_MEDIA_DIR") or Path(gateway.journal.path).parent / "media")
    public = public_url or os.environ.get("OVI_GATEWAY_PUBLIC_URL")
    routes = list(options.pop("routes", []))
    intake = None
    if public:
        from gateway.webhooks import enable_webhooks

        intake = enable_webhooks(gateway, public, **({"wall": options.pop("wall")} if "wall" in options else {}))
        routes += intake.routes()
    return build_app(gateway, ServerConfig(api_keys=keys, media_dir=media, emulator=emulated, routes=routes,
                                           intake=intake, **options))
