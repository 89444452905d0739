"""The ASGI app behind ``ovi-gateway serve``: OpenAI's ``/v1/videos`` shape over the gateway's job handles.

Routes: ``POST/GET /v1/videos``, ``GET/DELETE /v1/videos/{id}``, ``GET /v1/videos/{id}/content``,
``POST /v1/videos/{id}/cancel``, ``/healthz``, ``/readyz``, ``/openapi.json`` (and the vendor webhook
routes when ``gateway.webhooks`` is configured). Errors are ``{"error": {message, type, param, code}}``
with the status the openai SDK maps to its exception classes [openai@3.57.0 _client.py:635-668].

Split by responsibility: this module holds the routes' handlers and the app; ``config`` how it runs,
``shapes`` what it answers (the ``Video`` object, the error envelope), ``content`` the clip download,
``forms`` the create body, ``limits`` the body cap, ``callbacks`` client callbacks.

Money-safety rules of the create route:
* it answers only once the first paid submit's intent is in the journal (``Gateway.submit``);
* an ``Idempotency-Key`` header (per API key) returns the video made under it;
* the SDK never sends one and retries POSTs twice [openai _base_client.py:470, :943-962], so a create
  with ``x-stainless-retry-count`` > 0 whose parsed body matches one from the same key within
  ``retry_window`` seconds returns that video instead of buying another clip;
* a 5xx after the intent carries ``x-should-retry: false``, which stops the SDK's retry
  [openai _base_client.py:933-940].
"""

from __future__ import annotations

import asyncio
import hmac
import math
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

import gateway.secrets as secrets
from gateway.errors import ClipInProgress, ConfigurationError, GatewayError
from gateway.jobs.handles import CannotCancel, JobView
from gateway.server.callbacks import Callbacks, check_callback_url, parse_secret
from gateway.server.config import ServerConfig, owner_of
from gateway.server.content import ContentRoutes
from gateway.server.forms import BadField, CreateBody, check_vendors, parse_create, read_fields
from gateway.server.limits import BodyLimit
from gateway.server.openapi import openapi_document
from gateway.server.shapes import error, not_found, refusal_of, reused_key, video_json
from gateway.server.store import VideoRow, VideoStore
from gateway.store.lease import lease_owner
from gateway.store.notify import relay_for

__all__ = ["ServerConfig", "build_app", "owner_of"]


