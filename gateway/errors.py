"""The gateway's error taxonomy. Every error says what to do next through flags, never its message.

::

    GatewayError
    ├── InvalidRequest           the request is wrong as written; never sent      retry: no  failover: no
    │   └── NoRoute              no installed vendor can take it (reasons inside)  retry: no  failover: no
    ├── UnsupportedByProvider    this vendor cannot honor a field                  retry: no  failover: yes
    ├── ConfigurationError       no key, plugin failed to load, unknown provider   retry: no  failover: yes
    ├── ProviderError            anything a vendor said, or failed to say
    │   ├── AuthError            401/403, bad or missing key                       retry: no  failover: yes
    │   ├── InsufficientFunds    402, balance or quota exhausted                   retry: no  failover: yes
    │   ├── RateLimited          429 (carries retry_after seconds)                 retry: yes failover: yes
    │   ├── ProviderUnavailable  5xx before acceptance, connect errors             retry: yes failover: yes
    │   ├── ProviderRejected     400/422: the vendor refused the payload           retry: no  failover: yes
    │   ├── GenerationFailed     the job ran and failed at the vendor              retry: no  failover: yes
    │   ├── ContentRejected      safety / NSFW refusal                             retry: no  failover: no
    │   ├── MalformedResponse    the answer did not match the vendor's schema      retry: no  failover: yes
    │   ├── ResultExpired        the vendor no longer keeps the job's result       retry: no  failover: no
    │   └── DefectiveClip        a "succeeded" clip fails the media checks (paid)  retry: no  failover: no *
    ├── BudgetExceeded           the submit would pass the spend budget; not sent  retry: no  failover: no
    ├── SubmitOutcomeUnknown     the vendor may have accepted a paid job           retry: no  failover: no
    ├── JobUnresolved            a paid job exists but its outcome can't be read   retry: no  failover: no
    ├── ClipInProgress           another call is working on this idempotency key   retry: no  failover: no
    ├── StoreUnavailable         the journal's database cannot be reached          retry: no  failover: no
    ├── DeadlineExceeded         the caller's deadline passed                      retry: no  failover: no
    ├── DownloadFailed           the finished clip could not be fetched safely     retry: no  failover: no
    └── AllProvidersFailed       every candidate failed; carries every attempt     retry: no  failover: no

* unless the route opts in (``Route.failover_on_defective``), reporting the possible extra charge.

The runner reads only ``retryable`` (same vendor again, after backoff) and ``failover`` (next vendor
now). ``may_be_billed`` says whether the vendor might have charged for the attempt that raised it.
Messages never contain API keys or other registered secrets: every message is passed through
``gateway.secrets.redact`` when the error is made (adapters redact vendor bodies first, too).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, ClassVar

from gateway.secrets import redact

if TYPE_CHECKING:
    from gateway.attempts import Attempt

__all__ = [
    "AllProvidersFailed",
    "AuthError",
    "BudgetExceeded",
    "ClipInProgress",
    "ConfigurationError",
    "ContentRejected",
    "DeadlineExceeded",
    "DefectiveClip",
    "DownloadFailed",
    "GatewayError",
    "GenerationFailed",
    "InsufficientFunds",
    "InvalidRequest",
    "JobUnresolved",
    "MalformedResponse",
    "NoRoute",
    "ProviderError",
    "ProviderRejected",
    "ProviderUnavailable",
    "RateLimited",
    "ResultExpired",
    "StoreUnavailable",
    "SubmitOutcomeUnknown",
    "UnsupportedByProvider",
]


class GatewayError(Exception):
    """Base of every error the gateway raises on purpose.

    Attributes:
        retryable: retrying the same vendor after a backoff is sensible.
        failover: moving to the next vendor is sensible.
        provider: the vendor involved, when there is one.
        may_be_billed: the vendor might have charged for the attempt.
    """

    retryable: ClassVar[bool] = False
    failover: ClassVar[bool] = False

    def __init__(
        self,
        message: str,
        *,
        provider: str | None = None,
        may_be_billed: bool = False,
        status_code: int | None = None,
        vendor_code: str | None = None,
    ) -> None:
        message = redact(message)  # a vendor's answer may echo a key (an Authorization header)
        super().__init__(message)
        self.message = message
        self.provider = provider
        self.may_be_billed = may_be_billed
        self.status_code = status_code
        self.vendor_code = vendor_code
        self.attempts: list[Attempt] = []
        """Every attempt made before this error ended the generation (set by the runner)."""

    def __str__(self) -> str:
        prefix = f"[{self.provider}] " if self.provider else ""
        return prefix + self.message

    def __repr__(self) -> str:
        return f"{type(self).__name__}({str(self)!r})"


class InvalidRequest(GatewayError, ValueError):
    """The request is wrong as written (a field, a prompt tag, an image). It was never sent."""


class NoRoute(InvalidRequest):
    """No installed vendor can take the request; ``reasons`` maps each vendor to why not."""

    def __init__(self, message: str, *, reasons: dict[str, list[str]] | None = None) -> None:
        self.reasons: dict[str, list[str]] = dict(reasons or {})
        detail = "; ".join(f"{name}: {', '.join(why)}" for name, why in self.reasons.items())
        super().__init__(f"{message} ({detail})" if detail else message)


class UnsupportedByProvider(GatewayError):
    """A vendor cannot honor fields the caller set; ``violations`` lists field, value and allowed."""

    failover = True

    def __init__(self, message: str, *, provider: str, violations: Sequence[Any] = ()) -> None:
        super().__init__(message, provider=provider)
        self.violations: list[Any] = list(violations)


class ConfigurationError(GatewayError):
    """The gateway is not set up for this: no API key, a plugin that failed to load, an unknown name."""

    failover = True


class ProviderError(GatewayError):
    """Something a vendor said, or failed to say."""


class AuthError(ProviderError):
    """The vendor refused the key (401/403)."""

    failover = True


class InsufficientFunds(ProviderError):
    """The vendor account has no balance or quota left (402)."""

    failover = True


class RateLimited(ProviderError):
    """The vendor asked us to slow down (429). ``retry_after`` is in seconds when the vendor said."""

    retryable = True
    failover = True

    def __init__(self, message: str, *, retry_after: float | None = None, **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.retry_after = retry_after


class ProviderUnavailable(ProviderError):
    """The vendor is down or unreachable and did not take the job (5xx, connection refused)."""

    retryable = True
    failover = True


class ProviderRejected(ProviderError):
    """The vendor refused the payload (400/422). With a valid canonical request this is a translation bug."""

    failover = True


class GenerationFailed(ProviderError):
    """The job ran and failed at the vendor. Retrying there would pay again; another vendor may work."""

    failover = True


class ContentRejected(ProviderError):
    """The vendor's safety checks refused the prompt, image or output."""


