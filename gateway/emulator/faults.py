"""The emulator's fault scripts: which faults exist, where they apply, and the one-line syntax.

``FaultScript`` says *what* goes wrong on each call of an operation (a sequence, then a seeded
probability table); ``parse_faults`` reads ``"runware.submit=429,ok; fal.job=fail"``. How the kinds
that need more than an error status behave lives in ``gateway.emulator.adversity``; the vendors
apply them in ``gateway.emulator.base.EmulatedVendor.handle``.
"""

from __future__ import annotations

import random
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Literal

from gateway.emulator.adversity import check_option, split_kind

__all__ = [
    "ERROR_STATUSES",
    "FAILING_FATES",
    "FAULT_KINDS",
    "JOB_FAULTS",
    "ONLY_ON",
    "OPERATIONS",
    "TRANSPORT_FAULTS",
    "FaultScript",
    "JobFate",
    "parse_faults",
]

OPERATIONS = ("submit", "status", "result", "upload", "cancel", "job")
"""Where a fault can be scripted. ``job`` faults change how the next created job ends."""

FAULT_KINDS = {
    # transport-level, per request
    "ok": "answer normally",
    "429": "HTTP 429 with Retry-After: 2 (rate limited, nothing done)",
    "500": "HTTP 500 (nothing done)",
    "502": "HTTP 502 (nothing done)",
    "503": "HTTP 503 (nothing done)",
    "401": "HTTP 401 invalid key",
    "402": "HTTP 402 insufficient funds",
    "refuse": "connection refused before the request is sent (httpx.ConnectError)",
    "timeout": "the request is sent but no answer comes (httpx.ReadTimeout); nothing done",
    "drop": "accept-then-drop: the request is processed (a submit creates and bills the job), "
            "then the connection resets (httpx.RemoteProtocolError)",
    "drop_body": "the request is processed (a submit creates and bills the job) and the answer's "
                 "headers arrive, then reading its body fails (httpx.ReadError)",
    "bad_json": "HTTP 200 with a body that is not JSON",
    "400": "HTTP 400 in the vendor's error shape (nothing done): on a check, a transient refusal",
    "404": "HTTP 404 / Runware taskFailedOrNotFound (nothing done): on a check, the job is not found (yet)",
    "422": "HTTP 422 (nothing done)",
    "504": "HTTP 504 (nothing done)",
    "late": "submit only: the client times out (httpx.ReadTimeout), and the request reaches the vendor "
            "late:S seconds later (default 20), creating (and billing) the job then",
    "500_id": "submit only: the job is created (and billed), then the answer is a 500; fal's carries "
              "the x-fal-request-id of the job",
    "trickle": "the answer arrives at trickle:N bytes per second (default 32), in the emulator's clock",
    "flap": "status only: answers the job's earlier state (done -> running, running -> queued)",
    "nulls": "the answer's lists and optional fields are null (WaveSpeed outputs/has_nsfw_contents, "
             "Runware errors/progress, fal logs/metrics/queue_position)",
    "unknown_status": "status only: the status is a word the docs do not list",
    "media_url": "status/result, Runware: the success item carries mediaUUID/mediaURL, no videoURL",
    # job-level (operation 'job'): how the next created job ends
    "fail": "the job fails the vendor's way",
    "stuck": "the job never finishes",
    "nsfw": "the job is refused by the vendor's content checks",
    "fail_item": "the job fails; Runware says so with a data item carrying code/errorId (others: as fail)",
    "fail_completed": "the job fails; fal says so with COMPLETED carrying error/error_type and a result 5xx "
                      "with x-fal-error-type (others: as fail)",
    # job-level, defective successes: the vendor reports success (and bills) but the clip is broken
    "truncated": "the job succeeds but its clip download stops short (no MP4 moov box)",
    "noaudio": "the job succeeds but its clip has no audio stream",
    "short": "the job succeeds but its clip lasts 2 s instead of 5",
}

TRANSPORT_FAULTS = {"ok", "429", "500", "502", "503", "401", "402", "refuse", "timeout", "drop", "drop_body",
                    "bad_json", "400", "404", "422", "504", "late", "500_id", "trickle", "flap", "nulls",
                    "unknown_status", "media_url"}
