"""What every emulated vendor shares: jobs on a clock, fault scripts, and the billing ledger.

A vendor module (``runware.py``, ``fal.py``, ``wavespeed.py``) subclasses ``EmulatedVendor`` and
turns HTTP requests into job operations, answering in that vendor's documented shapes. The fault
scripts themselves (kinds, ``FaultScript``, ``parse_faults``) are ``gateway.emulator.faults``, named
here too for the callers that import them from this module.
"""

from __future__ import annotations

import hashlib
import json
import random
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, ClassVar

import httpx

from gateway.clock import Clock, RealClock
from gateway.emulator.adversity import (
    LATE_S,
    TRICKLE_BYTES_PER_S,
    LateRequest,
    TrickleBody,
    flapped,
    retry_after_header,
    split_kind,
)
from gateway.emulator.clips import ClipStore
from gateway.emulator.faults import (
    ERROR_STATUSES,
    FAILING_FATES,
    FAULT_KINDS,
    JOB_FAULTS,
    ONLY_ON,
    OPERATIONS,
    TRANSPORT_FAULTS,
    FaultScript,
    JobFate,
    parse_faults,
)

__all__ = [
    "FAULT_KINDS",
    "JOB_FAULTS",
    "ONLY_ON",
    "OPERATIONS",
    "TRANSPORT_FAULTS",
    "EmulatedJob",
    "EmulatedVendor",
    "FaultScript",
    "Ledger",
    "LedgerEntry",
    "LostBody",
    "json_response",
    "parse_faults",
]

@dataclass
class LedgerEntry:
    """One job a vendor created. ``billed`` is what the vendor would charge (USD); ``None`` until it counts."""

    vendor: str
    job_id: str
    clip: str
    idempotency_key: str | None
    price: Decimal
    created_at: float
    state: str = "accepted"

    @property
    def billable(self) -> bool:
        return self.state in ("accepted", "running", "succeeded")


