"""Routing policy: the price book and quotes (``pricing``), the pure route planner (``planner``) and
vendor health breakers (``health``). Nothing here does I/O except reading the packaged price file."""

from gateway.routing.planner import Candidate, Plan, Route, plan
from gateway.routing.pricing import Budget, PriceBook, Quote

__all__ = ["Budget", "Candidate", "Plan", "PriceBook", "Quote", "Route", "plan"]
