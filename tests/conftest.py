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
    monkeypatch.delenv("OVI_GATEWAY_DATABASE_URL", raising=False)


@pytest.fixture
def pg_url() -> str:
    """A fresh, empty schema on the test PostgreSQL (``OVI_GATEWAY_TEST_DATABASE_URL``, which
    scripts/test.sh always sets). Unset: skipped locally, an error under CI (never a silent skip)."""
    import os
    import uuid

    base = os.environ.get("OVI_GATEWAY_TEST_DATABASE_URL")
    if not base:
        if os.environ.get("CI"):
            pytest.fail("CI must run the PostgreSQL tests: OVI_GATEWAY_TEST_DATABASE_URL is not set "
                        "(scripts/test.sh starts a cluster through scripts/postgres.sh)")
        pytest.skip("needs PostgreSQL: set OVI_GATEWAY_TEST_DATABASE_URL or run scripts/test.sh")
    import psycopg

    schema = f"t_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(base, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {schema}")
    joiner = "&" if "?" in base else "?"
    return f"{base}{joiner}options=-csearch_path%3D{schema}"


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.slow)])
def journal_target(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A journal for tests that must hold on both backends: a SQLite file (fast tier), and a fresh
    PostgreSQL schema (``pg_url``, slow tier)."""
    if request.param == "sqlite":
        return str(tmp_path / "journal.sqlite3")
    return str(request.getfixturevalue("pg_url"))
