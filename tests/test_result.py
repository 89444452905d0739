"""OviResult.download: streamed to a temporary file, size-checked, renamed into place."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import httpx
import pytest

from gateway import OviResult, Timings
from gateway.emulator.clips import ClipStore
from gateway.errors import DownloadFailed

CLIP = ClipStore.asset("mp4")  # a real clip: download() verifies what it saved


def _result() -> OviResult:
    return OviResult(provider="fal", job_id="j1", video_url="https://v3.fal.media/files/x.mp4",
                     timings=Timings(total_s=1.0))


def _client(status: int = 200, body: bytes = CLIP, length: int | None = None) -> httpx.Client:
    headers = {"content-type": "video/mp4", "content-length": str(len(body) if length is None else length)}
    return httpx.Client(transport=httpx.MockTransport(lambda request: httpx.Response(status, content=body,
                                                                                      headers=headers)))


def test_download_writes_the_whole_clip_with_normal_permissions(tmp_path: Path) -> None:
    target = tmp_path / "out" / "clip.mp4"
    with _client() as client:
        assert _result().download(target, client=client, chunk_size=1000) == target
    assert target.read_bytes() == CLIP
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(target.stat().st_mode) == 0o666 & ~umask
    assert [p.name for p in target.parent.iterdir()] == ["clip.mp4"]


def test_a_short_download_leaves_no_file(tmp_path: Path) -> None:
    target = tmp_path / "clip.mp4"
    with _client(length=len(CLIP) + 10) as client, pytest.raises(DownloadFailed, match="stopped at"):
        _result().download(target, client=client)
    assert list(tmp_path.iterdir()) == []


def test_an_http_error_leaves_no_file_and_keeps_an_older_one(tmp_path: Path) -> None:
    target = tmp_path / "clip.mp4"
    target.write_bytes(b"older clip")
    with _client(status=404, body=b"gone") as client, pytest.raises(DownloadFailed, match="HTTP 404"):
        _result().download(target, client=client)
    assert target.read_bytes() == b"older clip"
    assert [p.name for p in tmp_path.iterdir()] == ["clip.mp4"]
