-- 0006 (twin of sqlite/0006): verified vendor webhook deliveries, one row per (vendor, vendor job id, pushed status): a repeat is
-- a duplicate and changes nothing. body is the raw delivery (re-read by the adapter that verified it);
-- trusted = 1 when the vendor signed it and the body itself settles the job.
CREATE TABLE IF NOT EXISTS webhook_events (
    vendor TEXT NOT NULL, job_id TEXT NOT NULL, status TEXT NOT NULL, clip_key TEXT NOT NULL,
    trusted INTEGER NOT NULL, body BYTEA NOT NULL, received_at DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (vendor, job_id, status));
