-- 0013: the open submits' partial index states its condition as equalities joined by OR, not IN (...).
-- SQLite evaluates a partial index's condition on every write of a row: for an IN list it builds a
-- temporary b-tree each time, twice per state change (the row before and after), so four submit writes
-- per job made seven of them (about 2.5 microseconds per state change). The queries that read the open
-- submits state the same OR (Queries._OPEN), which SQLite needs to match the index to them.
-- Code from before this migration still reads a journal after it correctly; its IN (...) form of the
-- two resume queries (unfinished, claim_unfinished) no longer matches the index and scans the submits.
DROP INDEX IF EXISTS submits_open;
CREATE INDEX IF NOT EXISTS submits_open ON submits(seq) WHERE state = 'intent' OR state = 'accepted' OR state = 'queued' OR state = 'running' OR state = 'unknown';
