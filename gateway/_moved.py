"""Old import paths kept working after the layout moved modules into wings.

Each old module (``gateway.journal``, ``gateway.polling``, …) is a two-line shim calling ``forward``:
it warns once with a ``DeprecationWarning`` naming the new home, then every attribute resolves there.
"""

from __future__ import annotations

import importlib
import warnings
from collections.abc import Callable
from typing import Any


def forward(old: str, new: str) -> Callable[[str], Any]:
    """A module ``__getattr__`` for ``old`` that forwards every name to the module ``new``."""
    warnings.warn(f"{old} has moved to {new}; import it from there", DeprecationWarning, stacklevel=3)
    target = importlib.import_module(new)

    def __getattr__(name: str) -> Any:
        return getattr(target, name)

    return __getattr__
