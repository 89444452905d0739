"""Futures of the stores' operations: ``Batched`` (a ``BATCHED`` write's, sent early once someone
waits for it) and settling answers on whichever event loop waits for them (SQLite and PostgreSQL)."""

from __future__ import annotations

import asyncio
import contextvars
from collections.abc import Callable
from typing import Any, Protocol

__all__ = ["Batched", "Hurried", "watch"]


class Hurried(Protocol):
    """The store a ``Batched`` future belongs to: ``_hurry(loop)`` sends what ``loop`` gathered."""

    def _hurry(self, loop: asyncio.AbstractEventLoop) -> None: ...


class Batched(asyncio.Future[Any]):
    """The future of a ``BATCHED`` write. It is sent with the next operation or after ``BATCH_DELAY_S``
    — unless someone waits for it (``await``, ``asyncio.wait``: anything that adds a done callback),
    which sends it at the end of the current loop turn: nobody waits for the delay. Its failure is
    logged and kept by the store, so it is never "never retrieved"."""

    def __init__(self, loop: asyncio.AbstractEventLoop, store: Hurried) -> None:
        super().__init__(loop=loop)
        # The store itself, not a closure over it: ten thousand batched writes in flight keep no
        # function, closure tuple and cells each for the garbage collector to walk.
        self._store: Hurried | None = store

    def set_exception(self, exception: type | BaseException, /) -> None:
        super().set_exception(exception)
        # Retrieved at once (the store has logged and kept it), not by a done callback each write
        # registered: that was one more loop callback per batched write when it ended, however it ended.
        super().exception()

    def add_done_callback(self, fn: Callable[[Batched], object], *,
                          context: contextvars.Context | None = None) -> None:
        store, self._store = self._store, None
        if store is not None and not self.done():
            store._hurry(self.get_loop())
        super().add_done_callback(fn, context=context)


def watch(future: asyncio.Future[Any], fn: Callable[[asyncio.Future[Any]], object]) -> None:
    """Call ``fn(future)`` once ``future`` is done, without waiting for it: a ``Batched`` write keeps its
    group commit. (Its ``add_done_callback`` takes a callback for a waiter and sends the write at the end
    of the loop turn, in a transaction of its own when nothing else is made in that turn: a job waiting
    on a socket then paid one more commit per batched write, where it rides with the next operation.)"""
    asyncio.Future.add_done_callback(future, fn)


def _retrieved(future: asyncio.Future[Any]) -> None:
    if not future.cancelled():
        future.exception()


def _running_loop() -> asyncio.AbstractEventLoop | None:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None


def _settle_many(answers: list[tuple[Any, Any, BaseException | None]]) -> None:
    for future, value, error in answers:
        _settle(future, value, error)


def _settle(future: asyncio.Future[Any], value: Any, error: BaseException | None) -> None:
    if future.done():
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(value)
