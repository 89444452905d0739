"""Start-up stays lean: ``ovi-gateway --help`` lists the commands from a static table that matches them,
and neither ``--help``, ``import gateway`` nor ``Gateway(journal=None)`` imports what they do not need
(each checked in a fresh process, whose ``sys.modules`` is the truth; timings are in benchmarks/startup.py)."""

from __future__ import annotations

import importlib
import inspect
import json
import os
import pkgutil
import subprocess
import sys

import click
import pytest

import gateway.cli
from gateway.cli import COMMANDS, LazyGroup, cli

HEAVY = ("httpx", "pydantic", "rich", "stevedore", "tenacity", "asyncio", "sqlite3", "uvicorn", "starlette", "av",
         "fal_client", "runware", "wavespeed", "providers", "gateway.client", "gateway.request")
"""Not needed to print help or to import the package (``gateway.request`` stands for every pydantic model)."""
VENDOR_SDKS = ("fal_client", "runware", "wavespeed", "av", "uvicorn", "starlette")
"""Not needed to make a gateway that has sent nothing yet."""


def loaded_after(code: str) -> set[str]:
    """The top-level packages and ``gateway.*`` modules in ``sys.modules`` after ``code`` runs in a fresh
    interpreter (a ``SystemExit`` from click is caught)."""
    probe = (f"import sys, json\ntry:\n    exec({code!r})\nexcept SystemExit:\n    pass\n"
             "print('\\n@@' + json.dumps(sorted(sys.modules)))")
    env = {k: v for k, v in os.environ.items() if k not in ("RUNWARE_API_KEY", "FAL_KEY", "WAVESPEED_API_KEY")}
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120, check=True,
                          env=env)
    names = json.loads(done.stdout.rpartition("\n@@")[2])
    return set(names) | {n.split(".")[0] for n in names}


def heavy_in(loaded: set[str], heavy: tuple[str, ...]) -> list[str]:
    return sorted(name for name in heavy if name in loaded)


def test_help_imports_click_and_no_command_module() -> None:
    loaded = loaded_after("import sys; sys.argv = ['ovi-gateway', '--help']; from gateway.cli import main; main()")
    assert heavy_in(loaded, HEAVY) == []
    assert sorted(n for n in loaded if n.startswith("gateway.")) == ["gateway.cli", "gateway.logs"]


def test_import_gateway_loads_no_model_and_no_dependency() -> None:
    loaded = loaded_after("import gateway")
    assert heavy_in(loaded, (*HEAVY, "click")) == []
    assert sorted(n for n in loaded if n.startswith("gateway.")) == ["gateway.logs"]


def test_a_new_gateway_loads_no_vendor_sdk_until_it_sends() -> None:
    loaded = loaded_after("from gateway import Gateway, OviRequest, Route; Gateway(journal=None)")
    assert heavy_in(loaded, VENDOR_SDKS) == []
    # and, with no journal, neither SQLite nor the runner (they load when a clip runs or a journal opens)
    assert heavy_in(loaded, ("sqlite3", "tenacity", "gateway.jobs.runner", "gateway.jobs.recovery",
                             "gateway.store.journal")) == []
    assert "providers.fal" in loaded  # the adapters' classes are loaded (capabilities); fal-client is not


def test_quote_loads_neither_the_server_nor_the_batch_runner() -> None:
    loaded = loaded_after("import sys; sys.argv = ['ovi-gateway', 'quote', '--prompt', 'A knight. <S>Hold.<E>']; "
                          "from gateway.cli import main; main()")
    assert heavy_in(loaded, (*VENDOR_SDKS, "gateway.server", "gateway.cli.batch", "gateway.cli.serve")) == []


# ---- the table behind --help ----------------------------------------------------------------------
def real_commands() -> dict[str, click.Command]:
    return {name: getattr(importlib.import_module(where.partition(":")[0]), where.partition(":")[2])
            for name, (where, _) in COMMANDS.items()}


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_each_table_row_is_its_command_and_its_summary(name: str) -> None:
    command = real_commands()[name]
    assert isinstance(command, click.Command) and command.name == name and not command.hidden
    first_paragraph = " ".join(inspect.cleandoc(command.help or "").partition("\n\n")[0].split())
    assert COMMANDS[name][1] == first_paragraph


def test_the_table_names_every_command_the_cli_modules_define() -> None:
    """A new top-level command in ``gateway/cli`` must get a row, or ``--help`` would not list it."""
    found: dict[str, click.Command] = {}
    for info in pkgutil.iter_modules(gateway.cli.__path__):
        module = importlib.import_module(f"gateway.cli.{info.name}")
        found.update({id(v): v for v in vars(module).values() if isinstance(v, click.Command)})
    sub = {id(c) for g in found.values() if isinstance(g, click.Group) and g is not cli for c in g.commands.values()}
    top = {c.name for key, c in found.items() if key not in sub and c is not cli}
    assert top == set(COMMANDS)


@pytest.mark.parametrize("width", [50, 80, 250])
def test_help_from_the_table_equals_help_from_the_loaded_commands(width: int) -> None:
    def render(group: click.Group) -> str:
        with click.Context(group, info_name="ovi-gateway", terminal_width=width, max_content_width=width) as ctx:
            return group.get_help(ctx)

    def fresh() -> LazyGroup:
        return LazyGroup(name=cli.name, params=cli.params, help=cli.help, callback=cli.callback, lazy=COMMANDS)

    lazy = fresh()
    eager = click.Group(name=cli.name, params=cli.params, help=cli.help, commands=real_commands())
    assert render(lazy) == render(eager)
    assert lazy.commands == {}  # rendering the lazy one loaded nothing
    assert "Commands:" in render(lazy) and all(name in render(lazy) for name in COMMANDS)
