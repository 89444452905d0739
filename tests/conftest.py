"""Shared fixtures: async tests on asyncio (anyio's plugin), virtual time, the emulator, tiny images."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest

from gateway.clock import VirtualClock

# An 8x8 PNG, small enough to inline; the emulator and adapters check PNG magic bytes.
PNG_BYTES = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAgAAAAIAQMAAAD+wSzIAAAABlBMVEX///+/v7+jQ3Y5AAAADklEQVQI12P4AIX8EAgALgAD/aNpbtEAAAAASUVORK5CYII="
)
CASSETTES = Path(__file__).resolve().parent.parent / "cassettes"


@pytest.fixture(autouse=True)
def _private_user_dirs(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """No test reads or writes the real user's journal, prices or cache: platformdirs resolves the
    XDG variables, so each test gets its own data, config, state and cache homes."""
    home = tmp_path_factory.mktemp("home")
    for name in ("XDG_DATA_HOME", "XDG_CONFIG_HOME", "XDG_STATE_HOME", "XDG_CACHE_HOME"):
        monkeypatch.setenv(name, str(home / name.lower()))


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def clock() -> VirtualClock:
    return VirtualClock()


@pytest.fixture
def png_file(tmp_path: Path) -> Path:
    path = tmp_path / "frame.png"
    path.write_bytes(PNG_BYTES)
    return path


@pytest.fixture(autouse=True)
def _private_data_dir(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """No test reads or writes the user's real journal (platformdirs follows XDG_DATA_HOME): a journal
    left there by another checkout or a newer schema must not change what a test sees."""
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path_factory.mktemp("xdg-data")))
