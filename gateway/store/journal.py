"""The durable job journal: a record of every clip and every paid submit, so nothing paid for is lost.

Before each vendor POST the runner writes an *intent*; after the ack, the vendor's job id and handle;
then each state change and the outcome. After a crash ``unfinished()`` lists every submit that may
still hold a paid job, so the runner re-attaches instead of paying again.

Storage is SQLite from the standard library in WAL mode, safe for several processes on one file
(busy timeout, short transactions, ``BEGIN IMMEDIATE`` for read-modify-write) and for several threads
in one process (one connection behind a lock). Money is stored as Decimal strings, never floats.
Times are wall-clock UTC ISO strings; ``deadline`` is stored exactly as the caller passes it.

The journal never receives API keys and stores none: requests arrive as canonical request JSON,
and handles carry only job ids and vendor URLs. Texts that may quote a vendor's answer (errors, the
result with its raw body) pass through ``gateway.secrets.redact`` before they are written.
"""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import platformdirs

from gateway.errors import InvalidRequest
from gateway.secrets import redact
from gateway.store.media import MediaJournal
from gateway.store.migrate import migrate_sqlite

__all__ = ["OPEN", "ClipRecord", "Journal", "SpendRow", "SubmitRecord", "default_path", "request_hash"]

BUSY_TIMEOUT_MS = 5000
FINAL = frozenset({"succeeded", "failed", "expired", "abandoned"})
"""``abandoned``: given up after retention or repeated fruitless resumes; may have been billed."""
OPEN = ("intent", "accepted", "queued", "running", "unknown")
STATES = frozenset(OPEN) | FINAL

_SUBMIT_COLUMNS = (
    "s.submit_key, s.clip_key, s.provider, s.state, s.job_id, s.handle_json, s.quote_usd, s.cost_usd,"
    " s.cost_source, s.may_be_billed, s.error, s.deadline, s.steps, s.dropped, s.created_at, s.updated_at,"
    " c.request_json, s.emulator_instance"
)


@dataclass(frozen=True)
class ClipRecord:
    """One caller-visible generation, keyed by its idempotency key. ``state``: open/succeeded/failed."""

    key: str
    request_json: str
    request_hash: str
    state: str
    result_json: str | None
    error: str | None
    created_at: str
    media: dict[str, Any] | None = None
    """What was downloaded of the clip (``record_media``): ``sha256``, ``size`` (bytes), ``path``…"""


@dataclass(frozen=True)
class SubmitRecord:
    """One vendor attempt inside a clip. Money in USD as Decimal; ``request_json`` is the clip's."""

    submit_key: str
    clip_key: str
    provider: str
    state: str
    job_id: str | None
    handle: dict[str, Any] | None
    quote_usd: Decimal | None
    cost_usd: Decimal | None
    cost_source: str | None
    may_be_billed: bool
    error: str | None
    deadline: float | None
    steps: int | None
    dropped: tuple[str, ...]
    created_at: str
    updated_at: str
    request_json: str
    emulator_instance: str | None = None
    """The emulator instance that took this submit (``None``: a real vendor)."""


@dataclass(frozen=True)
class SpendRow:
    """Spend of one provider on one UTC day (by submit creation). ``clips``: succeeded submits;
    ``possibly_billed``: failed-maybe-billed, unknown, expired and abandoned submits."""

    provider: str
    day: str
    clips: int
    estimated_usd: Decimal
    reported_usd: Decimal
    possibly_billed: int


def request_hash(request_json: str) -> str:
    """SHA-256 hex of the canonical form of ``request_json`` (sorted keys, no spaces).

    A request is identified by its content: an image that carries a ``sha256`` (a local file, a data
    URI, base64) counts by its bytes alone — not its path or how it was encoded — so the same key with
    the same path and a changed file is a different request, and never returns the old clip.
    """
    try:
        value = json.loads(request_json)
    except ValueError as exc:
        raise InvalidRequest(f"request is not valid JSON: {exc}") from exc
    image = value.get("image") if isinstance(value, dict) else None
    if isinstance(image, dict) and image.get("sha256"):
        value["image"] = {"sha256": image["sha256"]}
    canonical = json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def default_path() -> Path:
    """``<user data dir>/ovi-gateway/journal.sqlite3`` (platformdirs conventions)."""
    return platformdirs.user_data_path("ovi-gateway") / "journal.sqlite3"


