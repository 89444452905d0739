"""Old deep import paths keep working, each with a DeprecationWarning naming the new home."""

from __future__ import annotations

import importlib
import sys
import warnings

import pytest

import gateway

MOVED = [
    ("gateway.journal", "Journal", "gateway.store.journal"),
    ("gateway.polling", "PollPolicy", "gateway.jobs.polling"),
    ("gateway.runner", "Event", "gateway.jobs.runner"),
    ("gateway.recovery", "Recovery", "gateway.jobs.recovery"),
    ("gateway.pricing", "PriceBook", "gateway.routing.pricing"),
    ("gateway.health", "Health", "gateway.routing.health"),
    ("gateway.cli_render", "emulator_banner", "gateway.cli.render"),
]


@pytest.mark.parametrize(("old", "name", "new"), MOVED)
def test_old_path_warns_and_gives_the_same_object(old, name, new):
    sys.modules.pop(old, None)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        module = importlib.import_module(old)
    assert any(issubclass(w.category, DeprecationWarning) and new in str(w.message) for w in caught)
    assert getattr(module, name) is getattr(importlib.import_module(new), name)


def test_paths_that_did_not_move_still_import_without_warnings():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        from gateway.clock import VirtualClock
        from gateway.emulator import Emulator
        from gateway.emulator.loopback import LoopbackTransport
        from gateway.routing import Route
    assert VirtualClock and Emulator and LoopbackTransport and Route


def test_every_public_name_resolves():
    for name in gateway.__all__:
        assert getattr(gateway, name) is not None, name
    assert gateway.Event.__module__ == "gateway.jobs.events"
    assert gateway.PollPolicy.__module__ == "gateway.jobs.polling"
    with pytest.raises(AttributeError, match="no attribute 'Gatway'"):
        gateway.Gatway  # noqa: B018
