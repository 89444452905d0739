"""The ``ovi-gateway`` command line: click commands in ``commands``, rich rendering in ``render``."""

from gateway.cli.commands import cli, main
from gateway.cli.serve import serve

cli.add_command(serve)

__all__ = ["cli", "main"]
