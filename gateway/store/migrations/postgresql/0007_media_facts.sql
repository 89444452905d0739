-- 0007 (twin of sqlite/0007): what each downloaded clip turned out to be (gateway.media.verify), one row per download:
-- where it came from (vendor, job, URL: it was paid), where it was saved, the verdict (ok, unverified
-- without PyAV, defective), size, sha256, duration, and every probed fact as JSON (MediaFacts).
CREATE TABLE IF NOT EXISTS media (
    seq BIGSERIAL PRIMARY KEY,
    clip_key TEXT NOT NULL REFERENCES clips(key),
    provider TEXT NOT NULL, job_id TEXT NOT NULL, video_url TEXT NOT NULL,
    saved_to TEXT, verdict TEXT NOT NULL, size_bytes INTEGER NOT NULL, sha256 TEXT NOT NULL,
    duration_s DOUBLE PRECISION, facts_json TEXT NOT NULL, created_at TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS media_by_clip ON media(clip_key, seq);
