"""Routing policy: the price book and quotes (``pricing``, ``quoting``), the pure route planner
(``planner``) and vendor health breakers (``health``). Nothing here does I/O except reading the packaged
price file.

Names load on first use (module ``__getattr__``), so importing one submodule (``ovi-gateway quote`` needs
``pricing`` alone) does not load the others.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from gateway.routing.planner import Candidate, Plan, Route, plan
    from gateway.routing.pricing import Budget, PriceBook, Quote

__all__ = ["Budget", "Candidate", "Plan", "PriceBook", "Quote", "Route", "plan"]

_LAZY = {**dict.fromkeys(("Candidate", "Plan", "Route", "plan"), "gateway.routing.planner"),
         **dict.fromkeys(("Budget", "PriceBook", "Quote"), "gateway.routing.pricing")}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'gateway.routing' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value
