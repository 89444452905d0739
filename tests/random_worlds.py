"""Seeded random fault worlds against the emulator, and the ledger checks that judge them.

One *world*: the three emulated vendors with a random fault script each (kinds drawn from every fault
kind the emulator has), one gateway with a random default route, and a handful of callers running at
once — fresh keys, concurrent calls on one key, a key reused later, a key reused for another request —
then ``resume()``; in some worlds also a local image, then the same key and path with other bytes.
``check`` reads the emulator's ledger and the journal and returns every broken promise:

- no caller receives another request's clip;
- at most one billable job per clip, unless what the caller got (a result's ``possible_extra_charges``,
  an error's ``may_be_billed`` attempts) reports the extra charge;
- every billed job is returned to its caller or on record in the journal (open, abandoned, or closed as
  possibly billed), never forgotten.

Used by tests/test_random_worlds.py (the standing test, its coverage table and its self-test).
"""

from __future__ import annotations

import asyncio
import random
import shutil
import tempfile
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gateway import Gateway, GatewayError, OviRequest, Route
from gateway.clock import VirtualClock
from gateway.emulator import Emulator, FaultScript
from gateway.emulator.base import FAULT_KINDS, JOB_FAULTS, ONLY_ON, clip_fingerprint
from gateway.jobs.polling import PollPolicy
from gateway.result import OviResult
from gateway.store.intake import load_request
from gateway.store.journal import OPEN
from tests.conftest import PNG_BYTES

VENDORS = ("runware", "fal", "wavespeed")
CHECKS = ("submit", "status", "result")
TRANSPORT_KINDS = sorted(k for k in FAULT_KINDS if k not in JOB_FAULTS or k == "ok")
JOB_KINDS = sorted(JOB_FAULTS - {"ok"})
OPTIONS = {"429": ["", ":0", ":5", ":none"], "trickle": ["", ":8"], "late": ["", ":3", ":60"]}


def kinds_for(operation: str) -> list[str]:
    """Every fault kind (but ``ok``) that means something on ``operation``."""
    if operation == "job":
        return JOB_KINDS
    return [k for k in TRANSPORT_KINDS if k != "ok" and operation in ONLY_ON.get(k, (operation,))]


def all_kinds() -> set[str]:
    return set(FAULT_KINDS) - {"ok"}


@dataclass
class Call:
    """One caller: its request, key (``None``: a fresh one per call), route, and what it got."""

    request: OviRequest
    key: str | None
    route: Route | None
    provider: str | None = None
    result: OviResult | None = None
    error: GatewayError | None = None

    @property
    def clip(self) -> str:
        """The emulator's fingerprint of this request: prompt and image as the vendor sees it (a local
        file arrives inline, or uploaded and counted as its data URI)."""
        image = self.request.image
        if image is None:
            return clip_fingerprint(self.request.prompt, None)
        return clip_fingerprint(self.request.prompt, image.as_data_uri() if image.kind == "file" else str(image.value))


@dataclass
class World:
    """A finished world: its calls, resume results, emulator, gateway and the fault kinds it drew."""

    seed: int
    calls: list[Call]
    resumed: list[OviResult]
    emulator: Emulator
    gateway: Gateway
    drawn: Counter[str] = field(default_factory=Counter)
    max_in_flight: int = 0


def _script(rng: random.Random, drawn: Counter[str], seed: int) -> FaultScript:
    script = FaultScript(seed=seed)
    for operation in (*CHECKS, "job"):
        if rng.random() < 0.35:
            continue
        choices = kinds_for(operation)
        for _ in range(rng.choice((1, 1, 2))):
            kind = rng.choice(choices)
            drawn[kind] += 1
            spelled = kind + rng.choice(OPTIONS.get(kind, [""]))
            if operation == "job" or rng.random() < 0.5:
                script.add(operation, *([spelled] * rng.choice((1, 1, 2, 3))))
            else:
                script.chance.setdefault(operation, {})[spelled] = rng.choice((0.05, 0.1, 0.2))
    return script


