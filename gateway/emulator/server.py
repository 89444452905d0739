"""The emulator on loopback: one uvicorn (ASGI) server answering HTTP and Runware's WebSocket on one port.

``serve(emulator)`` binds and listens before it returns (a listen backlog of ``BACKLOG``, so a burst of
simultaneous connects queues instead of being reset), then runs uvicorn's event loop in a daemon thread.
The returned ``LoopbackServer`` has ``.server_port`` and ``.url``, and stops with ``.shutdown()`` (or as a
context manager); ``.server_close()`` is kept for callers written against the old ``ThreadingHTTPServer``.

HTTP requests become the ``httpx.Request`` the emulated vendors already handle in-process
(``Emulator.handle``, called on the event loop; clip downloads, which may encode video, on a worker
thread), and their ``httpx.Response`` is streamed back as it is read, so a slow or broken
body reaches the client as one. Emulated network faults keep their meaning on a real socket: ``refuse``,
``timeout`` and ``drop`` hang up without an answer; ``drop_body`` sends the headers, then hangs up.
A WebSocket at ``/v1`` speaks Runware's task framing (``runware_ws``).

Every accepted socket gets ``TCP_NODELAY``: asyncio's selector transport already sets it
(``asyncio/selector_events.py``, ``_SelectorSocketTransport.__init__``: ``base_events._set_nodelay``);
uvicorn itself does not, so ``_Protocol`` sets it again rather than depend on that detail. Without it a
keep-alive answer written as headers, then body, waits ~40 ms for the client's delayed ACK (Nagle).
"""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, MutableMapping
from typing import TYPE_CHECKING, Any

import httpx

if TYPE_CHECKING:
    from gateway.emulator import Emulator

__all__ = ["BACKLOG", "ROUTES", "LoopbackServer", "serve"]

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]

LOOPBACK = ("127.0.0.1", "localhost", "::1")
BACKLOG = 1024
"""Pending connections the kernel queues (capped by ``net.core.somaxconn``, 4096 on current Linux)."""
KEEP_ALIVE_S = 120.0
"""Idle keep-alive connections are closed after this many seconds. Longer than any poll interval the
gateway or the vendors' SDKs use (WaveSpeed's floor is 5 s, uvicorn's default keep-alive): a server
closing a pooled connection just as the client reuses it would show up as a false network error."""
WS_MAX_BYTES = 64 * 1024 * 1024
"""Largest WebSocket message accepted (the Runware SDK sends local images inline as base64)."""

ROUTES: tuple[tuple[str, str], ...] = (
    ("/v1", "runware (task API; a WebSocket here speaks the official SDK's framing)"),
    ("/api/v3/...", "wavespeed"),
    ("/fal-ai/...", "fal queue (uploads: /storage, /files)"), ("/fal-run/...", "fal synchronous runs (fal.run)"),
    ("/_emulator/ledger", "billing ledger (JSON)"), ("/_emulator/instance", "this emulator's instance id (JSON)"))
"""Which loopback paths reach which emulated vendor, as ``ovi-gateway emulate`` prints them."""

_HOP_BY_HOP = frozenset({b"transfer-encoding", b"connection", b"keep-alive"})
_HANG_UP = (httpx.ConnectError, httpx.TimeoutException, httpx.RemoteProtocolError)
"""What an emulated vendor raises for ``refuse``/``timeout``/``drop``: on a socket, no answer at all."""


class LoopbackServer:
    """A running loopback emulator server: ``server_port``, ``url``, ``ws_url``; stop with ``shutdown()``.

    Built by ``serve()`` (``Emulator.serve``). Usable as a context manager, which shuts it down on exit.
    """

    def __init__(self, emulator: Emulator, sock: socket.socket, backlog: int) -> None:
        import uvicorn

        self.emulator = emulator
        self.host: str = sock.getsockname()[0]
        self.server_port: int = sock.getsockname()[1]
        """The port listened on (the one picked by the OS when asked for port 0)."""
        self.backlog = backlog
        self._sock = sock
        self.transports: dict[Any, asyncio.Transport] = {}
        """Open HTTP connections by client address (``scope["client"]``), so a fault can hang one up."""
        config = uvicorn.Config(
            _App(emulator, self), loop="asyncio", http=_protocol_class(self.transports), ws="websockets-sansio",
            lifespan="off", log_config=None, log_level="warning", access_log=False, backlog=backlog,
            timeout_keep_alive=int(KEEP_ALIVE_S), ws_max_size=WS_MAX_BYTES, timeout_graceful_shutdown=2)
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._run, name=f"ovi-emulator:{self.server_port}", daemon=True)
        self._failed: BaseException | None = None

    @property
    def url(self) -> str:
        """``http://HOST:PORT``, the base URL every vendor path hangs off."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.server_port}"

    @property
    def ws_url(self) -> str:
        """Runware's WebSocket endpoint on this server, ``ws://HOST:PORT/v1`` (for ``runware.Runware(url=)``)."""
        return "ws" + self.url[4:] + "/v1"

    def _run(self) -> None:
        try:
            self._server.run(sockets=[self._sock])
        except BaseException as error:  # reported by start(); a daemon thread has no one else to tell
            self._failed = error

    def start(self, timeout: float = 10.0) -> LoopbackServer:
        """Run the event loop in a daemon thread; return once it accepts connections (``timeout`` seconds)."""
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self._server.started:
            if self._failed is not None or not self._thread.is_alive() or time.monotonic() > deadline:
                self._server.should_exit = True
                raise RuntimeError(f"the loopback emulator did not start within {timeout} s") from self._failed
            time.sleep(0.002)  # start-up takes a few ms; this is the server's own thread hand-off
        return self

    def shutdown(self, timeout: float = 5.0) -> None:
        """Stop accepting, close open connections (WebSockets get close code 1012) and wait for the thread
        (at most ``timeout`` seconds). Safe to call twice."""
        self._server.should_exit = True
        if self._thread.is_alive() and threading.current_thread() is not self._thread:
            self._thread.join(timeout)

    def server_close(self) -> None:
        """Close the listening socket (already closed by ``shutdown()``; kept for old callers)."""
        self._sock.close()

    def __enter__(self) -> LoopbackServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.shutdown()
        self.server_close()

    def __repr__(self) -> str:
        return f"LoopbackServer({self.url})"


