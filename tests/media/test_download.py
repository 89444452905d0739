"""Safe, bounded downloads (gateway/media/download.py): scheme and address rules on every hop, bounded
inflation and size, video sniffing, and a time bound that a byte-trickle cannot outlast (virtual time)."""

from __future__ import annotations

import gzip
import hashlib
import zlib
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import httpx
import pytest

from gateway import Gateway
from gateway.clock import VirtualClock
from gateway.emulator import Emulator
from gateway.emulator.clips import ClipStore
from gateway.errors import DownloadFailed
from gateway.media.download import afetch, download, fetch, sniff_video

pytestmark = pytest.mark.anyio

CLIP = ClipStore.asset("mp4")  # a real clip: result.download() also verifies what it saved
URL = "https://v3.fal.media/files/x.mp4"


class Chunks(httpx.SyncByteStream, httpx.AsyncByteStream):
    """A body streamed in pieces (not read up front, as ``content=`` bodies are), optionally paced."""

    def __init__(self, pieces: list[bytes], pace: Callable[[], None] | None = None,
                 apace: Callable[[], object] | None = None) -> None:
        self.pieces, self.pace, self.apace = pieces, pace, apace
        self.sent = 0

    def __iter__(self) -> Iterator[bytes]:
        for piece in self.pieces:
            if self.pace:
                self.pace()
            self.sent += len(piece)
            yield piece

    async def __aiter__(self) -> AsyncIterator[bytes]:
        for piece in self.pieces:
            if self.apace:
                await self.apace()  # type: ignore[misc]
            self.sent += len(piece)
            yield piece


def _client(handler: Callable[[httpx.Request], httpx.Response]) -> httpx.Client:
    return httpx.Client(transport=httpx.MockTransport(handler))


def _ok(body: bytes = CLIP, **headers: str) -> Callable[[httpx.Request], httpx.Response]:
    named = {name.replace("_", "-"): value for name, value in headers.items()}
    return lambda request: httpx.Response(200, headers={"content-type": "video/mp4", **named},
                                          stream=Chunks([body[i:i + 4096] for i in range(0, len(body), 4096)]))


def test_a_clip_streams_to_disk_with_its_facts(tmp_path: Path) -> None:
    with _client(_ok(content_length=str(len(CLIP)))) as client:
        got = fetch(URL, tmp_path / "c.mp4", client=client)
    assert got.path.read_bytes() == CLIP
    assert (got.sha256, got.size, got.container) == (hashlib.sha256(CLIP).hexdigest(), len(CLIP), "mp4")
    assert download(URL, tmp_path / "d.mp4", client=_client(_ok())) == tmp_path / "d.mp4"


def test_an_honest_gzip_response_is_inflated_and_its_wire_length_checked(tmp_path: Path) -> None:
    packed = gzip.compress(CLIP)
    with _client(_ok(packed, content_encoding="gzip", content_length=str(len(packed)))) as client:
        got = fetch(URL, tmp_path / "c.mp4", client=client)
    assert got.path.read_bytes() == CLIP
    deflated = zlib.compress(CLIP)
    with _client(_ok(deflated, content_encoding="deflate")) as client:
        assert fetch(URL, tmp_path / "d.mp4", client=client).size == len(CLIP)


def test_a_gzip_bomb_stops_at_the_cap_while_streaming(tmp_path: Path) -> None:
    bomb = gzip.compress(CLIP[:32] + b"\x00" * (64 << 20), compresslevel=9)  # ~64 KB on the wire, 64 MiB inflated
    stream = Chunks([bomb[i:i + 1024] for i in range(0, len(bomb), 1024)])
    handler = lambda request: httpx.Response(200, headers={"content-encoding": "gzip"}, stream=stream)  # noqa: E731
    with _client(handler) as client, pytest.raises(DownloadFailed, match="cap") as caught:
        fetch(URL, tmp_path / "c.mp4", client=client, max_bytes=1 << 20)
    assert caught.value.reason == "too-large"
    assert stream.sent < len(bomb) // 4  # stopped early: most of the bomb was never even read
    assert list(tmp_path.iterdir()) == []


