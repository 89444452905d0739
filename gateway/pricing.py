"""Deprecated path: moved to ``gateway.routing.pricing``."""

from collections.abc import Callable
from typing import Any

from gateway._moved import forward

__getattr__: Callable[[str], Any] = forward("gateway.pricing", "gateway.routing.pricing")