class MalformedResponse(ProviderError):
    """The vendor's answer did not match its documented shape."""

    failover = True


class ResultExpired(ProviderError):
    """The vendor no longer keeps this job's result (fal: 1 h / 6 min; WaveSpeed: 7 days)."""


class DefectiveClip(ProviderError):
    """The vendor reported success, but the clip it delivered is not a playable Ovi clip (does not parse,
    no video or audio stream, wrong frame rate or length; ``gateway.media.verify``). The job was paid
    (``may_be_billed``) and stays on record with its URL. The runner fails over only when the route says
    ``failover_on_defective=True``, reporting the possible extra charge.

    Attributes:
        facts: the ``MediaFacts`` found (``facts.problems`` lists each failed check).
        video_url: where the defective clip was fetched from.
        job_id: the vendor's job id.
        saved_to: where the defective file was kept, if it was.
    """

    def __init__(self, message: str, *, provider: str | None = None, facts: Any = None,
                 video_url: str | None = None, job_id: str | None = None, saved_to: str | None = None) -> None:
        super().__init__(message, provider=provider, may_be_billed=True)
        self.facts = facts
        self.video_url = video_url
        self.job_id = job_id
        self.saved_to = saved_to

    @property
    def problems(self) -> list[str]:
        """Each failed check, in words."""
        return list(getattr(self.facts, "problems", []) or [])


class BudgetExceeded(GatewayError):
    """Submitting would take spend past the configured budget; nothing was sent."""


class SubmitOutcomeUnknown(GatewayError):
    """A submit may have reached the vendor, and whether a paid job exists could not be settled.

    ``job_hint`` carries what is known (vendor, idempotency key, a job id if any) so the job can be
    reconciled or resumed later instead of paid for again.
    """

    def __init__(self, message: str, *, provider: str, job_hint: dict[str, Any] | None = None) -> None:
        super().__init__(message, provider=provider, may_be_billed=True)
        self.job_hint: dict[str, Any] = dict(job_hint or {})


class JobUnresolved(GatewayError):
    """A vendor accepted a paid job, but its status or result cannot be read now (repeated errors,
    an unparseable answer). The job stays in the journal; ``Gateway.resume()`` picks it up later.
    Failing over would pay twice, so the runner stops here.
    """

    def __init__(self, message: str, *, provider: str, job: Any = None, held_by: str | None = None) -> None:
        super().__init__(message, provider=provider, may_be_billed=True)
        self.job = job
        self.held_by = held_by
        """Set when this call lost the clip's lease: the call that follows the job now (``jobs.leasing``)."""


class ClipInProgress(GatewayError):
    """Another call (in this process or another) is generating the clip under this idempotency key.
    Wait for it, then call again with the same key to get its result."""


class StoreUnavailable(GatewayError):
    """The journal's database cannot be reached (or failed mid-write). Raised before any submit when it
    happens first; after a vendor accepted a job, the job id travels with the error so it can be resumed."""


class DeadlineExceeded(GatewayError):
    """The caller's deadline passed. ``job`` is the vendor job still running, if any, for resuming."""

    def __init__(self, message: str, *, provider: str | None = None, job: Any = None) -> None:
        super().__init__(message, provider=provider, may_be_billed=job is not None)
        self.job = job


class DownloadFailed(GatewayError):
    """Fetching a finished clip failed or was refused; the clip is paid and its URL stays on the result.

    ``reason`` is one of ``refused`` (scheme or address not allowed, a redirect to one), ``http`` (an
    error status), ``too-large`` (past the size cap, counted while streaming), ``not-video`` (the body
    is no MP4/MOV/WebM), ``encoding`` (an unsupported or broken Content-Encoding), ``truncated``
    (fewer bytes than announced), ``timeout`` (the bound on the whole download passed) or ``transport``.
    """

    def __init__(self, message: str, *, reason: str, status_code: int | None = None) -> None:
        super().__init__(message, may_be_billed=True, status_code=status_code)
        self.reason = reason


class AllProvidersFailed(GatewayError):
    """Every candidate vendor failed. ``attempts`` holds each one, in order."""

    def __init__(self, message: str, *, attempts: Sequence[Attempt]) -> None:
        lines = [f"{a.provider}: {a.outcome} ({a.error_type}: {a.error})" for a in attempts]
        super().__init__(message + (" — " + "; ".join(lines) if lines else ""),
                         may_be_billed=any(a.may_be_billed for a in attempts))
        self.attempts: list[Attempt] = list(attempts)


PAID_JOB_ALIVE = (SubmitOutcomeUnknown, JobUnresolved, DeadlineExceeded)
"""Errors after which a vendor job may exist and still be running: the clip stays open in the journal."""
