"""``/metrics`` in the Prometheus text format (prometheus-client), read from live state at each scrape.

Series: ``ovi_jobs`` (vendor submits by vendor and journal state), ``ovi_spend_usd`` (reported and
estimated, by vendor), ``ovi_breaker_open`` (1 while a vendor's breaker is open or half-open),
``ovi_webhook_deliveries_total`` (accepted / duplicate / refused), ``ovi_status_answered_by_push_total``
(status checks a verified push answered instead of the vendor), and ``ovi_http_request_seconds`` (the
server's own latency per route and method). Vendor status calls are counted where they are made, by
the vendor (the emulator's ledger in tests); a per-vendor call counter would need the runner's events.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Iterator
from decimal import Decimal
from typing import Any

from prometheus_client import CollectorRegistry, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector
from starlette.requests import Request
from starlette.responses import Response

__all__ = ["Metrics"]


class _Live(Collector):
    def __init__(self, gateway: Any, intake: Any, callbacks: Any = None) -> None:
        self.gateway = gateway
        self.intake = intake
        self.callbacks = callbacks

    def collect(self) -> Iterator[Any]:
        jobs = GaugeMetricFamily("ovi_jobs", "Vendor submits in the journal, by vendor and state",
                                 labels=["vendor", "state"])
        rows = self.gateway.journal._query("SELECT provider, state, COUNT(*) FROM submits GROUP BY provider, state")
        for vendor, state, count in rows:
            jobs.add_metric([vendor, state], count)
        yield jobs
        spend = GaugeMetricFamily("ovi_spend_usd", "USD spent, by vendor and source", labels=["vendor", "source"])
        totals: dict[tuple[str, str], Decimal] = {}
        for row in self.gateway.journal.spend():
            for source, amount in (("reported", row.reported_usd), ("estimated", row.estimated_usd)):
                totals[(row.provider, source)] = totals.get((row.provider, source), Decimal(0)) + amount
        for (vendor, source), amount in sorted(totals.items()):
            spend.add_metric([vendor, source], float(amount))  # Prometheus samples are floats
        yield spend
        breaker = GaugeMetricFamily("ovi_breaker_open", "1 while a vendor's breaker is open or half-open",
                                    labels=["vendor"])
        for state in self.gateway.health():
            breaker.add_metric([state.provider], 0 if state.state == "closed" else 1)
        yield breaker
        deliveries = CounterMetricFamily("ovi_webhook_deliveries", "Vendor webhook deliveries", labels=["outcome"])
        for outcome in ("accepted", "duplicate", "refused"):
            deliveries.add_metric([outcome], getattr(self.intake, outcome if outcome != "duplicate" else "duplicates",
                                                     0) if self.intake is not None else 0)
        yield deliveries
        sent = CounterMetricFamily("ovi_callback_deliveries", "Client callback POSTs tried by this process, by outcome "
                                   "(failed ones are retried from the outbox)", labels=["outcome"])
        for outcome in ("delivered", "failed"):
            sent.add_metric([outcome], getattr(self.callbacks, outcome, 0) if self.callbacks is not None else 0)
        yield sent
        pushed = self.gateway.push.pushed_answers if self.gateway.push is not None else 0
        yield CounterMetricFamily("ovi_status_answered_by_push", "Status checks answered by a verified push",
                                  value=pushed)


class Metrics:
    """The registry of one app, its ``/metrics`` endpoint and a latency middleware."""

    def __init__(self, gateway: Any, intake: Any = None, callbacks: Any = None) -> None:
        self.registry = CollectorRegistry()
        self.registry.register(_Live(gateway, intake, callbacks))
        self.latency = Histogram("ovi_http_request_seconds", "Server latency per route and method (seconds)",
                                 ["route", "method"], registry=self.registry,
                                 buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5))

    async def endpoint(self, request: Request) -> Response:
        return Response(generate_latest(self.registry), media_type="text/plain; version=0.0.4; charset=utf-8")

    def middleware(self) -> Any:
        """A Starlette ``Middleware`` timing every HTTP request into ``ovi_http_request_seconds``."""
        from starlette.middleware import Middleware

        return Middleware(_Timed, metrics=self)


class _Timed:
    def __init__(self, app: Callable[..., Awaitable[None]], metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        started = time.perf_counter()
        try:
            await self.app(scope, receive, send)
        finally:
            path = getattr(scope.get("route"), "path", None) or "unmatched"
            self.metrics.latency.labels(path, scope.get("method", "")).observe(time.perf_counter() - started)
        return None