def _route(rng: random.Random) -> Route:
    vendors = list(VENDORS)
    rng.shuffle(vendors)
    return Route(order=vendors[:rng.choice((0, 1, 2, 3))] or None, allow_fallbacks=rng.random() < 0.8,
                 failover_on_unknown=rng.random() < 0.25, job_retries=rng.choice((0, 1, 1)),
                 max_tries=rng.choice((1, 3)), deadline=rng.choice((None, None, None, 120.0, 600.0)))


def _request(seed: int, n: int, rng: random.Random) -> OviRequest:
    fields: dict[str, Any] = {}
    if rng.random() < 0.3:
        fields["seed"] = rng.randrange(1000)
    return OviRequest(prompt=f"World {seed}, clip {n}. <S>Line {n}.<E>", image=f"https://example.com/{seed}/{n}.png",
                      **fields)


async def run_world(seed: int, *, clips: int = 7) -> World:
    """Build and run one world (virtual time); ``clips`` distinct requests, some called more than once."""
    rng = random.Random(seed)
    clock = VirtualClock()
    drawn: Counter[str] = Counter()
    scripts = {vendor: _script(rng, drawn, seed * 10 + i) for i, vendor in enumerate(VENDORS)}
    emulator = Emulator(clock=clock, faults=scripts, seed=seed, queue_time=rng.choice((0.0, 5.0)),
                        job_time=lambda r: r.uniform(20.0, 70.0))
    keys = random.Random(seed + 1)
    gateway = Gateway(emulator=emulator, clock=clock, journal=":memory:", route=_route(rng), jitter_seed=seed,
                      allow_local_media=True,
                      key_factory=lambda: str(uuid.UUID(int=keys.getrandbits(128), version=4)),
                      poll=PollPolicy(interval=8.0, max_interval=60.0, max_wait=rng.choice((300.0, 600.0))))
    calls: list[Call] = []
    for n in range(clips):
        request = _request(seed, n, rng)
        key = f"k{seed}-{n}" if rng.random() < 0.6 else None
        route = _route(rng) if rng.random() < 0.5 else None
        provider = rng.choice(VENDORS) if rng.random() < 0.15 else None
        calls.append(Call(request, key, route, provider))
        if key is not None and rng.random() < 0.3:  # the same key again, at the same time
            calls.append(Call(request, key, route, provider))
    later: list[Call] = []
    for call in calls:
        if call.key is not None and rng.random() < 0.3:  # the same key again, after the first call ended
            later.append(Call(call.request, call.key, _route(rng), None))
    if calls and calls[0].key is not None and rng.random() < 0.3:  # the key reused for another request
        later.append(Call(_request(seed, 999, rng), calls[0].key, None, None))
    image = Path(tempfile.mkdtemp(prefix="world-")) / "frame.png" if rng.random() < 0.3 else None
    if image is not None:  # a local image, then the same key and path with other bytes in the file
        image.write_bytes(PNG_BYTES)
        local = Route(only=["runware", "fal"])  # WaveSpeed's upload URL would hide the bytes from the ledger
        prompt = f"World {seed}, a local frame. <S>Move.<E>"
        calls.append(Call(OviRequest(prompt=prompt, image=image), f"k{seed}-file", local))

    in_flight = 0
    peak = 0

    async def one(call: Call) -> None:
        nonlocal in_flight, peak
        in_flight += 1
        peak = max(peak, in_flight)
        try:
            call.result = await gateway.agenerate(call.request, provider=call.provider, route=call.route,
                                                  idempotency_key=call.key)
        except GatewayError as error:
            call.error = error
        finally:
            in_flight -= 1

    await asyncio.gather(*(one(c) for c in calls))
    if image is not None:
        image.write_bytes(PNG_BYTES + b"\x00other bytes")
        later.append(Call(OviRequest(prompt=prompt, image=image), f"k{seed}-file", local))
    for call in later:
        await one(call)
    resumed = [o.result for o in await gateway.aresume() if o.result is not None]
    if image is not None:
        shutil.rmtree(image.parent, ignore_errors=True)
    clock.advance(7200.0)
    emulator.deliver_late(everything=True)
    await gateway.aclose()
    return World(seed, calls + later, resumed, emulator, gateway, drawn, peak)


