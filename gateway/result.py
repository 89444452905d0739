"""The normalized result of a generation, with every attempt that led to it."""

from __future__ import annotations

import os
from collections.abc import Callable
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, computed_field

from gateway.attempts import Attempt, Outcome
from gateway.errors import DefectiveClip
from gateway.lazy import LazyModule
from gateway.media.verify import MediaFacts

if TYPE_CHECKING:
    import httpx

    _Transport = httpx.BaseTransport | None
else:  # httpx loads on first use, not with the module (gateway.lazy)
    httpx = LazyModule("httpx", globals())
    _Transport = Any  # pydantic reads private attributes' annotations when it makes the class: not httpx's

__all__ = ["Attempt", "MediaFacts", "Outcome", "OviResult", "Timings", "defective_path"]

class Timings(BaseModel):
    """Seconds spent, measured on the gateway's clock between polls. ``queued_s`` runs from the vendor's
    acknowledgement to the last poll that saw the job queued (``None`` if none did); ``running_s`` from
    then to the poll that saw it finished. ``inference_s`` is the vendor's own figure."""

    # defer_build: the validator is built on first use, once, not at import (start-up, issue 14)
    model_config: ClassVar[ConfigDict] = ConfigDict(frozen=True, defer_build=True)

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

    ``expires_at`` (UTC) is when the vendor's documented retention ends, counted from when the gateway saw
    the job finished: fetch the clip before then. ``None`` means the vendor documents none (``expiry``
    says ``"unknown"``). ``media`` holds the probed facts once the clip is downloaded (``download()``, or
    at once with ``Gateway(keep_dir=...)``, which also sets ``saved_to``); ``verified`` says whether PyAV
    checked it (``False``: downloaded but not verified, the ``media`` extra is missing; ``None``: not
    downloaded yet).
    """

    model_config: ClassVar[ConfigDict] = ConfigDict(frozen=True, defer_build=True)

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
    fps: int | None = None
    """The frame rate the request asked for (``None``: the vendor's default, 24); what ``download`` checks."""
    expires_at: datetime | None = None
    media: MediaFacts | None = None
    saved_to: str | None = None
    raw: Any = Field(default=None, repr=False)
    _transport: _Transport = PrivateAttr(default=None)
    """Where ``download()`` fetches from when no client is given: the in-process emulator for an
    emulated clip (its URLs name vendor hosts that must never be looked up), else the network."""
    _on_media: Callable[[OviResult, Path, MediaFacts], None] | None = PrivateAttr(default=None)
    """Told of every download's facts (the gateway records them in its journal)."""

    @computed_field  # type: ignore[prop-decorator]
    @property
    def verified(self) -> bool | None:
        """``True``: downloaded and every media check passed; ``False``: downloaded but not probed
        (PyAV is missing); ``None``: not downloaded yet."""
        return None if self.media is None else self.media.verified

    @property
    def expiry(self) -> str:
        """``expires_at`` as ISO 8601 UTC, or ``"unknown"`` when the vendor documents no retention."""
        return "unknown" if self.expires_at is None else self.expires_at.isoformat(timespec="seconds")

    @property
    def possible_extra_charges(self) -> int:
        """Attempts other than the successful one that may have been billed."""
        return sum(1 for a in self.attempts if a.may_be_billed and a.outcome != "succeeded")

    def download(self, path: str | os.PathLike[str], *, client: httpx.Client | None = None,
                 chunk_size: int = 1 << 16, max_bytes: int | None = None, timeout: float | None = None,
                 allow_local: bool | None = None) -> Path:
        """Stream the clip to ``path`` (see ``gateway.media.download.download`` for the safety rules and
        ``max_bytes``/``timeout``), verify it (``gateway.media.verify``) and return the path; ``media``
        then holds what was found. ``allow_local`` (default: whether the clip is emulated) admits
        ``http://`` and loopback hosts, for the emulator only.

        An emulated clip downloads from the emulator that made it, never from the network.

        Raises:
            DefectiveClip: the file is not a playable Ovi clip. It was paid for: the file is kept beside
                ``path`` as ``NAME.defective.EXT`` (``error.saved_to``), never at ``path`` itself.
        """
        from gateway.media import download as media

        options: dict[str, Any] = {"chunk_size": chunk_size, "allow_local": self.emulated if allow_local is None
                                   else allow_local}
        options.update({k: v for k, v in (("max_bytes", max_bytes), ("timeout", timeout)) if v is not None})
        if client is None and self._transport is not None:
            with httpx.Client(transport=self._transport) as emulated:
                saved = media.download(self.video_url, path, client=emulated, **options)
        else:
            saved = media.download(self.video_url, path, client=client, **options)
        return self.check(saved)

    def check(self, saved: Path) -> Path:
        """Verify the downloaded file ``saved`` and record the facts (``download`` calls this)."""
        from gateway.media.verify import verify

        try:
            facts = verify(saved, fps=self.fps, url=self.video_url, provider=self.provider, job_id=self.job_id)
        except DefectiveClip as error:
            kept = defective_path(saved)
            os.replace(saved, kept)
            error.saved_to = str(kept)
            if self._on_media is not None and error.facts is not None:
                self._on_media(self, kept, error.facts)
            raise
        # The one field set after creation: the facts belong to this result, found when its clip arrived.
        object.__setattr__(self, "media", facts)
        self.__pydantic_fields_set__.add("media")
        if self._on_media is not None:
            self._on_media(self, saved, facts)
        return saved

    def with_transport(self, transport: httpx.BaseTransport | None) -> OviResult:
        """This result, downloading through ``transport`` (how the gateway hands out emulated clips)."""
        self._transport = transport
        return self

    def on_media(self, record: Callable[[OviResult, Path, MediaFacts], None] | None) -> OviResult:
        """This result, telling ``record`` the facts of each download (how the gateway journals them)."""
        self._on_media = record
        return self


def defective_path(saved: Path) -> Path:
    """Where a defective download is kept: ``clip.mp4`` -> ``clip.defective.mp4``."""
    return saved.with_name(f"{saved.stem}.defective{saved.suffix}")