def test_a_plain_body_over_the_cap_is_refused_and_leaves_nothing(tmp_path: Path) -> None:
    with _client(_ok(CLIP * 10)) as client, pytest.raises(DownloadFailed, match="cap"):
        fetch(URL, tmp_path / "c.mp4", client=client, max_bytes=len(CLIP))
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("body", [b"<html><body>Access denied</body></html>", b'{"error": "expired"}', b"ftyp"])
def test_a_body_that_is_no_video_is_an_error(tmp_path: Path, body: bytes) -> None:
    with _client(_ok(body)) as client, pytest.raises(DownloadFailed) as caught:
        fetch(URL, tmp_path / "c.mp4", client=client)
    assert caught.value.reason == "not-video"
    assert list(tmp_path.iterdir()) == []


def test_sniffing_knows_mp4_mov_and_webm() -> None:
    assert sniff_video(CLIP[:12]) == "mp4"
    assert sniff_video(b"\x00\x00\x00\x14ftypqt  ") == "mov"
    assert sniff_video(b"\x00\x00\x00\x08wide\x00\x00\x00\x00") == "mov"
    assert sniff_video(b"\x1a\x45\xdf\xa3\x9f\x42\x86\x81\x01\x42\xf7\x81") == "webm"
    assert sniff_video(b"GIF89a......") is None


@pytest.mark.parametrize("url", ["http://v3.fal.media/x.mp4", "file:///etc/passwd", "ftp://v3.fal.media/x.mp4",
                                 "https://127.0.0.1/x.mp4", "https://169.254.169.254/latest/meta-data",
                                 "https://[::ffff:127.0.0.1]/x.mp4", "https://user:pw@v3.fal.media/x.mp4",
                                 "https://localhost/x.mp4"])
def test_refused_urls_never_reach_the_transport(tmp_path: Path, url: str) -> None:
    seen: list[httpx.Request] = []
    with _client(lambda r: seen.append(r) or _ok()(r)) as client, pytest.raises(DownloadFailed) as caught:
        fetch(url, tmp_path / "c.mp4", client=client)
    assert caught.value.reason == "refused"
    assert seen == []


@pytest.mark.parametrize("target", ["http://169.254.169.254/latest/meta-data", "https://127.0.0.1:8080/admin",
                                    "http://v3.fal.media/x.mp4", "https://10.0.0.7/x.mp4", "file:///etc/passwd"])
def test_every_redirect_target_is_checked_again(tmp_path: Path, target: str) -> None:
    seen: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(str(request.url))
        return httpx.Response(302, headers={"location": target})

    with _client(handler) as client, pytest.raises(DownloadFailed, match="refusing") as caught:
        fetch(URL, tmp_path / "c.mp4", client=client)
    assert caught.value.reason == "refused"
    assert seen == [URL]


def test_a_public_redirect_is_followed_and_too_many_are_refused(tmp_path: Path) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/final.mp4":
            return _ok()(request)
        return httpx.Response(302, headers={"location": "https://cdn.example.com/final.mp4"})

    with _client(handler) as client:
        assert fetch(URL, tmp_path / "c.mp4", client=client).url == "https://cdn.example.com/final.mp4"
    loop = lambda request: httpx.Response(302, headers={"location": "/again"})  # noqa: E731
    with _client(loop) as client, pytest.raises(DownloadFailed, match="redirects"):
        fetch(URL, tmp_path / "d.mp4", client=client)


def test_the_emulator_flag_admits_http_loopback_and_nothing_infers_it(tmp_path: Path) -> None:
    with _client(_ok()) as client:
        assert fetch("http://127.0.0.1:8123/v.mp4", tmp_path / "c.mp4", client=client, allow_local=True).size
        with pytest.raises(DownloadFailed, match="refusing"):
            fetch("http://127.0.0.1:8123/v.mp4", tmp_path / "d.mp4", client=client)


