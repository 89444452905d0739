"""Deprecated path: moved to ``gateway.cli.render``."""

from gateway._moved import forward

__getattr__ = forward("gateway.cli_render", "gateway.cli.render")
