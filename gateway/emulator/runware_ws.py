"""Runware's WebSocket API (``wss://ws-api.runware.ai/v1``), emulated at ``ws://127.0.0.1:PORT/v1``.

The framing is what the official SDK (runware 0.5.24) sends and reads (research notes, sdk-semantics.md §C):

- every client frame is a JSON array of tasks; every server frame an object with ``data`` and/or ``errors``;
- ``[{"taskType": "authentication", "apiKey": K, "connectionSessionUUID"?: S}]`` is answered
  ``{"data": [{"taskType": "authentication", "connectionSessionUUID": S}]}`` (the SDK waits for
  ``data[0].connectionSessionUUID``, server.py L70-76); a bad or missing key gets the REST API's own 401
  error entry, which carries ``taskType: "authentication"`` (what the SDK's login listener matches, L77-96),
  and the connection stays open, unauthenticated. A known ``connectionSessionUUID`` resumes that session:
  answers that could not be delivered on its old connection are sent after the reply (Runware's schema:
  "resume a previous connection and receive any buffered results"); an unknown one gets a fresh session;
- ``[{"taskType": "ping", "ping": true}]`` is answered ``{"data": [{"taskType": "ping", "pong": true}]}``
  (server.py L109-114, L458-486), authenticated or not;
- any other tasks are answered exactly as ``POST /v1`` answers them, by the REST emulator itself
  (``RunwareEmulator.handle`` with the session's key as a Bearer header), so validation, jobs, billing,
  ``conflictTaskUUID``, ``taskFailedOrNotFound``, the error shapes of failed and refused jobs, the ledger and
  the scripted faults are the REST route's. Only the HTTP status is lost, as on the real socket. Tasks sent
  before authenticating get one error each (``missingApiKey``, with their ``taskUUID``, so the SDK fails that
  call instead of waiting for its ack timeout): an emulator choice, Runware documents nothing here.

Faults keep their network meaning: ``refuse`` closes the socket before the frame is handled (nothing made);
``timeout`` never answers (nothing made; the SDK times out, reconnects and re-sends the same taskUUID);
``drop`` and ``drop_body`` make the job, then close the socket without the answer.
"""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import httpx

if TYPE_CHECKING:
    from gateway.emulator.base import EmulatedVendor

__all__ = ["Reply", "RunwareSocket", "Sessions", "serve_socket"]

Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]

PATHS = ("/v1", "/v1/")
CLOSE_ABNORMAL = 1011
"""The close code sent when a fault drops the connection (1006 cannot be sent; 1011 = server error)."""
NOT_AN_ARRAY = {"errors": [{"code": "invalidRequestBody", "message": "You must always send an array of task objects."}]}


