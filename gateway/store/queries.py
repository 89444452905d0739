"""The storage logic, once, for every backend: each method runs inside one transaction ``tx``.

A backend (``sqlite``, ``postgres``) owns connections, threads and the write classes; this module owns
what is read and written. SQL uses ``?`` placeholders (PostgreSQL's adapter rewrites them) and the
subset both engines speak (``ON CONFLICT``, partial indexes). Where they differ, ``tx.lock`` /
``tx.skip_locked`` add PostgreSQL's row locks; on SQLite every write transaction is ``BEGIN IMMEDIATE``,
which already serializes writers.

Budgets keep running totals (``budget_totals``): each submit remembers the USD it holds against spend
(``held_usd``) and every change of it moves its scopes' totals in the same transaction (``spend``).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import TYPE_CHECKING, Any, NoReturn

from gateway.errors import BudgetExceeded, ClipInProgress, InvalidRequest
from gateway.store.records import (
    FINAL,
    OPEN,
    STALE_BEATS,
    STATES,
    ClipOpening,
    ClipRecord,
    SubmitRecord,
)
from gateway.store.server_rows import ServerQueries
from gateway.store.shared_queries import SharedQueries
from gateway.store.spend import SpendQueries
from gateway.store.values import (
    _SQL,
    BudgetChecks,
    Tx,
    _checks,
    _dec,
    _instance_filter,
    _iso,
    _money,
    _redacted,
    held,
)

if TYPE_CHECKING:
    from gateway.store.intake import StoredImage

__all__ = ["BudgetChecks", "ClipOpening", "Queries", "Tx", "_iso", "_money", "held"]

_OPEN = "(" + " OR ".join(f"s.state = '{state}'" for state in OPEN) + ")"
"""An open submit (alias ``s``), as the partial index ``submits_open`` states it (migration 0013): SQLite
uses a partial index only for a query that states its condition the same way."""
_NOT_FINAL_SQL = " AND ".join(f"state != '{state}'" for state in sorted(FINAL))
"""A submit still open: four comparisons, not ``NOT IN (…)``, for which SQLite builds a temporary b-tree
on every run of the statement (1.3 µs of each state change of every job)."""
_HELD_BY = frozenset({"quote_usd", "reserved_usd", "cost_usd", "cost_source", "may_be_billed"})
"""The columns besides the state that a submit's held USD is judged from (``held``)."""
_SUBMIT_COLUMNS = (
    "s.submit_key, s.clip_key, s.provider, s.state, s.job_id, s.handle_json, s.quote_usd, s.cost_usd,"
    " s.cost_source, s.may_be_billed, s.error, s.deadline, s.steps, s.dropped, s.created_at, s.updated_at,"
    " c.request_json, s.emulator_instance"
)


