-- 0014 (twin of sqlite/0014): clips_by_tenant_key is UNIQUE on (tenant, key), which the PRIMARY KEY on key
-- already implies, and no query reads by it; every new clip wrote an entry in it. Old replicas (0008-0013)
-- need nothing of it (their ON CONFLICT names no target), so the oldest reader is unchanged.
DROP INDEX IF EXISTS clips_by_tenant_key;
