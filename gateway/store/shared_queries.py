"""Shared state of every process, on either backend: vendor breakers, half-open probes, concurrency
slots and request-rate buckets; request images by content hash, and retention (``prune``).

``SharedQueries`` is mixed into ``Queries``: each method runs inside one transaction ``tx``.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta

from gateway.store.records import BreakerRecord
from gateway.store.values import _FOREVER, _OPEN_SQL, Tx, _iso

__all__ = ["SharedQueries"]


class SharedQueries:
    """Breakers, probes, slots, rate buckets, images and retention (see the module docstring)."""

    utcnow: Callable[[], datetime]

    def _now(self) -> str:
        return _iso(self.utcnow())


    # -- breakers, caps and rates --------------------------------------------------------------
    def load_breakers(self, tx: Tx, emulated: bool) -> dict[str, BreakerRecord]:
        rows = tx.all("SELECT provider, failures, opened, open_until, probe_until, last_error FROM breakers"
                      " WHERE emulated = ?", (int(emulated),))
        return {r[0]: BreakerRecord(*r) for r in rows}

    def save_breaker(self, tx: Tx, record: BreakerRecord, emulated: bool, wall: float) -> None:
        tx.run("INSERT INTO breakers (provider, emulated, failures, opened, open_until, probe_until, last_error,"
               " updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (provider, emulated) DO UPDATE SET"
               " failures = excluded.failures, opened = excluded.opened, open_until = excluded.open_until,"
               " probe_until = excluded.probe_until, probe_holder = NULL, last_error = excluded.last_error,"
               " updated_at = excluded.updated_at",
               (record.provider, int(emulated), record.failures, record.opened, record.open_until,
                record.probe_until, record.last_error, wall))

    def take_probe(self, tx: Tx, provider: str, holder: str, *, wall: float, ttl: float, emulated: bool) -> bool:
        """May ``holder`` send the half-open probe to ``provider`` now? True while the stored breaker is
        closed (or unknown), or when it is half-open and no other holder's probe lease (until
        ``probe_until``, wall-clock seconds) is live — then the lease is ``holder``'s for ``ttl`` seconds.
        False while it is open, or another process probes: one process probes a cooling vendor at a time."""
        row = tx.one(f"SELECT open_until, probe_until, probe_holder FROM breakers WHERE provider = ? AND emulated = ?"
                     f"{tx.lock}", (provider, int(emulated)))
        if row is None or row[0] is None:
            return True
        open_until, probe_until, probe_holder = row
        if float(open_until) > wall:
            return False
        if probe_until is not None and float(probe_until) > wall and probe_holder != holder:
            return False
        tx.run("UPDATE breakers SET probe_until = ?, probe_holder = ? WHERE provider = ? AND emulated = ?",
               (wall + ttl, holder, provider, int(emulated)))
        return True

    def end_probe(self, tx: Tx, provider: str, holder: str, emulated: bool) -> None:
        """``holder``'s probe ended without a verdict: the next process may probe at once."""
        tx.run("UPDATE breakers SET probe_until = NULL, probe_holder = NULL WHERE provider = ? AND emulated = ?"
               " AND probe_holder = ?", (provider, int(emulated), holder))

    def take_slot(self, tx: Tx, provider: str, holder: str, *, cap: int, wall: float, ttl: float,
                  emulated: bool) -> bool:
        """Take one of ``cap`` concurrent slots on ``provider`` (slots of dead holders expire after ``ttl``)."""
        # A sentinel row per vendor serializes slot takers on PostgreSQL (row lock); it never expires.
        tx.run("INSERT INTO vendor_slots (provider, emulated, holder, until) VALUES (?, ?, '#lock', ?)"
               " ON CONFLICT DO NOTHING", (provider, int(emulated), _FOREVER))
        tx.one(f"SELECT 1 FROM vendor_slots WHERE provider = ? AND emulated = ? AND holder = '#lock'{tx.lock}",
               (provider, int(emulated)))
        tx.run("DELETE FROM vendor_slots WHERE provider = ? AND emulated = ? AND until <= ?",
               (provider, int(emulated), wall))
        used = tx.one("SELECT COUNT(*) FROM vendor_slots WHERE provider = ? AND emulated = ? AND holder != ?"
                      " AND holder != '#lock'", (provider, int(emulated), holder))
        if used is not None and int(used[0]) >= cap:
            return False
        tx.run("INSERT INTO vendor_slots (provider, emulated, holder, until) VALUES (?, ?, ?, ?)"
               " ON CONFLICT (provider, emulated, holder) DO UPDATE SET until = excluded.until",
               (provider, int(emulated), holder, wall + ttl))
        return True

    def free_slot(self, tx: Tx, provider: str, holder: str, emulated: bool) -> None:
        tx.run("DELETE FROM vendor_slots WHERE provider = ? AND emulated = ? AND holder = ?",
               (provider, int(emulated), holder))

    def take_token(self, tx: Tx, provider: str, *, per_second: float, burst: float, wall: float,
                   emulated: bool) -> float:
        """A token bucket shared by every process: 0.0 when a request may go now (a token is taken), else
        the seconds until the next token."""
        tx.run("INSERT INTO rate_buckets (provider, emulated, tokens, stamp) VALUES (?, ?, ?, ?)"
               " ON CONFLICT DO NOTHING", (provider, int(emulated), burst, wall))
        row = tx.one(f"SELECT tokens, stamp FROM rate_buckets WHERE provider = ? AND emulated = ?{tx.lock}",
                     (provider, int(emulated)))
        assert row is not None
        tokens = min(burst, float(row[0]) + max(0.0, wall - float(row[1])) * per_second)
        if tokens < 1.0:
            tx.run("UPDATE rate_buckets SET tokens = ?, stamp = ? WHERE provider = ? AND emulated = ?",
                   (tokens, wall, provider, int(emulated)))
            return (1.0 - tokens) / per_second
        tx.run("UPDATE rate_buckets SET tokens = ?, stamp = ? WHERE provider = ? AND emulated = ?",
               (tokens - 1.0, wall, provider, int(emulated)))
        return 0.0

    # -- intake, images, retention -------------------------------------------------------------
    def put_image(self, tx: Tx, sha256: str, data: bytes, mime: str | None) -> None:
        now = self._now()
        tx.run("INSERT INTO images (sha256, mime, bytes, created_at, used_at) VALUES (?, ?, ?, ?, ?)"
               " ON CONFLICT (sha256) DO UPDATE SET used_at = excluded.used_at", (sha256, mime, data, now, now))

    def get_image(self, tx: Tx, sha256: str) -> bytes | None:
        row = tx.one("SELECT bytes FROM images WHERE sha256 = ?", (sha256,))
        return None if row is None else bytes(row[0])

    def prune(self, tx: Tx, older_than: timedelta, *, wall: float) -> dict[str, int]:
        """Delete finished clips (with their submits and media facts) last changed before ``older_than`` ago,
        and images unused since then. A clip with an open submit — a job that may be paid and unfinished
        — or a live lease is never deleted."""
        cutoff = _iso(self.utcnow() - older_than)
        doomed = "(SELECT c.key FROM clips c WHERE c.state != 'open' AND c.updated_at < ?" \
                 " AND (c.lease_owner IS NULL OR c.lease_until <= ?)" \
                 f" AND NOT EXISTS (SELECT 1 FROM submits s WHERE s.clip_key = c.key AND s.state IN {_OPEN_SQL}))"
        tx.run(f"DELETE FROM media WHERE clip_key IN {doomed}", (cutoff, wall))  # download facts (0007)
        counts = {"submits": tx.run(f"DELETE FROM submits WHERE clip_key IN {doomed}", (cutoff, wall))}
        counts["clips"] = tx.run("DELETE FROM clips WHERE state != 'open' AND updated_at < ? AND (lease_owner IS"
                                 " NULL OR lease_until <= ?) AND NOT EXISTS (SELECT 1 FROM submits s WHERE"
                                 " s.clip_key = clips.key)", (cutoff, wall))
        # NOT IN a list made once, not NOT EXISTS per image: SQLite ran that as a pass over every clip for
        # each image (quadratic: 8 s at 20,000 of each). The IS NOT NULL keeps NOT IN from matching nothing.
        counts["images"] = tx.run("DELETE FROM images WHERE used_at < ? AND sha256 NOT IN (SELECT image_sha256"
                                  " FROM clips WHERE image_sha256 IS NOT NULL)", (cutoff,))
        tx.run("DELETE FROM webhook_events WHERE received_at < ?", (wall - older_than.total_seconds(),))
        tx.run("DELETE FROM outbox WHERE delivered_at IS NOT NULL AND delivered_at < ?", (cutoff,))
        return counts