class Sessions:
    """Connection sessions (``connectionSessionUUID``) and the answers each could not deliver; thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._outbox: dict[str, list[str]] = {}

    def open(self, given: Any) -> str:
        """Resume ``given`` when it is a known session, else start a new one; returns the session id."""
        with self._lock:
            if isinstance(given, str) and given in self._outbox:
                return given
            session = str(uuid.uuid4())
            self._outbox[session] = []
            return session

    def buffer(self, session: str, frames: list[str]) -> None:
        with self._lock:
            self._outbox.setdefault(session, []).extend(frames)

    def take(self, session: str) -> list[str]:
        """The frames waiting for ``session`` (removed)."""
        with self._lock:
            frames, self._outbox[session] = self._outbox.get(session, []), []
            return frames


@dataclass
class Reply:
    """What to do with one client frame: send ``frames`` in order, then close the socket if ``hang_up``."""

    frames: list[str] = field(default_factory=list)
    hang_up: bool = False


class RunwareSocket:
    """One WebSocket connection's state (its key and session) and its answers; no I/O of its own.

    ``base_url`` is where the REST requests it makes appear to go (``http://HOST:PORT/v1`` on loopback), so
    result URLs point back at the loopback server.
    """

    def __init__(self, vendor: EmulatedVendor, sessions: Sessions, base_url: str) -> None:
        self.vendor = vendor
        self.sessions = sessions
        self.base_url = base_url
        self.key: str | None = None
        self.session: str | None = None

    async def answer(self, text: str) -> Reply:
        """The reply to one client frame."""
        try:
            tasks = json.loads(text)
        except ValueError:
            tasks = None
        if not isinstance(tasks, list) or not tasks:
            return Reply([json.dumps(NOT_AN_ARRAY)])
        reply = Reply()
        work = []
        for task in tasks:
            kind = task.get("taskType") if isinstance(task, dict) else None
            if kind == "authentication":
                reply.frames += self._authenticate(task)
            elif kind == "ping":
                reply.frames.append(json.dumps({"data": [{"taskType": "ping", "pong": True}]}))
            else:
                work.append(task)
        if work and self.key is None:
            reply.frames.append(json.dumps({"errors": [_unauthenticated(task) for task in work]}))
        elif work:
            frame, reply.hang_up = await self._rest(work)
            if frame is not None:
                reply.frames.append(frame)
        return reply

    def _authenticate(self, task: dict[str, Any]) -> list[str]:
        key = task.get("apiKey")
        if not self.vendor._auth_task_ok(task):  # type: ignore[attr-defined]  # the REST route's own check
            self.key = None
            headers = {"authorization": f"Bearer {key}"} if isinstance(key, str) and key else {}
            refused = self.vendor.error_response(401, httpx.Request("POST", self.base_url, headers=headers))
            return [refused.content.decode()]
        self.key = key
        self.session = self.sessions.open(task.get("connectionSessionUUID"))
        accepted = {"data": [{"taskType": "authentication", "connectionSessionUUID": self.session}]}
        return [json.dumps(accepted), *self.sessions.take(self.session)]

    async def _rest(self, tasks: list[Any]) -> tuple[str | None, bool]:
        """The REST route's answer to ``tasks`` as one frame, and whether the connection drops instead."""
        request = httpx.Request("POST", self.base_url, json=tasks, headers={"authorization": f"Bearer {self.key}"})
        try:
            response = self.vendor.handle(request)
        except httpx.TimeoutException:
            return None, False
        except (httpx.ConnectError, httpx.RemoteProtocolError):
            return None, True
        try:
            body = b"".join([chunk async for chunk in response.stream])  # type: ignore[union-attr]
        except httpx.TransportError:
            return None, True
        return body.decode("utf-8", "replace"), False

    def undelivered(self, frames: list[str]) -> None:
        """Keep ``frames`` for this session's next connection (the socket closed before they went out)."""
        if self.session is not None and frames:
            self.sessions.buffer(self.session, frames)


def _unauthenticated(task: Any) -> dict[str, Any]:
    entry: dict[str, Any] = {"code": "missingApiKey",
                             "message": "Authenticate first: send an authentication task on this connection.",
                             "parameter": "apiKey"}
    if isinstance(task, dict):
        entry["taskType"] = task.get("taskType")
        if isinstance(task.get("taskUUID"), str):
            entry["taskUUID"] = task["taskUUID"]
    return entry


async def serve_socket(vendor: EmulatedVendor, sessions: Sessions, scope: MutableMapping[str, Any],
                       receive: Receive, send: Send) -> None:
    """Serve one ASGI WebSocket connection as Runware's API (only at ``/v1``; elsewhere refused)."""
    message = await receive()
    if message["type"] != "websocket.connect":
        return
    if scope.get("path") not in PATHS:
        await send({"type": "websocket.close", "code": 1008})  # before accept: uvicorn answers HTTP 403
        return
    await send({"type": "websocket.accept"})
    host = next((v.decode("latin-1") for k, v in scope["headers"] if k == b"host"), "127.0.0.1")
    connection = RunwareSocket(vendor, sessions, f"http://{host}/v1")
    while True:
        message = await receive()
        if message["type"] == "websocket.disconnect":
            return
        text = message.get("text")
        if text is None:
            text = (message.get("bytes") or b"").decode("utf-8", "replace")
        reply = await connection.answer(text)
        for index, frame in enumerate(reply.frames):
            try:
                await send({"type": "websocket.send", "text": frame})
            except OSError:  # the client went away mid-reply: keep the rest for a resumed session
                connection.undelivered(reply.frames[index:])
                return
        if reply.hang_up:
            await send({"type": "websocket.close", "code": CLOSE_ABNORMAL})
            return
