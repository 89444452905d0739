"""What happens to a finished clip before the caller gets it: its expiry, and (when asked) its bytes.

The runner calls ``Delivery`` with each job the vendor reports finished, before the result is built
(``Runner(deliver=...)``). It always adds ``expires_at`` (from the provider's documented
``result_retention_s``; ``None`` when the vendor documents none) and the requested ``fps``. With a
``keep_dir`` it downloads the clip there at once (``gateway.media.download``) and verifies it
(``gateway.media.verify``); with ``Route(failover_on_defective=True)`` it downloads and verifies even
without one, so a defective clip can move the runner to the next vendor instead of reaching the caller.

A download that fails (network, size) is not a verdict on the clip: the result is returned without
``media`` and the clip stays listed as not downloaded (``ovi-gateway jobs``). A defective clip raises
``DefectiveClip``; the runner records the paid attempt and fails over only when the route says so.
Every download's facts go into the journal through its async store (``SqlStore.record_download``, off
the event loop), or the sync ``Journal.record_download`` where no async store exists.
"""

from __future__ import annotations

import asyncio
import inspect
import json
import os
import tempfile
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import urlsplit

import httpx

from gateway.contract import ProviderOutput
from gateway.errors import DefectiveClip, DownloadFailed
from gateway.media.verify import MediaFacts, verify
from gateway.request import OviRequest
from gateway.result import defective_path

__all__ = ["Delivery", "clip_file_name", "expires_at"]


async def _value(result: Any) -> Any:
    """A store call's value: awaited on the async store, as is from a sync journal."""
    return await result if inspect.isawaitable(result) else result

_EXTENSIONS = (".mp4", ".webm", ".mov")


def expires_at(provider: Any, finished: datetime | None = None) -> datetime | None:
    """When the provider's documented retention of a finished result ends (UTC), or ``None`` if it
    documents none. ``finished`` defaults to now: for a job seen finished only after a resume, the real
    end may be earlier, so this is the latest the clip can be expected to last."""
    retention = getattr(provider, "result_retention_s", None)
    if retention is None:
        return None
    return (finished or datetime.now(UTC)) + timedelta(seconds=float(retention))


def clip_file_name(clip_key: str, video_url: str, output_format: str | None = None) -> str:
    """``<clip key>.<ext>``: the extension from the URL when it names one, else the requested format."""
    suffix = PurePosixPath(urlsplit(video_url).path).suffix.lower()
    if suffix not in _EXTENSIONS:
        suffix = "." + (output_format or "MP4").lower()
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in clip_key)[:100] or "clip"
    return safe + suffix


class Delivery:
    """Adds expiry and, when wanted, the downloaded and verified clip to each finished job's result.

    Args:
        journal: where download facts are recorded (``None``: nowhere).
        request: the clip's request (``None``: read it from the journal by clip key, as when resuming).
        keep_dir: download every finished clip into this folder as ``<clip key>.<ext>``.
        verify_now: download and verify even without ``keep_dir`` (``Route.failover_on_defective``).
        fetch: downloads a URL to a path (the gateway's ``gateway.media.download.adownload`` over its
            transport, clock and local-URL rule); needed when ``keep_dir`` or ``verify_now`` is set.
        emulated: every vendor is emulated: the result says so from the start (``OviResult.emulated``),
            instead of the gateway copying each result to mark it.
    """

    __slots__ = ("emulated", "fetch", "journal", "keep_dir", "request", "verify_now")

    def __init__(self, *, journal: Any = None, request: OviRequest | None = None, keep_dir: Path | None = None,
                 verify_now: bool = False, fetch: Callable[[str, Path], Awaitable[Path]] | None = None,
                 emulated: bool = False) -> None:
        self.journal = journal
        self.request = request
        self.keep_dir = keep_dir
        self.verify_now = verify_now and fetch is not None
        self.fetch = fetch
        self.emulated = emulated

    async def __call__(self, job: Any, output: ProviderOutput) -> dict[str, Any]:
        fps, fmt = ((self.request.fps, self.request.output_format) if self.request is not None
                    else await self._journaled_request(job.clip_key))
        fields: dict[str, Any] = {"expires_at": expires_at(job.provider), "fps": fps}
        if self.emulated:
            fields["emulated"] = True
        if self.fetch is None or (self.keep_dir is None and not self.verify_now):
            return fields
        url, name = output.video_url, clip_file_name(job.clip_key, output.video_url, fmt)
        with tempfile.TemporaryDirectory(prefix="ovi-verify-") as scratch:
            try:
                saved = await self.fetch(url, (self.keep_dir or Path(scratch)) / name)
            except (DownloadFailed, httpx.HTTPError, OSError):
                return fields  # not a verdict on the clip: it stays "not downloaded" for a later try
            kept = saved if self.keep_dir is not None else None
            try:  # PyAV blocks: probe in a worker thread
                facts = await asyncio.to_thread(verify, saved, fps=fps, url=url, provider=job.name,
                                                job_id=job.handle.job_id)
            except DefectiveClip as error:
                if self.keep_dir is not None:  # paid for: keep it, but never under the good clip's name
                    kept = defective_path(saved)
                    os.replace(saved, kept)
                    error.saved_to = str(kept)
                await self.record(job.clip_key, job.name, job.handle.job_id, url, kept, error.facts)
                raise
        await self.record(job.clip_key, job.name, job.handle.job_id, url, kept, facts)
        return {**fields, "media": facts, "saved_to": None if kept is None else str(kept)}

    async def record(self, clip_key: str, provider: str, job_id: str, url: str, saved: Path | None,
                     facts: MediaFacts | None) -> None:
        """Put one download's facts in the journal (if there is one and it keeps media facts), through its
        async store when it has one."""
        if facts is None:
            return
        recorder = getattr(self._store(), "record_download", None) or getattr(self.journal, "record_download", None)
        if recorder is not None:
            await _value(recorder(clip_key=clip_key, provider=provider, job_id=job_id, video_url=url,
                                  saved_to=None if saved is None else str(saved), facts=facts))

    def _store(self) -> Any:
        """The journal's async store (``Journal.async_store``), if it has one."""
        return getattr(self.journal, "async_store", None)

    async def _journaled_request(self, clip_key: str) -> tuple[int | None, str | None]:
        """The journaled request's ``fps`` and ``output_format`` (read as JSON, not re-validated: a local
        image file named there may be gone by the time a job is resumed)."""
        getter = getattr(self._store(), "get_clip", None) or getattr(self.journal, "get_clip", None)
        clip = await _value(getter(clip_key)) if getter is not None else None
        try:
            data = json.loads(clip.request_json) if clip is not None else {}
        except ValueError:
            data = {}
        fps, fmt = (data.get("fps"), data.get("output_format")) if isinstance(data, dict) else (None, None)
        return (fps if isinstance(fps, int) else None), (fmt if isinstance(fmt, str) else None)