class Ledger:
    """Every request and every job each emulated vendor saw; thread-safe (the loopback server is threaded)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.requests: list[tuple[str, str, str]] = []
        self.jobs: list[LedgerEntry] = []

    def record_request(self, vendor: str, operation: str, url: str) -> None:
        with self._lock:
            self.requests.append((vendor, operation, url))

    def record_job(self, entry: LedgerEntry) -> None:
        with self._lock:
            self.jobs.append(entry)

    def calls(self, vendor: str | None = None, operation: str | None = None) -> int:
        return sum(1 for v, op, _ in self.requests
                   if (vendor is None or v == vendor) and (operation is None or op == operation))

    def billable(self, vendor: str | None = None) -> list[LedgerEntry]:
        return [j for j in self.jobs if j.billable and (vendor is None or j.vendor == vendor)]

    def billed_per_clip(self) -> dict[str, int]:
        """How many billable jobs each clip (prompt + image fingerprint) got, across all vendors."""
        counts: dict[str, int] = {}
        for job in self.billable():
            counts[job.clip] = counts.get(job.clip, 0) + 1
        return counts

    def total(self, vendor: str | None = None) -> Decimal:
        return sum((j.price for j in self.billable(vendor)), Decimal("0"))


def clip_fingerprint(prompt: str, image: str | None) -> str:
    """Identifies one clip across vendors: the same prompt and image are the same clip."""
    digest = hashlib.sha256(prompt.encode())
    digest.update(b"\0" + (image or "").encode())
    return digest.hexdigest()[:16]


@dataclass
class EmulatedJob:
    """A job inside an emulated vendor. Its state follows the clock; nothing runs in the background."""

    job_id: str
    created_at: float
    duration: float
    fate: JobFate
    payload: Any
    entry: LedgerEntry
    queue_time: float = 0.0
    cancelled: bool = False
    extra: dict[str, Any] = field(default_factory=dict)

    def state(self, now: float) -> str:
        """``queued``, ``running``, ``succeeded``, ``failed``, ``nsfw`` or ``cancelled`` at ``now``."""
        if self.cancelled:
            return "cancelled"
        if now < self.created_at + self.queue_time:
            return "queued"
        if self.fate == "stuck" or now < self.created_at + self.queue_time + self.duration:
            return "running"
        if self.fate in FAILING_FATES:
            return "failed"
        return "nsfw" if self.fate == "nsfw" else "succeeded"  # defective fates succeed


class LostBody(httpx.SyncByteStream, httpx.AsyncByteStream):
    """A response body that never arrives: reading it raises ``httpx.ReadError`` (sync or async),
    as when the connection drops after the headers. The error is raised where httpx reads the
    body, outside the transport, which is where client-side retry loops can catch it."""

    def __init__(self, request: httpx.Request) -> None:
        self._request = request

    def _lost(self) -> httpx.ReadError:
        return httpx.ReadError("[emulated] connection lost while reading the response body",
                               request=self._request)

    def __iter__(self) -> Iterator[bytes]:
        raise self._lost()

    async def __aiter__(self) -> AsyncIterator[bytes]:
        raise self._lost()
        yield b""  # pragma: no cover - makes this an async generator


def json_response(status: int, body: Any, headers: dict[str, str] | None = None) -> httpx.Response:
    return httpx.Response(status, content=json.dumps(body).encode(),
                          headers={"content-type": "application/json", **(headers or {})})


class EmulatedVendor:
    """Base of one emulated vendor: jobs, clock, faults, ledger, and the fault plumbing.

    Subclasses set ``name`` and ``hosts`` and implement ``route(request, operation_hint)``.
    ``job_time`` draws a job's running time in seconds (default: about a minute, like real Ovi jobs).
    """

    name: ClassVar[str]
    hosts: ClassVar[tuple[str, ...]]

    def __init__(self, *, clock: Clock | None = None, ledger: Ledger | None = None,
                 faults: FaultScript | None = None, job_time: Callable[[random.Random], float] | None = None,
                 queue_time: float = 0.0, seed: int = 0, api_key: str | None = None,
                 clips: ClipStore | None = None) -> None:
        self.clock: Clock = clock or RealClock()
        self.ledger: Ledger = ledger or Ledger()
        self.faults: FaultScript = faults or FaultScript(seed=seed)
        self.rng: random.Random = random.Random(seed)
        self.job_time: Callable[[random.Random], float] = job_time or (lambda rng: rng.uniform(45.0, 75.0))
        self.queue_time: float = queue_time
        self.api_key: str | None = api_key
        """When set, requests must carry this key; otherwise any non-empty key is accepted."""
        self.clips: ClipStore = clips or ClipStore()
        """Answers downloads of finished clips (``gateway.emulator.clips``)."""
        self.jobs: dict[str, EmulatedJob] = {}
        self.late: list[LateRequest] = []
        """Submits on their way (``late`` faults), delivered by ``deliver_late``."""
        self.current_fault: str = "ok"
        """The fault applied to the request being routed (vendors shape their answer by it)."""
        self.lock: threading.RLock = threading.RLock()
        self._ids = 0

    webhooks: Any = None
    """A ``gateway.emulator.webhooks.WebhookSender`` when the emulator delivers webhooks (else none are sent)."""

    def push_when_done(self, job: EmulatedJob, url: str | None) -> None:
        """The submit asked for a webhook at ``url``: deliver one when the job ends."""
        if url and self.webhooks is not None:
            job.extra["webhook_url"] = url
            self.webhooks.schedule(self, job, url)

    # ---- helpers for subclasses -------------------------------------------------------------
    def new_id(self) -> str:
        """A deterministic UUID4-shaped id (seeded), so runs repeat."""
        self._ids += 1
        r = self.rng.getrandbits
        return f"{r(32):08x}-{r(16):04x}-4{r(12):03x}-a{r(12):03x}-{self._ids:012x}"

    def create_job(self, job_id: str, payload: Any, *, clip: str, price: Decimal,
                   idempotency_key: str | None = None) -> EmulatedJob:
        fate: JobFate = self.faults.next("job")  # type: ignore[assignment]
        now = self.clock.now()
        entry = LedgerEntry(self.name, job_id, clip, idempotency_key, price, now)
        job = EmulatedJob(job_id, now, max(0.0, self.job_time(self.rng)), fate, payload, entry,
                          queue_time=self.queue_time)
        self.jobs[job_id] = job
        self.ledger.record_job(entry)
        return job

    def settle(self, job: EmulatedJob) -> str:
        """The job's state now, written through to its ledger entry (failed and refused jobs are not billed).

        Not billing failed jobs is the emulator's assumption for Runware and WaveSpeed, whose docs say
        nothing about failed runs (their adapters report such failures as ``may_be_billed``); for fal it
        is documented ("server errors (5xx) are never charged").
        """
        state = job.state(self.clock.now())
        job.entry.state = {"queued": "accepted", "nsfw": "failed"}.get(state, state)
        return state

    def handle(self, request: httpx.Request) -> httpx.Response:
        """The httpx handler: apply the scripted fault for this operation, then answer."""
        operation = self.operation(request)
        self.ledger.record_request(self.name, operation, str(request.url))
        fault, option = split_kind(self.faults.next(operation) if operation in OPERATIONS else "ok")
        self.deliver_late()
        if fault == "refuse":
            raise httpx.ConnectError("[emulated] connection refused", request=request)
        if fault == "timeout":
            raise httpx.ReadTimeout("[emulated] read timed out", request=request)
        if fault == "late":
            copy = httpx.Request(request.method, request.url, headers=request.headers, content=request.content)
            delay = LATE_S if option is None else float(option)
            with self.lock:
                self.late.append(LateRequest(self.clock.now() + delay, copy))
            raise httpx.ReadTimeout("[emulated] read timed out (the request is still on its way)", request=request)
        if fault in ERROR_STATUSES:
            response = self.error_response(int(fault), request)
            if fault == "429":
                response.headers.pop("retry-after", None)
                response.headers.update(retry_after_header(option))
            return response
        with self.lock:
            self.current_fault = fault
            try:
                response = self.route(request)
            finally:
                self.current_fault = "ok"
        if fault == "500_id":
            return self.error_after_job(request, response)
        if fault == "trickle":
            rate = TRICKLE_BYTES_PER_S if option is None else float(option)
            return httpx.Response(response.status_code, headers=response.headers,
                                  stream=TrickleBody(response.content, self.clock, rate))
        if fault == "drop":
            raise httpx.RemoteProtocolError("[emulated] server disconnected without sending a response",
                                            request=request)
        if fault == "drop_body":
            return httpx.Response(response.status_code, headers=response.headers, stream=LostBody(request))
        if fault == "bad_json":
            return httpx.Response(200, content=b'{"data": [', headers={"content-type": "application/json"})
        return response

    def deliver_late(self, *, everything: bool = False) -> int:
        """Let ``late`` submits whose time has come (``everything``: all of them) reach the vendor now;
        the number delivered. A late request is answered to no one, as when the client gave up."""
        with self.lock:
            due = [r for r in self.late if everything or r.arrives_at <= self.clock.now()]
            self.late = [r for r in self.late if r not in due]
            for late in due:
                self.route(late.request)
        return len(due)

    def observed(self, state: str) -> str:
        """The state a status answer shows: the job's, or an earlier one under a ``flap`` fault."""
        return flapped(state) if self.current_fault == "flap" else state

    def error_after_job(self, request: httpx.Request, response: httpx.Response) -> httpx.Response:
        """A ``500_id`` fault's answer once the request has been processed (default: a plain 500)."""
        return self.error_response(500, request)

    def check_key(self, request: httpx.Request, scheme: str) -> bool:
        header = request.headers.get("authorization", "")
        if not header.startswith(scheme + " ") or not header[len(scheme) + 1:].strip():
            return False
        return self.api_key is None or header[len(scheme) + 1:] == self.api_key

    # ---- what subclasses provide ------------------------------------------------------------
    def operation(self, request: httpx.Request) -> str:
        """Which of ``OPERATIONS`` (or another label, e.g. ``download``) this request is."""
        raise NotImplementedError

    def route(self, request: httpx.Request) -> httpx.Response:
        """Answer the request in the vendor's documented shapes."""
        raise NotImplementedError

    def error_response(self, status: int, request: httpx.Request) -> httpx.Response:
        """The vendor's own error body for an HTTP-level fault (429 carries ``Retry-After``)."""
        raise NotImplementedError
