"""Deprecated path: moved to ``gateway.store.journal``."""

from gateway._moved import forward

__getattr__ = forward("gateway.journal", "gateway.store.journal")
