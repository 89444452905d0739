-- 0008: every shared fact the storage interface owns (issue 13), and indexes for each hot-path query.
-- min-reader: 8
-- (writers older than 0008 would not keep the running budget totals true)
-- Clips too carry the emulator instance (0002 marked submits), so emulated rows never
-- feed real spend, budgets, breakers or poll learning.
ALTER TABLE clips ADD COLUMN tenant TEXT NOT NULL DEFAULT '';
ALTER TABLE clips ADD COLUMN emulator_instance TEXT;
ALTER TABLE clips ADD COLUMN lease_beat REAL;
ALTER TABLE clips ADD COLUMN image_sha256 TEXT;
ALTER TABLE submits ADD COLUMN held_usd TEXT;
ALTER TABLE submits ADD COLUMN budget_scope TEXT NOT NULL DEFAULT '';
CREATE UNIQUE INDEX IF NOT EXISTS clips_by_tenant_key ON clips(tenant, key);
CREATE INDEX IF NOT EXISTS clips_finished_by_age ON clips(updated_at) WHERE state != 'open';
CREATE INDEX IF NOT EXISTS submits_open ON submits(seq) WHERE state IN ('intent', 'accepted', 'queued', 'running', 'unknown');
CREATE INDEX IF NOT EXISTS submits_reported ON submits(provider, updated_at) WHERE cost_source = 'reported' AND cost_usd IS NOT NULL;
CREATE INDEX IF NOT EXISTS submits_by_job ON submits(provider, job_id);
-- Running budget totals: one row per (scope, emulated, period kind, period start), moved by each submit's
-- change of held USD in the same transaction, so a budget check never rescans the period's submits.
CREATE TABLE IF NOT EXISTS budget_totals (
    scope TEXT NOT NULL, emulated INTEGER NOT NULL, period TEXT NOT NULL, start TEXT NOT NULL,
    held_usd TEXT NOT NULL, PRIMARY KEY (scope, emulated, period, start));
-- Vendor breakers with wall-clock (epoch seconds) times, shared by consecutive runs and replicas.
CREATE TABLE IF NOT EXISTS breakers (
    provider TEXT NOT NULL, emulated INTEGER NOT NULL, failures INTEGER NOT NULL, opened INTEGER NOT NULL,
    open_until REAL, probe_until REAL, last_error TEXT, updated_at REAL NOT NULL,
    PRIMARY KEY (provider, emulated));
-- Per-vendor concurrency slots (holder, lease until) and request-rate token buckets, shared by every process.
CREATE TABLE IF NOT EXISTS vendor_slots (
    provider TEXT NOT NULL, emulated INTEGER NOT NULL, holder TEXT NOT NULL, until REAL NOT NULL,
    PRIMARY KEY (provider, emulated, holder));
CREATE TABLE IF NOT EXISTS rate_buckets (
    provider TEXT NOT NULL, emulated INTEGER NOT NULL, tokens REAL NOT NULL, stamp REAL NOT NULL,
    PRIMARY KEY (provider, emulated));
-- The callback outbox and request images stored once by content hash (webhook dedupe is 0006).
CREATE TABLE IF NOT EXISTS outbox (
    id INTEGER PRIMARY KEY AUTOINCREMENT, clip_key TEXT NOT NULL, url TEXT NOT NULL, body TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0, next_at REAL NOT NULL, delivered_at TEXT, created_at TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS outbox_due ON outbox(next_at) WHERE delivered_at IS NULL;
CREATE TABLE IF NOT EXISTS images (
    sha256 TEXT PRIMARY KEY, mime TEXT, bytes BLOB NOT NULL, created_at TEXT NOT NULL, used_at TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS submits_unheld ON submits(seq) WHERE held_usd IS NULL;
