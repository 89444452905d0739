"""Storage: the durable journal of clips and paid submits (``journal``, SQLite in WAL mode) and its
numbered schema migrations (``migrations/NNNN_name.sql``, applied in order by ``migrate``)."""
