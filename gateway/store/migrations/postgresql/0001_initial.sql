-- 0001: clips (one per idempotency key) and submits (one per paid vendor attempt); twin of sqlite/0001.
CREATE TABLE IF NOT EXISTS clips (
    key TEXT PRIMARY KEY, request_json TEXT NOT NULL, request_hash TEXT NOT NULL,
    state TEXT NOT NULL, result_json TEXT, error TEXT, lease_owner TEXT, lease_until DOUBLE PRECISION,
    created_at TEXT NOT NULL, updated_at TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS submits (
    seq BIGSERIAL PRIMARY KEY, submit_key TEXT NOT NULL UNIQUE,
    clip_key TEXT NOT NULL REFERENCES clips(key), provider TEXT NOT NULL, state TEXT NOT NULL,
    job_id TEXT, handle_json TEXT, quote_usd TEXT, reserved_usd TEXT, cost_usd TEXT,
    cost_source TEXT, may_be_billed INTEGER NOT NULL DEFAULT 0, error TEXT, deadline DOUBLE PRECISION,
    steps INTEGER, dropped TEXT, created_at TEXT NOT NULL, updated_at TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS submits_by_clip ON submits(clip_key, seq);
CREATE INDEX IF NOT EXISTS submits_by_state ON submits(state);
CREATE INDEX IF NOT EXISTS submits_by_created ON submits(created_at);
