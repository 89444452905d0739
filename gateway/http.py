"""HTTP plumbing the adapters share: the generic status mapping, transport-error phases, redaction.

Pure helpers only: this module imports no httpx (it loads when ``classify_transport`` is handed an httpx
error), so the adapters' modules, which the registry imports for every gateway and quote, stay light. The
transports built on httpx are in ``gateway.transports``.

Vendor refinements (error codes, body shapes) live in each adapter's ``translate.classify_*``; this
module only holds what is the same for every vendor.
"""

from __future__ import annotations

import email.utils
import functools
import json
import time
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any, Generic, TypeVar, overload

from pydantic import BaseModel, SecretStr, TypeAdapter, ValidationError

from gateway.errors import (
    AuthError,
    ConfigurationError,
    GatewayError,
    InsufficientFunds,
    MalformedResponse,
    ProviderError,
    ProviderRejected,
    ProviderUnavailable,
    RateLimited,
    SubmitOutcomeUnknown,
)
from gateway.secrets import redact as redact_registered
from gateway.secrets import register_api_key

if TYPE_CHECKING:
    import httpx
else:
    from gateway.lazy import LazyModule

    httpx = LazyModule("httpx", globals())  # only classify_transport reads it, given an httpx error

__all__ = ["USER_AGENT", "LastDecoded", "classify_status", "classify_transport", "decode", "redact", "require_key",
           "retry_after"]

USER_AGENT = "ovi-gateway/0.1 (+python httpx)"

def retry_after(headers: Mapping[str, str], *, now: float | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delta-seconds or an HTTP date), if any."""
    value = next((v for k, v in headers.items() if k.lower() == "retry-after"), None)
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


def classify_status(provider: str, status: int, message: str, *, headers: Mapping[str, str] | None = None,
                    vendor_code: str | None = None, may_be_billed: bool = False) -> ProviderError:
    """The generic mapping of an HTTP status to the taxonomy (vendors refine it before calling)."""
    kwargs: dict[str, Any] = {"provider": provider, "status_code": status, "vendor_code": vendor_code,
              "may_be_billed": may_be_billed}
    text = f"HTTP {status}: {message}"
    if status in (401, 403):
        return AuthError(text, **kwargs)
    if status == 402:
        return InsufficientFunds(text, **kwargs)
    if status == 429:
        return RateLimited(text, retry_after=retry_after(headers or {}), **kwargs)
    if status in (408, 409) or status >= 500:
        return ProviderUnavailable(text, **kwargs)
    return ProviderRejected(text, **kwargs)


def classify_transport(provider: str, exc: httpx.TransportError | httpx.DecodingError, *, submitting: bool,
                       job_hint: Mapping[str, object] | None = None) -> GatewayError:
    """A transport error in our taxonomy.

    Before dispatch (connection refused, connect timeout) nothing reached the vendor: safe to retry.
    After dispatch, a submit is ambiguous — the vendor may hold a paid job — so it becomes
    ``SubmitOutcomeUnknown``; a status or result call is simply retried.
    """
    detail = f"{type(exc).__name__}: {exc}"
    if isinstance(exc, pre_dispatch_errors()):
        return ProviderUnavailable(f"not sent ({detail})", provider=provider)
    if submitting:
        return SubmitOutcomeUnknown(f"submit sent but no answer came ({detail})", provider=provider,
                                    job_hint=dict(job_hint or {}))
    return ProviderUnavailable(detail, provider=provider)


def pre_dispatch_errors() -> tuple[type[httpx.TransportError], ...]:
    """Transport errors raised before any byte of the body left: the vendor cannot have the job."""
    return (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout, httpx.UnsupportedProtocol)


def redact(text: str, secrets: Iterable[str | None] = (), *, limit: int = 500) -> str:
    """``text`` with every secret in ``secrets`` and every value in the registry (``gateway.secrets``)
    replaced by ``***``, cut to ``limit`` characters (after redacting, so no cut leaves half a key)."""
    text = redact_registered(text, secrets)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def require_key(ctx_key: SecretStr | str | None, *, provider: str, env_key: str) -> str:
    """The API key's value; ``ConfigurationError`` naming ``env_key`` when there is none."""
    value = ctx_key.get_secret_value() if isinstance(ctx_key, SecretStr) else ctx_key
    if not value:
        raise ConfigurationError(f"{provider} needs an API key: set {env_key}", provider=provider)
    register_api_key(value)
    return value


@functools.lru_cache(maxsize=64)
def _adapter(model: Any) -> TypeAdapter[Any]:
    return TypeAdapter(model)


_M = TypeVar("_M", bound=BaseModel)


@overload
def decode(model: type[_M], body: bytes | str | Any, *, provider: str, may_be_billed: bool = False,
           what: str = "answer", secrets: Iterable[str | None] = ()) -> _M: ...
@overload
def decode(model: Any, body: bytes | str | Any, *, provider: str, may_be_billed: bool = False,
           what: str = "answer", secrets: Iterable[str | None] = ()) -> Any: ...
def decode(model: Any, body: bytes | str | Any, *, provider: str, may_be_billed: bool = False,
           what: str = "answer", secrets: Iterable[str | None] = ()) -> Any:
    """A vendor answer as ``model`` (a pydantic model, or any type pydantic validates).

    ``body`` is the raw JSON (bytes or text) or an already-decoded value. Not JSON, or JSON off the
    model's shape, is ``MalformedResponse``; its message names the failing fields, never their values
    (answers echo what was sent). ``what`` names the answer in the message ("status answer");
    ``secrets`` are redacted from the excerpt of a body that is not JSON.
    """
    value = body
    if isinstance(body, (bytes, bytearray, str)):
        try:
            value = json.loads(body)
        except ValueError as exc:
            text = body.decode("utf-8", "replace") if isinstance(body, (bytes, bytearray)) else body
            raise MalformedResponse(f"{what} is not JSON: {redact(text, secrets, limit=120)!r}", provider=provider,
                                    may_be_billed=may_be_billed) from exc
    if model is Any:  # any JSON value is an ``Any``: nothing to validate (an adapter reads a ``code`` first)
        return value
    try:
        if isinstance(model, type) and issubclass(model, BaseModel):
            return model.model_validate(value)
        return _adapter(model).validate_python(value)
    except ValidationError as exc:
        where = "; ".join(f"{'.'.join(str(p) for p in err['loc']) or '(top)'}: {err['msg']}"
                          for err in exc.errors()[:3])
        raise MalformedResponse(f"{what} does not match the documented shape ({where})", provider=provider,
                                may_be_billed=may_be_billed) from exc


class LastDecoded(Generic[_M]):
    """The last body a parser decoded and the model it made, found again by the body's identity.

    An adapter's final poll and its result step read the same body object one after the other (in the
    same task, without a loop turn): the result step takes the model the poll validated instead of
    validating that body a second time. Any other body, equal or not, is a miss and validated as before.
    The body itself is held, so its identity cannot be reused by another object."""

    __slots__ = ("_last",)

    def __init__(self) -> None:
        self._last: tuple[object, _M | None] = (None, None)

    def get(self, body: object) -> _M | None:
        """The model decoded from this very ``body`` object, else None."""
        last = self._last  # one read of one tuple: another thread's loop may replace it meanwhile
        return last[1] if last[0] is body else None

    def put(self, body: object, model: _M) -> None:
        self._last = (body, model)
