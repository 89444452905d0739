"""The job engine: the runner (submit, follow, retry, fail over, reconcile; it owns all waiting),
poll policies (``polling``) and crash recovery with idempotency leases (``recovery``)."""
