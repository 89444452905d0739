"""ovi-gateway: one Ovi request, run on the cheapest healthy vendor that can honor it.

Quick start::

    from gateway import Gateway, OviRequest
    result = Gateway().generate(OviRequest(image="https://…/knight.jpg",
                                           prompt="A knight. <S>I will defend this land.<E>"))

Every public name loads on first use (module ``__getattr__``), so ``import gateway`` costs next to nothing
and a program pays only for what it touches: ``OviRequest`` brings pydantic, ``Gateway`` the client and
the runner. Type checkers see the real classes through the ``TYPE_CHECKING`` imports below.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from gateway.logs import install_null_handlers

install_null_handlers()  # silent unless the application configures logging (gateway.logs)

if TYPE_CHECKING:
    from gateway.client import Gateway
    from gateway.contract import Capabilities, JobHandle, JobState, JobStatus, Limit, Provider, ProviderOutput
    from gateway.errors import (
        AllProvidersFailed,
        AuthError,
        BudgetExceeded,
        ClipInProgress,
        ConfigurationError,
        ContentRejected,
        DeadlineExceeded,
        GatewayError,
        GenerationFailed,
        InsufficientFunds,
        InvalidRequest,
        JobUnresolved,
        MalformedResponse,
        NoRoute,
        ProviderError,
        ProviderRejected,
        ProviderUnavailable,
        RateLimited,
        ResultExpired,
        StoreUnavailable,
        SubmitOutcomeUnknown,
        UnsupportedByProvider,
    )
    from gateway.jobs.events import Event, EventKind
    from gateway.jobs.handles import CannotCancel, Job, JobCancelled, JobNotFinished, JobView
    from gateway.jobs.polling import PollPolicy
    from gateway.offline import GatewayOptions
    from gateway.prompt import OviPrompt, PromptError
    from gateway.request import ImageInput, Mode, OviRequest
    from gateway.result import Attempt, OviResult, Timings
    from gateway.routing.planner import Route
    from gateway.routing.pricing import Budget, Quote

__all__ = [
    "AllProvidersFailed",
    "Attempt",
    "AuthError",
    "Budget",
    "BudgetExceeded",
    "CannotCancel",
    "Capabilities",
    "ClipInProgress",
    "ConfigurationError",
    "ContentRejected",
    "DeadlineExceeded",
    "Event",
    "EventKind",
    "Gateway",
    "GatewayError",
    "GatewayOptions",
    "GenerationFailed",
    "ImageInput",
    "InsufficientFunds",
    "InvalidRequest",
    "Job",
    "JobCancelled",
    "JobHandle",
    "JobNotFinished",
    "JobState",
    "JobStatus",
    "JobUnresolved",
    "JobView",
    "Limit",
    "MalformedResponse",
    "Mode",
    "NoRoute",
    "OviPrompt",
    "OviRequest",
    "OviResult",
    "PollPolicy",
    "PromptError",
    "Provider",
    "ProviderError",
    "ProviderOutput",
    "ProviderRejected",
    "ProviderUnavailable",
    "Quote",
    "RateLimited",
    "ResultExpired",
    "Route",
    "StoreUnavailable",
    "SubmitOutcomeUnknown",
    "Timings",
    "UnsupportedByProvider",
]

_LAZY: dict[str, str] = {
    **dict.fromkeys(("Capabilities", "JobHandle", "JobState", "JobStatus", "Limit", "Provider", "ProviderOutput"),
                    "gateway.contract"),
    **dict.fromkeys(("OviPrompt", "PromptError"), "gateway.prompt"),
    **dict.fromkeys(("ImageInput", "Mode", "OviRequest"), "gateway.request"),
    **dict.fromkeys(("Attempt", "OviResult", "Timings"), "gateway.result"),
    "Gateway": "gateway.client",
    "GatewayOptions": "gateway.offline",
    "Route": "gateway.routing.planner",
    "Quote": "gateway.routing.pricing",
    "Budget": "gateway.routing.pricing",
    "Event": "gateway.jobs.events",
    "EventKind": "gateway.jobs.events",
    "PollPolicy": "gateway.jobs.polling",
    **dict.fromkeys(("CannotCancel", "Job", "JobCancelled", "JobNotFinished", "JobView"), "gateway.jobs.handles"),
}
"""Where each public name lives; every other name in ``__all__`` is an error class of ``gateway.errors``."""


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name) or ("gateway.errors" if name in __all__ else None)
    if module is None:
        raise AttributeError(f"module 'gateway' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
