"""Cassette hygiene: no auth header, nothing key-shaped, and the environment's real keys nowhere."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

CASSETTES = Path(__file__).resolve().parents[2] / "cassettes"
FILES = sorted(CASSETTES.rglob("*.yaml"))
KEY_SHAPED = [
    re.compile(r"(?i)\bauthorization\b\s*:"),                 # a header that should have been filtered
    re.compile(r"(?i)\b(?:bearer|key)\s+[A-Za-z0-9_\-:.]{16,}"),
    re.compile(r"\b(?:sk|pk|rk|fal|ws)[-_][A-Za-z0-9]{16,}"),
    re.compile(r"(?i)\"?api[_-]?key\"?\s*[:=]\s*\"?[A-Za-z0-9_\-]{12,}"),
]


def test_there_are_cassettes_for_every_vendor() -> None:
    assert {p.parent.name for p in FILES} >= {"runware", "fal", "wavespeed"}


@pytest.mark.parametrize("path", FILES, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_cassette_holds_nothing_key_shaped(path: Path) -> None:
    text = path.read_text(encoding="utf-8")
    for pattern in KEY_SHAPED:
        assert not pattern.search(text), f"{path.name}: {pattern.pattern} matched"
    for variable in ("RUNWARE_API_KEY", "FAL_KEY", "WAVESPEED_API_KEY"):
        secret = os.environ.get(variable)
        if secret and len(secret) >= 8:
            assert secret not in text, f"{path.name} holds the value of ${variable}"


def test_the_scan_catches_a_planted_key() -> None:
    planted = 'headers:\n  Authorization:\n  - Key 0123456789abcdef0123456789abcdef\n'
    assert any(p.search(planted) for p in KEY_SHAPED)
