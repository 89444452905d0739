"""Deprecated path: moved to ``gateway.jobs.runner``."""

from gateway._moved import forward

__getattr__ = forward("gateway.runner", "gateway.jobs.runner")
