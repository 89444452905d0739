"""The ``ovi-gateway`` command line: click commands in ``commands``, rich rendering in ``render``."""

from gateway.cli.commands import cli, main

__all__ = ["cli", "main"]
