"""Deprecated path: moved to ``gateway.routing.health``."""

from collections.abc import Callable
from typing import Any

from gateway._moved import forward

__getattr__: Callable[[str], Any] = forward("gateway.health", "gateway.routing.health")
