-- 0003 (twin of sqlite/0003): what was downloaded of a clip (JSON: sha256, size in bytes, saved path,
-- and any probe facts), so a rerun can tell the file already on disk is this clip.
ALTER TABLE clips ADD COLUMN IF NOT EXISTS media_json TEXT;
