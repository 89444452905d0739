"""The ``ovi-gateway`` command line: a lazy click group whose subcommands load on use.

``ovi-gateway --help`` imports click and nothing else of weight: it lists the subcommands from
``COMMANDS`` (name, where the command lives, its one-paragraph summary) without importing them, and
``tests/test_cli_lazy.py`` keeps that table equal to the commands themselves. Running a subcommand imports
only its module (``quote`` never loads the batch runner, the server or uvicorn).
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from typing import Any

import click

from gateway.logs import configure_cli_logging

__all__ = ["COMMANDS", "LazyGroup", "cli", "main"]

COMMANDS: dict[str, tuple[str, str]] = {
    "batch": ("gateway.cli.batch:batch", "Make many clips from a JSON Lines or CSV file; rerun to resume."),
    "demo": ("gateway.cli.generate:demo", "Offline tour: quote, staged outage, failover."),
    "emulate": ("gateway.cli.commands:emulate", "Serve the emulated vendors on loopback until Ctrl-C."),
    "generate": ("gateway.cli.generate:generate", "Make one clip, with live progress and failover; never pays twice."),
    "jobs": ("gateway.cli.commands:jobs",
             "List unfinished submits (each may hold a paid job), abandoned ones (may have been billed), and "
             "finished clips not yet downloaded."),
    "providers": ("gateway.cli.commands:providers", "Installed vendors: keys, capabilities, health."),
    "quote": ("gateway.cli.commands:quote", "Price a request on every vendor."),
    "serve": ("gateway.cli.serve:serve",
              "Serve the OpenAI-shaped /v1/videos API (any HTTP client, the openai SDK included)."),
    "spend": ("gateway.cli.commands:spend", "Spend per vendor and day, estimated vs reported."),
}
"""Each subcommand: ``module:attribute`` of its click command, and the first paragraph of its help."""


class LazyGroup(click.Group):
    """A click group that imports a subcommand's module only when that subcommand is asked for, and lists
    them all (``--help``) from a table of summaries instead of importing each."""

    def __init__(self, *args: Any, lazy: Mapping[str, tuple[str, str]], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.lazy: dict[str, tuple[str, str]] = dict(lazy)

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*self.commands, *self.lazy})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        command = self.commands.get(cmd_name)
        if command is None and cmd_name in self.lazy:
            module, _, attribute = self.lazy[cmd_name][0].partition(":")
            command = getattr(importlib.import_module(module), attribute)
            if not isinstance(command, click.Command):
                raise TypeError(f"{self.lazy[cmd_name][0]} is not a click command")
            self.commands[cmd_name] = command
        return command

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        """As click's own, but a command not loaded yet is shown from its table summary (shortened by
        click's own rule, through a stand-in command), so listing them imports none."""
        shown: list[tuple[str, click.Command]] = []
        for name in self.list_commands(ctx):
            command = self.commands.get(name) or click.Command(name, help=self.lazy[name][1])
            if not command.hidden:
                shown.append((name, command))
        if not shown:
            return
        limit = formatter.width - 6 - max(len(name) for name, _ in shown)
        with formatter.section("Commands"):
            formatter.write_dl([(name, command.get_short_help_str(limit)) for name, command in shown])


@click.group(cls=LazyGroup, lazy=COMMANDS, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="ovi-gateway")
@click.option("-v", "--verbose", count=True,
              help="Log more on stderr: -v jobs submitted/accepted/finished (INFO), -vv every check (DEBUG).")
@click.option("-q", "--quiet", count=True, help="Log less on stderr: -q errors only, -qq nothing but critical.")
def cli(verbose: int, quiet: int) -> None:
    """Make Ovi clips on the cheapest healthy vendor (Runware, fal.ai, WaveSpeed), with failover
    that never pays twice. With no API keys set, runs offline against the built-in emulator."""
    # undone when the command ends: the CLI leaves the library's global logging as it found it
    click.get_current_context().call_on_close(configure_cli_logging(verbose, quiet))


def main() -> None:
    """Entry point of the ``ovi-gateway`` script."""
    cli(prog_name="ovi-gateway")
