"""Logging: silent by default, INFO per job step with vendor, job id and idempotency key, DEBUG per check;
never an API key, an image's bytes or a prompt at INFO (issue 11, item 5). The CLI's -v/-q set the level."""

from __future__ import annotations

import base64
import logging
from collections.abc import Iterator

import click
import pytest
from click.testing import CliRunner

from gateway import Gateway, OviRequest, Route
from gateway.cli import commands
from gateway.clock import VirtualClock
from gateway.emulator import Emulator
from gateway.logs import ROOTS, level_for
from tests.conftest import PNG_BYTES

pytestmark = pytest.mark.anyio

CANARY_KEY = "sk-canary-5f1e2d3c4b5a69788796a5b4"
CANARY_PROMPT = "A zyzzyva-canary knight in the rain. <S>I will defend this land.<E>"


def _records(caplog: pytest.LogCaptureFixture, level: int = logging.DEBUG) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name.split(".")[0] in ROOTS and r.levelno >= level]


def test_the_roots_are_silent_by_default() -> None:
    for name in ROOTS:
        assert any(isinstance(h, logging.NullHandler) for h in logging.getLogger(name).handlers), name


async def test_job_steps_at_info_checks_at_debug_and_no_secret_anywhere(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    clock = VirtualClock()
    gateway = Gateway(emulator=Emulator(clock=clock), clock=clock, journal=":memory:",
                      keys={"runware": CANARY_KEY, "fal": CANARY_KEY, "wavespeed": CANARY_KEY})
    image = base64.b64encode(PNG_BYTES).decode()
    result = await gateway.agenerate(OviRequest(prompt=CANARY_PROMPT, image=PNG_BYTES), provider="runware")
    await gateway.aclose()
    info = _records(caplog, logging.INFO)
    steps = [r.getMessage() for r in info if r.name == "gateway.jobs.runner"]
    assert any(m.startswith("submitting to runware") for m in steps), steps
    accepted = [r for r in info if "accepted job" in r.getMessage()]
    finished = [r for r in info if "finished" in r.getMessage()]
    assert len(accepted) == 1 and len(finished) == 1, steps
    for record in (accepted[0], finished[0]):
        assert (record.vendor, record.job_id) == ("runware", result.job_id)  # type: ignore[attr-defined]
        key = record.idempotency_key  # type: ignore[attr-defined]
        assert key and key in record.getMessage() and result.job_id in record.getMessage()
    debug = [r for r in _records(caplog) if r.levelno == logging.DEBUG]
    assert any(r.name == "gateway.jobs.runner" and "succeeded" in r.getMessage() for r in debug)
    assert any(r.name == "providers.runware" for r in debug)
    everything = [r.getMessage() + repr(r.args) for r in _records(caplog)]
    assert not [m for m in everything if CANARY_KEY in m]
    shown = [r.getMessage() for r in info]
    assert not [m for m in shown if "zyzzyva" in m or image[:40] in m]


async def test_a_failover_is_logged_at_info(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    clock = VirtualClock()
    gateway = Gateway(emulator=Emulator(clock=clock, faults="runware.job=fail"), clock=clock, journal=None)
    result = await gateway.agenerate(OviRequest(prompt=CANARY_PROMPT, image="https://example.com/k.png"),
                                     route=Route(job_retries=0))
    await gateway.aclose()
    assert result.provider != "runware"
    moves = [r.getMessage() for r in _records(caplog, logging.INFO) if "failing over" in r.getMessage()]
    assert moves and moves[0].startswith(f"failing over from runware to {result.provider}"), moves
    assert not [r for r in _records(caplog, logging.INFO) if "zyzzyva" in r.getMessage()]


@pytest.mark.parametrize(("verbose", "quiet", "level"), [(0, 0, logging.WARNING), (1, 0, logging.INFO),
                                                        (2, 0, logging.DEBUG), (5, 0, logging.DEBUG),
                                                        (0, 1, logging.ERROR), (0, 3, logging.CRITICAL)])
def test_cli_levels(verbose: int, quiet: int, level: int) -> None:
    assert level_for(verbose, quiet) == level


def _state() -> dict[str, tuple[int, list[logging.Handler]]]:
    return {name: (logging.getLogger(name).level, list(logging.getLogger(name).handlers)) for name in ROOTS}


@pytest.fixture
def spy() -> Iterator[dict[str, object]]:
    """A subcommand that notes the library's logging while a CLI command runs."""
    seen: dict[str, object] = {}

    @click.command("log-spy")
    def log_spy() -> None:
        seen["levels"] = [logging.getLogger(name).level for name in ROOTS]
        seen["handlers"] = [h.get_name() for h in logging.getLogger("gateway").handlers]

    commands.cli.add_command(log_spy)
    yield seen
    commands.cli.commands.pop("log-spy")


@pytest.mark.parametrize(("flags", "level"), [(["-vv"], logging.DEBUG), (["-v"], logging.INFO),
                                              (["-q"], logging.ERROR), ([], logging.WARNING)])
def test_cli_verbose_and_quiet_flags_hold_while_the_command_runs_and_are_undone_after(
        spy: dict[str, object], flags: list[str], level: int) -> None:
    before = _state()
    result = CliRunner().invoke(commands.cli, [*flags, "log-spy"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert spy["levels"] == [level, level]
    assert spy["handlers"].count("ovi-gateway-cli") == 1  # type: ignore[attr-defined]
    # the CLI run in this process leaves the library's logging as it was: a later test (or a script's
    # own logging) sees no level or stderr handler of the command (it failed a following test before)
    assert _state() == before


async def test_job_steps_log_at_info_after_a_cli_run_in_the_same_process(caplog: pytest.LogCaptureFixture) -> None:
    assert CliRunner().invoke(commands.cli, ["providers", "--help"]).exit_code == 0  # the CLI's default: WARNING
    caplog.set_level(logging.INFO)  # the root's level only, as an application would set it
    clock = VirtualClock()
    gateway = Gateway(emulator=Emulator(clock=clock), clock=clock, journal=None)
    await gateway.agenerate(OviRequest(prompt=CANARY_PROMPT, image="https://example.com/k.png"), provider="fal")
    await gateway.aclose()
    assert any("accepted job" in r.getMessage() for r in _records(caplog, logging.INFO))
