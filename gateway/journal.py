"""Deprecated path: moved to ``gateway.store.journal``."""

from collections.abc import Callable
from typing import Any

from gateway._moved import forward

__getattr__: Callable[[str], Any] = forward("gateway.journal", "gateway.store.journal")