def _reported(call: Call) -> int:
    """How many billable jobs this call told its caller about."""
    if call.result is not None:
        return 1 + call.result.possible_extra_charges
    if call.error is not None:
        return sum(1 for a in call.error.attempts if a.may_be_billed) + int(
            call.error.may_be_billed and not call.error.attempts)
    return 0


def check(world: World) -> list[str]:
    """Every broken promise in ``world`` (empty when all hold)."""
    problems: list[str] = []
    ledger = world.emulator.ledger
    jobs = {(j.vendor, j.job_id): j for j in ledger.jobs}
    returned: set[tuple[str, str]] = set()
    by_clip: dict[str, list[Call]] = {}
    for call in world.calls:
        by_clip.setdefault(call.clip, []).append(call)
    for result in [c.result for c in world.calls if c.result] + world.resumed:
        returned.add((result.provider, result.job_id))
    for call in world.calls:
        if call.result is None:
            continue
        job = jobs.get((call.result.provider, call.result.job_id))
        if job is None or job.clip != call.clip:
            problems.append(f"world {world.seed}: {call.key or 'a caller'} got job {call.result.job_id} "
                            f"of another request (or of no job)")
    billed = Counter(j.clip for j in ledger.billable())
    for clip, count in billed.items():
        callers = by_clip.get(clip, [])
        allowed = max([1] + [_reported(c) for c in callers])
        if count > allowed:
            problems.append(f"world {world.seed}: clip {clip} billed {count} times, {allowed} reported")
    journal = world.gateway.journal
    assert journal is not None
    # Every submit on record: (vendor, job id or None, kept?, clip fingerprint of its request)
    rows = journal._query("SELECT s.provider, s.job_id, s.state, s.may_be_billed, c.request_json, c.key FROM submits s "
                          "JOIN clips c ON c.key = s.clip_key", ())
    first_call: dict[str, str] = {}  # a key's clip is the request of its first call (a local file may change)
    for call in world.calls:
        if call.key is not None:
            first_call.setdefault(call.key, call.clip)
    kept = []
    for provider, job_id, state, may_be_billed, request_json, clip_key in rows:
        request = load_request(request_json, journal.get_image)  # its image is stored by content hash
        fingerprint = first_call.get(clip_key) or clip_fingerprint(
            request.prompt, str(request.image.value) if request.image else None)
        on_record = state in OPEN or state == "abandoned" or (state == "failed" and bool(may_be_billed))
        kept.append((provider, job_id, on_record, fingerprint))
    for job in ledger.billable():
        if (job.vendor, job.job_id) in returned:
            continue
        # By its id, or — a submit whose answer never came (late, dropped) — by vendor and clip
        if not any(ok and vendor == job.vendor and (job_id == job.job_id or (job_id is None and clip == job.clip))
                   for vendor, job_id, ok, clip in kept):
            problems.append(f"world {world.seed}: billed {job.vendor} job {job.job_id} was neither returned "
                            "nor kept in the journal")
    return problems


def run_many(seeds: range, *, clips: int = 7,
             world_hook: Callable[[World], None] | None = None) -> tuple[list[str], Counter[str], int, int, int]:
    """Run every world; (problems, kinds drawn, clips, calls, peak in flight)."""
    problems: list[str] = []
    drawn: Counter[str] = Counter()
    n_clips = n_calls = peak = 0
    for seed in seeds:
        world = asyncio.run(run_world(seed, clips=clips))
        problems += check(world)
        drawn += world.drawn
        n_clips += len({c.clip for c in world.calls})
        n_calls += len(world.calls)
        peak = max(peak, world.max_in_flight)
        if world_hook is not None:
            world_hook(world)
    return problems, drawn, n_clips, n_calls, peak
