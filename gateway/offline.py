"""The sealed offline mode behind ``Gateway.offline()``: the built-in emulator, seconds per clip, own journal.

Offline is always an explicit choice (``Gateway()`` with no keys stays ``NoRoute``). What it changes:

- vendor traffic goes to the emulator: in-process (an httpx transport answering for the vendors' hosts, so
  no DNS lookup and no socket at all), or a loopback emulator (``ovi-gateway emulate``) named by
  ``emulator_url`` or ``OVI_GATEWAY_EMULATOR_URL`` — only 127.0.0.1, localhost or ::1 are accepted;
- emulated jobs take ``JOB_SECONDS`` (a few seconds) and are polled on that scale (``offline_poll``);
- the journal is a separate file (``offline_journal_path()``), its rows carry the emulator's instance id,
  and spend, budgets and calibration of a journal opened for real vendors never count them (nor the
  reverse); breakers and the poll policy's learning live in the offline gateway object only;
- results say ``emulated=True`` and ``result.download()`` fetches from the emulator that made the clip;
- a rerun that finds open rows of an emulator instance that is gone closes them as "emulator restarted,
  nothing billed" (``close_stale``) instead of polling them until ``max_wait``.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, TypedDict, TypeVar, Unpack

from gateway.errors import ConfigurationError
from gateway.lazy import LazyModule

# What an offline gateway needs loads where it is used: the journal and recovery (SQLite, the runner) where
# a journal opens or closes, the clock, polling and client set-up (asyncio) where a gateway is built; so
# reading EMULATOR_URL_ENV (every CLI command's options) loads none of them (start-up time, issue 14).
if TYPE_CHECKING:
    import httpx

    from gateway.clock import Clock
    from gateway.emulator import Emulator
    from gateway.jobs.limits import VendorLimits
    from gateway.jobs.polling import PollPolicy
    from gateway.registry import Registry
    from gateway.routing.planner import Route
    from gateway.routing.pricing import Budget, PriceBook
    from gateway.store.journal import Journal
else:  # httpx loads on first use, not with the module (gateway.lazy)
    httpx = LazyModule("httpx", globals())


class GatewayOptions(TypedDict, total=False):
    """The ``Gateway`` arguments ``Gateway.offline`` passes on (see ``Gateway`` for each), so a typo or a
    wrong type in ``Gateway.offline(rout=...)`` fails a type checker as ``Gateway(kyes=...)`` does. The
    others are offline's own: it sets the emulator, transport, keys, base URLs and jitter seed itself.
    ``tests/public_api/test_signatures.py`` keeps the names and types equal to ``Gateway.__init__``'s."""

    providers: Iterable[str] | None
    registry: Registry | None
    prices: PriceBook | str | None
    route: Route | None
    poll: PollPolicy | None
    clock: Clock | None
    breaker: Mapping[str, float] | None
    budget: Budget | Sequence[Budget] | None
    backoff_base: float
    timeout: float | httpx.Timeout | None
    key_factory: Callable[[], str] | None
    allow_local_media: bool
    keep_dir: str | os.PathLike[str] | None
    lease_heartbeat: float
    limits: Mapping[str, VendorLimits] | None


class _Emulated(Protocol):
    """What ``build`` sets on the gateway it makes (``Gateway`` has both)."""

    emulated: bool
    emulator_instance: str | None


_G = TypeVar("_G", bound=_Emulated)

__all__ = [
    "EMULATOR_URL_ENV",
    "JOB_SECONDS",
    "GatewayOptions",
    "build",
    "close_stale",
    "default_clock",
    "emulator_instance",
    "offline_journal_path",
    "offline_poll",
    "open_journal",
    "resolve_emulator_url",
]

EMULATOR_URL_ENV = "OVI_GATEWAY_EMULATOR_URL"
"""Environment variable naming a loopback emulator (``http://127.0.0.1:PORT``) for offline mode."""

JOB_SECONDS: tuple[float, float] = (1.0, 3.0)
"""Range (seconds) an in-process emulated job runs, drawn uniformly: real Ovi jobs take about a minute."""

def default_clock() -> Clock:
    """The clock an offline gateway and its emulator share when none is given (tests swap in virtual time)."""
    from gateway.clock import RealClock

    return RealClock()


LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")
STALE_REASON = "emulator restarted (instance {old} is gone); nothing billed"


def offline_journal_path() -> Path:
    """``<user data dir>/ovi-gateway/offline-journal.sqlite3``: beside the real journal, never the same file."""
    from gateway.store.journal import default_path

    return default_path().with_name("offline-journal.sqlite3")


def offline_poll(expected: float | None = None) -> PollPolicy:
    """Polling for emulated jobs of about ``expected`` seconds (default: the middle of ``JOB_SECONDS``):
    no vendor floors, sub-second checks, and a stuck job given up after a minute, not 15."""
    from gateway.jobs.polling import PollPolicy

    expected = max(0.01, (sum(JOB_SECONDS) / 2) if expected is None else expected)
    return PollPolicy(expected=expected, interval=min(0.25, expected), max_interval=1.0,
                      max_wait=max(60.0, 20 * expected), min_interval={})


