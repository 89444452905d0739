"""The normalized result of a generation, with every attempt that led to it."""

from __future__ import annotations

import os
from decimal import Decimal
from pathlib import Path
from typing import Any, ClassVar, Literal

import httpx
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr

from gateway.attempts import Attempt, Outcome

__all__ = ["Attempt", "Outcome", "OviResult", "Timings"]

class Timings(BaseModel):
    """Seconds spent, measured on the gateway's clock between polls. ``queued_s`` runs from the vendor's
    acknowledgement to the last poll that saw the job queued (``None`` if none did); ``running_s`` from
    then to the poll that saw it finished. ``inference_s`` is the vendor's own figure."""

    model_config: ClassVar[ConfigDict] = ConfigDict(frozen=True)

    total_s: float
    queued_s: float | None = None
    running_s: float | None = None
    inference_s: float | None = None


class OviResult(BaseModel):
    """A finished clip, the same shape whichever vendor made it.

    ``cost_usd`` is what the vendor reported when it reports costs (``cost_source="reported"``),
    else the quote (``"estimated"``). ``dropped`` lists fields the vendor ignored because the route
    allowed degrading. ``raw`` is the vendor's final response body. ``emulated`` is true for a clip
    made by the built-in emulator (``Gateway.offline()``): nothing was billed.
    """

    model_config: ClassVar[ConfigDict] = ConfigDict(frozen=True)

    provider: str
    job_id: str
    video_url: str
    seed: int | None = None
    cost_usd: Decimal | None = None
    cost_source: Literal["reported", "estimated", "unknown"] = "unknown"
    quoted_usd: Decimal | None = None
    nsfw: bool | None = None
    timings: Timings
    dropped: list[str] = Field(default_factory=list)
    attempts: list[Attempt] = Field(default_factory=list)
    idempotency_key: str | None = None
    emulated: bool = False
    raw: Any = Field(default=None, repr=False)
    _transport: httpx.BaseTransport | None = PrivateAttr(default=None)
    """Where ``download()`` fetches from when no client is given: the in-process emulator for an
    emulated clip (its URLs name vendor hosts that must never be looked up), else the network."""

    @property
    def possible_extra_charges(self) -> int:
        """Attempts other than the successful one that may have been billed."""
        return sum(1 for a in self.attempts if a.may_be_billed and a.outcome != "succeeded")

    def download(self, path: str | os.PathLike[str], *, client: httpx.Client | None = None,
                 chunk_size: int = 1 << 16, max_bytes: int | None = None, timeout: float | None = None,
                 allow_local: bool | None = None) -> Path:
        """Stream the clip to ``path`` (see ``gateway.media.download.download`` for the safety rules and
        ``max_bytes``/``timeout``); returns the path. ``allow_local`` (default: whether the clip is
        emulated) admits ``http://`` and loopback hosts, for the emulator only.

        An emulated clip downloads from the emulator that made it, never from the network."""
        from gateway.media import download as media

        options: dict[str, Any] = {"chunk_size": chunk_size, "allow_local": self.emulated if allow_local is None
                                   else allow_local}
        options.update({k: v for k, v in (("max_bytes", max_bytes), ("timeout", timeout)) if v is not None})
        if client is None and self._transport is not None:
            with httpx.Client(transport=self._transport) as emulated:
                return media.download(self.video_url, path, client=emulated, **options)
        return media.download(self.video_url, path, client=client, **options)

    def with_transport(self, transport: httpx.BaseTransport | None) -> OviResult:
        """This result, downloading through ``transport`` (how the gateway hands out emulated clips)."""
        self._transport = transport
        return self
