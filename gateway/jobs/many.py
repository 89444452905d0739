"""Many clips at once: a bounded pool of generations yielding each outcome as it finishes.

``run_many`` is what ``Gateway.agenerate_many`` runs. Requests are drawn lazily (a million-row
iterable is never held in memory), at most ``concurrency`` run at a time, and each outcome — a result
or the ``GatewayError`` that ended it — is yielded as soon as it is known, tagged with its position.
Leaving the ``async for`` early cancels the generations still running; their paid jobs stay in the
journal for ``resume()``, as after any interruption.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Iterator
from dataclasses import dataclass

from gateway.errors import GatewayError
from gateway.request import OviRequest
from gateway.result import OviResult

__all__ = ["ManyOutcome", "run_many"]


@dataclass(frozen=True)
class ManyOutcome:
    """How one request of a batch ended: ``result`` when it succeeded, else ``error``.

    ``index`` is the request's position in the input; ``key`` the idempotency key it ran under (when
    one was given)."""

    index: int
    request: OviRequest
    key: str | None
    result: OviResult | None = None
    error: GatewayError | None = None

    @property
    def ok(self) -> bool:
        """Whether the clip was made."""
        return self.result is not None


Generate = Callable[[OviRequest, str | None], Awaitable[OviResult]]


async def run_many(generate: Generate, requests: Iterable[OviRequest], *, keys: Iterable[str | None] | None = None,
                   concurrency: int = 8) -> AsyncIterator[ManyOutcome]:
    """Run ``generate(request, key)`` over ``requests`` with at most ``concurrency`` at once, yielding each
    ``ManyOutcome`` as it finishes (not in input order). Errors other than ``GatewayError`` propagate."""
    if concurrency < 1:
        raise ValueError("concurrency must be at least 1")
    keyed: Iterable[tuple[OviRequest, str | None]] = (
        zip(requests, keys, strict=True) if keys is not None else ((r, None) for r in requests))
    pairs: Iterator[tuple[int, tuple[OviRequest, str | None]]] = enumerate(keyed)
    done: asyncio.Queue[ManyOutcome | BaseException | None] = asyncio.Queue()

    async def one(index: int, request: OviRequest, key: str | None) -> ManyOutcome:
        try:
            return ManyOutcome(index, request, key, result=await generate(request, key))
        except GatewayError as error:
            return ManyOutcome(index, request, key, error=error)

    async def worker() -> None:
        try:
            for index, (request, key) in pairs:  # one shared iterator: each request is drawn once
                await done.put(await one(index, request, key))
        except asyncio.CancelledError:
            raise
        except Exception as error:  # a bug or an invalid input: surface it to the consumer
            await done.put(error)
        finally:
            await done.put(None)

    workers = [asyncio.create_task(worker()) for _ in range(concurrency)]
    running = len(workers)
    try:
        while running:
            item = await done.get()
            if item is None:
                running -= 1
            elif isinstance(item, BaseException):
                raise item
            else:
                yield item
    finally:
        for task in workers:
            task.cancel()
        await asyncio.gather(*workers, return_exceptions=True)