JOB_FAULTS = {"ok", "fail", "stuck", "nsfw", "truncated", "noaudio", "short", "fail_item", "fail_completed"}
ONLY_ON: dict[str, tuple[str, ...]] = {
    "late": ("submit",), "500_id": ("submit",), "flap": ("status",), "unknown_status": ("status",),
    "media_url": ("status", "result")}
"""Kinds that mean something on some operations only."""
ERROR_STATUSES = {"429", "500", "502", "503", "504", "401", "402", "400", "404", "422"}
FAILING_FATES = ("fail", "fail_item", "fail_completed")

JobFate = Literal["ok", "fail", "stuck", "nsfw", "truncated", "noaudio", "short", "fail_item", "fail_completed"]


@dataclass
class FaultScript:
    """Faults per operation: a sequence consumed one per call, then a probability table.

    ``sequence["submit"] = ["429", "ok"]`` answers the first submit with 429 and the second
    normally; ``chance["status"] = {"503": 0.1}`` answers one status call in ten with 503 after
    the sequence is used up. Draws use a seeded RNG, so runs repeat.
    """

    sequence: dict[str, list[str]] = field(default_factory=dict)
    chance: dict[str, dict[str, float]] = field(default_factory=dict)
    seed: int = 0

    def __post_init__(self) -> None:
        self._rng = random.Random(self.seed)
        for op, kinds in list(self.sequence.items()) + [(o, list(t)) for o, t in self.chance.items()]:
            _check(op, kinds)

    def next(self, operation: str) -> str:
        """The fault for this call of ``operation`` (``"ok"`` when nothing is scripted)."""
        queue = self.sequence.get(operation)
        if queue:
            return queue.pop(0)
        table = self.chance.get(operation)
        if table:
            roll = self._rng.random()
            for kind, probability in table.items():
                if roll < probability:
                    return kind
                roll -= probability
        return "ok"

    def add(self, operation: str, *kinds: str) -> FaultScript:
        _check(operation, kinds)
        self.sequence.setdefault(operation, []).extend(kinds)
        return self


def _check(operation: str, kinds: Iterable[str]) -> None:
    if operation not in OPERATIONS:
        raise ValueError(f"unknown operation {operation!r}; use one of {', '.join(OPERATIONS)}")
    allowed = JOB_FAULTS if operation == "job" else TRANSPORT_FAULTS
    for fault in kinds:
        kind, option = split_kind(fault)
        if kind not in allowed or operation not in ONLY_ON.get(kind, (operation,)):
            raise ValueError(f"fault {kind!r} cannot apply to {operation}; use one of {', '.join(sorted(allowed))}")
        check_option(kind, option)


def parse_faults(spec: str, *, seed: int = 0) -> dict[str, FaultScript]:
    """Faults per vendor from one line, e.g. ``"runware.submit=429,ok; fal.job=fail; wavespeed.status=503@0.1"``.

    ``kind@p`` is a probability, a plain list is a sequence; ``kind*n`` repeats a kind n times;
    ``kind:option`` passes an option (``429:7`` Retry-After 7 s, ``429:none`` none, ``trickle:4``
    bytes per second, ``late:60`` seconds late).
    """
    scripts: dict[str, FaultScript] = {}
    for clause in filter(None, (part.strip() for part in spec.split(";"))):
        target, _, kinds = clause.partition("=")
        vendor, _, operation = target.strip().partition(".")
        if not vendor or not operation or not kinds:
            raise ValueError(f"fault clause {clause!r} must look like vendor.operation=kind[,kind…]")
        script = scripts.setdefault(vendor, FaultScript(seed=seed))
        for item in (k.strip() for k in kinds.split(",")):
            if "@" in item:
                kind, _, probability = item.partition("@")
                _check(operation, [kind])
                script.chance.setdefault(operation, {})[kind] = float(probability)
            else:
                kind, _, times = item.partition("*")
                script.add(operation, *([kind] * int(times or 1)))
    return scripts