def resolve_emulator_url(url: str | None) -> str | None:
    """``url``, else ``OVI_GATEWAY_EMULATOR_URL``, checked to be loopback HTTP; ``None`` for in-process."""
    url = url or os.environ.get(EMULATOR_URL_ENV) or None
    if url is None:
        return None
    parsed = httpx.URL(url)
    if parsed.scheme not in ("http", "https") or parsed.host not in LOOPBACK_HOSTS:
        source = "emulator_url" if url else EMULATOR_URL_ENV
        raise ConfigurationError(f"{source} must be a loopback URL such as http://127.0.0.1:8765 "
                                 f"(the emulator serves on 127.0.0.1, localhost or ::1 only), not {url!r}")
    return str(parsed).rstrip("/")


def emulator_instance(url: str, *, timeout: float = 5.0) -> str:
    """The instance id of the loopback emulator at ``url`` (``GET /_emulator/instance``)."""
    try:
        answer = httpx.get(f"{url}/_emulator/instance", timeout=timeout)
        answer.raise_for_status()
        return str(answer.json()["instance"])
    except (httpx.HTTPError, ValueError, KeyError, TypeError) as error:
        raise ConfigurationError(f"no ovi-gateway emulator answers at {url} ({type(error).__name__}); "
                                 "start one with `ovi-gateway emulate --port PORT`") from None


def close_stale(journal: Journal, instance: str) -> list[str]:
    """Close the open emulated submits of other (gone) emulator instances as failed and unbilled; a clip
    left with no open submit is failed too, so the same key makes it afresh. Returns the clip keys closed.

    Safe because an emulator's jobs live only in its process: a job of an instance that is gone can
    neither finish nor bill. Rows of real vendors are never touched (``unfinished()`` of an emulated
    journal lists emulated rows only)."""
    from gateway.store.lease import alive, lease_owner
    from gateway.store.records import OPEN

    stale: dict[str, list[str]] = {}
    for record in journal.unfinished():
        if record.emulator_instance is not None and record.emulator_instance != instance:
            stale.setdefault(record.clip_key, []).append(record.submit_key)
    closed = []
    for clip_key, submit_keys in stale.items():
        owner = lease_owner()
        # A clip another live call holds is that call's business (it may run on its own emulator).
        if journal.claim_clip(clip_key, owner, seconds=60.0, alive=alive) is not None:
            continue
        try:
            for record in journal.submits(clip_key):
                if record.submit_key in submit_keys and record.state in OPEN:
                    journal.failed(record.submit_key, may_be_billed=False,
                                   error=STALE_REASON.format(old=record.emulator_instance))
            clip = journal.get_clip(clip_key)
            if clip is not None and clip.state != "succeeded" and not any(
                    r.state in OPEN for r in journal.submits(clip_key)):
                journal.fail_clip(clip_key, "emulator restarted; nothing billed")
            closed.append(clip_key)
        finally:
            journal.release_clip(clip_key, owner)
    return closed


def build(cls: Callable[..., _G], *, emulator: Emulator | None, emulator_url: str | None, faults: str | None,
          job_seconds: tuple[float, float] | float | None, journal: Any, seed: int | None,
          **options: Unpack[GatewayOptions]) -> _G:
    """``Gateway.offline``'s body (see its docstring): an in-process emulator, or a loopback one."""
    clock = options.setdefault("clock", default_clock())
    spans = JOB_SECONDS if job_seconds is None else job_seconds
    low, high = spans if isinstance(spans, tuple) else (spans, spans)
    options.setdefault("poll", offline_poll((low + high) / 2))
    options.setdefault("backoff_base", min(1.0, max(0.01, (low + high) / 20)))
    url = None if emulator is not None else resolve_emulator_url(emulator_url)
    if url is None:
        if emulator is None:
            from gateway.emulator import Emulator

            emulator = Emulator(faults=faults or None, seed=seed or 0, clock=clock,
                                job_time=lambda rng: rng.uniform(low, high), render_media=True)
        return cls(emulator=emulator, journal=journal, jitter_seed=seed, **options)
    if faults:
        raise ConfigurationError("faults are set where the loopback emulator runs "
                                 "(`ovi-gateway emulate --faults ...`), not here")
    from gateway.emulator.loopback import LoopbackTransport
    from gateway.registry import Registry

    instance = emulator_instance(url)
    registry = options["registry"] = options.get("registry") or Registry.load()
    wanted = options.get("providers")
    keys = {name: "emulator-key" for name in registry.classes if wanted is None or name in wanted}
    gateway = cls(transport=LoopbackTransport(url), keys=keys,
                  journal=open_journal(journal, instance), jitter_seed=seed, **options)
    gateway.emulated, gateway.emulator_instance = True, instance
    return gateway

def open_journal(journal: Any, emulator_instance: str | None = None) -> Journal | None:
    """The journal to use. An emulated gateway's default is the separate offline journal, and every
    journal it writes marks its rows with the emulator instance (so they never count as real spend)."""
    if journal is None:
        return None
    from gateway.client_setup import UNSET
    from gateway.store.base import SqlStore
    from gateway.store.journal import Journal

    if isinstance(journal, SqlStore):  # an open async store: its sync face, on the same connection
        if emulator_instance and journal.emulator_instance is None:
            journal.emulator_instance = emulator_instance
        journal = Journal.over(journal)
    if isinstance(journal, Journal):
        if emulator_instance and journal.emulator_instance is None:
            journal.emulator_instance = emulator_instance
        return journal
    if journal is UNSET:
        if emulator_instance is None:
            return Journal()
        journal = offline_journal_path()
    return Journal(journal, emulator_instance=emulator_instance)
