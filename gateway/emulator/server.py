"""The emulator over plain HTTP on loopback (stdlib ``ThreadingHTTPServer``), routed by path."""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, cast

import httpx

if TYPE_CHECKING:
    from gateway.emulator import Emulator

__all__ = ["serve"]


ROUTES: tuple[tuple[str, str], ...] = (
    ("/v1", "runware (task API)"), ("/api/v3/...", "wavespeed"),
    ("/fal-ai/...", "fal queue (uploads: /storage, /files)"), ("/_emulator/ledger", "billing ledger (JSON)"),
    ("/_emulator/instance", "this emulator's instance id (JSON)"))
"""Which loopback paths reach which emulated vendor, as ``ovi-gateway emulate`` prints them."""


def serve(emulator: Emulator, *, host: str = "127.0.0.1", port: int = 0) -> ThreadingHTTPServer:
    """Start serving ``emulator`` in a daemon thread. Loopback only: other hosts are refused."""
    if host not in ("127.0.0.1", "localhost", "::1"):
        raise ValueError("the emulator serves on loopback only (127.0.0.1, localhost or ::1)")

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def _answer(self) -> None:
            length = int(self.headers.get("content-length") or 0)
            body = self.rfile.read(length) if length else b""
            port = cast(ThreadingHTTPServer, self.server).server_port
            url = f"http://{self.headers.get('host') or f'{host}:{port}'}{self.path}"
            request = httpx.Request(self.command, url, headers=list(self.headers.items()), content=body)
            try:
                response = emulator.handle(request)
            except (httpx.ConnectError, httpx.ReadTimeout, httpx.RemoteProtocolError):
                self.close_connection = True  # an emulated network fault: hang up without answering
                return
            try:
                payload = response.read()
            except httpx.ReadError:  # drop_body: hang up like drop (the job, if any, is already made)
                self.close_connection = True
                return
            self.send_response(response.status_code)
            for name, value in response.headers.items():
                if name.lower() not in ("content-length", "transfer-encoding", "connection"):
                    self.send_header(name, value)
            self.send_header("content-length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        do_GET = do_POST = do_PUT = do_DELETE = _answer

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = ThreadingHTTPServer((host, port), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, name="ovi-emulator", daemon=True).start()
    return server
