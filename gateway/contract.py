"""The contract every vendor adapter meets, and the data that crosses it.

An adapter has pure parts — ``capabilities``, ``translate``, ``parse``, ``classify`` — that are
tested without HTTP, and four async I/O calls that each do exactly one step: ``submit``, ``status``,
``result``, ``cancel``. Adapters never sleep or loop: the runner owns time.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from enum import StrEnum
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from pydantic import SecretStr

from gateway.addresses import UnsafeURL, check_result_url
from gateway.errors import GatewayError, MalformedResponse, UnsupportedByProvider
from gateway.lazy import LazyModule
from gateway.request import Mode, OviRequest

if TYPE_CHECKING:
    import httpx
else:  # annotations only (resolvable, e.g. by get_type_hints): the contract loads without httpx (gateway.lazy)
    httpx = LazyModule("httpx", globals())

__all__ = [
    "CONTRACT_VERSION",
    "Capabilities",
    "JobHandle",
    "JobState",
    "JobStatus",
    "Limit",
    "ModeCapabilities",
    "Provider",
    "ProviderContext",
    "ProviderOutput",
    "StepTimeout",
    "SubmitContext",
    "Violation",
    "WebhookEvent",
]

CONTRACT_VERSION = 1


@dataclass(frozen=True, slots=True)
class Limit:
    """What a vendor accepts for one canonical field.

    ``minimum``/``maximum`` bound numbers (inclusive), ``choices`` lists the allowed values, and
    ``fixed`` marks a field the vendor does not take but always produces at that value (fal always
    renders 24 fps), so asking for exactly that value is honored without sending anything.
    """

    minimum: float | None = None
    maximum: float | None = None
    choices: tuple[Any, ...] | None = None
    fixed: Any = None

    def allows(self, value: Any) -> bool:
        if self.fixed is not None:
            return bool(value == self.fixed)
        if self.choices is not None and value not in self.choices:
            return False
        if self.minimum is not None and value < self.minimum:
            return False
        return self.maximum is None or bool(value <= self.maximum)

    def describe(self) -> str:
        if self.fixed is not None:
            return f"always {self.fixed}"
        if self.choices is not None:
            return "one of " + ", ".join(str(c) for c in self.choices)
        if self.minimum is None and self.maximum is None:
            return "any value"
        low = "" if self.minimum is None else _num(self.minimum)
        high = "" if self.maximum is None else _num(self.maximum)
        if low and high:
            return f"{low}–{high}"
        return f"≥ {low}" if low else f"≤ {high}"


def _num(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else str(value)


@dataclass(frozen=True, slots=True)
class Violation:
    """A field the caller set that a vendor cannot honor."""

    field: str
    value: Any
    allowed: str

    def __str__(self) -> str:
        shown = self.value if not isinstance(self.value, str) or len(self.value) < 40 else self.value[:37] + "…"
        allowed = self.allowed if self.allowed == "not supported" else f"allowed: {self.allowed}"
        return f"{self.field}={shown!r} ({allowed})"


@dataclass(frozen=True, slots=True)
class ModeCapabilities:
    """The canonical fields one vendor endpoint honors, each with its ``Limit``."""

    endpoint: str
    fields: Mapping[str, Limit]


@dataclass(frozen=True, slots=True)
class Capabilities:
    """Which modes a vendor offers and, per mode, which canonical fields it honors."""

    modes: Mapping[Mode, ModeCapabilities]

    def violations(self, request: OviRequest) -> list[Violation]:
        """Every set field this vendor cannot honor for ``request`` (empty when it can run it as is)."""
        caps = self.modes.get(request.mode)
        if caps is None:
            offered = ", ".join(sorted(self.modes)) or "nothing"
            return [Violation("image", "omitted" if request.image is None else "given",
                              f"{request.mode} not offered; offers {offered}")]
        found = []
        for name, value in request.set_fields().items():
            limit = caps.fields.get(name)
            if limit is None:
                found.append(Violation(name, value, "not supported"))
            elif not limit.allows(value):
                found.append(Violation(name, value, limit.describe()))
        return found


    def require(self, request: OviRequest, *, provider: str, dropped: frozenset[str] = frozenset()) -> None:
        """Raise ``UnsupportedByProvider`` naming every field, value and allowed range this vendor cannot
        honor, except fields in ``dropped``. A mode the vendor does not offer can never be dropped."""
        caps = self.modes.get(request.mode)
        blocking = [v for v in self.violations(request) if caps is None or v.field not in dropped]
        if blocking:
            where = f" on {caps.endpoint}" if caps else ""
            raise UnsupportedByProvider("cannot honor " + "; ".join(str(v) for v in blocking) + where,
                                        provider=provider, violations=blocking)


@dataclass(frozen=True, slots=True)
class SubmitContext:
    """What the runner decides for one submit: the idempotency key and the fields to leave out.

    ``idempotency_key`` is a UUID4 string; Runware uses it as the ``taskUUID``. ``dropped`` names
    the fields the caller allowed to be dropped because this vendor cannot honor them.
    """

    idempotency_key: str
    dropped: frozenset[str] = frozenset()
    webhook_url: str | None = None
    """Where the vendor should push the job's completion (set by the gateway when it has a public URL;
    adapters that support webhooks ask the vendor for one, the rest ignore it)."""


@dataclass(frozen=True, slots=True)
class JobHandle:
    """A vendor job, JSON-serializable so another process can resume it.

    ``data`` holds what the adapter needs for later calls (fal's status/response/cancel URLs, the
    WaveSpeed result URL, the endpoint used).
    """

    provider: str
    job_id: str
    data: Mapping[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {"provider": self.provider, "job_id": self.job_id, "data": dict(self.data)}

    @classmethod
    def from_json(cls, value: Mapping[str, Any]) -> JobHandle:
        return cls(provider=value["provider"], job_id=value["job_id"], data=dict(value.get("data") or {}))


class JobState(StrEnum):
    """Where a vendor job is. ``SUCCEEDED`` and ``FAILED`` are final."""

    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"

    @property
    def final(self) -> bool:
        return self in (JobState.SUCCEEDED, JobState.FAILED)


@dataclass(frozen=True, slots=True)
class JobStatus:
    """One status check's answer. ``error`` is set when ``FAILED``; ``raw`` is the vendor body."""

    state: JobState
    queue_position: int | None = None
    progress: float | None = None
    error: GatewayError | None = None
    raw: Any = None


