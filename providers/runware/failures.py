"""Pure Runware error reading: an answer's ``errors`` entries, codes by family, and any failure (HTTP
answer, transport error, vendor shape) in our taxonomy. ``providers.runware.translate`` reads the
answers themselves with these (and names them too, ``translate.classify`` etc.).

No I/O here. Codes and shapes: reference/providers.md section 2 and the Ovi model page
(seeds/runware-ovi-model-docs.md).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from gateway.errors import (
    AuthError,
    ContentRejected,
    GatewayError,
    GenerationFailed,
    InsufficientFunds,
    MalformedResponse,
    ProviderError,
    ProviderRejected,
    ProviderUnavailable,
    RateLimited,
    ResultExpired,
)
from gateway.http import classify_status, classify_transport, decode, redact, retry_after
from gateway.lazy import LazyModule
from providers.runware.capabilities import PROVIDER
from providers.runware.schemas import RunwareBody, RunwareError

if TYPE_CHECKING:
    import httpx
else:  # httpx loads on the first error, not when the registry imports this module (gateway.lazy)
    httpx = LazyModule("httpx", globals())

__all__ = ["classify", "classify_response", "error_from", "errors_for", "family", "read_body"]


_FAMILIES: tuple[tuple[str, tuple[str, ...]], ...] = (
    # order matters: invalidApiKey is auth before invalid* is validation; tokenExpired before *expired
    ("conflict", ("conflicttaskuuid",)),
    ("auth", ("apikey", "unauthorized", "forbidden", "authentication", "credentials", "token",
              "accountsuspended", "accountdisabled")),
    ("funds", ("credit", "balance", "quota", "paymentrequired")),
    ("rate", ("ratelimit", "toomanyrequests")),
    ("safety", ("contentpolicy", "nsfw")),
    ("cancelled", ("taskcancelled",)),
    ("gone", ("notfound",)),
    ("expired", ("expired",)),
    ("job", ("inferenceerror", "processingfailed", "taskfailed", "generationfailed")),
    ("unavailable", ("timeout", "unavailable", "noavailableserver", "servererror", "modelnotready",
                     "modeldisabled", "internalerror")),
    ("rejected", ("invalid", "missing", "unknownparameter", "unsupported", "validation", "unknownmodel")),
)


def family(code: str) -> str | None:
    """The error family of a Runware code, matched by fragment (Runware's catalog is large and changing)."""
    lowered = code.lower()
    if lowered in ("modelnotfound", "unknownmodel"):
        return "rejected"
    for name, fragments in _FAMILIES:
        if any(lowered.startswith(f) if f in ("invalid", "missing", "token") else f in lowered
               for f in fragments):
            return name
    return None


_CLASSES: dict[str, type[ProviderError]] = {
    "auth": AuthError, "funds": InsufficientFunds, "safety": ContentRejected, "gone": GenerationFailed,
    "cancelled": GenerationFailed,
    "expired": ResultExpired, "job": GenerationFailed, "unavailable": ProviderUnavailable,
    "rejected": ProviderRejected, "conflict": ProviderRejected,
}


def error_from(error: RunwareError, *, status: int, headers: Mapping[str, str] | None = None,
               secrets: Iterable[str | None] = (), may_be_billed: bool = False) -> ProviderError:
    """One Runware error entry in our taxonomy: by code family, else by HTTP status."""
    where = f" (parameter {error.parameter})" if error.parameter else ""
    text = redact(f"{error.code}: {error.message}{where}", list(secrets))
    kind = family(error.code)
    kwargs: dict[str, Any] = {"provider": PROVIDER, "status_code": status, "vendor_code": error.code,
                              "may_be_billed": may_be_billed}
    if kind == "rate":
        return RateLimited(f"HTTP {status}: {text}", retry_after=retry_after(headers or {}), **kwargs)
    if kind is None and status >= 400:
        return classify_status(PROVIDER, status, text, headers=headers, vendor_code=error.code,
                               may_be_billed=may_be_billed)
    if kind is None:  # an unknown code with HTTP 200 still reports a failure: a refusal, not a success
        kind = "rejected"
    return _CLASSES[kind](f"HTTP {status}: {text}", **kwargs)


def read_body(content: bytes | str | Any) -> RunwareBody:
    """A Runware answer (raw bytes, text, or already-decoded JSON) as ``RunwareBody``."""
    return decode(RunwareBody, content, provider=PROVIDER, what="answer (Runware's {data, errors} JSON)")


def errors_for(body: RunwareBody, task_uuid: str | None) -> list[RunwareError]:
    """The ``errors`` entries that speak to ``task_uuid``: those naming it, else those naming no task, else all."""
    mine = [e for e in body.errors if task_uuid is not None and e.taskUUID == task_uuid]
    return mine or [e for e in body.errors if e.taskUUID is None] or body.errors


def classify_response(status: int, headers: Mapping[str, str], content: bytes, *,
                      task_uuid: str | None = None, secrets: Iterable[str | None] = (),
                      may_be_billed: bool = False) -> ProviderError:
    """An HTTP answer that reports a failure (non-2xx, or ``errors`` in a 200) in our taxonomy."""
    try:
        body = read_body(content)
    except MalformedResponse:
        body = RunwareBody()
    errors = errors_for(body, task_uuid)
    if errors:
        return error_from(errors[0], status=status, headers=headers, secrets=secrets, may_be_billed=may_be_billed)
    excerpt = redact(content.decode("utf-8", "replace"), list(secrets), limit=200)
    if status < 400:
        return MalformedResponse(f"HTTP {status} with neither data nor errors: {excerpt}", provider=PROVIDER,
                                 status_code=status, may_be_billed=may_be_billed)
    return classify_status(PROVIDER, status, excerpt, headers=headers, may_be_billed=may_be_billed)


def classify(error: BaseException | httpx.Response, *, secrets: Iterable[str | None] = ()) -> GatewayError:
    """Any Runware failure in our taxonomy: an HTTP answer, a transport error, a vendor-shape error."""
    if isinstance(error, httpx.Response):
        return classify_response(error.status_code, error.headers, error.content, secrets=secrets)
    if isinstance(error, GatewayError):
        return error
    if isinstance(error, httpx.TransportError):
        return classify_transport(PROVIDER, error, submitting=False)
    if isinstance(error, (ValidationError, ValueError)):
        return MalformedResponse(f"answer did not match Runware's shape ({type(error).__name__})",
                                 provider=PROVIDER)
    return ProviderUnavailable(f"{type(error).__name__}: {redact(str(error), list(secrets))}",
                               provider=PROVIDER)
