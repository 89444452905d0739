"""``Gateway``'s clip downloads (``download``, ``adownload``, ``keep_dir`` fetches) and their journal rows:
a mixin, so ``gateway/client.py`` stays under the module size limit."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gateway.errors import ConfigurationError
from gateway.lazy import LazyModule
from gateway.secrets import scrubbing

if TYPE_CHECKING:
    import asyncio

    import httpx

    from gateway.clock import Clock
    from gateway.media.download import Downloaded
    from gateway.media.verify import MediaFacts
    from gateway.result import OviResult
    from gateway.store.journal import Journal
else:  # asyncio and httpx load on first use, not with the module (gateway.lazy)
    asyncio = LazyModule("asyncio", globals())
    httpx = LazyModule("httpx", globals())

__all__ = ["MediaMixin"]


class MediaMixin:
    """Downloads for ``Gateway``, over its transport and within its emulator flag."""

    # provided by Gateway
    transport: httpx.AsyncBaseTransport | None
    emulated: bool
    journal: Journal | None
    clock: Clock
    _allow_local_media: bool

    @property
    def allow_local_media(self) -> bool:
        """Whether ``download`` may fetch ``http://`` and loopback/private URLs: only when every vendor is
        emulated, or ``Gateway(allow_local_media=True)`` was passed (a loopback emulator) — never inferred
        from a URL, so ``http://127.0.0.1`` stays refused for real vendors."""
        return self._allow_local_media or self.emulated

    def download(self, result: OviResult, path: str | os.PathLike[str], *, max_bytes: int | None = None,
                 timeout: float | None = None) -> Path:
        """``result.download(path)`` over this gateway's transport (so emulated clips download offline);
        ``http://`` and loopback media only when this gateway is emulated or ``allow_local_media``."""
        options: dict[str, Any] = {"allow_local": self.allow_local_media, "max_bytes": max_bytes, "timeout": timeout}
        if self.transport is None or (self.emulated and not isinstance(self.transport, httpx.BaseTransport)):
            return result.download(path, **options)  # a loopback emulator's clip URLs point at loopback already
        if not isinstance(self.transport, httpx.BaseTransport):
            raise ConfigurationError("this gateway's transport is async-only; call await gateway.adownload()")
        with httpx.Client(transport=self.transport) as client:
            return result.download(path, client=client, **options)

    @scrubbing
    async def adownload(self, result: OviResult, path: str | os.PathLike[str], *, max_bytes: int | None = None,
                        timeout: float | None = None) -> Downloaded:
        """Fetch the clip to ``path`` over this gateway's transport, bounded on its clock (see
        ``gateway.media.download``), verified like ``result.download`` (``result.media``; raises
        ``DefectiveClip``); returns the ``Downloaded`` facts (path, sha256, size, container)."""
        from gateway.media.download import DEFAULT_MAX_BYTES, DEFAULT_TIMEOUT, afetch

        async with httpx.AsyncClient(transport=self.transport) as client:
            fetched = await afetch(result.video_url, path, client=client, clock=self.clock,
                                   allow_local=self.allow_local_media or result.emulated,
                                   max_bytes=DEFAULT_MAX_BYTES if max_bytes is None else max_bytes,
                                   timeout=DEFAULT_TIMEOUT if timeout is None else timeout)
        await asyncio.to_thread(result.on_media(self._record_media).check, fetched.path)
        return fetched

    async def _fetch_clip(self, url: str, path: Path) -> Path:
        """Download a finished clip for ``keep_dir`` / ``failover_on_defective`` (``jobs.delivery``)."""
        from gateway.media.download import adownload

        async with httpx.AsyncClient(transport=self.transport) as client:
            return await adownload(url, path, client=client, clock=self.clock, allow_local=self.allow_local_media)

    def _record_media(self, result: OviResult, saved: Path, facts: MediaFacts) -> None:
        """Journal one download of ``result``'s clip (``result.download`` calls this)."""
        if self.journal is not None and result.idempotency_key:
            self.journal.record_download(clip_key=result.idempotency_key, provider=result.provider,
                                      job_id=result.job_id, video_url=result.video_url, saved_to=str(saved),
                                      facts=facts)