def _utcnow() -> datetime:
    return datetime.now(UTC)


def _iso(moment: datetime) -> str:
    if moment.tzinfo is None:  # naive datetimes are taken as UTC
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).isoformat(timespec="microseconds")


def _money(value: Decimal | None) -> str | None:
    if value is None:
        return None
    if not isinstance(value, Decimal | int) or isinstance(value, bool):
        raise TypeError(f"money must be Decimal, not {type(value).__name__}")
    value = Decimal(value)
    if not value.is_finite():
        raise ValueError(f"money must be finite, got {value}")
    return str(value)


def _dec(text: str | None) -> Decimal | None:
    return None if text is None else Decimal(text)


class Journal(MediaJournal):
    """The job journal on one SQLite file (default: ``default_path()``) or ``":memory:"``.

    ``emulator_instance`` marks this journal's writer as the built-in emulator (that instance's id):
    its submits carry the id, and spend, budgets, calibration and ``unfinished()`` then see only
    emulated rows. Without it they see only real-vendor rows, so the two never mix, even in one file.
    """

    def __init__(self, path: str | os.PathLike[str] | None = None, *, emulator_instance: str | None = None) -> None:
        target = default_path() if path is None else path
        self.emulator_instance = emulator_instance
        self.path: str = os.fspath(target)
        if self.path != ":memory:":
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.RLock()
        self._db = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None,
                                   check_same_thread=False)
        try:
            self._setup()
        except BaseException:
            self._db.close()
            raise

    @property
    def _mode(self) -> str:
        """The SQL condition selecting this journal's side: emulated rows or real-vendor rows."""
        return "s.emulator_instance IS NOT NULL" if self.emulator_instance else "s.emulator_instance IS NULL"

    def _setup(self) -> None:
        db = self._db
        db.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        db.execute("PRAGMA foreign_keys = ON")
        if self.path != ":memory:":
            # Switching to WAL needs a moment alone with the file; a peer opening it too may hold it.
            for attempt in range(100):
                try:
                    if db.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
                        db.execute("PRAGMA journal_mode = WAL")
                    break
                except sqlite3.OperationalError as exc:
                    if ("locked" not in str(exc) and "busy" not in str(exc)) or attempt == 99:
                        raise
                    time.sleep(0.05)
        with self._tx() as tx:
            self.schema_version: int = migrate_sqlite(tx, self.path)

    def close(self) -> None:
        """Close the connection. Everything written is already committed."""
        with self._lock:
            self._db.close()

    def __enter__(self) -> Journal:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        """A short write transaction, taking the write lock up front (``BEGIN IMMEDIATE``)."""
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    def _query(self, sql: str, args: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        with self._lock:
            return self._db.execute(sql, args).fetchall()

    # -- clips -------------------------------------------------------------------------------------

    def open_clip(self, key: str, request_json: str, request_hash: str) -> ClipRecord:
        """Create clip ``key`` (state "open"), or return it if it exists for the same request hash.

        Raises InvalidRequest when the key was already used for a different request.
        """
        now = _iso(_utcnow())
        with self._tx() as tx:
            row = tx.execute("SELECT request_hash FROM clips WHERE key = ?", (key,)).fetchone()
            if row is None:
                tx.execute("INSERT INTO clips (key, request_json, request_hash, state, created_at, updated_at)"
                           " VALUES (?, ?, ?, 'open', ?, ?)", (key, request_json, request_hash, now, now))
            elif row[0] != request_hash:
                raise InvalidRequest(f"idempotency key {key!r} was used for a different request; "
                                     "use a new key for a new request")
        clip = self.get_clip(key)
        assert clip is not None
        return clip

    def claim_clip(self, key: str, owner: str, *, seconds: float, alive: Callable[[str], bool]) -> str | None:
        """Take the clip for ``owner`` for ``seconds``, so two calls never work on one clip at once.

        Returns ``None`` when claimed, or the current holder when another live owner holds it
        (``alive(holder)`` says whether that owner still runs; an expired lease is free).
        """
        now = time.time()
        with self._tx() as tx:
            row = tx.execute("SELECT lease_owner, lease_until FROM clips WHERE key = ?", (key,)).fetchone()
            if row is None:
                raise KeyError(f"no clip {key!r} in the journal")
            holder: str | None = row[0]
            until: float | None = row[1]
            if holder and holder != owner and until is not None and until > now and alive(holder):
                return holder
            tx.execute("UPDATE clips SET lease_owner = ?, lease_until = ? WHERE key = ?", (owner, now + seconds, key))
        return None

    def release_clip(self, key: str, owner: str) -> None:
        """Give the clip back, if ``owner`` still holds it."""
        with self._tx() as tx:
            tx.execute("UPDATE clips SET lease_owner = NULL, lease_until = NULL WHERE key = ? AND lease_owner = ?",
                       (key, owner))

    def get_clip(self, key: str) -> ClipRecord | None:
        """The clip recorded under ``key``, or None."""
        rows = self._query("SELECT key, request_json, request_hash, state, result_json, error, created_at,"
                           " media_json FROM clips WHERE key = ?", (key,))
        if not rows:
            return None
        key, request_json, hashed, state, result_json, error, created_at, media = rows[0]
        return ClipRecord(key, request_json, hashed, state, result_json, error, created_at,
                          media=None if media is None else json.loads(media))

    def record_media(self, key: str, facts: dict[str, Any]) -> None:
        """Merge ``facts`` about the clip's downloaded file (``sha256``, ``size``, ``path``…) into its record."""
        with self._tx() as tx:
            row = tx.execute("SELECT media_json FROM clips WHERE key = ?", (key,)).fetchone()
            if row is None:
                raise KeyError(f"no clip {key!r} in the journal")
            merged = {**(json.loads(row[0]) if row[0] else {}), **facts}
            tx.execute("UPDATE clips SET media_json = ?, updated_at = ? WHERE key = ?",
                       (json.dumps(merged, sort_keys=True, default=str), _iso(_utcnow()), key))

    def finish_clip(self, key: str, result_json: str) -> None:
        """Mark the clip "succeeded" with its OviResult JSON. A failed clip may still succeed (a
        reconciled job delivered after all); a succeeded clip is final."""
        self._clip_to(key, "succeeded", result_json=redact(result_json), error=None)

    def fail_clip(self, key: str, error: str) -> None:
        """Mark the clip "failed" with the error text."""
        self._clip_to(key, "failed", error=redact(error))

    def _clip_to(self, key: str, state: str, **columns: Any) -> None:
        with self._tx() as tx:
            row = tx.execute("SELECT state FROM clips WHERE key = ?", (key,)).fetchone()
            if row is None:
                raise KeyError(f"no clip {key!r} in the journal")
            if row[0] == "succeeded":
                raise ValueError(f"clip {key!r} already succeeded; cannot mark it {state}")
            sets = ", ".join(f"{name} = ?" for name in columns)
            tx.execute(f"UPDATE clips SET state = ?, {sets}, updated_at = ? WHERE key = ?",
                       (state, *columns.values(), _iso(_utcnow()), key))

    # -- submits -----------------------------------------------------------------------------------

    def intent(self, *, clip_key: str, submit_key: str, provider: str, quote_usd: Decimal | None,
               deadline: float | None = None, steps: int | None = None,
               dropped: tuple[str, ...] | frozenset[str] = ()) -> None:
        """Record a submit BEFORE it is POSTed (state "intent"). ``steps``: inference steps, if known;
        ``dropped``: fields this vendor was allowed to ignore."""
        now = _iso(_utcnow())
        with self._tx() as tx:
            if tx.execute("SELECT 1 FROM clips WHERE key = ?", (clip_key,)).fetchone() is None:
                raise KeyError(f"no clip {clip_key!r} in the journal")
            if tx.execute("SELECT 1 FROM submits WHERE submit_key = ?", (submit_key,)).fetchone():
                raise ValueError(f"submit {submit_key!r} is already in the journal")
            tx.execute("INSERT INTO submits (submit_key, clip_key, provider, state, quote_usd, deadline,"
                       " steps, dropped, created_at, updated_at, emulator_instance)"
                       " VALUES (?, ?, ?, 'intent', ?, ?, ?, ?, ?, ?, ?)",
                       (submit_key, clip_key, provider, _money(quote_usd), deadline, steps,
                        json.dumps(sorted(dropped)), now, now, self.emulator_instance))

    def accepted(self, submit_key: str, handle_json: dict[str, Any]) -> None:
        """The vendor acknowledged the submit: store its job id and ``JobHandle.to_json()``."""
        self._submit_to(submit_key, "accepted", job_id=handle_json.get("job_id"),
                        handle_json=json.dumps(handle_json, sort_keys=True))

    def state(self, submit_key: str, state: str) -> None:
        """Record a state change ("queued", "running", ...)."""
        if state not in STATES:
            raise ValueError(f"unknown submit state {state!r}; expected one of {sorted(STATES)}")
        self._submit_to(submit_key, state)

    def finished(self, submit_key: str, *, cost_usd: Decimal | None, cost_source: str) -> None:
        """The job succeeded; ``cost_source`` is "reported", "estimated" or "unknown"."""
        self._submit_to(submit_key, "succeeded", cost_usd=_money(cost_usd), cost_source=cost_source)

    def failed(self, submit_key: str, *, error: str, may_be_billed: bool) -> None:
        """The attempt failed; ``may_be_billed`` says whether the vendor might have charged."""
        self._submit_to(submit_key, "failed", error=redact(error), may_be_billed=int(bool(may_be_billed)))

    def unknown(self, submit_key: str, *, error: str) -> None:
        """The submit may have created a paid job that could not be confirmed: needs reconciling."""
        self._submit_to(submit_key, "unknown", error=redact(error), may_be_billed=1)

    def expired(self, submit_key: str, error: str) -> None:
        """The vendor no longer keeps the job's result."""
        self._submit_to(submit_key, "expired", error=redact(error))

    def abandoned(self, submit_key: str, *, error: str) -> None:
        """Give up on a submit no resume could settle (terminal; it may have been billed)."""
        self._submit_to(submit_key, "abandoned", error=error, may_be_billed=1)

    def note_resume(self, submit_key: str) -> int:
        """Count one resume that found nothing for this submit; returns the count so far."""
        with self._tx() as tx:
            cursor = tx.execute("UPDATE submits SET resumes = resumes + 1 WHERE submit_key = ?", (submit_key,))
            if cursor.rowcount == 0:
                raise KeyError(f"no submit {submit_key!r} in the journal")
            row = tx.execute("SELECT resumes FROM submits WHERE submit_key = ?", (submit_key,)).fetchone()
        return int(row[0])

    def abandoned_submits(self) -> list[SubmitRecord]:
        """Submits given up as ``abandoned`` (may be billed, no clip), in creation order."""
        return self._submits("WHERE s.state = 'abandoned' ORDER BY s.seq", ())

    def reserve(self, submit_key: str, amount: Decimal) -> None:
        """Store the budget reservation (USD) made for this submit."""
        with self._tx() as tx:
            cursor = tx.execute("UPDATE submits SET reserved_usd = ?, updated_at = ? WHERE submit_key = ?",
                                (_money(amount), _iso(_utcnow()), submit_key))
            if cursor.rowcount == 0:
                raise KeyError(f"no submit {submit_key!r} in the journal")

    def _submit_to(self, submit_key: str, state: str, **columns: Any) -> None:
        with self._tx() as tx:
            row = tx.execute("SELECT state FROM submits WHERE submit_key = ?", (submit_key,)).fetchone()
            if row is None:
                raise KeyError(f"no submit {submit_key!r} in the journal")
            if row[0] in FINAL:
                raise ValueError(f"submit {submit_key!r} is already {row[0]}; cannot move it to {state}")
            sets = "".join(f", {name} = ?" for name in columns)
            tx.execute(f"UPDATE submits SET state = ?, updated_at = ?{sets} WHERE submit_key = ?",
                       (state, _iso(_utcnow()), *columns.values(), submit_key))

    def submits(self, clip_key: str) -> list[SubmitRecord]:
        """Every submit of the clip, in creation order."""
        return self._submits("WHERE s.clip_key = ? ORDER BY s.seq", (clip_key,))

    def unfinished(self) -> list[SubmitRecord]:
        """Submits that may still hold a paid job (intent/accepted/queued/running/unknown) whose clip
        has not succeeded, in creation order: what ``resume()`` re-attaches to."""
        marks = ", ".join("?" * len(OPEN))
        return self._submits(f"WHERE s.state IN ({marks}) AND c.state != 'succeeded' AND {self._mode}"
                             " ORDER BY s.seq", OPEN)

    def _submits(self, where: str, args: tuple[Any, ...]) -> list[SubmitRecord]:
        rows = self._query(f"SELECT {_SUBMIT_COLUMNS} FROM submits s JOIN clips c ON c.key = s.clip_key "
                           + where, args)
        return [SubmitRecord(submit_key=r[0], clip_key=r[1], provider=r[2], state=r[3], job_id=r[4],
                             handle=None if r[5] is None else json.loads(r[5]), quote_usd=_dec(r[6]),
                             cost_usd=_dec(r[7]), cost_source=r[8], may_be_billed=bool(r[9]), error=r[10],
                             deadline=r[11], steps=r[12], dropped=tuple(json.loads(r[13] or "[]")),
                             created_at=r[14], updated_at=r[15], request_json=r[16], emulator_instance=r[17])
                for r in rows]

    # -- spend -------------------------------------------------------------------------------------

    def _spend_rows(self, since: datetime | None, columns: str,
                    clip_prefix: str | None = None) -> list[tuple[Any, ...]]:
        where: list[str] = [self._mode]
        args: list[Any] = []
        if since is not None:
            where.append("created_at >= ?")
            args.append(_iso(since))
        if clip_prefix is not None:
            where.append("substr(s.clip_key, 1, ?) = ?")
            args += [len(clip_prefix), clip_prefix]
        return self._query(f"SELECT {columns} FROM submits s WHERE {' AND '.join(where)} ORDER BY seq", tuple(args))

    def spend(self, *, since: datetime | None = None) -> list[SpendRow]:
        """Spend per provider and UTC day of submit creation, sorted by day then provider.

        ``estimated_usd``: quotes of succeeded submits without a reported cost; ``reported_usd``:
        costs the vendors reported; ``possibly_billed``: failed-maybe-billed, unknown or expired.
        """
        groups: dict[tuple[str, str], list[Any]] = {}
        for provider, created, state, quote, cost, source, billed in self._spend_rows(
                since, "provider, created_at, state, quote_usd, cost_usd, cost_source, may_be_billed"):
            acc = groups.setdefault((created[:10], provider), [0, Decimal(0), Decimal(0), 0])
            reported = source == "reported" and cost is not None
            if state == "succeeded":
                acc[0] += 1
                if not reported:
                    acc[1] += _dec(quote if quote is not None else cost) or Decimal(0)
            if reported:
                acc[2] += Decimal(cost)
            if state in ("unknown", "expired", "abandoned") or (state == "failed" and billed):
                acc[3] += 1
        return [SpendRow(provider=provider, day=day, clips=a[0], estimated_usd=a[1], reported_usd=a[2],
                         possibly_billed=a[3]) for (day, provider), a in sorted(groups.items())]

    def reserved_and_spent(self, *, since: datetime | None = None, clip_prefix: str | None = None) -> Decimal:
        """USD committed by submits since ``since``: the reported cost when known, else the reservation
        (or quote) of every submit that is not a failure known to be unbilled. ``clip_prefix`` counts
        only clips whose key starts with it (a batch's spend)."""
        total = Decimal(0)
        for state, quote, reserved, cost, source, billed in self._spend_rows(
                since, "state, quote_usd, reserved_usd, cost_usd, cost_source, may_be_billed", clip_prefix):
            if source == "reported" and cost is not None:
                total += Decimal(cost)
            elif not (state == "failed" and not billed):
                held = next((v for v in (reserved, quote, cost) if v is not None), None)
                total += _dec(held) or Decimal(0)
        return total

    def reported_costs(self, provider: str, limit: int = 20) -> list[tuple[Decimal, Decimal | None, int | None]]:
        """Recent (reported cost, quote, steps) of ``provider``'s submits, newest first, for recalibrating
        an estimate against what the vendor actually charged."""
        rows = self._query("SELECT cost_usd, quote_usd, steps FROM submits s WHERE provider = ? AND"
                           f" cost_source = 'reported' AND cost_usd IS NOT NULL AND {self._mode}"
                           " ORDER BY updated_at DESC, seq DESC LIMIT ?", (provider, limit))
        return [(Decimal(cost), _dec(quote), steps) for cost, quote, steps in rows]
