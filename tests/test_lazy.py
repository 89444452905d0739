"""``gateway.lazy.LazyModule``: nothing is imported until an attribute is read; then the real module takes
the stand-in's place in the importing module's globals (checked in a fresh process for ``sys.modules``)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from gateway.lazy import LazyModule

PROBE = """
import json, sys
from gateway.lazy import LazyModule
space = {}
space["colorsys"] = LazyModule("colorsys", space)
before = "colorsys" in sys.modules
value = space["colorsys"].rgb_to_hsv(1.0, 0.0, 0.0)
print(json.dumps([before, "colorsys" in sys.modules, type(space["colorsys"]).__name__, list(value)]))
"""


def test_imports_on_first_attribute_and_replaces_itself() -> None:
    done = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, timeout=60, check=True)
    assert json.loads(done.stdout) == [False, True, "module", [0.0, 1.0, 1.0]]


def test_a_dotted_name_takes_its_last_part_as_key_and_leaves_a_rebound_name_alone() -> None:
    import xml.dom

    space: dict[str, object] = {}
    space["dom"] = stand_in = LazyModule("xml.dom", space)
    space["dom"] = "rebound"  # the module rebound the name meanwhile: loading must not overwrite it
    assert stand_in.load() is xml.dom and space["dom"] == "rebound"


def test_setting_or_deleting_an_attribute_reaches_the_real_module(monkeypatch: pytest.MonkeyPatch) -> None:
    """A monkeypatch through the stand-in (``provider.translate.build_payload``) patches the real module."""
    import colorsys

    space: dict[str, object] = {}
    stand_in = LazyModule("colorsys", space)
    monkeypatch.setattr(stand_in, "ONE_THIRD", 0.5)
    assert colorsys.ONE_THIRD == 0.5 and "ONE_THIRD" in dir(stand_in)
    monkeypatch.undo()
    assert colorsys.ONE_THIRD == 1.0 / 3.0
    colorsys.extra_for_the_test = 1  # type: ignore[attr-defined]
    delattr(stand_in, "extra_for_the_test")
    assert not hasattr(colorsys, "extra_for_the_test")


def test_a_missing_attribute_or_module_raises_as_the_module_would() -> None:
    space: dict[str, object] = {}
    with pytest.raises(AttributeError):
        LazyModule("json", space).no_such_name  # noqa: B018
    with pytest.raises(ModuleNotFoundError):
        LazyModule("no_such_module_here", space).anything  # noqa: B018
