-- 0002 (twin of sqlite/0002): submits made against the built-in emulator carry its instance id (NULL: a
-- real vendor). Emulated rows never count toward real spend, budgets or calibration.
ALTER TABLE submits ADD COLUMN IF NOT EXISTS emulator_instance TEXT;
CREATE INDEX IF NOT EXISTS submits_by_emulator ON submits(emulator_instance);
