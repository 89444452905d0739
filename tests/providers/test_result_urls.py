"""Every adapter's parse refuses a video URL that cannot be a clip (file://, other schemes, junk), at
parse time, as MalformedResponse on a possibly billed job — through the one core check in ProviderOutput."""

from __future__ import annotations

import httpx
import pytest
from pydantic import SecretStr

from gateway.contract import JobHandle, ProviderContext, ProviderOutput
from gateway.errors import MalformedResponse
from providers.fal import FalProvider
from providers.runware import RunwareProvider
from providers.wavespeed import WaveSpeedProvider

TASK = "0f8e7d6c-5b4a-4392-8170-6f5e4d3c2b1a"


def _bodies(url: object) -> list[tuple[type, object, JobHandle]]:
    return [
        (FalProvider, {"video": {"url": url}}, JobHandle("fal", "req-1", {})),
        (RunwareProvider, {"data": [{"taskType": "videoInference", "taskUUID": TASK, "status": "success",
                                     "videoUUID": TASK, "videoURL": url}]}, JobHandle("runware", TASK, {})),
        (WaveSpeedProvider, {"code": 200, "message": "success", "data": {
            "id": "t1", "model": "character-ai/ovi/image-to-video", "status": "completed", "outputs": [url],
            "urls": {"get": "https://api.wavespeed.ai/api/v3/predictions/t1/result"}, "created_at": "2025-01-01",
            "error": "", "has_nsfw_contents": [False]}}, JobHandle("wavespeed", "t1", {})),
    ]


@pytest.mark.parametrize("url", ["file:///etc/passwd", "ftp://cdn.example.com/o.mp4", "javascript:alert(1)",
                                 "not a url", "https://", "//cdn.example.com/o.mp4", "https://u:p@cdn.example.com/o",
                                 "data:text/html;base64,PGI+", "https://cdn.example.com/a\\@evil/o.mp4"])
@pytest.mark.parametrize("index", [0, 1, 2])
def test_parse_refuses_unusable_video_urls(url: str, index: int) -> None:
    cls, body, handle = _bodies(url)[index]
    provider = cls(ProviderContext(api_key=SecretStr("k" * 12), http=httpx.AsyncClient()))
    with pytest.raises(MalformedResponse) as caught:
        provider.parse(body, handle)
    assert caught.value.may_be_billed


@pytest.mark.parametrize("index", [0, 1, 2])
def test_parse_accepts_ordinary_https_urls(index: int) -> None:
    cls, body, handle = _bodies("https://cdn.example.com/out/clip.mp4?sig=abc")[index]
    provider = cls(ProviderContext(api_key=SecretStr("k" * 12), http=httpx.AsyncClient()))
    assert provider.parse(body, handle).video_url == "https://cdn.example.com/out/clip.mp4?sig=abc"


def test_inline_data_uri_video_and_loopback_emulator_urls_pass_the_parse() -> None:
    assert ProviderOutput(video_url="data:video/mp4;base64,AAAAGGZ0eXBtcDQy").video_url.startswith("data:")
    # Whether http:// and loopback may be fetched is the downloader's call (an explicit gateway flag).
    assert ProviderOutput(video_url="http://127.0.0.1:8123/v.mp4").video_url
