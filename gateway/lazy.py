"""A module imported on its first use, for modules that need a heavy dependency only on their I/O paths.

The registry imports every adapter's module for its class (capabilities, prices) whenever a gateway starts
or a quote runs, and neither sends a request; httpx alone is about a third of that start-up (issue 14). A
module that uses httpx only inside its functions writes::

    if TYPE_CHECKING:
        import httpx
    else:
        httpx = LazyModule("httpx", globals())

Type checkers see the real module. At run time the first attribute read (``httpx.Timeout``, an
``except httpx.TransportError`` clause that is reached) imports httpx and puts the real module in the
importing module's globals in place of the stand-in, so every later use is a plain global lookup (no
cost on the hot path). Nothing is put in ``sys.modules`` before that: ``tests/test_cli_lazy.py`` checks
there that a new gateway and a quote never import httpx.
"""

from __future__ import annotations

import importlib
from types import ModuleType
from typing import Any

__all__ = ["LazyModule"]


class LazyModule:
    """Stands in for module ``name`` under ``key`` (default: the module's last dotted part) in
    ``namespace`` (the importing module's ``globals()``) until an attribute is first read."""

    __slots__ = ("_key", "_name", "_namespace")

    def __init__(self, name: str, namespace: dict[str, Any], key: str | None = None) -> None:
        self._name = name
        self._namespace = namespace
        self._key = key or name.rpartition(".")[2]

    def load(self) -> ModuleType:
        """Import the module (once per process, as any import) and put it in place of this stand-in."""
        module = importlib.import_module(self._name)
        if self._namespace.get(self._key) is self:
            self._namespace[self._key] = module
        return module

    def __getattr__(self, attribute: str) -> Any:
        return getattr(self.load(), attribute)

    def __setattr__(self, attribute: str, value: Any) -> None:
        # the stand-in's own slots are set in __init__; anything else (a test's monkeypatch of
        # ``module.httpx.get``) goes to the real module, as it would without the stand-in
        if attribute in LazyModule.__slots__:
            object.__setattr__(self, attribute, value)
        else:
            setattr(self.load(), attribute, value)

    def __delattr__(self, attribute: str) -> None:
        delattr(self.load(), attribute)

    def __dir__(self) -> list[str]:
        return dir(self.load())

    def __repr__(self) -> str:
        return f"<LazyModule {self._name!r}, not imported yet>"
