"""``GET /v1/videos/{id}/content``: the verified clip, from the media directory or fetched from the
vendor while its URL lives (then kept), and when it stops being downloadable (``expires_at``)."""

from __future__ import annotations

import asyncio
import os
import uuid
from pathlib import Path
from typing import Any

import httpx
from starlette.requests import Request
from starlette.responses import FileResponse, Response

from gateway.errors import DefectiveClip, DownloadFailed
from gateway.jobs.handles import JobView
from gateway.media.verify import verify
from gateway.server.config import ServerConfig
from gateway.server.shapes import error, expired, not_found
from gateway.server.store import VideoRow, VideoStore

__all__ = ["ContentRoutes"]


class ContentRoutes:
    """The content route and the clip's lifetime, mixed into ``VideoServer`` (which sets these)."""

    gateway: Any
    config: ServerConfig
    store: VideoStore

    async def _view(self, row: VideoRow) -> JobView | None:
        raise NotImplementedError

    async def content(self, request: Request, owner: str) -> Response:
        row = self.store.get(owner, request.path_params["video_id"])
        if row is None:
            return not_found(request)
        variant = request.query_params.get("variant", "video")
        if variant != "video":
            return error(400, f"variant {variant!r} is not available: Ovi clips have only the video",
                         param="variant", code="unsupported_value")
        view = await self._view(row)
        if view is None or view.state != "succeeded" or view.result is None:
            state = view.state if view else "unknown"
            return error(409, f"video {row.id} is {state}; its content exists once it is completed",
                         code="video_not_ready")
        path = self._stored(row)
        if not path.exists():  # no stored copy: fetch the vendor's while its URL lives, verify, keep it
            expires = self._expires_at(row, view)
            if expires is not None and self.config.wall() >= expires:
                return expired(row, f"its vendor's copy expired at {expires} (Unix s)")
            try:
                await self._fetch(view.result.video_url, path, provider=view.provider, job_id=view.vendor_job_id)
            except DefectiveClip as defect:
                return error(502, defect.message, type="server_error", code="defective_clip",
                             headers={"x-should-retry": "false"})
            except DownloadFailed as failure:
                if failure.reason == "http" and failure.status_code in (403, 404, 410):
                    return expired(row, f"its vendor no longer serves it (HTTP {failure.status_code})")
                return error(502, f"the vendor's copy of video {row.id} could not be fetched now "
                             f"({failure.reason}); try again", type="server_error", code="content_unavailable")
        return FileResponse(path, media_type="video/mp4")

    def _stored(self, row: VideoRow) -> Path:
        return self.config.media_dir / f"{row.id}.mp4"

    def _expires_at(self, row: VideoRow, view: JobView | None) -> int | None:
        """When the clip stops being downloadable (Unix s): ``None`` while this server holds a copy (kept
        until DELETE) or when the vendor documents no lifetime for its clip URLs (the provider's
        ``media_url_lifetime_s``); else the video's creation plus that lifetime — counted from our
        create, before the vendor's, so it never claims a clip is alive when the vendor's has gone."""
        if view is None or view.result is None or self._stored(row).exists():
            return None
        lifetime = getattr(self.gateway.classes.get(view.result.provider), "media_url_lifetime_s", None)
        return None if lifetime is None else int(row.created_at + float(lifetime))

    async def _fetch(self, url: str, path: Path, *, provider: str | None, job_id: str | None) -> None:
        """Copy the vendor's clip into the media directory through the safe downloader (https and public
        addresses only, every redirect re-checked, size and decompression bounded, video magic required,
        bounded on the gateway's clock) to a temporary name, probe it with ``gateway.media.verify``, then
        rename it into place: a defective clip is never served."""
        from gateway.media.download import afetch

        part = path.with_name(f".{path.name}.{uuid.uuid4().hex}.part")
        try:
            async with httpx.AsyncClient(transport=self.gateway.transport,
                                         timeout=httpx.Timeout(120.0, connect=10.0)) as http:
                await afetch(url, part, client=http, clock=self.gateway.clock,
                             allow_local=self.gateway.allow_local_media)
            await asyncio.to_thread(verify, part, url=url, provider=provider, job_id=job_id)
        except BaseException:
            part.unlink(missing_ok=True)
            raise
        os.replace(part, path)
