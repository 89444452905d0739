"""ovi-gateway: one Ovi request, run on the cheapest healthy vendor that can honor it.

Quick start::

    from gateway import Gateway, OviRequest
    result = Gateway().generate(OviRequest(image="https://…/knight.jpg",
                                           prompt="A knight. <S>I will defend this land.<E>"))
"""

from gateway.contract import Capabilities, JobHandle, JobState, JobStatus, Limit, Provider, ProviderOutput
from gateway.errors import *  # noqa: F403 - the taxonomy is part of the public surface
from gateway.errors import __all__ as _error_names
from gateway.prompt import OviPrompt, PromptError
from gateway.request import ImageInput, Mode, OviRequest
from gateway.result import Attempt, OviResult, Timings

__all__ = [
    "Attempt",
    "Budget",
    "Capabilities",
    "Gateway",
    "ImageInput",
    "JobHandle",
    "JobState",
    "JobStatus",
    "Limit",
    "Mode",
    "OviPrompt",
    "OviRequest",
    "OviResult",
    "PromptError",
    "Provider",
    "ProviderOutput",
    "Quote",
    "Route",
    "Timings",
    *_error_names,
]


def __getattr__(name: str):  # the client pulls in stevedore and the runner: load on first use
    if name == "Gateway":
        from gateway.client import Gateway
        return Gateway
    if name == "Route":
        from gateway.routing import Route
        return Route
    if name in ("Quote", "Budget"):
        from gateway import pricing
        return getattr(pricing, name)
    raise AttributeError(f"module 'gateway' has no attribute {name!r}")
