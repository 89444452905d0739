-- 0004 (twin of sqlite/0004): videos made through `ovi-gateway serve`. id is the clip's key; owner is a digest of the API key
-- that made it (never the key); fingerprint (a digest of the parsed request) finds an SDK's retried create.
CREATE TABLE IF NOT EXISTS server_videos (
    id TEXT PRIMARY KEY, owner TEXT NOT NULL, idempotency_key TEXT, fingerprint TEXT NOT NULL,
    model TEXT NOT NULL, seconds TEXT NOT NULL, size TEXT NOT NULL, prompt TEXT NOT NULL,
    route_json TEXT, callback_url TEXT, created_at DOUBLE PRECISION NOT NULL, deleted_at DOUBLE PRECISION,
    UNIQUE (owner, idempotency_key));
CREATE INDEX IF NOT EXISTS server_videos_by_owner ON server_videos(owner, created_at, id);
CREATE INDEX IF NOT EXISTS server_videos_by_fingerprint ON server_videos(owner, fingerprint, created_at);