@dataclass(frozen=True, slots=True)
class WebhookEvent:
    """A vendor's push about one job, as an adapter's ``parse_webhook`` reads it.

    ``trusted`` is True when the vendor signed it (verified by ``verify_webhook``) and the body itself
    settles the job; an unsigned push (Runware) is only a hint to check the job's status now.
    ``status`` is the job's state as pushed; ``output`` the clip when the push carries it.
    """

    job_id: str
    status: JobStatus
    output: ProviderOutput | None = None
    trusted: bool = False


@dataclass(frozen=True, slots=True)
class ProviderOutput:
    """A finished clip as the vendor described it, normalized.

    ``cost_usd`` is the vendor-reported cost (``None`` when the vendor does not report one).
    ``inference_s`` is the vendor's own compute time in seconds when reported. ``video_url`` is checked
    when the output is made (every adapter's ``parse`` builds one): ``https``/``http`` with a host, or a
    ``data:video/...`` URI; ``file://`` and junk raise ``MalformedResponse`` (the job may be billed).
    """

    video_url: str
    seed: int | None = None
    cost_usd: Decimal | None = None
    nsfw: bool | None = None
    inference_s: float | None = None
    raw: Any = None

    def __post_init__(self) -> None:
        try:
            check_result_url(self.video_url)
        except UnsafeURL as exc:
            shown = self.video_url[:80] if isinstance(self.video_url, str) else type(self.video_url).__name__
            raise MalformedResponse(f"the vendor reported an unusable video URL {shown!r}: {exc}",
                                    may_be_billed=True) from None


StepTimeout = tuple[float | None, float | None, float | None, float | None]
"""An adapter's default timeout for one step in httpx's tuple form: (connect, read, write, pool) seconds.
Adapters' modules spell their defaults this way so that importing them imports no httpx."""


