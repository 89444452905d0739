-- 0014: one index page less written by every flushed intent (issue 13 item 6: each page of a commit is a
-- WAL frame, two writes and its b-tree work, about 4 microseconds per page on this kind of disk).
-- clips_by_tenant_key (0008) is UNIQUE on (tenant, key), which clips' PRIMARY KEY on key already implies,
-- and no query reads by it; yet the intent's INSERT of a new clip wrote a page of it every time. Code from
-- 0008 to 0013 needs nothing of it: its INSERT's ON CONFLICT names no target, and the key's own uniqueness
-- refuses exactly the rows the index did.
DROP INDEX IF EXISTS clips_by_tenant_key;
