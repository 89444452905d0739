-- 0009 (twin of sqlite/0009): what a later process needs to go on with a clip the caller's way, and one half-open probe per vendor.
-- Clips keep the call's options (review finding 5: a re-attached job that needs a fresh submit used the
-- gateway's default route): the Route and the caller's budget scope digest, as JSON.
ALTER TABLE clips ADD COLUMN IF NOT EXISTS options_json TEXT;
-- The holder of a breaker's half-open probe until probe_until (wall-clock epoch seconds): one process
-- probes a cooling vendor at a time.
ALTER TABLE breakers ADD COLUMN IF NOT EXISTS probe_holder TEXT;
