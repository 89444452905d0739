"""Deprecated path: moved to ``gateway.jobs.recovery``."""

from gateway._moved import forward

__getattr__ = forward("gateway.recovery", "gateway.jobs.recovery")
