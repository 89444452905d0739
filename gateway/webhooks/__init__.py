"""Vendor webhook intake: ``POST /webhooks/{provider}/{clip}/{submit}?t=<token>``.

Every delivery is checked before anything is trusted, in this order: the per-job URL token (constant
time; the only proof for Runware, which signs nothing), the vendor's own signature through the adapter's
``verify_webhook`` (fal ED25519 over JWKS keys, WaveSpeed HMAC), then the body's job id against the
journal's record of that submit. A failure answers 401 (404 for an unknown provider or submit) and
changes nothing. Accepted deliveries are stored once per (vendor, job id, status) — repeats answer 200
as duplicates — and wake the clip's follower. Order does not matter (a non-final push only wakes);
a late or missing push leaves the follower polling.
"""

from __future__ import annotations

import hmac
import os
import time
from collections.abc import Callable
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

import gateway.secrets as secrets
from gateway.errors import AuthError, GatewayError
from gateway.jobs.push import PushBox
from gateway.webhooks.store import WebhookEvents

__all__ = ["Intake", "enable_webhooks", "webhook_secret"]

SECRET_ENV = "OVI_GATEWAY_WEBHOOK_SECRET"


def webhook_secret(journal: Any) -> bytes:
    """The URL-token key: ``OVI_GATEWAY_WEBHOOK_SECRET``, else a random one kept in the journal's database
    (``server_settings``, made once by the first replica), so tokens survive restarts and every replica
    on the journal — one SQLite file or one PostgreSQL database — agrees."""
    given = os.environ.get(SECRET_ENV)
    if given:
        secrets.register(given)
        return given.encode()
    value = str(journal.setting("webhook_url_token_key"))
    secrets.register(value)
    return value.encode()


def _refused(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": {"message": message, "type": "invalid_request_error", "param": None,
                                   "code": "webhook_refused"}}, status_code=status)


class Intake:
    """The webhook route over a gateway with ``gateway.push`` set.

    Args:
        gateway: the ``Gateway`` (its journal and adapters).
        events: where verified deliveries are stored.
        wall: Unix time in seconds (vendors' timestamps are wall-clock; injectable for tests).
    """

    def __init__(self, gateway: Any, events: WebhookEvents, wall: Callable[[], float] = time.time) -> None:
        if gateway.push is None:
            raise ValueError("the gateway has no PushBox (gateway.push): webhooks are off")
        self.gateway = gateway
        self.box: PushBox = gateway.push
        self.events = events
        self.wall = wall
        self.accepted = 0
        self.refused = 0
        self.duplicates = 0

    def routes(self) -> list[Route]:
        return [Route("/webhooks/{provider}/{clip}/{submit}", self.receive, methods=["POST"])]

    async def receive(self, request: Request) -> Response:
        name, clip, submit = (request.path_params[k] for k in ("provider", "clip", "submit"))
        if not hmac.compare_digest(request.query_params.get("t", ""), self.box.token(name, clip, submit)):
            self.refused += 1
            return _refused(401, "missing or wrong webhook token")
        adapter = self.gateway._providers().get(name)
        if adapter is None or not hasattr(adapter, "parse_webhook"):
            return _refused(404, f"no webhooks for provider {name!r}")
        body = await request.body()  # raw bytes: signatures cover them exactly as sent
        try:
            await adapter.verify_webhook(request.headers, body, self.wall())
            event = adapter.parse_webhook(body)
        except AuthError as refusal:
            self.refused += 1
            return _refused(401, refusal.message)
        except GatewayError as unreadable:
            self.refused += 1
            return _refused(400, unreadable.message)
        record = next((s for s in self.gateway.journal.submits(clip) if s.submit_key == submit), None)
        if record is None or record.provider != name:
            self.refused += 1
            return _refused(404, "no such job")
        if record.job_id is not None and record.job_id != event.job_id:
            self.refused += 1
            return _refused(401, "the delivery names another job")
        fresh = self.events.record(vendor=name, job_id=event.job_id, status=event.status.state.value, clip_key=clip,
                                   trusted=event.trusted, body=body)
        if not fresh:
            self.duplicates += 1
            return JSONResponse({"received": True, "duplicate": True})
        self.accepted += 1
        self.box.wake(clip)
        return JSONResponse({"received": True, "duplicate": False})


def enable_webhooks(gateway: Any, public_url: str, *, wall: Callable[[], float] = time.time,
                    secret: bytes | None = None) -> Intake:
    """Turn webhooks on for ``gateway`` (vendors reach it at ``public_url``); returns the intake whose
    ``routes()`` the server mounts."""
    events = WebhookEvents(gateway.journal)
    gateway.push = PushBox(public_url=public_url, secret=secret or webhook_secret(gateway.journal), events=events)
    return Intake(gateway, events, wall)