def test_a_gateway_on_real_vendors_refuses_loopback_media_and_an_emulated_one_downloads(tmp_path: Path) -> None:
    from gateway import OviResult, Timings

    result = OviResult(provider="fal", job_id="j", video_url="http://127.0.0.1:9/v.mp4", timings=Timings(total_s=1))
    real = Gateway(transport=httpx.MockTransport(_ok()), journal=None, keys={"fal": "k" * 10})
    with pytest.raises(DownloadFailed, match="refusing"):
        real.download(result, tmp_path / "c.mp4")
    flagged = Gateway(transport=httpx.MockTransport(_ok()), journal=None, keys={"fal": "k" * 10},
                      allow_local_media=True)
    assert flagged.download(result, tmp_path / "c.mp4").read_bytes() == CLIP
    assert not real.allow_local_media and flagged.allow_local_media
    assert Gateway(emulator=Emulator(), journal=None).allow_local_media


def test_an_inline_data_uri_video_is_written_and_checked(tmp_path: Path) -> None:
    import base64

    uri = "data:video/mp4;base64," + base64.b64encode(CLIP).decode()
    assert fetch(uri, tmp_path / "c.mp4").path.read_bytes() == CLIP
    with pytest.raises(DownloadFailed) as caught:
        fetch("data:video/mp4;base64," + base64.b64encode(b"<html>nope</html>").decode(), tmp_path / "d.mp4")
    assert caught.value.reason == "not-video"


# ---- time bounds: a vendor trickling one byte a second ----------------------------------------------------

def test_sync_download_is_bounded_by_its_timeout_against_a_byte_trickle(tmp_path: Path) -> None:
    clock = VirtualClock()
    stream = Chunks([CLIP[:12]] + [bytes([b]) for b in CLIP[12:200]], pace=lambda: clock.advance(1.0))
    handler = lambda request: httpx.Response(200, stream=stream)  # noqa: E731
    with _client(handler) as client, pytest.raises(DownloadFailed, match="longer than 5 s") as caught:
        fetch(URL, tmp_path / "c.mp4", client=client, timeout=5, clock=clock)
    assert caught.value.reason == "timeout"
    assert clock.now() <= 7.0 and stream.sent < 30
    assert list(tmp_path.iterdir()) == []


async def test_async_download_is_bounded_in_virtual_time_against_a_byte_trickle(tmp_path: Path) -> None:
    clock = VirtualClock()
    stream = Chunks([CLIP[:12]] + [bytes([b]) for b in CLIP[12:200]], apace=lambda: clock.sleep(1.0))
    async with httpx.AsyncClient(transport=httpx.MockTransport(lambda r: httpx.Response(200, stream=stream))) as c:
        with pytest.raises(DownloadFailed, match="longer than 5 s") as caught:
            await afetch(URL, tmp_path / "c.mp4", client=c, timeout=5, clock=clock)
    assert caught.value.reason == "timeout"
    assert clock.now() == 5.0 and stream.sent <= 17
    assert list(tmp_path.iterdir()) == []


async def test_gateway_adownload_bounds_a_slow_emulated_clip_on_the_gateway_clock(tmp_path: Path) -> None:
    clock = VirtualClock()
    emulator = Emulator(clock=clock, seed=5)
    gateway = Gateway(emulator=emulator, clock=clock, journal=None)
    from gateway import OviRequest

    result = await gateway.agenerate(OviRequest(prompt="A knight. <S>Hold.<E>", image="https://example.com/k.png"),
                                     provider="fal")
    got = await gateway.adownload(result, tmp_path / "c.mp4")
    assert got.container == "mp4" and got.path.exists()
    await gateway.aclose()


def test_plain_http_base_urls_need_the_explicit_emulator_flag() -> None:
    from gateway.errors import ConfigurationError

    with pytest.raises(ConfigurationError, match="clear text"):
        Gateway(journal=None, keys={"runware": "k" * 10}, base_urls={"runware": "http://127.0.0.1:8123/v1"})
    flagged = Gateway(journal=None, keys={"runware": "k" * 10}, base_urls={"runware": "http://127.0.0.1:8123/v1"},
                      allow_local_media=True)
    assert flagged.allow_local_media
