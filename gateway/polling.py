"""Deprecated path: moved to ``gateway.jobs.polling``."""

from collections.abc import Callable
from typing import Any

from gateway._moved import forward

__getattr__: Callable[[str], Any] = forward("gateway.polling", "gateway.jobs.polling")