class Queries(ServerQueries, SharedQueries, SpendQueries):
    """Every read and write of the store (the server's tables: ``ServerQueries``; breakers, caps, rates,
    images and retention: ``SharedQueries``; running totals and spend: ``SpendQueries``). ``utcnow`` gives
    wall-clock UTC (a seam for tests)."""

    def __init__(self, utcnow: Callable[[], datetime] | None = None) -> None:
        self.utcnow = utcnow or (lambda: datetime.now(UTC))

    def _now(self) -> str:
        return _iso(self.utcnow())

    def noop(self, tx: Tx) -> None:
        """Nothing: queued behind earlier writes, it marks when they are committed."""

    # -- clips ---------------------------------------------------------------------------------
    def open_clip(self, tx: Tx, key: str, request_json: str, request_hash: str, *,
                  emulator_instance: str | None = None, tenant: str = "", image: StoredImage | None = None,
                  options_json: str | None = None) -> ClipRecord:
        """Create the clip (state "open"), or return it when it exists for the same request hash.
        ``image``: the request's image, stored once by content hash in this transaction (the row
        refers to it); ``options_json``: the call's options, kept from the clip's first call."""
        return self.open_new(tx, key, request_json, request_hash, emulator_instance=emulator_instance,
                             tenant=tenant, image=image, options_json=options_json)[0]

    def open_new(self, tx: Tx, key: str, request_json: str, request_hash: str, *,
                 emulator_instance: str | None = None, tenant: str = "", image: StoredImage | None = None,
                 options_json: str | None = None, lease: tuple[str, float, float] | None = None,
                 now: str | None = None) -> tuple[ClipRecord, bool]:
        """``open_clip``, and whether this call created the clip. A created clip is answered from what
        was just written (no read back) and, with ``lease`` = (owner, until, beat), is created leased
        to that owner (the lease rule needs no check: nobody held a clip that did not exist). ``now``:
        the transaction's time, when the caller has it."""
        now = now or self._now()
        if self._insert_clip(tx, key, request_json, request_hash, now, emulator_instance, tenant, image,
                             options_json, lease):
            return ClipRecord(key, request_json, request_hash, "open", None, None, now, media=None,
                              options_json=options_json, image_sha256=None if image is None else image.sha256), True
        self._existing(tx, key, request_hash, options_json)
        clip = self.get_clip(tx, key)
        assert clip is not None
        return clip, False

    @staticmethod
    def _existing(tx: Tx, key: str, request_hash: str, options_json: str | None) -> None:
        """Clip ``key`` exists: ``InvalidRequest`` when it was made for a different request."""
        # Locked first: on PostgreSQL (READ COMMITTED) an unlocked read can see the clip open while
        # another call's result is committing, and a claim that then waits on that row would find its
        # lease given back with the result (``clip_to(release=…)``) and take a succeeded clip.
        row = tx.one(f"SELECT request_hash FROM clips WHERE key = ?{tx.lock}", (key,))
        if row is not None and row[0] != request_hash:
            raise InvalidRequest(f"idempotency key {key!r} was used for a different request; "
                                 "use a new key for a new request")
        if options_json is not None:  # a clip journaled before options were kept gets this call's
            tx.run("UPDATE clips SET options_json = ? WHERE key = ? AND options_json IS NULL", (options_json, key))

    def _insert_clip(self, tx: Tx, key: str, request_json: str, request_hash: str, now: str,
                     emulator_instance: str | None, tenant: str, image: StoredImage | None, options_json: str | None,
                     lease: tuple[str, float, float] | None) -> bool:
        """Insert clip ``key`` (state "open"; ``open_new``'s arguments) unless the key exists: whether it did."""
        if not isinstance(key, str) or not key:
            raise InvalidRequest("idempotency key must be a non-empty string")
        if image is not None:
            self.put_image(tx, image.sha256, image.data, image.mime)
        return bool(tx.run("INSERT INTO clips (key, request_json, request_hash, state, created_at, updated_at,"
                           " emulator_instance, tenant, image_sha256, options_json, lease_owner, lease_until,"
                           " lease_beat) VALUES (?, ?, ?, 'open', ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
                           (key, request_json, request_hash, now, now, emulator_instance, tenant,
                            None if image is None else image.sha256, options_json, *(lease or (None, None, None)))))

    def get_clip(self, tx: Tx, key: str) -> ClipRecord | None:
        row = tx.one("SELECT key, request_json, request_hash, state, result_json, error, created_at, media_json,"
                     " options_json, image_sha256 FROM clips WHERE key = ?", (key,))
        if row is None:
            return None
        key, request_json, hashed, state, result_json, error, created_at, media, options, image = row
        return ClipRecord(key, request_json, hashed, state, result_json, error, created_at,
                          media=None if media is None else json.loads(media), options_json=options,
                          image_sha256=image)

    def record_media(self, tx: Tx, key: str, facts: dict[str, Any]) -> None:
        """Merge ``facts`` about the clip's downloaded file (``sha256``, ``size``, ``path``…) into its record."""
        row = tx.one(f"SELECT media_json FROM clips WHERE key = ?{tx.lock}", (key,))
        if row is None:
            raise KeyError(f"no clip {key!r} in the journal")
        merged = {**(json.loads(row[0]) if row[0] else {}), **facts}
        tx.run("UPDATE clips SET media_json = ?, updated_at = ? WHERE key = ?",
               (json.dumps(merged, sort_keys=True, default=str), self._now(), key))

    def claim_clip(self, tx: Tx, key: str, owner: str, *, wall: float, heartbeat: float) -> str | None:
        """The lease rule: take the clip for ``owner`` unless another owner's lease is live, i.e. its
        last heartbeat is younger than ``STALE_BEATS`` heartbeats. Returns the live holder, or None."""
        row = tx.one(f"SELECT lease_owner, lease_until FROM clips WHERE key = ?{tx.lock}", (key,))
        if row is None:
            raise KeyError(f"no clip {key!r} in the journal")
        holder, until = row
        if holder and holder != owner and until is not None and until > wall:
            return str(holder)
        tx.run("UPDATE clips SET lease_owner = ?, lease_until = ?, lease_beat = ? WHERE key = ?",
               (owner, wall + STALE_BEATS * heartbeat, wall, key))
        return None

    def renew_clip(self, tx: Tx, key: str, owner: str, *, wall: float, heartbeat: float) -> bool:
        """One heartbeat: push the lease out by ``STALE_BEATS`` beats; False when ``owner`` lost it."""
        return tx.run("UPDATE clips SET lease_until = ?, lease_beat = ? WHERE key = ? AND lease_owner = ?",
                      (wall + STALE_BEATS * heartbeat, wall, key, owner)) == 1

    def lease_holder(self, tx: Tx, key: str) -> str | None:
        """Who holds the clip's lease now (None: nobody)."""
        row = tx.one("SELECT lease_owner FROM clips WHERE key = ?", (key,))
        return None if row is None or row[0] is None else str(row[0])

    def release_clip(self, tx: Tx, key: str, owner: str) -> None:
        tx.run("UPDATE clips SET lease_owner = NULL, lease_until = NULL, lease_beat = NULL"
               " WHERE key = ? AND lease_owner = ?", (key, owner))

    def clip_to(self, tx: Tx, key: str, state: str, *, release: str | None = None, **columns: Any) -> None:
        """Move the clip to ``state`` (never out of "succeeded"): one UPDATE, read only when it refuses.
        ``release``: the same UPDATE gives back that owner's lease (``release_clip``); another's stays."""
        columns = _redacted(columns)
        args: tuple[Any, ...] = (state, *columns.values())
        update = _SQL.get(("clip_to", *columns, release is not None))
        if update is None:  # the text depends only on the columns and whether a lease goes back: made once
            sets = "".join(f", {name} = ?" for name in columns)
            if release is not None:  # every SET reads the row as it was: the CASEs all see the old owner
                sets += "".join(f", {name} = CASE WHEN lease_owner = ? THEN NULL ELSE {name} END"
                                for name in ("lease_owner", "lease_until", "lease_beat"))
            update = _SQL[("clip_to", *columns, release is not None)] = (
                f"UPDATE clips SET state = ?{sets}, updated_at = ? WHERE key = ? AND state != 'succeeded'")
        if release is not None:
            args += (release, release, release)
        if tx.run(update, (*args, self._now(), key)):
            return
        if tx.one("SELECT state FROM clips WHERE key = ?", (key,)) is None:
            raise KeyError(f"no clip {key!r} in the journal")
        raise ValueError(f"clip {key!r} already succeeded; cannot mark it {state}")

    def claim_unfinished(self, tx: Tx, owner: str, *, wall: float, heartbeat: float, limit: int,
                         emulated: bool | None = None) -> list[str]:
        """Lease up to ``limit`` clips that have an open submit and no live lease, for a resume worker.
        On PostgreSQL ``SKIP LOCKED`` lets N workers split them without following one job twice."""
        flag = _instance_filter("c", emulated)
        rows = tx.all(f"SELECT c.key FROM clips c WHERE c.key IN (SELECT s.clip_key FROM submits s WHERE"
                      f" {_OPEN}) AND c.state != 'succeeded'{flag} AND (c.lease_owner IS NULL"
                      f" OR c.lease_until IS NULL OR c.lease_until <= ?) ORDER BY c.created_at, c.key"
                      f" LIMIT ?{tx.skip_locked}", (wall, limit))
        keys = [str(r[0]) for r in rows]
        for key in keys:
            tx.run("UPDATE clips SET lease_owner = ?, lease_until = ?, lease_beat = ? WHERE key = ?",
                   (owner, wall + STALE_BEATS * heartbeat, wall, key))
        return keys

    # -- submits -------------------------------------------------------------------------------
    def intent(self, tx: Tx, *, clip_key: str, submit_key: str, provider: str, quote_usd: Decimal | None,
               deadline: float | None = None, steps: int | None = None,
               dropped: Iterable[str] = (), budget: BudgetChecks = None, scopes: Iterable[str] = (),
               emulator_instance: str | None = None, opening: ClipOpening | None = None) -> BudgetExceeded | None:
        """Record a submit before it is POSTed: THE reservation path of every budget.

        ``budget``: one (limit USD, period, scope) check or several (``routing.pricing.budget_holds``);
        the quote is reserved in the same transaction as the intent, or — when a scope's held spend in
        its period plus the quote would pass its limit — the submit is recorded failed-unbilled and a
        ``BudgetExceeded`` is returned (the caller raises it after the commit, so the refusal is on
        record). ``scopes``: further scopes the submit counts under (a caller's own). Each scope's
        running totals move in this transaction; the row locks make it atomic on PostgreSQL.

        ``opening``: the clip is created here first, leased to its owner (``ClipOpening``). When the key
        is taken already — another call created a clip under it — this raises ``ClipInProgress`` and
        writes nothing: no intent, so nothing is POSTed (``InvalidRequest`` for a different request).
        So does an intent for a clip already succeeded: no second paid job for a delivered clip."""
        now = self._now()
        if opening is not None:  # (the clip's record is not built: nobody reads it here)
            created = self._insert_clip(tx, clip_key, opening.request_json, opening.request_hash, now,
                                        emulator_instance, opening.tenant, opening.image, opening.options_json,
                                        (opening.owner, opening.wall + STALE_BEATS * opening.heartbeat, opening.wall))
            if not created:  # raised: the transaction is rolled back, this call wrote nothing
                self._existing(tx, clip_key, opening.request_hash, opening.options_json)  # a different request?
                raise ClipInProgress(f"clip {clip_key!r} was opened by another call meanwhile; nothing was "
                                     "submitted here: call again with the same key when it is done")
        else:
            found = tx.one("SELECT (SELECT state FROM clips WHERE key = ?), (SELECT 1 FROM submits WHERE"
                           " submit_key = ?)", (clip_key, submit_key))
            if found is None or found[0] is None:
                raise KeyError(f"no clip {clip_key!r} in the journal")
            if found[0] == "succeeded":  # never a new paid job for a delivered clip, whatever led here
                raise ClipInProgress(f"clip {clip_key!r} was delivered by another call meanwhile; nothing was "
                                     "submitted here: call again with the same key for its result")
            if found[1] is not None:
                raise ValueError(f"submit {submit_key!r} is already in the journal")
        emulated = int(emulator_instance is not None)
        checks = _checks(budget)
        tags = sorted({*scopes, *(scope for _, _, scope in checks if scope)})
        for tag in tags:
            if not tag or " " in tag:
                raise ValueError(f"a budget scope is a non-empty text without spaces, got {tag!r}")
        totals = self._lock_totals(tx, " ".join(tags), emulated, now)
        state, error, reserved, refusal = "intent", None, None, None
        if checks:
            if quote_usd is None:
                state, error = "failed", "budget needs a price"
            else:
                reserved = quote_usd
                for limit, period, scope in checks:
                    key = next(k for k in totals if k[0] == scope and k[2] == period)
                    spent = totals[key] + quote_usd
                    if spent > limit:
                        state, error = "failed", "over budget"
                        named = "" if not scope else f" in scope {scope.split(':')[0]}"
                        refusal = (f"a ${quote_usd} submit would bring {period} spend{named} to ${spent}, over "
                                   f"the ${limit} budget; nothing was sent")
                        break
        hold = held(state, _money(quote_usd), _money(reserved), None, None, 0)
        # A new clip has no submits, and a submit key is a fresh UUID: only a collision conflicts, and is refused.
        if not tx.run("INSERT INTO submits (submit_key, clip_key, provider, state, quote_usd, reserved_usd, deadline,"
                      " steps, dropped, created_at, updated_at, emulator_instance, held_usd, budget_scope, error)"
                      " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
                      (submit_key, clip_key, provider, state, _money(quote_usd), _money(reserved), deadline, steps,
                       json.dumps(sorted(dropped)) if dropped else "[]", now, now, emulator_instance, str(hold),
                       " ".join(tags), error)):
            raise ValueError(f"submit {submit_key!r} is already in the journal")
        self._move_totals(tx, totals, hold)
        if error == "budget needs a price":
            return BudgetExceeded(f"{provider} has no known price, so a budget cannot be checked", provider=provider)
        if refusal is not None:
            return BudgetExceeded(refusal, provider=provider)
        return None

    def submit_to(self, tx: Tx, submit_key: str, state: str, **columns: Any) -> None:
        """Move a submit to ``state`` (never out of a final one), keeping the budget totals true. A change
        that cannot move the held USD (no column it is judged from, not "failed") is one plain UPDATE;
        any other is one UPDATE returning what the held USD is judged from (the row's new values, its
        old ``held_usd``), a second write only when that changes; a read only when the UPDATE refused."""
        if state not in STATES:
            raise ValueError(f"unknown submit state {state!r}; expected one of {sorted(STATES)}")
        if state != "failed" and _HELD_BY.isdisjoint(columns):  # progress, the ack, an expiry: the held USD
            columns = _redacted(columns)  # depends on the state only for "failed" (``held``): it stays
            names = tuple(columns)
            update = _SQL.get(("submit_to", names))
            if update is None:
                sets = "".join(f", {name} = ?" for name in names)
                update = _SQL[("submit_to", names)] = (
                    f"UPDATE submits SET state = ?, updated_at = ?{sets} WHERE submit_key = ? AND {_NOT_FINAL_SQL}")
            if not tx.run(update, (state, self._now(), *columns.values(), submit_key)):
                self._refuse(tx, submit_key, state)
            return
        if not tx.returning:  # an older SQLite: read the row, then the same checks and writes
            row = self._locked_submit(tx, submit_key)
            if row[0] in FINAL:
                raise ValueError(f"submit {submit_key!r} is already {row[0]}; cannot move it to {state}")
            self._update_submit(tx, submit_key, row, state, columns)
            return
        columns = _redacted(columns)
        sets = "".join(f", {name} = ?" for name in columns)
        rows = tx.all(f"UPDATE submits SET state = ?, updated_at = ?{sets} WHERE submit_key = ? AND"
                      f" {_NOT_FINAL_SQL} RETURNING quote_usd, reserved_usd, cost_usd, cost_source, may_be_billed,"
                      " held_usd, created_at, emulator_instance, budget_scope",
                      (state, self._now(), *columns.values(), submit_key))
        if not rows:
            self._refuse(tx, submit_key, state)
        quote, reserved, cost, source, billed, before, created_at, instance, scope = rows[0]
        hold = held(state, quote, reserved, cost, source, billed)
        was = _dec(before)
        if was is None or hold != was:
            tx.run("UPDATE submits SET held_usd = ? WHERE submit_key = ?", (str(hold), submit_key))
            self._move_totals(tx, self._lock_totals(tx, scope, int(instance is not None), created_at),
                              hold - (was or Decimal(0)))

    @staticmethod
    def _refuse(tx: Tx, submit_key: str, state: str) -> NoReturn:
        """Why a state change's UPDATE matched no row: no such submit, or it is final already."""
        final = tx.one("SELECT state FROM submits WHERE submit_key = ?", (submit_key,))
        if final is None:
            raise KeyError(f"no submit {submit_key!r} in the journal")
        raise ValueError(f"submit {submit_key!r} is already {final[0]}; cannot move it to {state}")

    def reserve(self, tx: Tx, submit_key: str, amount: Decimal) -> None:
        row = self._locked_submit(tx, submit_key)
        self._update_submit(tx, submit_key, row, row[0], {"reserved_usd": _money(amount)})

    @staticmethod
    def _locked_submit(tx: Tx, submit_key: str) -> tuple[Any, ...]:
        """The submit's row as ``_update_submit`` reads it (locked where the engine has row locks)."""
        row = tx.one("SELECT state, quote_usd, reserved_usd, cost_usd, cost_source, may_be_billed, held_usd,"
                     f" created_at, emulator_instance, budget_scope FROM submits WHERE submit_key = ?{tx.lock}",
                     (submit_key,))
        if row is None:
            raise KeyError(f"no submit {submit_key!r} in the journal")
        return row

    def _update_submit(self, tx: Tx, submit_key: str, row: tuple[Any, ...], state: str,
                       columns: dict[str, Any]) -> None:
        columns = _redacted(columns)
        fields = dict(zip(("state", "quote_usd", "reserved_usd", "cost_usd", "cost_source", "may_be_billed"),
                          row[:6], strict=True))
        fields.update(columns, state=state)
        hold = held(fields["state"], fields["quote_usd"], fields["reserved_usd"], fields["cost_usd"],
                    fields["cost_source"], fields["may_be_billed"])
        before = _dec(row[6]) or Decimal(0)
        sets = "".join(f", {name} = ?" for name in columns)
        tx.run(f"UPDATE submits SET state = ?, updated_at = ?, held_usd = ?{sets} WHERE submit_key = ?",
               (state, self._now(), str(hold), *columns.values(), submit_key))
        if hold != before:
            self._move_totals(tx, self._lock_totals(tx, row[9], int(row[8] is not None), row[7]), hold - before)

    def note_resume(self, tx: Tx, submit_key: str, spacing_s: float = 0.0, reset: bool = False) -> int:
        """Count one resume that found nothing for this submit; returns the count so far. Only a resume
        at least ``spacing_s`` seconds after the submit was last touched counts (back-to-back resumes
        are one); ``reset``: the vendor answered (a pending job), the count starts again at 0."""
        now = self.utcnow()
        if reset:
            changed = tx.run("UPDATE submits SET resumes = 0 WHERE submit_key = ?", (submit_key,))
        else:
            tx.run("UPDATE submits SET resumes = resumes + 1, updated_at = ? WHERE submit_key = ? AND updated_at <= ?",
                   (_iso(now), submit_key, _iso(now - timedelta(seconds=spacing_s))))
            changed = len(tx.all("SELECT 1 FROM submits WHERE submit_key = ?", (submit_key,)))
        if changed == 0:
            raise KeyError(f"no submit {submit_key!r} in the journal")
        row = tx.one("SELECT resumes FROM submits WHERE submit_key = ?", (submit_key,))
        assert row is not None
        return int(row[0])

    def abandoned_submits(self, tx: Tx, emulated: bool | None = None) -> list[SubmitRecord]:
        flag = _instance_filter("s", emulated)
        return self._submits(tx, f"WHERE s.state = 'abandoned'{flag} ORDER BY s.seq", ())

    def submits(self, tx: Tx, clip_key: str) -> list[SubmitRecord]:
        return self._submits(tx, "WHERE s.clip_key = ? ORDER BY s.seq", (clip_key,))

    def unfinished(self, tx: Tx, emulated: bool | None = None) -> list[SubmitRecord]:
        flag = _instance_filter("s", emulated)
        return self._submits(tx, f"WHERE {_OPEN} AND c.state != 'succeeded'{flag} ORDER BY s.seq", ())

    def _submits(self, tx: Tx, where: str, args: tuple[Any, ...]) -> list[SubmitRecord]:
        rows = tx.all(f"SELECT {_SUBMIT_COLUMNS} FROM submits s JOIN clips c ON c.key = s.clip_key " + where, args)
        return [SubmitRecord(submit_key=r[0], clip_key=r[1], provider=r[2], state=r[3], job_id=r[4],
                             handle=None if r[5] is None else json.loads(r[5]), quote_usd=_dec(r[6]),
                             cost_usd=_dec(r[7]), cost_source=r[8], may_be_billed=bool(r[9]), error=r[10],
                             deadline=r[11], steps=r[12], dropped=tuple(json.loads(r[13] or "[]")),
                             created_at=r[14], updated_at=r[15], request_json=r[16],
                             emulator_instance=r[17]) for r in rows]
