-- 0010 (twin of sqlite/0010): the server's shared state on either backend (issue 12). server_settings holds values every
-- replica must agree on (the webhook URL-token key, made once by whichever replica starts first);
-- callback_queued_at marks a video whose callback is in the outbox; the outbox gains a stable event id
-- (the Standard Webhooks webhook-id: unique, so two replicas noticing the same end enqueue it once),
-- a claim (lease owner and wall time until which it holds the row), the last failure and a give-up time.
CREATE TABLE IF NOT EXISTS server_settings (name TEXT PRIMARY KEY, value TEXT NOT NULL);
ALTER TABLE server_videos ADD COLUMN IF NOT EXISTS callback_queued_at DOUBLE PRECISION;
CREATE INDEX IF NOT EXISTS server_videos_callback_due ON server_videos(created_at)
    WHERE callback_url IS NOT NULL AND callback_queued_at IS NULL;
ALTER TABLE outbox ADD COLUMN IF NOT EXISTS event_id TEXT;
ALTER TABLE outbox ADD COLUMN IF NOT EXISTS lease_owner TEXT;
ALTER TABLE outbox ADD COLUMN IF NOT EXISTS lease_until DOUBLE PRECISION;
ALTER TABLE outbox ADD COLUMN IF NOT EXISTS last_error TEXT;
ALTER TABLE outbox ADD COLUMN IF NOT EXISTS given_up_at TEXT;
CREATE UNIQUE INDEX IF NOT EXISTS outbox_by_event ON outbox(event_id);
