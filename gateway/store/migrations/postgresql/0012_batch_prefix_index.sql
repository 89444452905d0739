-- 0012 (twin of sqlite/0012): a batch's spend (`reserved_and_spent(clip_prefix=…)`, read by
-- `ovi-gateway batch` after every row) is a range of clip keys, not a pass over every submit (issue 13:
-- no per-job cost that grows with the table). The range compares bytes (COLLATE "C"): under the
-- database's own locale, keys starting with a prefix need not sort between it and its successor.
CREATE INDEX IF NOT EXISTS submits_by_clip_bytewise ON submits ((clip_key COLLATE "C"), seq);
