-- 0003: what was downloaded of a clip (JSON: sha256, size in bytes, saved path, and any probe facts),
-- so a rerun can tell the file already on disk is this clip (same sha256) without fetching it again.
ALTER TABLE clips ADD COLUMN media_json TEXT;
