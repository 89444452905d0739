"""Deprecated path: moved to ``gateway.routing.health``."""

from gateway._moved import forward

__getattr__ = forward("gateway.health", "gateway.routing.health")
