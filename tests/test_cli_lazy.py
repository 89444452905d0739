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
from pathlib import Path

import click
import pytest

import gateway.cli
from gateway.cli import COMMANDS, LazyGroup, cli

HEAVY = ("httpx", "pydantic", "rich", "stevedore", "tenacity", "asyncio", "sqlite3", "uvicorn", "starlette", "av",
         "fal_client", "runware", "wavespeed", "providers", "gateway.client", "gateway.request")
"""Not needed to print help or to import the package (``gateway.request`` stands for every pydantic model)."""
VENDOR_SDKS = ("fal_client", "runware", "wavespeed", "av", "uvicorn", "starlette")
"""Not needed to make a gateway that has sent nothing yet."""


def loaded_after(code: str, **env_extra: str) -> set[str]:
    """The top-level packages and ``gateway.*`` modules in ``sys.modules`` after ``code`` runs in a fresh
    interpreter (a ``SystemExit`` from click is caught), with ``env_extra`` set."""
    probe = (f"import sys, json\ntry:\n    exec({code!r})\nexcept SystemExit:\n    pass\n"
             "print('\\n@@' + json.dumps(sorted(sys.modules)))")
    env = {k: v for k, v in os.environ.items() if k not in ("RUNWARE_API_KEY", "FAL_KEY", "WAVESPEED_API_KEY")}
    env.update(env_extra)
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
    # nor the job handles, webhooks, vendor limits or many-at-once (they load on first use)
    assert heavy_in(loaded, ("gateway.jobs.handles", "gateway.jobs.push", "gateway.jobs.limits",
                             "gateway.jobs.many")) == []
    # nor httpx and asyncio: the client and the event loop are made on the first call, and the modules that
    # use them load them on first use (gateway.lazy)
    assert heavy_in(loaded, ("httpx", "httpcore", "asyncio", "ssl")) == []
    assert "providers.fal" in loaded  # the adapters' classes are loaded (capabilities); fal-client is not
    assert heavy_in(loaded, NOT_BEFORE_A_CALL) == []


NOT_BEFORE_A_CALL = ("providers.runware.translate", "providers.runware.failures", "providers.runware.schemas",
                     "providers.wavespeed.translate",
                     "providers.wavespeed.schemas", "providers.fal.translate", "gateway.jobs.fate")
"""The adapters' translation and wire schemas: the registry reads each class's capabilities from its
``capabilities`` module; the rest loads on the adapter's first call (``gateway.lazy``)."""


QUOTE = "import sys; sys.argv = ['ovi-gateway', 'quote', '--prompt', 'A knight. <S>Hold.<E>']; " \
        "from gateway.cli import main; main()"
NOT_FOR_A_QUOTE = (*VENDOR_SDKS, "gateway.server", "gateway.cli.batch", "gateway.cli.serve", "sqlite3",
                   "gateway.store.journal", "gateway.jobs.runner", "gateway.jobs.recovery", "gateway.emulator",
                   "gateway.client", "asyncio", "gateway.result", "gateway.routing.planner", "httpx", "ssl")
"""A quote sends nothing and, with no journal to calibrate from, opens none: it makes no gateway (no client,
event loop, emulator, SQLite, runner or recovery: ``gateway.cli.common.quote_setup``), and the adapters'
modules it loads for their capabilities import httpx only when they send (``gateway.lazy``)."""


def test_quote_loads_neither_the_server_nor_the_batch_runner_nor_a_journal(tmp_path: Path) -> None:
    loaded = loaded_after(QUOTE, XDG_DATA_HOME=str(tmp_path))  # no journal there yet
    assert heavy_in(loaded, NOT_FOR_A_QUOTE) == []
    assert "providers.fal" in loaded and list(tmp_path.iterdir()) == []  # priced every vendor, created nothing
    assert heavy_in(loaded, NOT_BEFORE_A_CALL) == []


BUILT = """
from pydantic import BaseModel
def every(cls):
    for sub in cls.__subclasses__():
        yield sub
        yield from every(sub)
built = sorted({c.__module__ + "." + c.__qualname__ for c in every(BaseModel)
                if c.__module__.startswith(("gateway", "providers")) and c.__pydantic_complete__})
print("\\n@@" + json.dumps(built))
"""


def built_after(code: str, tmp_path: Path) -> list[str]:
    """The gateway's and adapters' pydantic models whose validators exist after ``code`` runs in a fresh
    interpreter (with ``defer_build`` a model is built on its first use)."""
    probe = f"import json\ntry:\n    exec({code!r})\nexcept SystemExit:\n    pass\n{BUILT}"
    env = {k: v for k, v in os.environ.items() if k not in ("RUNWARE_API_KEY", "FAL_KEY", "WAVESPEED_API_KEY")}
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120, check=True,
                          env={**env, "XDG_DATA_HOME": str(tmp_path)})
    return list(json.loads(done.stdout.rpartition("\n@@")[2]))


def test_start_up_builds_only_the_models_it_uses(tmp_path: Path) -> None:
    """No wire schema or result model is built until a vendor answers: a new gateway builds its default
    route (the price rules are built inside the price book's own adapter); a quote builds the request it
    validates and the quotes it makes (it makes no gateway, so no default route)."""
    assert built_after("from gateway import Gateway, OviRequest, Route; Gateway(journal=None)", tmp_path) == [
        "gateway.routing.planner.Route"]
    assert built_after(QUOTE, tmp_path) == ["gateway.request.OviRequest", "gateway.routing.pricing.Quote"]


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
