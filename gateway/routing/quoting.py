"""Quotes for one request on each vendor: its capabilities checked, its price from the book (pure).

``Gateway.quote`` and the ``ovi-gateway quote`` command share this, so the command prices a request from
the adapters' classes and the price book without loading the client, the runner or an event loop.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from decimal import Decimal
from typing import TYPE_CHECKING

from gateway.routing.pricing import PriceBook, Quote

if TYPE_CHECKING:
    from gateway.contract import Provider
    from gateway.request import OviRequest
    from gateway.store.journal import Journal

__all__ = ["CALIBRATION_WINDOW", "calibrate_from", "quotes_for", "ranked"]

CALIBRATION_WINDOW = 20
"""Newest reported costs per vendor a compute-billed estimate is calibrated from (``Journal.reported_costs``)."""


_CACHED_SHAPES = 256
"""Request shapes whose quotes ``quotes_for(cached=True)`` keeps per book (then it starts over)."""


def quotes_for(classes: Mapping[str, type[Provider]], book: PriceBook, request: OviRequest,
               only: str | None = None, *, cached: bool = False) -> dict[str, Quote]:
    """A ``Quote`` per vendor class (only ``only`` when pinned): feasible or why not, and the book's price.

    ``cached`` (the runner's planning, never ``Gateway.quote``, whose caller may change the lists it gets):
    a quote depends only on the vendor's class, the request's mode and set fields (``OviRequest.set_fields``:
    steps, sizes, formats — what capabilities and price rules read; never the prompt or the image) and the
    book's rules, so one made for the same shape is reused; ``PriceBook.calibrate`` empties the cache."""
    quotes = {}
    shape = (request.mode, tuple(request.set_fields().items())) if cached else None
    for name, cls in classes.items() if only is None else [(only, classes[only])]:  # pinned: it alone
        key = (name, cls, shape)
        quote = book.quotes.get(key) if cached else None
        if quote is None:
            quote = _quote(name, cls, book, request)
            if cached:
                if len(book.quotes) >= _CACHED_SHAPES:
                    book.quotes.clear()
                book.quotes[key] = quote
        quotes[name] = quote
    return quotes


def _quote(name: str, cls: type[Provider], book: PriceBook, request: OviRequest) -> Quote:
    violations = cls.capabilities.violations(request)
    price, estimated, source = book.price(name, request)
    reasons = [str(v) for v in violations]
    if price is None:
        reasons.append("no price known")
    return Quote(provider=name, price_usd=price, estimated=estimated, feasible=not violations, reasons=reasons,
                 source=source, dropped=[v.field for v in violations if v.field != "image"])


def ranked(quotes: Iterable[Quote]) -> list[Quote]:
    """Feasible quotes cheapest first, then the rest."""
    return sorted(quotes, key=lambda q: (not q.feasible, q.price_usd is None, q.price_usd or Decimal(0)))


def calibrate_from(journal: Journal, classes: Mapping[str, type[Provider]], book: PriceBook) -> None:
    """Calibrate ``book``'s compute-billed estimates from the journal's newest reported costs per vendor,
    as a gateway on that journal does when it starts (``ClipsMixin._calibrate_from_journal``)."""
    for name, cls in classes.items():
        observations = [(cost, steps) for cost, _quote, steps in journal.reported_costs(name, CALIBRATION_WINDOW)]
        for mode in cls.capabilities.modes:
            book.calibrate(name, mode, observations)
