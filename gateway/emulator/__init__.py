"""An in-process (and loopback) emulator of the three vendors' documented Ovi protocols.

``Emulator()`` builds the three emulated vendors on one clock and one ledger. ``emulator.transport()``
is an httpx transport that routes by the vendors' real hosts, so the real adapters (fal-client
included) run against it unchanged; ``emulator.serve(port)`` answers the same on loopback HTTP,
routing by path, for clients that take a base URL (curl, the vendors' SDKs), and Runware's
WebSocket API at ``ws://127.0.0.1:PORT/v1`` (the official runware SDK's transport).

The emulator is never a provider: it emulates vendors, and is not registered in
``ovi_gateway.providers`` (at price 0 it would win every cheapest route).
"""

from __future__ import annotations

import random
import uuid
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

import httpx

from gateway.clock import Clock, RealClock
from gateway.emulator.base import EmulatedVendor, Ledger, json_response
from gateway.emulator.clips import ClipStore
from gateway.emulator.faults import FAULT_KINDS, FaultScript, parse_faults

if TYPE_CHECKING:
    from gateway.emulator.server import LoopbackServer

__all__ = ["FAULT_KINDS", "Emulator", "FaultScript", "Ledger", "parse_faults"]

LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")


def _vendor_classes() -> dict[str, type[EmulatedVendor]]:
    from gateway.emulator.fal import FalEmulator
    from gateway.emulator.runware import RunwareEmulator
    from gateway.emulator.wavespeed import WaveSpeedEmulator

    return {"runware": RunwareEmulator, "fal": FalEmulator, "wavespeed": WaveSpeedEmulator}


class Emulator:
    """The three emulated vendors, sharing a clock and a billing ledger.

    Args:
        clock: drives job times (a ``VirtualClock`` in tests and benchmarks).
        faults: per vendor name, a ``FaultScript``, or a one-line spec for ``parse_faults``.
        job_time: draws one job's running time in seconds; default uniform 45–75 s.
        queue_time: seconds a job waits in the queue before running.
        seed: makes ids, job times and probabilistic faults repeat.
        api_keys: per vendor, the one key accepted (default: any non-empty key).
        render_media: serve clips showing the request's own image, encoded on first download and
            cached by image hash (needs PyAV, the ``media`` extra); default: the packaged clips, so
            tests and benchmarks never encode video (``gateway.emulator.clips``).
    """

    def __init__(self, *, clock: Clock | None = None,
                 faults: Mapping[str, FaultScript] | str | None = None,
                 job_time: Callable[[random.Random], float] | None = None, queue_time: float = 0.0,
                 seed: int = 0, api_keys: Mapping[str, str] | None = None, render_media: bool = False) -> None:
        self.clock: Clock = clock or RealClock()
        self.instance_id: str = uuid.uuid4().hex
        """Names this emulator process's lifetime: journal rows carry it, so a later run can tell the jobs
        of an emulator that is gone (never billed, never finishing) from its own."""
        self.clips: ClipStore = ClipStore(render=render_media)
        self.ledger: Ledger = Ledger()
        scripts = parse_faults(faults, seed=seed) if isinstance(faults, str) else dict(faults or {})
        classes = _vendor_classes()
        unknown = set(scripts) - set(classes)
        if unknown:
            raise ValueError(f"no emulated vendor named {', '.join(sorted(unknown))}; "
                             f"use {', '.join(classes)}")
        self.vendors: dict[str, EmulatedVendor] = {
            name: cls(clock=self.clock, ledger=self.ledger, faults=scripts.get(name),
                      job_time=job_time, queue_time=queue_time, seed=seed + index,
                      api_key=(api_keys or {}).get(name), clips=self.clips)
            for index, (name, cls) in enumerate(classes.items())
        }
        self._by_host = {host: vendor for vendor in self.vendors.values() for host in vendor.hosts}

    def __getitem__(self, name: str) -> EmulatedVendor:
        return self.vendors[name]

    def deliver_late(self, *, everything: bool = False) -> int:
        """Let ``late`` submits that are due (``everything``: all, however far off) reach their vendors;
        how many did. Requests deliver them too; call this before reading the ledger at the end of a run."""
        return sum(vendor.deliver_late(everything=everything) for vendor in self.vendors.values())

    def handle(self, request: httpx.Request) -> httpx.Response:
        """Answer one request, routed by host (real vendor hosts) or by path (loopback)."""
        jwks_hosts = ("rest.alpha.fal.ai", *LOOPBACK_HOSTS)
        if request.url.path == "/.well-known/jwks.json" and request.url.host in jwks_hosts:
            from gateway.emulator.webhooks import fal_jwks  # fal's webhook keys (the emulator's test key)

            return json_response(200, fal_jwks())
        if request.url.path == "/_emulator/ledger" and request.url.host in LOOPBACK_HOSTS:
            return json_response(200, self.ledger_json())
        if request.url.path == "/_emulator/instance" and request.url.host in LOOPBACK_HOSTS:
            return json_response(200, {"instance": self.instance_id})
        vendor = self.vendor_for(request)
        if vendor is None:
            return json_response(404, {"error": f"the emulator serves no host {request.url.host}"})
        return vendor.handle(request)

    def vendor_for(self, request: httpx.Request) -> EmulatedVendor | None:
        """The emulated vendor a request is for: by its real host, or on loopback by its path."""
        vendor = self._by_host.get(request.url.host)
        if vendor is None and request.url.host in LOOPBACK_HOSTS:
            vendor = self._by_path(request.url.path)
        return vendor

    def ledger_json(self) -> dict[str, Any]:
        """The ledger as JSON (served at ``/_emulator/ledger`` on loopback, for tests in other processes)."""
        return {"requests": [{"vendor": v, "operation": op} for v, op, _ in self.ledger.requests],
                "jobs": [{"vendor": j.vendor, "job_id": j.job_id, "clip": j.clip, "state": j.state,
                          "billable": j.billable, "price": str(j.price)} for j in self.ledger.jobs]}

    def _by_path(self, path: str) -> EmulatedVendor | None:
        if path.startswith("/v1"):
            return self.vendors["runware"]
        if path.startswith("/api/v3/"):
            return self.vendors["wavespeed"]
        if path.startswith(("/fal-ai/", "/fal-run/", "/storage/", "/files/")):
            return self.vendors["fal"]
        return None

    def deliver_webhooks(self, sender: Any) -> Any:
        """Make every vendor deliver webhooks through ``sender`` (a ``WebhookSender``); returns it."""
        for vendor in self.vendors.values():
            vendor.webhooks = sender
        return sender

    def transport(self) -> httpx.MockTransport:
        """An httpx transport (sync and async) answering for every emulated vendor host."""
        return httpx.MockTransport(self.handle)

    def serve(self, port: int = 0, host: str = "127.0.0.1", *, backlog: int | None = None) -> LoopbackServer:
        """Serve on loopback (HTTP, and Runware's WebSocket at ``/v1``) in a background thread.

        Returns a running ``LoopbackServer``: ``.server_port``, ``.url``, ``.ws_url``; stop it with
        ``.shutdown()`` or a ``with`` block. ``port=0`` picks a free port; ``backlog`` defaults to
        ``server.BACKLOG`` (1024) pending connects.
        """
        from gateway.emulator.server import BACKLOG, serve

        return serve(self, host=host, port=port, backlog=BACKLOG if backlog is None else backlog)
