-- 0002: submits made against the built-in emulator carry its instance id (NULL: a real vendor).
-- Emulated rows never count toward real spend, budgets or calibration, and a resume that finds a row
-- from an emulator instance that no longer exists closes it ("emulator restarted, nothing billed").
ALTER TABLE submits ADD COLUMN emulator_instance TEXT;
CREATE INDEX IF NOT EXISTS submits_by_emulator ON submits(emulator_instance);
