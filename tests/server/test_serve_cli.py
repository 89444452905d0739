"""``ovi-gateway serve`` refusals made before anything starts."""

from __future__ import annotations

from click.testing import CliRunner

from gateway.cli import cli


def test_workers_need_postgresql_and_say_why(tmp_path) -> None:
    result = CliRunner().invoke(cli, ["serve", "--api-key", "k", "--workers", "2", "--journal",
                                      str(tmp_path / "j.sqlite3")])
    assert result.exit_code == 2
    assert "--workers 2 needs a PostgreSQL journal" in result.output and "one writer at a time" in result.output


def test_workers_with_the_built_in_emulator_are_refused(tmp_path) -> None:
    result = CliRunner().invoke(cli, ["serve", "--api-key", "k", "--workers", "2", "--emulator", "--journal",
                                      "postgresql://u@/db?host=/nonexistent"])
    assert result.exit_code == 2 and "--emulator-url" in result.output
