"""The durable job journal, synchronous: a record of every clip and every paid submit.

Before each vendor POST the runner writes an *intent*; after the ack, the vendor's job id and handle;
then each state change and the outcome. After a crash ``unfinished()`` lists every submit that may
still hold a paid job, so the runner re-attaches instead of paying again.

``Journal`` is the blocking face of the SQLite backend (``gateway.store.sqlite``), for the CLI and for
code that is not async; the async storage interface is ``gateway.store.base.SqlStore`` (same method
names, ``await``-ed). Both run the same ``Queries`` with the same write classes (``Durability``): the
intent and the ack are flushed (fsync) before the call returns.

The journal never receives API keys and stores none: requests arrive as canonical request JSON,
and handles carry only job ids and vendor URLs. Money is stored as Decimal strings, never floats.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import platformdirs

from gateway.store.media import MediaJournal
from gateway.store.queries import BudgetChecks, Queries, _iso, _money
from gateway.store.records import (
    FINAL,
    HEARTBEAT_S,
    OPEN,
    STATES,
    BreakerRecord,
    ClipRecord,
    Durability,
    SpendRow,
    SubmitRecord,
    request_hash,
)
from gateway.store.server_rows import ServerRowsJournal
from gateway.store.sqlite import BUSY_TIMEOUT_MS, SqliteEngine, SqliteStore
from gateway.store.url import from_env, is_postgres

if TYPE_CHECKING:
    from gateway.store.base import SqlStore
    from gateway.store.intake import StoredImage
    from gateway.store.postgres import PostgresEngine

__all__ = ["FINAL", "OPEN", "STATES", "ClipRecord", "Journal", "SpendRow", "SubmitRecord", "default_path",
           "request_hash"]
__all__ += ["BUSY_TIMEOUT_MS", "_iso"]

_T = TypeVar("_T")
F, C, B = Durability.FLUSHED, Durability.COMMITTED, Durability.BATCHED


def default_path() -> Path:
    """``<user data dir>/ovi-gateway/journal.sqlite3`` (platformdirs conventions)."""
    return platformdirs.user_data_path("ovi-gateway") / "journal.sqlite3"


def _utcnow() -> datetime:
    return datetime.now(UTC)


class Journal(MediaJournal, ServerRowsJournal):
    """The job journal on one SQLite file (default: ``$OVI_GATEWAY_DATABASE_URL`` if set, else
    ``default_path()``), ``":memory:"``, or a PostgreSQL database (a ``postgresql://`` URL).

    ``emulator_instance`` marks this journal's writer as the built-in emulator (that instance's id): its
    rows carry the id, and its reads (unfinished, spend, budgets, reported costs, breakers) see only
    emulated rows — as a real writer's see only real ones. Emulated rows never feed real spend.
    """

    def __init__(self, path: str | os.PathLike[str] | None = None, *, emulator_instance: str | None = None,
                 wall: Callable[[], float] | None = None, offload: bool | None = None) -> None:
        self.emulator_instance = emulator_instance
        self.wall = wall or time.time
        self.offload = offload
        """For the async store on this journal (``store()``): SQL on the writer thread (True) or inline
        (False); ``None`` lets the gateway choose (the writer thread on a real clock)."""
        self._store: SqlStore | None = None
        target = path if path is not None else (from_env() or default_path())
        queries = Queries(utcnow=lambda: _utcnow())
        self._engine: SqliteEngine | PostgresEngine
        if is_postgres(target):
            from gateway.store.postgres import PostgresEngine
            self._engine = PostgresEngine(str(target), queries)
            self.path = self._engine.where
        else:
            self.path = os.fspath(target)
            self._engine = SqliteEngine(self.path, queries)
            self._db = self._engine.db
        self.schema_version = self._engine.schema_version

    @classmethod
    def over(cls, store: SqlStore) -> Journal:
        """The sync face of an open async ``store`` (same engine, same writer; nothing opened twice)."""
        face = cls.__new__(cls)
        face.emulator_instance = store.emulator_instance
        face.wall = store.wall
        face.offload = getattr(store, "offload", None)
        face._engine = store.engine  # type: ignore[attr-defined]
        face.path = store.where
        if isinstance(face._engine, SqliteEngine):
            face._db = face._engine.db
        face.schema_version = face._engine.schema_version
        face._store = store
        return face

    def store(self, *, offload: bool = True) -> SqlStore:
        """The async storage interface over THIS journal's connection (one per journal, made on first
        call): the same file is never opened twice by one gateway, SQLite keeps one writer thread, and
        while it runs this face's calls queue behind it (they see every earlier async write).
        ``offload`` applies when the journal was built with ``offload=None``."""
        if self._store is None:
            if isinstance(self._engine, SqliteEngine):
                self._store = SqliteStore(self._engine.path, engine=self._engine, wall=lambda: self.wall(),
                                          offload=offload if self.offload is None else self.offload,
                                          emulator_instance=self.emulator_instance)
            else:
                from gateway.store.postgres import PostgresStore
                self._store = PostgresStore(self._engine.where, engine=self._engine, wall=lambda: self.wall(),
                                            offload=offload if self.offload is None else self.offload,
                                            emulator_instance=self.emulator_instance)
        return self._store

    @property
    def async_store(self) -> SqlStore | None:
        """The async storage interface made by ``store()`` over this journal, or None before that."""
        return self._store

    def close(self) -> None:
        """Close the connection (after the writer thread, if any, committed what it holds)."""
        if self._store is not None:
            self._store.close()
            return
        self._engine.close()

    def __enter__(self) -> Journal:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def emulated(self) -> bool:
        """An emulator's store writes rows marked with its instance and reads only such rows."""
        return self.emulator_instance is not None

    @contextmanager
    def _tx(self) -> Iterator[Any]:
        """A raw write transaction (``execute(sql, args)`` with ``?`` placeholders) for mixins that bring
        their own SQL (``MediaJournal``); on either backend."""
        with self._engine.raw() as tx:
            yield tx

    def _query(self, sql: str, args: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        with self._engine.raw() as tx:
            return [tuple(r) for r in tx.execute(sql, args).fetchall()]

    def _kind(self, emulated: bool | None) -> bool:
        return self.emulated if emulated is None else emulated

    def _do(self, durability: Durability, fn: Callable[..., _T], *args: Any, **kwargs: Any) -> _T:
        if isinstance(self._store, SqliteStore):  # in order with the writer thread's queue
            return self._store.call(durability, fn, args, kwargs)
        return self._engine.execute(durability, fn, args, kwargs)

    # -- clips ---------------------------------------------------------------------------------
    def open_clip(self, key: str, request_json: str, request_hash: str, *, image: StoredImage | None = None,
                  options_json: str | None = None) -> ClipRecord:
        """Create clip ``key`` (state "open"), or return it if it exists for the same request hash.
        ``image``: stored once by content hash with the clip (``store.intake``); ``options_json``: the
        call's options (``CallOptions``), kept from the first call.

        Raises InvalidRequest when the key was already used for a different request.
        """
        return self._do(C, Queries.open_clip, key, request_json, request_hash, image=image,
                        options_json=options_json, emulator_instance=self.emulator_instance)

    def get_image(self, sha256: str) -> bytes | None:
        """A request image's bytes by content hash (SHA-256 hex), or None."""
        return self._do(C, Queries.get_image, sha256)

    def claim_clip(self, key: str, owner: str, *, seconds: float | None = None,
                   alive: Callable[[str], bool] | None = None, heartbeat: float = HEARTBEAT_S) -> str | None:
        """Take the clip for ``owner`` (the lease rule of ``Queries.claim_clip``): ``None`` when claimed,
        or the holder of a live lease. ``seconds``: an explicit lease length instead of 3 heartbeats;
        ``alive(holder)`` may declare a holder dead before its lease runs out."""
        if seconds is not None:
            heartbeat = seconds / 3
        holder = self._do(C, Queries.claim_clip, key, owner, wall=self.wall(), heartbeat=heartbeat)
        if holder is not None and alive is not None and not alive(holder):
            self._do(C, _drop_holder, key, holder)
            holder = self._do(C, Queries.claim_clip, key, owner, wall=self.wall(), heartbeat=heartbeat)
        return holder

    def renew_clip(self, key: str, owner: str, *, heartbeat: float = HEARTBEAT_S) -> bool:
        """One heartbeat of ``owner``'s lease; False when it lost the lease."""
        return self._do(C, Queries.renew_clip, key, owner, wall=self.wall(), heartbeat=heartbeat)

    def lease_holder(self, key: str) -> str | None:
        """Who holds the clip's lease now (None: nobody)."""
        return self._do(C, Queries.lease_holder, key)

    def release_clip(self, key: str, owner: str) -> None:
        """Give the clip back, if ``owner`` still holds it."""
        self._do(C, Queries.release_clip, key, owner)

    def get_clip(self, key: str) -> ClipRecord | None:
        """The clip recorded under ``key``, or None."""
        return self._do(C, Queries.get_clip, key)

    def record_media(self, key: str, facts: dict[str, Any]) -> None:
        """Merge ``facts`` about the clip's downloaded file (``sha256``, ``size``, ``path``…) into its record."""
        self._do(C, Queries.record_media, key, facts)

    def finish_clip(self, key: str, result_json: str) -> None:
        """Mark the clip "succeeded" with its OviResult JSON. A failed clip may still succeed (a
        reconciled job delivered after all); a succeeded clip is final."""
        self._do(C, Queries.clip_to, key, "succeeded", result_json=result_json, error=None)

    def fail_clip(self, key: str, error: str) -> None:
        """Mark the clip "failed" with the error text."""
        self._do(C, Queries.clip_to, key, "failed", error=error)

    # -- submits -------------------------------------------------------------------------------
    def intent(self, *, clip_key: str, submit_key: str, provider: str, quote_usd: Decimal | None,
               deadline: float | None = None, steps: int | None = None,
               dropped: tuple[str, ...] | frozenset[str] = (),
               budget: BudgetChecks = None, scopes: Iterable[str] = ()) -> None:
        """Record a submit BEFORE it is POSTed (state "intent"; flushed). ``steps``: inference steps, if
        known; ``dropped``: fields this vendor was allowed to ignore; ``budget``: see ``Queries.intent``."""
        refused = self._do(F, Queries.intent, clip_key=clip_key, submit_key=submit_key, provider=provider,
                           quote_usd=quote_usd, deadline=deadline, steps=steps, dropped=tuple(dropped), budget=budget,
                           scopes=tuple(scopes), emulator_instance=self.emulator_instance)
        if refused is not None:
            raise refused

    def accepted(self, submit_key: str, handle_json: dict[str, Any]) -> None:
        """The vendor acknowledged the submit: store its job id and ``JobHandle.to_json()`` (flushed)."""
        self._do(F, Queries.submit_to, submit_key, "accepted", job_id=handle_json.get("job_id"),
                 handle_json=json.dumps(handle_json, sort_keys=True))

    def state(self, submit_key: str, state: str) -> None:
        """Record a state change ("queued", "running", ...)."""
        self._do(B, Queries.submit_to, submit_key, state)

    def finished(self, submit_key: str, *, cost_usd: Decimal | None, cost_source: str) -> None:
        """The job succeeded; ``cost_source`` is "reported", "estimated" or "unknown"."""
        self._do(B, Queries.submit_to, submit_key, "succeeded", cost_usd=_money(cost_usd), cost_source=cost_source)

    def failed(self, submit_key: str, *, error: str, may_be_billed: bool) -> None:
        """The attempt failed; ``may_be_billed`` says whether the vendor might have charged."""
        self._do(C, Queries.submit_to, submit_key, "failed", error=error, may_be_billed=int(bool(may_be_billed)))

    def unknown(self, submit_key: str, *, error: str) -> None:
        """The submit may have created a paid job that could not be confirmed: needs reconciling."""
        self._do(C, Queries.submit_to, submit_key, "unknown", error=error, may_be_billed=1)

    def expired(self, submit_key: str, error: str) -> None:
        """The vendor no longer keeps the job's result."""
        self._do(C, Queries.submit_to, submit_key, "expired", error=error)

    def abandoned(self, submit_key: str, *, error: str) -> None:
        """Give up on a submit no resume could settle (terminal; it may have been billed)."""
        self._do(C, Queries.submit_to, submit_key, "abandoned", error=error, may_be_billed=1)

    def note_resume(self, submit_key: str, spacing_s: float = 0.0, reset: bool = False) -> int:
        """Count one resume that found nothing for this submit, if ``spacing_s`` (seconds) after its last
        touch; ``reset``: the vendor answered, start again at 0. Returns the count so far."""
        return self._do(C, Queries.note_resume, submit_key, spacing_s, reset)

    def abandoned_submits(self) -> list[SubmitRecord]:
        """Submits given up as ``abandoned`` (may be billed, no clip), in creation order."""
        return self._do(C, Queries.abandoned_submits, self.emulated)

    def reserve(self, submit_key: str, amount: Decimal) -> None:
        """Store the budget reservation (USD) made for this submit."""
        self._do(C, Queries.reserve, submit_key, amount)

    def submits(self, clip_key: str) -> list[SubmitRecord]:
        """Every submit of the clip, in creation order."""
        return self._do(C, Queries.submits, clip_key)

    def unfinished(self, *, emulated: bool | None = None) -> list[SubmitRecord]:
        """Submits that may still hold a paid job (intent/accepted/queued/running/unknown) whose clip
        has not succeeded, in creation order: what ``resume()`` re-attaches to."""
        return self._do(C, Queries.unfinished, self._kind(emulated))

    # -- spend ---------------------------------------------------------------------------------
    def spend(self, *, since: datetime | None = None, emulated: bool | None = None) -> list[SpendRow]:
        """Spend per provider and UTC day of submit creation, sorted by day then provider.

        ``estimated_usd``: quotes of succeeded submits without a reported cost; ``reported_usd``:
        costs the vendors reported; ``possibly_billed``: failed-maybe-billed, unknown or expired.
        ``emulated``: emulated (True) or real (False) rows; by default this journal's own kind.
        """
        return self._do(C, Queries.spend, since=since, emulated=self._kind(emulated))

    def reserved_and_spent(self, *, since: datetime | None = None, emulated: bool | None = None,
                           scope: str = "", clip_prefix: str | None = None) -> Decimal:
        """USD committed by submits since ``since``: the reported cost when known, else the reservation
        (or quote) of every submit that is not a failure known to be unbilled (running totals for the
        current day, month or all time). ``clip_prefix`` counts only clips whose key starts with it (a
        batch's spend)."""
        return self._do(C, Queries.reserved_and_spent, since=since, emulated=self._kind(emulated), scope=scope,
                        clip_prefix=clip_prefix)

    def reported_costs(self, provider: str, limit: int = 20) -> list[tuple[Decimal, Decimal | None, int | None]]:
        """Recent (reported cost, quote, steps) of ``provider``'s submits, newest first, for recalibrating
        an estimate against what the vendor actually charged (real rows only, unless ``emulated``)."""
        return self._do(C, Queries.reported_costs, provider, limit, self.emulated)

    # -- breakers and retention ----------------------------------------------------------------
    def load_breakers(self) -> dict[str, BreakerRecord]:
        """Every stored vendor breaker (wall-clock times)."""
        return self._do(C, Queries.load_breakers, self.emulated)

    def save_breaker(self, record: BreakerRecord) -> None:
        """Store one vendor breaker, for every process and the next run."""
        self._do(B, Queries.save_breaker, record, self.emulated, self.wall())

    def take_probe(self, provider: str, holder: str, *, ttl: float) -> bool:
        """Take the half-open probe of ``provider`` for ``ttl`` seconds (``Queries.take_probe``)."""
        return self._do(C, Queries.take_probe, provider, holder, wall=self.wall(), ttl=ttl, emulated=self.emulated)

    def end_probe(self, provider: str, holder: str) -> None:
        """End ``holder``'s probe of ``provider`` that got no verdict."""
        self._do(C, Queries.end_probe, provider, holder, self.emulated)

    def take_slot(self, provider: str, holder: str, *, cap: int, ttl: float = 300.0) -> bool:
        """Take one of ``cap`` concurrent request slots on ``provider`` for ``holder`` (shared by every
        process on this journal; a dead holder's slot expires after ``ttl`` seconds)."""
        return self._do(C, Queries.take_slot, provider, holder, cap=cap, wall=self.wall(), ttl=ttl,
                        emulated=self.emulated)

    def free_slot(self, provider: str, holder: str) -> None:
        """Give a slot back."""
        self._do(C, Queries.free_slot, provider, holder, self.emulated)

    def take_token(self, provider: str, *, per_second: float, burst: float = 1.0) -> float:
        """One request's token from ``provider``'s shared bucket: 0.0 when taken, else seconds to wait."""
        return self._do(C, Queries.take_token, provider, per_second=per_second, burst=burst, wall=self.wall(),
                        emulated=self.emulated)

    def prune(self, older_than: timedelta) -> dict[str, int]:
        """Delete finished clips (with their submits and media facts), and unused images, older than ``older_than``;
        never a clip with an open (possibly paid, unfinished) submit. Returns counts per table."""
        return self._do(C, Queries.prune, older_than, wall=self.wall())


def _drop_holder(queries: Queries, tx: Any, key: str, holder: str) -> None:
    tx.run("UPDATE clips SET lease_owner = NULL WHERE key = ? AND lease_owner = ?", (key, holder))