@dataclass(frozen=True)
class ProviderContext:
    """What the gateway hands an adapter when it builds it. No I/O happens at construction.

    ``http`` is the gateway's shared client (no auth headers; adapters add their own per request).
    ``transport`` is the injected transport behind it, for adapters that must build their own
    client (fal-client). ``new_id`` makes the ids an adapter needs (Runware ``imageUpload`` tasks).
    ``timeout`` is the caller's timeout for every request (``Gateway(timeout=…)``), replacing the
    adapter's per-step defaults; ``None`` keeps them. ``options`` holds what the caller configured for
    this vendor: ``base_url`` (another API root) for adapters listing it in ``accepted_options``.
    """

    api_key: SecretStr | None
    http: httpx.AsyncClient
    transport: httpx.AsyncBaseTransport | None = None
    new_id: Callable[[], str] = field(default=lambda: __import__("uuid").uuid4().__str__())
    options: Mapping[str, Any] = field(default_factory=dict)
    timeout: httpx.Timeout | None = None

    def timeout_or(self, default: httpx.Timeout | StepTimeout) -> httpx.Timeout | StepTimeout:
        """The caller's timeout when one was set, else the adapter's ``default`` for this step (either is
        what httpx takes as a request's ``timeout``)."""
        return self.timeout if self.timeout is not None else default


@runtime_checkable
class Provider(Protocol):
    """A vendor adapter. The registry checks ``name`` against its entry point and the version."""

    name: str
    contract_version: int
    env_key: str
    """The environment variable holding the vendor's API key (e.g. ``FAL_KEY``)."""
    capabilities: Capabilities
    reconcilable: bool
    """Whether ``find`` can tell, after an ambiguous submit, if the vendor took the job."""
    def __init__(self, ctx: ProviderContext) -> None:
        """Build the adapter; no I/O happens here."""

    # Optional: ``accepted_options: frozenset[str]``, the ``ProviderContext.options`` keys the adapter
    # reads (``"base_url"``); the gateway refuses options an adapter does not list rather than drop them.
    # Optional: ``min_poll_interval: float``, the vendor's documented minimum seconds between status
    # checks (WaveSpeed: 5); ``can_cancel: bool``, whether the vendor documents a cancel that can stop
    # a job (``Job.cancel`` refuses otherwise); ``result_retention_s: float | None``, seconds the vendor
    # documents keeping a finished job's result after it completes (``None``: undocumented; results
    # carry ``expires_at`` from it, resume abandons past it); ``media_url_lifetime_s: float | None``,
    # seconds the clip's own URL is documented to serve it (``None``: undocumented; the server's
    # ``expires_at`` and its refusal of expired content use it). Read with ``getattr(provider, name,
    # default)``, so adapters written before they were added keep working. Webhooks, optional too:
    # ``async verify_webhook(headers, body: bytes) -> None`` raises ``AuthError`` unless the push is
    # authentic, and ``parse_webhook(body: bytes) -> WebhookEvent`` reads it (``gateway.webhooks``).

    def translate(self, request: OviRequest, ctx: SubmitContext) -> dict[str, Any] | list[Any]:
        """The exact JSON body the vendor receives (pure). Image files appear as data URIs."""

    def parse(self, final: Any, handle: JobHandle) -> ProviderOutput:
        """The vendor's final body as a ``ProviderOutput`` (pure; raises ``MalformedResponse``)."""

    def classify(self, error: BaseException | httpx.Response) -> GatewayError:
        """A vendor error (an HTTP response, a transport exception, a vendor body) in our taxonomy."""

    async def submit(self, request: OviRequest, ctx: SubmitContext) -> JobHandle:
        """Send the job once (never re-POSTs). Raises a ``GatewayError`` with ``may_be_billed`` set
        when the body may have reached the vendor."""

    async def status(self, handle: JobHandle) -> JobStatus:
        """One status check."""

    async def result(self, handle: JobHandle, last: JobStatus) -> ProviderOutput:
        """The finished clip. ``last`` is the ``SUCCEEDED`` status, reused where it already holds the result."""

    async def cancel(self, handle: JobHandle) -> None:
        """Ask the vendor to stop the job; best effort, never raises for an already-final job."""

    async def find(self, ctx: SubmitContext) -> JobHandle | None:
        """After an ambiguous submit: the job the vendor holds under ``ctx.idempotency_key``, or
        ``None`` when the vendor has none. Only meaningful when ``reconcilable`` (Runware, by
        ``taskUUID``); fal and WaveSpeed have no lookup by client key and return ``None``."""