class VideoServer(ContentRoutes):
    """The route handlers, over one ``Gateway`` (its journal shared with any other replica)."""

    def __init__(self, gateway: Any, config: ServerConfig) -> None:
        if not config.api_keys:
            raise ConfigurationError("the server needs at least one API key (--api-key or OVI_GATEWAY_API_KEYS)")
        if gateway.journal is None:
            raise ConfigurationError("the server needs the journal (jobs live in it)")
        for key in config.api_keys:  # redacted from every error, log record and journal text
            secrets.register(key)
        self.gateway = gateway
        self.config = config
        self.store: VideoStore = VideoStore(gateway.journal)
        self._owners = {owner_of(key) for key in config.api_keys}
        self._lost = config.lose_create_answers
        self.draining = False
        config.media_dir.mkdir(parents=True, exist_ok=True)
        self.callbacks: Callbacks | None = None
        self._pushes_seen: dict[str, int] = {}
        if config.callback_secret:
            self.callbacks = Callbacks(gateway.journal, parse_secret(config.callback_secret), self._callback_event,
                                       owner=f"{lease_owner()}:{uuid.uuid4().hex[:8]}", sleep=gateway.clock.sleep,
                                       interval=config.callback_interval, transport=config.callback_transport,
                                       allow_local=config.emulator)

    # ---- auth ---------------------------------------------------------------------------------
    def owner(self, request: Request) -> str | None:
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            return None
        presented = owner_of(token.strip())
        found = None
        for known in self._owners:  # compare with every key, so timing does not tell which matched
            if hmac.compare_digest(presented, known):
                found = known
        return found

    def authed(self, handler: Callable[[Request, str], Awaitable[Response]]
               ) -> Callable[[Request], Awaitable[Response]]:
        async def endpoint(request: Request) -> Response:
            owner = self.owner(request)
            if owner is None:
                return error(401, "missing or invalid API key (send Authorization: Bearer <key>)",
                             code="invalid_api_key")
            limited = self._rate_limited(owner)
            return limited if limited is not None else await handler(request, owner)

        return endpoint

    def _rate_limited(self, owner: str) -> Response | None:
        """429 when ``owner`` is past its request rate (the bucket lives in the store: one per key for all
        replicas, keyed by the key's digest, never the key)."""
        rate = self.config.rate_limit
        if not rate:
            return None
        burst = self.config.rate_burst or max(1.0, rate)
        wait = self.gateway.journal.take_token(f"api-key/{owner}", per_second=rate, burst=burst)
        if wait <= 0:
            return None
        return error(429, f"this API key is over its rate of {rate:g} requests per second; retry in {wait:.2f} s",
                     type="rate_limit_error", code="rate_limit_exceeded",
                     headers={"retry-after": str(max(1, math.ceil(wait))),
                              "retry-after-ms": str(max(1, math.ceil(wait * 1000)))})

    # ---- create -------------------------------------------------------------------------------
    async def create(self, request: Request, owner: str) -> Response:
        if self.draining:
            return error(503, "the server is shutting down; send the request to another replica",
                         type="server_error", code="shutting_down")
        try:
            body = parse_create(await read_fields(request))
            check_vendors(body.route, self.gateway.classes)
            if body.callback_url is not None:
                if self.callbacks is None:
                    raise BadField("this server sends no callbacks: start it with a signing secret "
                                   "(OVI_GATEWAY_CALLBACK_SECRET=whsec_...)", param="callback_url",
                                   code="callbacks_off")
                check_callback_url(body.callback_url, emulator=self.config.emulator)
        except BadField as bad:
            return error(400, bad.message, param=bad.param, code=bad.code)
        idem = request.headers.get("idempotency-key") or None
        existing = self._existing(owner, body, idem, request.headers.get("x-stainless-retry-count", "0"))
        if isinstance(existing, Response):
            return existing
        if existing is not None:
            return await self._answer(existing)
        row = self.store.insert(VideoRow(
            id=f"video_{uuid.uuid4().hex}", owner=owner, idempotency_key=idem, fingerprint=body.fingerprint,
            model=body.model, seconds=body.seconds, size=body.size, prompt=body.request.prompt,
            route_json=None if body.route is None else body.route.model_dump_json(), callback_url=body.callback_url,
            created_at=time.time(), deleted_at=None))
        if row.fingerprint != body.fingerprint:  # lost a race for the same Idempotency-Key
            return reused_key()
        try:
            await self.gateway.submit(body.request, route=body.route, idempotency_key=row.id, budget_scope=owner)
        except GatewayError as failure:
            if self._may_hold_job(row.id):
                return self._after_intent(row, failure)
            self.store.remove(row.id)  # nothing was sent: a retry may make it anew
            return refusal_of(failure)
        except Exception as failure:  # must answer with x-should-retry: false when a job may exist
            if self._may_hold_job(row.id):
                return self._after_intent(row, failure)
            self.store.remove(row.id)
            raise
        if self._lost > 0:
            self._lost -= 1
            return Response("upstream answer lost (test fault)", status_code=502)
        return await self._answer(row)

    def _existing(self, owner: str, body: CreateBody, idem: str | None, retry_count: str) -> Any:
        if idem is not None:
            found = self.store.by_idempotency_key(owner, idem)
            if found is not None and found.fingerprint != body.fingerprint:
                return reused_key()
            return found
        retried = retry_count.isdigit() and int(retry_count) > 0
        if retried:
            return self.store.recent_twin(owner, body.fingerprint, time.time() - self.config.retry_window)
        return None

    def _may_hold_job(self, video_id: str) -> bool:
        """Whether any submit of the video may have reached a vendor: every submit recorded failed and
        unbilled (a budget refusal written in the intent's own transaction) means nothing was sent."""
        return any(s.state != "failed" or s.may_be_billed for s in self.gateway.journal.submits(video_id))

    def _after_intent(self, row: VideoRow, failure: BaseException) -> Response:
        return error(500, f"the video {row.id} was accepted but the answer failed ({type(failure).__name__}); "
                     f"do not create it again: GET /v1/videos/{row.id}", type="server_error", code="answer_failed",
                     headers={"x-should-retry": "false"})

    # ---- reading ------------------------------------------------------------------------------
    async def _view(self, row: VideoRow) -> JobView | None:
        job = self.gateway.job(row.id)
        try:
            view: JobView = await job.status()
        except KeyError:
            return None
        if not view.final:
            self._wake_if_pushed(view)
            await self._ensure_followed(row.id)
        else:
            self._pushes_seen.pop(row.id, None)
        return view

    def _wake_if_pushed(self, view: JobView) -> None:
        """Wake this replica's follower when a push for its job is on record: another replica may have
        received it (vendors deliver to the public URL, any replica behind it), and a wake-up is in-process
        only. Once per new delivery; polling remains the fallback between asks."""
        box = self.gateway.push
        if box is None or not view.provider or not view.vendor_job_id:
            return
        if not self.gateway._followers_here().running(view.id):
            return
        seen = box.events.count(vendor=view.provider, job_id=view.vendor_job_id)
        if seen > self._pushes_seen.get(view.id, 0):
            self._pushes_seen[view.id] = seen
            box.wake(view.id)

    async def _callback_event(self, owner: str, video_id: str) -> tuple[str, dict[str, Any]] | None:
        """A callback's (status, Video object) once the video has ended; ``None`` before."""
        row = self.store.get(owner, video_id)
        view = None if row is None else await self._view(row)
        if row is None or view is None or not view.final:
            return None
        data = video_json(row, view)
        return str(data["status"]), data

    async def _ensure_followed(self, video_id: str) -> None:
        """A job nobody follows (its process died) is picked up by the replica that is asked about it."""
        followers = self.gateway._followers_here()
        if followers.running(video_id) or followers.closing:
            return
        if await self.gateway._claimable(video_id):
            self.gateway._start_follower(video_id)

    async def _answer(self, row: VideoRow, status: int = 200) -> Response:
        view = await self._view(row)
        body = video_json(row, view, self._expires_at(row, view))
        headers = {} if body["status"] in ("completed", "failed") else {
            "openai-poll-after-ms": str(self.config.poll_after_ms)}
        return JSONResponse(body, status_code=status, headers=headers)

    async def retrieve(self, request: Request, owner: str) -> Response:
        row = self.store.get(owner, request.path_params["video_id"])
        return not_found(request) if row is None else await self._answer(row)

    async def list(self, request: Request, owner: str) -> Response:
        query = request.query_params
        order = query.get("order", "desc")
        if order not in ("asc", "desc"):
            return error(400, "order must be asc or desc", param="order")
        limit_text = query.get("limit", "20")
        if not limit_text.isdigit() or not 1 <= int(limit_text) <= 100:
            return error(400, "limit must be an integer from 1 to 100", param="limit")
        rows, more = self.store.page(owner, after=query.get("after"), limit=int(limit_text), ascending=order == "asc")
        data = []
        for row in rows:
            view = await self._view(row)
            data.append(video_json(row, view, self._expires_at(row, view)))
        return JSONResponse({"object": "list", "data": data, "has_more": more,
                             "first_id": data[0]["id"] if data else None, "last_id": data[-1]["id"] if data else None})

    # ---- ending -------------------------------------------------------------------------------
    async def delete(self, request: Request, owner: str) -> Response:
        row = self.store.get(owner, request.path_params["video_id"])
        if row is None:
            return not_found(request)
        view = await self._view(row)
        if view is not None and not view.final:
            try:
                await self.gateway.job(row.id).cancel()
            except (CannotCancel, ClipInProgress) as refusal:
                return error(409, f"video {row.id} is still being made and cannot be deleted: {refusal.message}",
                             code="cannot_cancel")
        (self.config.media_dir / f"{row.id}.mp4").unlink(missing_ok=True)
        self.store.mark_deleted(row.id)
        return JSONResponse({"id": row.id, "deleted": True, "object": "video.deleted"})

    async def cancel(self, request: Request, owner: str) -> Response:
        row = self.store.get(owner, request.path_params["video_id"])
        if row is None:
            return not_found(request)
        try:
            await self.gateway.job(row.id).cancel()
        except (CannotCancel, ClipInProgress) as refusal:
            return error(409, refusal.message, code="cannot_cancel")
        return await self._answer(row)

    # ---- health -------------------------------------------------------------------------------
    async def healthz(self, request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    async def readyz(self, request: Request) -> Response:
        if self.draining:
            return JSONResponse({"status": "draining"}, status_code=503)
        try:
            await asyncio.to_thread(self.store.ping)
        except Exception as failure:  # any storage failure means not ready
            return JSONResponse({"status": "storage unreachable", "error": type(failure).__name__}, status_code=503)
        return JSONResponse({"status": "ready"})

    async def openapi(self, request: Request) -> Response:
        return JSONResponse(openapi_document())

    async def ledger(self, request: Request, owner: str) -> Response:
        """The emulator's billing ledger (emulator mode only), for tests in other processes."""
        return JSONResponse(self.gateway.emulator.ledger_json())


def _by_method(**handlers: Callable[[Request], Awaitable[Response]]) -> Callable[[Request], Awaitable[Response]]:
    """One endpoint serving several methods of a path (Starlette refuses any other method with 405)."""
    async def endpoint(request: Request) -> Response:
        return await handlers["GET" if request.method == "HEAD" else request.method](request)

    return endpoint


def build_app(gateway: Any, config: ServerConfig) -> Starlette:
    """The Starlette app for ``gateway``; its shutdown stops the followers (leases released)."""
    server = VideoServer(gateway, config)
    box = gateway.push
    relay = relay_for(gateway.journal) if box is not None else None  # replicas on PostgreSQL wake each other

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        if server.callbacks is not None:
            server.callbacks.start()
        if relay is not None:
            box.relay = relay.notify
            relay.start(box.wake_here)
        try:
            yield
        finally:
            server.draining = True
            if relay is not None:
                box.relay = None
                await relay.close()
            if server.callbacks is not None:
                await server.callbacks.close()  # claims handed back: another replica delivers them
            await gateway.aclose()  # lets submits on the wire finish, then hands the jobs back
            server.store.close()

    routes = [  # one Route per path, so a 405 lists every method the path has (Allow, RFC 9110 §15.5.6)
        Route("/v1/videos", _by_method(POST=server.authed(server.create), GET=server.authed(server.list)),
              methods=["GET", "POST"]),
        Route("/v1/videos/{video_id}", _by_method(GET=server.authed(server.retrieve),
                                                  DELETE=server.authed(server.delete)), methods=["GET", "DELETE"]),
        Route("/v1/videos/{video_id}/content", server.authed(server.content), methods=["GET"]),
        Route("/v1/videos/{video_id}/cancel", server.authed(server.cancel), methods=["POST"]),
        Route("/healthz", server.healthz, methods=["GET"]),
        Route("/readyz", server.readyz, methods=["GET"]),
        Route("/openapi.json", server.openapi, methods=["GET"]),
        *config.routes,
    ]
    try:
        from gateway.server.metrics import Metrics
    except ImportError:  # prometheus-client is in the server extra; without it there is no /metrics
        metrics = None
    else:
        metrics = Metrics(gateway, config.intake, server.callbacks)
        routes.append(Route("/metrics", server.authed(lambda request, owner: metrics.endpoint(request)),
                            methods=["GET"]))
    if config.emulator and getattr(gateway, "emulator", None) is not None:
        routes.append(Route("/_emulator/ledger", server.authed(server.ledger), methods=["GET"]))

    async def crashed(request: Request, failure: Exception) -> Response:
        return error(500, f"internal error ({type(failure).__name__})", type="server_error", code="internal_error")

    async def refused(request: Request, failure: Exception) -> Response:
        # Starlette's own 404/405 in the API's error envelope, keeping its headers (a 405's Allow)
        assert isinstance(failure, HTTPException)
        code = {404: "not_found", 405: "method_not_allowed"}.get(failure.status_code)
        return error(failure.status_code, str(failure.detail), code=code, headers=dict(failure.headers or {}))

    middleware = [metrics.middleware()] if metrics is not None else []
    middleware.append(Middleware(BodyLimit, max_bytes=config.max_body_bytes))  # inside: metrics sees its 413s
    app = Starlette(routes=routes, lifespan=lifespan, exception_handlers={Exception: crashed, HTTPException: refused},
                    middleware=middleware)
    app.state.server = server
    return app
