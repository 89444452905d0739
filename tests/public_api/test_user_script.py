"""A user's type checker trusts the public API: the typed user script passes ``mypy --strict``, and its copy
with typos fails with the expected errors on the expected lines (issue 11, item 3).

mypy runs in-process (``mypy.api.run``) on its incremental cache; a cold cache takes tens of seconds on
this machine, so the test is in the slow tier (``scripts/test.sh`` runs mypy over the tree first anyway).
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

mypy_api = pytest.importorskip("mypy.api")

pytestmark = pytest.mark.slow

SCRIPTS = Path(__file__).parent / "scripts"
ROOT = Path(__file__).resolve().parents[2]
_ERROR = re.compile(r"^(?P<file>[^:]+):(?P<line>\d+): error: (?P<message>.*)$")


def _mypy(script: Path) -> tuple[str, int]:
    out, err, status = mypy_api.run(["--strict", "--no-error-summary", "--config-file", str(ROOT / "pyproject.toml"),
                                     str(script)])
    assert not err, err
    return out, status


def _errors(out: str) -> dict[int, list[str]]:
    found: dict[int, list[str]] = {}
    for line in out.splitlines():
        match = _ERROR.match(line)
        if match:
            found.setdefault(int(match["line"]), []).append(match["message"])
    return found


def test_the_typed_user_script_passes_mypy_strict() -> None:
    out, status = _mypy(SCRIPTS / "user_script.py")
    assert (status, _errors(out)) == (0, {}), out


def test_typos_fail_on_the_marked_lines_with_the_marked_messages() -> None:
    script = SCRIPTS / "user_script_typos.py"
    expected = {number: text.split("# E: ", 1)[1].strip()
                for number, text in enumerate(script.read_text().splitlines(), start=1) if "# E: " in text}
    assert len(expected) >= 9
    out, status = _mypy(script)
    errors = _errors(out)
    assert status == 1
    assert set(errors) == set(expected), out  # every marked line fails, and nothing else does
    for number, fragment in expected.items():
        assert any(fragment in message for message in errors[number]), (number, fragment, errors[number])