def serve(emulator: Emulator, *, host: str = "127.0.0.1", port: int = 0, backlog: int = BACKLOG) -> LoopbackServer:
    """Start serving ``emulator`` on ``host:port`` (0 picks a free port) in a daemon thread.

    Loopback only: other hosts are refused. Raises ``OSError`` when the port cannot be bound.
    """
    if host not in LOOPBACK:
        raise ValueError("the emulator serves on loopback only (127.0.0.1, localhost or ::1)")
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(backlog)  # before returning: a client may connect the moment serve() returns
        sock.setblocking(False)
        return LoopbackServer(emulator, sock, backlog).start()
    except BaseException:
        sock.close()
        raise


def _protocol_class(transports: dict[Any, asyncio.Transport]) -> type[asyncio.Protocol]:
    """uvicorn's h11 protocol, plus ``TCP_NODELAY`` and a registry of open transports (for hang-ups)."""
    from uvicorn.protocols.http.h11_impl import H11Protocol
    from uvicorn.protocols.utils import get_remote_addr

    class _Protocol(H11Protocol):
        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            sock = transport.get_extra_info("socket")
            if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            super().connection_made(transport)
            transports[get_remote_addr(transport)] = transport

        def connection_lost(self, exc: Exception | None) -> None:
            transports.pop(self.client, None)
            super().connection_lost(exc)

        def handle_websocket_upgrade(self, event: Any) -> None:
            transports.pop(self.client, None)  # the WebSocket protocol owns the transport from here
            super().handle_websocket_upgrade(event)

    return _Protocol


class _App:
    """The ASGI application: HTTP to ``Emulator.handle``, a WebSocket at ``/v1`` to Runware's framing."""

    def __init__(self, emulator: Emulator, server: LoopbackServer) -> None:
        from gateway.emulator.runware_ws import Sessions

        self.emulator = emulator
        self.server = server
        self.sessions = Sessions()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            await self._http(scope, receive, send)
        elif scope["type"] == "websocket":
            from gateway.emulator.runware_ws import serve_socket

            await serve_socket(self.emulator["runware"], self.sessions, scope, receive, send)

    async def _http(self, scope: Scope, receive: Receive, send: Send) -> None:
        body = bytearray()
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        request = httpx.Request(scope["method"], _url(scope), headers=list(scope["headers"]), content=bytes(body))
        try:
            if self._may_be_slow(request):
                response = await asyncio.to_thread(self.emulator.handle, request)
            else:  # inline: a worker-thread hand-off would double a keep-alive round trip
                response = self.emulator.handle(request)
        except _HANG_UP:
            await self._hang_up(scope, receive)
            return
        headers = [(name, value) for name, value in response.headers.raw if name.lower() not in _HOP_BY_HOP]
        await send({"type": "http.response.start", "status": response.status_code, "headers": headers})
        try:
            pending: bytes | None = None
            async for chunk in _chunks(response.stream):
                if pending:
                    await send({"type": "http.response.body", "body": pending, "more_body": True})
                pending = chunk
        except httpx.TransportError:  # drop_body: the headers went out, the body never comes
            await self._hang_up(scope, receive)
            return
        await send({"type": "http.response.body", "body": pending or b"", "more_body": False})

    def _may_be_slow(self, request: httpx.Request) -> bool:
        """Clip downloads may encode a video first (``Emulator(render_media=True)``): they run on a worker
        thread, so one download never stalls the event loop every other connection shares."""
        if request.method != "GET":
            return False
        vendor = self.emulator.vendor_for(request)
        return vendor is not None and vendor.operation(request) == "download"

    async def _hang_up(self, scope: Scope, receive: Receive) -> None:
        """Close this connection without (the rest of) an answer, as a dropped connection looks to a client."""
        transport = self.server.transports.get(scope.get("client"))
        if transport is None:
            raise ConnectionAbortedError("[emulated] connection dropped")  # uvicorn answers 500 and closes
        transport.close()
        # Wait for uvicorn to see the close: returning earlier makes it answer 500 on the closing socket.
        try:
            await asyncio.wait_for(receive(), 5.0)
        except TimeoutError:
            pass


async def _chunks(stream: Any) -> AsyncIterator[bytes]:
    """The body's chunks as they come: async streams directly, sync-only ones from a worker thread."""
    if isinstance(stream, httpx.AsyncByteStream):
        async for chunk in stream:
            yield chunk
        return
    iterator: Iterator[bytes] = iter(stream)
    while (piece := await asyncio.to_thread(_next, iterator)) is not None:
        yield piece


def _next(iterator: Iterator[bytes]) -> bytes | None:
    return next(iterator, None)


def _url(scope: Scope) -> str:
    host = next((value.decode("latin-1") for name, value in scope["headers"] if name == b"host"), None)
    if host is None:
        server_host, server_port = scope.get("server") or ("127.0.0.1", 80)
        host = f"[{server_host}]:{server_port}" if ":" in server_host else f"{server_host}:{server_port}"
    path = (scope.get("raw_path") or scope["path"].encode()).decode("latin-1")
    query = scope.get("query_string") or b""
    return f"http://{host}{path}" + (f"?{query.decode('latin-1')}" if query else "")
