"""Deprecated path: moved to ``gateway.routing.pricing``."""

from gateway._moved import forward

__getattr__ = forward("gateway.pricing", "gateway.routing.pricing")
