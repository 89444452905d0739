-- 0011 (twin of sqlite/0011): fewer index pages written by the flushed intent and ack (issue 13 item 6: each page of a flushed
-- commit is written to the WAL and then fsynced, about 5 + 10 microseconds on this kind of disk).
-- submits_by_state: every state change moved an entry in it; its only reader, abandoned submits, gets a
-- partial index that holds only those rows (no other state change touches it). The open submits already
-- have theirs (submits_open).
-- submits_by_job and submits_by_emulator: no query reads either (jobs are found by submit key, emulated
-- rows by the indexes their queries already use), yet the intent wrote both and the ack moved by_job.
DROP INDEX IF EXISTS submits_by_state;
DROP INDEX IF EXISTS submits_by_job;
DROP INDEX IF EXISTS submits_by_emulator;
CREATE INDEX IF NOT EXISTS submits_abandoned ON submits(seq) WHERE state = 'abandoned';
