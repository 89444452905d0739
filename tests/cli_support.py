"""What the ``ovi-gateway`` CLI tests share: an offline environment, the in-process runner, and a record
of every built-in emulator the commands make (to read their billing ledgers)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from gateway.cli import cli, common

OFFLINE_UNSET = ("RUNWARE_API_KEY", "FAL_KEY", "WAVESPEED_API_KEY", "OVI_GATEWAY_PRICES", "OVI_GATEWAY_EMULATOR_URL")
"""With none of these set, the commands run on the built-in emulator at the packaged prices."""


def go_offline(monkeypatch: pytest.MonkeyPatch, folder: Path) -> None:
    """No vendor keys (so the built-in emulator runs), no price file or loopback emulator, wide tables,
    0.05 s emulated jobs, and ``folder`` as the working directory."""
    for name in OFFLINE_UNSET:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("COLUMNS", "250")
    monkeypatch.setenv(common.JOB_SECONDS_ENV, "0.05")
    monkeypatch.chdir(folder)


def record_emulators(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """Every built-in emulator the commands make from now on, in order."""
    made: list[Any] = []
    original = common.make_emulator

    def recording(*args: Any, **kwargs: Any) -> Any:
        made.append(original(*args, **kwargs))
        return made[-1]

    monkeypatch.setattr(common, "make_emulator", recording)
    return made


def billed(emulators: list[Any]) -> int:
    """Billable jobs across the recorded emulators' ledgers."""
    return sum(len(e.ledger.billable()) for e in emulators)


def run(*args: str) -> Result:
    """``ovi-gateway ARGS…`` in-process; exceptions propagate (a crash is a test failure, not an exit code)."""
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)
