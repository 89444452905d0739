"""OpenTelemetry spans per clip and per vendor attempt — when ``opentelemetry-api`` is installed.

Two spans, parent and child, made through the OpenTelemetry API (the ``otel`` extra); the caller's SDK and
exporter decide where they go, as the API intends (no provider is configured here):

* ``ovi.clip`` — one ``Gateway.agenerate`` (a follower's too): ``ovi.idempotency_key`` (the clip's key),
  then ``ovi.outcome`` (``succeeded`` or the error class), ``ovi.vendor``, ``ovi.job_id`` and
  ``ovi.cost_usd`` (a decimal string: money is never a float) of the delivered clip;
* ``ovi.attempt`` — one vendor tried by the runner: ``ovi.vendor``, ``ovi.clip_key``, then
  ``ovi.idempotency_key`` (the submit's key, Runware's ``taskUUID``) and ``ovi.job_id`` once the vendor
  accepts (``note``), ``ovi.outcome`` (``succeeded``, ``skipped`` or the error class),
  ``ovi.may_be_billed`` and ``ovi.cost_usd``.

Without the package every call is a no-op: it is imported at the first span, not with ``gateway``, so
``import gateway`` never pays for OpenTelemetry (``python -X importtime``), and a failed import is
remembered. With the package but no tracer provider set (the API's own default, whose spans record
nothing), every call is a no-op too: no span, context switch or attribute is made for a span nobody
records (``live``), so every job does not pay for them. Every string
attribute goes through ``gateway.secrets.redact``: an API key never reaches an exporter.
"""

from __future__ import annotations

from collections.abc import Awaitable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

import gateway.secrets as secrets

__all__ = ["attempt", "clip", "live", "note"]

T = TypeVar("T")
_TRACER_NAME = "ovi-gateway"
_trace: Any = None
"""``opentelemetry.trace`` once looked up; ``False`` when it is not installed."""
_silent: tuple[type, ...] = ()
"""The API's tracer providers whose spans record nothing (the default proxy, the no-op one)."""


def _api() -> Any:
    global _trace, _silent
    if _trace is None:
        try:
            import opentelemetry.trace as trace
        except ImportError:  # the otel extra is not installed: every span is a no-op
            _trace = False
        else:
            _trace = trace
            _silent = (trace.ProxyTracerProvider, trace.NoOpTracerProvider)
    return _trace


def live() -> Any:
    """``opentelemetry.trace`` when spans are recorded: the API is installed and a tracer provider is set
    (the API's default, a proxy until one is, records nothing); else ``None``. Asked at every span, so a
    provider set later is used from then on."""
    trace = _api()
    if not trace or isinstance(trace.get_tracer_provider(), _silent):
        return None
    return trace


def _value(value: Any) -> Any:
    if isinstance(value, bool | int | float):
        return value
    return secrets.redact(str(value))


def _set(span: Any, attributes: dict[str, Any]) -> None:
    for key, value in attributes.items():
        if value is not None:
            span.set_attribute(f"ovi.{key}", _value(value))


@contextmanager
def _span(name: str, attributes: dict[str, Any]) -> Iterator[Any]:
    trace = live()
    if trace is None:
        yield None
        return
    tracer = trace.get_tracer(_TRACER_NAME)
    # The exception is recorded here, redacted (the SDK's own record_exception would copy its raw text).
    with tracer.start_as_current_span(name, record_exception=False, set_status_on_exception=False) as span:
        _set(span, attributes)
        try:
            yield span
        except BaseException as exc:
            _set(span, {"outcome": type(exc).__name__, "may_be_billed": getattr(exc, "may_be_billed", None)})
            span.set_status(trace.Status(trace.StatusCode.ERROR, _value(f"{type(exc).__name__}: {exc}")))
            raise


def _finished(span: Any, result: Any) -> None:
    if span is None:
        return
    if result is None:
        _set(span, {"outcome": "skipped"})
        return
    _set(span, {"outcome": "succeeded", "vendor": getattr(result, "provider", None),
                "job_id": getattr(result, "job_id", None), "cost_usd": getattr(result, "cost_usd", None)})


async def clip(work: Awaitable[T], *, idempotency_key: str | None = None) -> T:
    """Await ``work`` (making one clip) inside an ``ovi.clip`` span."""
    if live() is None:
        return await work
    with _span("ovi.clip", {"idempotency_key": idempotency_key}) as span:
        result = await work
        _finished(span, result)
        return result


async def attempt(work: Awaitable[T], *, vendor: str, clip_key: str) -> T:
    """Await ``work`` (one vendor's try at a clip) inside an ``ovi.attempt`` span, a child of the clip's
    (which learns the clip's key here when the caller gave none)."""
    if live() is None:
        return await work
    note(idempotency_key=clip_key)
    with _span("ovi.attempt", {"vendor": vendor, "clip_key": clip_key}) as span:
        result = await work
        _finished(span, result)
        return result


def note(**attributes: Any) -> None:
    """Add ``ovi.<name>`` attributes to the current span (no-op without OpenTelemetry or a span)."""
    trace = live()
    if trace is not None:
        span = trace.get_current_span()
        if span.is_recording():
            _set(span, attributes)
