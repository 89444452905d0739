"""Deprecated path: moved to ``gateway.jobs.polling``."""

from gateway._moved import forward

__getattr__ = forward("gateway.polling", "gateway.jobs.polling")
