"""Deprecated path: moved to ``gateway.cli.render``."""

from collections.abc import Callable
from typing import Any

from gateway._moved import forward

__getattr__: Callable[[str], Any] = forward("gateway.cli_render", "gateway.cli.render")
