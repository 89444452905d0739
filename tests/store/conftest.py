"""Fixtures of the storage contract tests: a store on both backends with an injected wall clock."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from gateway.store import open_store
from gateway.store.base import SqlStore


class Wall:
    """Epoch seconds a test moves by hand (``store.wall``): leases and buckets expire without sleeping."""

    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
async def store(journal_target: str) -> AsyncIterator[SqlStore]:
    """A store on ``journal_target`` (SQLite, and PostgreSQL in the slow tier) whose wall is a ``Wall``."""
    s = open_store(journal_target)
    s.wall = Wall()
    yield s
    await s.aclose()
