"""The storage interface: every shared fact of the gateway, async, one class per write.

The method names are the journal's (``open_clip``, ``intent``, ``accepted``, ``state``, ``finished``,
…): switching a caller is ``journal.x(...)`` → ``await store.x(...)``. Each write names its
``Durability`` class here, once, for every backend. Backends (``SqliteStore``, ``PostgresStore``)
provide only ``_run``: how an operation of ``Queries`` reaches the database.

Shared facts and where they live (the schema, ``migrations/<dialect>/``): clips and their idempotency
keys (unique per tenant and key), submits (one per paid vendor attempt), clip leases (wall time,
renewed by heartbeat; the lease rule is ``Queries.claim_clip``), budget running totals with scopes,
vendor breakers (wall-clock times), per-vendor concurrency slots and request-rate buckets, webhook
dedupe, the callback outbox, media facts and request images stored once by content hash.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable, Iterable
from datetime import datetime, timedelta
from decimal import Decimal
from typing import TYPE_CHECKING, Any, TypeVar

from gateway.store.media import record_download
from gateway.store.queries import BudgetChecks, Queries, _money
from gateway.store.records import (
    HEARTBEAT_S,
    STALE_BEATS,
    BreakerRecord,
    ClipOpening,
    ClipRecord,
    Durability,
    SpendRow,
    SubmitRecord,
)
from gateway.store.server_rows import ServerRowsStore

if TYPE_CHECKING:
    from gateway.store.intake import StoredImage

__all__ = ["SqlStore", "Store"]

_T = TypeVar("_T")
_K = TypeVar("_K")
_V = TypeVar("_V")
F, C, B = Durability.FLUSHED, Durability.COMMITTED, Durability.BATCHED
_CLAIMS_KEPT = 10_000
"""Claim times kept for ``claimed_at`` (the oldest go first: a forgotten one only costs a renewal)."""
_HELD_KEPT = 50_000
"""Leases (and intents awaiting their ack) remembered for ``accepted`` to renew; the oldest are forgotten
first, which only costs the call a renewal of its own."""
ACK_RENEWS_AFTER = 0.1
"""Heartbeats: an ack renews its clip's lease only when the lease's last beat this store made (its claim,
or an earlier ack's renewal) is at least this old. A younger beat leaves a verdict's trust window
(``gateway.jobs.leasing.FRESH_BEATS``) shorter by at most this much than the renewal would, and an ack a
moment after its claim (a quick POST) then writes one statement and one WAL page less before its flush."""


class SqlStore(ServerRowsStore):
    """The async storage interface, implemented once over ``Queries``; see the module docstring.

    ``wall`` gives epoch seconds for leases, slots and buckets (a seam for tests).
    """

    dialect = "?"
    where = "?"
    """Names the database in errors and logs (a path, or a URL with its password redacted)."""

    def __init__(self, *, wall: Callable[[], float] = time.time, emulator_instance: str | None = None) -> None:
        self.wall = wall
        self.emulator_instance = emulator_instance
        self._claims: dict[tuple[str, str], float] = {}
        """Wall time of each lease this store took, until ``claimed_at`` reads it."""
        self._held: dict[str, tuple[str, float, float | None, float]] = {}
        """Per clip key, a lease this store took and has not given back: (owner, heartbeat seconds, wall
        time of its last renewal made with an ack or None, wall time of its claim). Atoms only: nothing
        for the GC to walk."""
        self._acks: dict[str, str] = {}
        """Per submit key, its clip key, from the intent until ``accepted`` (whose transaction renews the
        clip's lease too, unless its last beat is younger than ``ACK_RENEWS_AFTER`` heartbeats)."""


    @property
    def emulated(self) -> bool:
        """An emulator's store writes rows marked with its instance and reads only such rows."""
        return self.emulator_instance is not None

    def _run(self, durability: Durability, fn: Callable[..., _T], *args: Any, **kwargs: Any) -> Awaitable[_T]:
        """The operation's result, to await (a coroutine, or a future)."""
        raise NotImplementedError

    async def _read(self, fn: Callable[..., _T], *args: Any, **kwargs: Any) -> _T:
        return await self._run(Durability.COMMITTED, fn, *args, **kwargs)

    async def _later(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> asyncio.Future[Any] | None:
        """A ``BATCHED`` write: queued for the next group commit and not waited for, where the backend
        can (the returned future ends when it is committed, or with its error); else run now (``None``)."""
        await self._run(B, fn, *args, **kwargs)
        return None

    # -- clips and leases ------------------------------------------------------------------
    async def open_clip(self, key: str, request_json: str, request_hash: str, *, tenant: str = "",
                        image: StoredImage | None = None, options_json: str | None = None) -> ClipRecord:
        """Create clip ``key`` (state "open"), or return it if it exists for the same request hash;
        ``InvalidRequest`` when the key was used for a different request. ``image``: stored once by
        content hash with the clip; ``options_json``: the call's options (``store.intake``)."""
        return await self._run(C, Queries.open_clip, key, request_json, request_hash,
                               emulator_instance=self.emulator_instance, tenant=tenant, image=image,
                               options_json=options_json)

    async def get_clip(self, key: str) -> ClipRecord | None:
        return await self._read(Queries.get_clip, key)

    async def claim_clip(self, key: str, owner: str, *, heartbeat: float = HEARTBEAT_S,
                         alive: Callable[[str], bool] | None = None) -> str | None:
        """Take the clip's lease for ``owner``: None when taken, else the holder of a live lease.
        The holder must ``renew_clip`` every ``heartbeat`` seconds; 3 missed beats make it stale.
        ``alive(holder)`` may declare a holder dead before its lease runs out (one transaction)."""
        wall = self.wall()
        holder = await self._run(C, _claim, key, owner, wall=wall, heartbeat=heartbeat, alive=alive)
        if holder is None:
            self._claimed(key, owner, wall, heartbeat)
        return holder

    async def open_and_claim(self, key: str, request_json: str, request_hash: str, owner: str, *,
                             heartbeat: float = HEARTBEAT_S, alive: Callable[[str], bool] | None = None,
                             tenant: str = "", image: StoredImage | None = None, options_json: str | None = None
                             ) -> tuple[ClipRecord, str | None, list[SubmitRecord]]:
        """``open_clip``, then (unless it already succeeded) ``claim_clip`` and the clip's submits, in
        ONE committed transaction: the hot path of a generation pays one round trip, not three."""
        wall = self.wall()
        found = await self._run(C, _open_and_claim, key, request_json, request_hash, owner, wall=wall,
                                heartbeat=heartbeat, alive=alive, emulator_instance=self.emulator_instance,
                                tenant=tenant, image=image, options_json=options_json)
        if found[1] is None and not (found[0].state == "succeeded" and found[0].result_json):
            self._claimed(key, owner, wall, heartbeat)
        return found

    def _claimed(self, key: str, owner: str, wall: float, heartbeat: float) -> None:
        _keep(self._claims, (key, owner), wall, _CLAIMS_KEPT)  # the oldest: claims nobody asked about
        _keep(self._held, key, (owner, heartbeat, None, wall), _HELD_KEPT)

    def renewed_at(self, key: str, owner: str) -> float | None:
        """The wall time (epoch seconds) of the last renewal of ``owner``'s lease on ``key`` that rode in
        an ack's transaction (``accepted``), once committed; None when there was none. A renewal like a
        heartbeat's: ``gateway.jobs.leasing`` trusts it as one."""
        held = self._held.get(key)
        return held[2] if held is not None and held[0] == owner else None

    def claimed_at(self, key: str, owner: str) -> float | None:
        """The wall time (epoch seconds) ``owner``'s lease on ``key`` was taken with by this store — the
        time its life counts from, however long the claim waited for the database — once (it is
        forgotten when read). None when unknown."""
        return self._claims.pop((key, owner), None)

    # The hot path's operations below are plain methods returning the operation's awaitable (not
    # ``async def``): with ten thousand jobs waiting at one group commit, one coroutine less each.
    def renew_clip(self, key: str, owner: str, *, heartbeat: float = HEARTBEAT_S) -> Awaitable[bool]:
        """One heartbeat; False when ``owner`` no longer holds the lease (it went stale and was taken)."""
        return self._run(C, Queries.renew_clip, key, owner, wall=self.wall(), heartbeat=heartbeat)

    def lease_holder(self, key: str) -> Awaitable[str | None]:
        """Who holds the clip's lease now (None: nobody)."""
        return self._run(C, Queries.lease_holder, key)

    def release_clip(self, key: str, owner: str, *, wait: bool = True) -> Awaitable[Any]:
        """Give the lease back. ``wait=False`` batches it: only for a clip whose result is committed
        (callers of its key get the result without claiming; a crash leaves a lease that goes stale);
        awaiting it then returns at once (``_later``)."""
        held = self._held.get(key)
        if held is not None and held[0] == owner:
            del self._held[key]
        if wait:
            return self._run(C, Queries.release_clip, key, owner)
        return self._later(Queries.release_clip, key, owner)

    async def record_media(self, key: str, facts: dict[str, Any]) -> None:
        """Merge facts about the clip's downloaded file (``sha256``, ``size``, ``path``…) into its record."""
        await self._run(C, Queries.record_media, key, facts)

    async def record_download(self, *, clip_key: str, provider: str, job_id: str, video_url: str,
                              saved_to: str | None, facts: Any) -> bool:
        """COMMITTED: one download's ``MediaFacts`` (``gateway.store.media.record_download``); False when
        the clip is not in this store."""
        return bool(await self._run(C, record_download, clip_key=clip_key, provider=provider, job_id=job_id,
                                    video_url=video_url, saved_to=saved_to, facts=facts))

    async def finish_clip(self, key: str, result_json: str) -> None:
        """Mark the clip "succeeded" with its OviResult JSON (a succeeded clip is final)."""
        await self._run(C, Queries.clip_to, key, "succeeded", result_json=result_json, error=None)

    def finish(self, clip_key: str, result_json: str, submit_key: str, *, cost_usd: Decimal | None,
               cost_source: str, release: str | None = None) -> Awaitable[None]:
        """COMMITTED: the clip "succeeded" with its result AND its submit "succeeded" with its cost, in one
        transaction (never a finished submit whose clip has no result, nor the reverse). ``release``: the
        same transaction gives back that owner's lease (``release_clip``), if it still holds it."""
        if release is not None:
            held = self._held.get(clip_key)
            if held is not None and held[0] == release:
                del self._held[clip_key]
        return self._run(C, _finish, clip_key, result_json, submit_key, cost_usd=_money(cost_usd),
                         cost_source=cost_source, release=release)

    async def fail_clip(self, key: str, error: str) -> None:
        await self._run(C, Queries.clip_to, key, "failed", error=error)

    async def claim_unfinished(self, owner: str, *, limit: int = 100, heartbeat: float = HEARTBEAT_S) -> list[str]:
        """Lease up to ``limit`` clips holding open submits for a resume worker (none leased live)."""
        return await self._run(C, Queries.claim_unfinished, owner, wall=self.wall(), heartbeat=heartbeat,
                               limit=limit, emulated=self.emulated)

    # -- submits -----------------------------------------------------------------------------
    async def intent(self, *, clip_key: str, submit_key: str, provider: str, quote_usd: Decimal | None,
                     deadline: float | None = None, steps: int | None = None, dropped: Iterable[str] = (),
                     budget: BudgetChecks = None, scopes: Iterable[str] = (),
                     opening: ClipOpening | None = None) -> None:
        """FLUSHED before the submit POST. ``budget`` = (limit USD, period, scope) reserves the quote in
        the same transaction, or records the submit failed-unbilled and raises ``BudgetExceeded``.
        ``opening``: create the clip, leased to its owner, in the same transaction (``Queries.intent``;
        ``ClipInProgress`` when another call has the key); its claim is then known as ``claim_clip``'s."""
        if opening is not None or clip_key in self._held:
            _keep(self._acks, submit_key, clip_key, _HELD_KEPT)
        if opening is not None:
            opening = opening._replace(wall=self.wall())
        try:
            refused = await self._run(F, Queries.intent, clip_key=clip_key, submit_key=submit_key, provider=provider,
                                      quote_usd=quote_usd, deadline=deadline, steps=steps, dropped=tuple(dropped),
                                      budget=budget, scopes=tuple(scopes), emulator_instance=self.emulator_instance,
                                      opening=opening)
        except BaseException:
            self._acks.pop(submit_key, None)
            raise
        if opening is not None:  # committed and flushed: the clip is this call's, as after ``claim_clip``
            self._claimed(clip_key, opening.owner, opening.wall, opening.heartbeat)
        if refused is not None:
            self._acks.pop(submit_key, None)
            raise refused

    def accepted(self, submit_key: str, handle_json: dict[str, Any]) -> Awaitable[Any]:
        """FLUSHED right after the vendor's ack: its job id and ``JobHandle.to_json()``. When this store
        holds the lease of the submit's clip, the same transaction renews it (``renewed_at``): the call
        is alive, and its verdict seconds later then needs no renewal round trip of its own — unless the
        lease's last beat here is younger than ``ACK_RENEWS_AFTER`` heartbeats (then it is nearly as good)."""
        job_id, handle = handle_json.get("job_id"), json.dumps(handle_json, sort_keys=True)
        clip_key = self._acks.pop(submit_key, None)
        held = None if clip_key is None else self._held.get(clip_key)
        if clip_key is None or held is None or self.wall() - (
                held[3] if held[2] is None else held[2]) < ACK_RENEWS_AFTER * held[1]:  # a beat that fresh: no renewal
            return self._run(F, Queries.submit_to, submit_key, "accepted", job_id=job_id, handle_json=handle)
        return self._accepted_renewing(submit_key, job_id, handle, clip_key, held[0], held[1])

    async def _accepted_renewing(self, submit_key: str, job_id: Any, handle_json: str, clip_key: str, owner: str,
                                 heartbeat: float) -> None:
        wall = self.wall()  # before the transaction: never later than the renewal's own time
        kept = await self._run(F, _accepted_renewing, submit_key, job_id=job_id, handle_json=handle_json,
                               clip_key=clip_key, owner=owner, wall=wall, heartbeat=heartbeat)
        held = self._held.get(clip_key)
        if held is not None and held[0] == owner:
            if kept:  # committed (and flushed): as good as a beat
                self._held[clip_key] = (owner, heartbeat, wall, held[3])
            else:  # taken over: nothing of this lease is left to renew or trust
                del self._held[clip_key]

    async def state(self, submit_key: str, state: str) -> asyncio.Future[Any] | None:
        """BATCHED progress ("queued", "running"); see ``_later`` for the returned future."""
        return await self._later(Queries.submit_to, submit_key, state)

    async def finished(self, submit_key: str, *, cost_usd: Decimal | None,
                       cost_source: str) -> asyncio.Future[Any] | None:
        """BATCHED: the clip's result is already on record (``finish_clip``) when this is written."""
        return await self._later(Queries.submit_to, submit_key, "succeeded", cost_usd=_money(cost_usd),
                                 cost_source=cost_source)

    async def failed(self, submit_key: str, *, error: str, may_be_billed: bool) -> None:
        self._acks.pop(submit_key, None)  # no ack is coming for it
        await self._run(C, Queries.submit_to, submit_key, "failed", error=error, may_be_billed=int(bool(may_be_billed)))

    async def unknown(self, submit_key: str, *, error: str) -> None:
        self._acks.pop(submit_key, None)
        await self._run(C, Queries.submit_to, submit_key, "unknown", error=error, may_be_billed=1)

    async def expired(self, submit_key: str, error: str) -> None:
        await self._run(C, Queries.submit_to, submit_key, "expired", error=error)

    async def abandoned(self, submit_key: str, *, error: str) -> None:
        """Give up on a submit no resume could settle (terminal; it may have been billed)."""
        await self._run(C, Queries.submit_to, submit_key, "abandoned", error=error, may_be_billed=1)

    async def note_resume(self, submit_key: str, spacing_s: float = 0.0, reset: bool = False) -> int:
        return await self._run(C, Queries.note_resume, submit_key, spacing_s, reset)

    async def abandoned_submits(self) -> list[SubmitRecord]:
        return await self._read(Queries.abandoned_submits, self.emulated)

    async def reserve(self, submit_key: str, amount: Decimal) -> None:
        await self._run(C, Queries.reserve, submit_key, amount)

    async def submits(self, clip_key: str) -> list[SubmitRecord]:
        return await self._read(Queries.submits, clip_key)

    async def unfinished(self) -> list[SubmitRecord]:
        """Open submits of unsucceeded clips (this store's kind: real or emulated), oldest first."""
        return await self._read(Queries.unfinished, self.emulated)

    # -- spend ---------------------------------------------------------------------------------
    async def spend(self, *, since: datetime | None = None) -> list[SpendRow]:
        return await self._read(Queries.spend, since=since, emulated=self.emulated)

    async def reserved_and_spent(self, *, since: datetime | None = None, scope: str = "",
                                 clip_prefix: str | None = None) -> Decimal:
        return await self._read(Queries.reserved_and_spent, since=since, emulated=self.emulated, scope=scope,
                                clip_prefix=clip_prefix)

    async def reported_costs(self, provider: str, limit: int = 20) -> list[tuple[Decimal, Decimal | None, int | None]]:
        return await self._read(Queries.reported_costs, provider, limit, self.emulated)

    # -- breakers, caps, rates -----------------------------------------------------------------
    async def load_breakers(self) -> dict[str, BreakerRecord]:
        return await self._read(Queries.load_breakers, self.emulated)

    async def save_breaker(self, record: BreakerRecord) -> None:
        await self._run(B, Queries.save_breaker, record, self.emulated, self.wall())

    async def take_probe(self, provider: str, holder: str, *, ttl: float) -> bool:
        """Take the half-open probe of ``provider`` for ``ttl`` seconds (``Queries.take_probe``)."""
        return await self._run(C, Queries.take_probe, provider, holder, wall=self.wall(), ttl=ttl,
                               emulated=self.emulated)

    async def end_probe(self, provider: str, holder: str) -> None:
        await self._run(C, Queries.end_probe, provider, holder, self.emulated)

    async def take_slot(self, provider: str, holder: str, *, cap: int, ttl: float = 3 * HEARTBEAT_S) -> bool:
        return await self._run(C, Queries.take_slot, provider, holder, cap=cap, wall=self.wall(), ttl=ttl,
                               emulated=self.emulated)

    async def free_slot(self, provider: str, holder: str) -> None:
        await self._run(C, Queries.free_slot, provider, holder, self.emulated)

    async def take_token(self, provider: str, *, per_second: float, burst: float = 1.0) -> float:
        return await self._run(C, Queries.take_token, provider, per_second=per_second, burst=burst,
                               wall=self.wall(), emulated=self.emulated)

    # -- intake, images, retention -------------------------------------------------------------
    async def put_image(self, sha256: str, data: bytes, mime: str | None = None) -> None:
        await self._run(C, Queries.put_image, sha256, data, mime)

    async def get_image(self, sha256: str) -> bytes | None:
        return await self._read(Queries.get_image, sha256)

    async def prune(self, older_than: timedelta) -> dict[str, int]:
        """Delete finished rows and unused images older than ``older_than``; never an open paid job."""
        return await self._run(C, Queries.prune, older_than, wall=self.wall())

    async def drain(self) -> None:
        """Wait until every BATCHED write made so far is committed (visible to other processes); writes
        started in tasks that have not run yet (a breaker's save) are let in first."""
        await asyncio.sleep(0)
        await self._run(C, Queries.noop)

    async def aclose(self) -> None:
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError


Store = SqlStore
"""The storage interface's type (every backend subclasses it)."""


def _claim(queries: Queries, tx: Any, key: str, owner: str, *, wall: float, heartbeat: float,
           alive: Callable[[str], bool] | None) -> str | None:
    holder = queries.claim_clip(tx, key, owner, wall=wall, heartbeat=heartbeat)
    if holder is not None and alive is not None and not alive(holder):
        tx.run("UPDATE clips SET lease_owner = NULL WHERE key = ? AND lease_owner = ?", (key, holder))
        holder = queries.claim_clip(tx, key, owner, wall=wall, heartbeat=heartbeat)
    return holder


def _open_and_claim(queries: Queries, tx: Any, key: str, request_json: str, request_hash: str, owner: str, *,
                    wall: float, heartbeat: float, alive: Callable[[str], bool] | None,
                    emulator_instance: str | None, tenant: str, image: StoredImage | None,
                    options_json: str | None) -> tuple[ClipRecord, str | None, list[SubmitRecord]]:
    clip, created = queries.open_new(tx, key, request_json, request_hash, emulator_instance=emulator_instance,
                                     tenant=tenant, image=image, options_json=options_json,
                                     lease=(owner, wall + STALE_BEATS * heartbeat, wall))
    if created:  # a new clip: created leased to ``owner``, and it has no submits yet
        return clip, None, []
    if clip.state == "succeeded" and clip.result_json:
        return clip, None, []
    holder = _claim(queries, tx, key, owner, wall=wall, heartbeat=heartbeat, alive=alive)
    return clip, holder, ([] if holder is not None else queries.submits(tx, key))


def _keep(kept: dict[_K, _V], key: _K, value: _V, limit: int) -> None:
    """``kept[key] = value``, forgetting the oldest entry first when ``kept`` already holds ``limit``."""
    if len(kept) >= limit and key not in kept:
        kept.pop(next(iter(kept)))
    kept[key] = value


def _accepted_renewing(queries: Queries, tx: Any, submit_key: str, *, job_id: Any, handle_json: str, clip_key: str,
                       owner: str, wall: float, heartbeat: float) -> bool:
    """The ack (``Queries.submit_to``, as ``accepted`` alone) and a renewal of the clip's lease; False when
    the lease was lost meanwhile (the ack is recorded either way: the job is paid)."""
    queries.submit_to(tx, submit_key, "accepted", job_id=job_id, handle_json=handle_json)
    return queries.renew_clip(tx, clip_key, owner, wall=wall, heartbeat=heartbeat)


def _finish(queries: Queries, tx: Any, clip_key: str, result_json: str, submit_key: str, *,
            cost_usd: str | None, cost_source: str, release: str | None = None) -> None:
    queries.clip_to(tx, clip_key, "succeeded", release=release, result_json=result_json, error=None)
    queries.submit_to(tx, submit_key, "succeeded", cost_usd=cost_usd, cost_source=cost_source)
