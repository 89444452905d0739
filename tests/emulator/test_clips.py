"""The emulator's clips are real media: every vendor, every format, the defective fates, and rendering
the request's own image (lazily, cached, never by default)."""

from __future__ import annotations

import base64
import io
from pathlib import Path

import av
import httpx
import pytest

from gateway import Gateway, OviRequest, Route
from gateway.clock import VirtualClock
from gateway.emulator import Emulator
from gateway.emulator.clips import ClipStore, asset_name
from gateway.emulator.render import CONTAINERS, VARIANTS
from tests.conftest import PNG_BYTES

pytestmark = pytest.mark.anyio

PROMPT = "A knight in the rain. <S>I will defend this land.<E> <AUDCAP>Thunder, war drums.<ENDAUDCAP>"
# 16x16 solid red PNG: a rendered clip's middle must come out red
RED_PNG = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAABAAAAAQCAIAAACQkWg2AAAAF0lEQVR4nGP4z8BAEiJN9aiGUQ1DSgMAkPn/Afnh+ngAAAAASUVORK5CYII=")


def facts(data: bytes) -> dict[str, object]:
    """What ffprobe would say: container, codecs, frame rate, video frames (packets), audio."""
    with av.open(io.BytesIO(data)) as container:
        video = container.streams.video[0]
        audio = container.streams.audio[0] if container.streams.audio else None
        frames = sum(1 for packet in container.demux(video) if packet.size)
        return {"format": container.format.name, "video": video.codec_context.name, "fps": float(video.average_rate),
                "frames": frames, "size": (video.width, video.height),
                "audio": audio.codec_context.name if audio else None}


def _clip(vendor: str, fate: str = "ok", *, render: bool = False, image: bytes = PNG_BYTES,
          **fields: object) -> tuple[bytes, httpx.Response, Emulator]:
    clock = VirtualClock()
    emulator = Emulator(clock=clock, faults=f"{vendor}.job={fate}", render_media=render)
    gateway = Gateway(emulator=emulator, clock=clock, journal=None)
    request = OviRequest(prompt=PROMPT, image="data:image/png;base64," + base64.b64encode(image).decode(), **fields)
    result = gateway.generate(request, route=Route(provider=vendor))
    with httpx.Client(transport=emulator.transport()) as http:
        response = http.get(result.video_url)
    return response.content, response, emulator


@pytest.mark.parametrize("vendor", ["runware", "fal", "wavespeed"])
def test_every_vendor_serves_a_real_h264_aac_clip_of_121_frames_at_24_fps(vendor: str) -> None:
    data, response, _ = _clip(vendor)
    assert response.headers["content-type"] == "video/mp4"
    assert int(response.headers["content-length"]) == len(data) and 5_000 < len(data) < 60_000
    assert facts(data) == {"format": "mov,mp4,m4a,3gp,3g2,mj2", "video": "h264", "fps": 24.0, "frames": 121,
                           "size": (512, 256), "audio": "aac"}


@pytest.mark.parametrize(("fmt", "video", "audio", "mime"), [("WEBM", "vp9", "opus", "video/webm"),
                                                             ("MOV", "h264", "aac", "video/quicktime")])
def test_runware_serves_real_webm_and_mov(fmt: str, video: str, audio: str, mime: str) -> None:
    data, response, _ = _clip("runware", output_format=fmt)
    assert response.headers["content-type"] == mime
    probed = facts(data)
    assert (probed["video"], probed["audio"], probed["frames"], probed["fps"]) == (video, audio, 121, 24.0)


def test_defective_fates_serve_broken_successes() -> None:
    noaudio, _, _ = _clip("fal", "noaudio")
    assert facts(noaudio)["audio"] is None and facts(noaudio)["frames"] == 121
    short, _, _ = _clip("wavespeed", "short")
    assert facts(short)["frames"] == 48 and facts(short)["audio"] == "aac"
    truncated, response, emulator = _clip("runware", "truncated")
    assert len(truncated) == int(len(ClipStore.asset("mp4")) * 0.4) == int(response.headers["content-length"])
    with pytest.raises(av.FFmpegError):  # "moov atom not found": the bug this issue opened with
        facts(truncated)
    assert len(emulator.ledger.billable("runware")) == 1  # the vendor called it a success, and billed it


def test_packaged_clips_are_served_without_encoding_anything() -> None:
    before = ClipStore.renders
    for vendor in ("runware", "fal", "wavespeed"):
        _clip(vendor)
    _clip("runware", output_format="WEBM")
    assert ClipStore.renders == before


def test_rendering_shows_the_request_image_once_per_image_hash() -> None:
    before = ClipStore.renders
    data, _, _ = _clip("runware", render=True, image=RED_PNG)
    with av.open(io.BytesIO(data)) as container:
        frame = next(container.decode(video=0)).reformat(format="rgb24")
    plane = frame.planes[0]
    middle = bytes(plane)[128 * plane.line_size + 3 * 256:128 * plane.line_size + 3 * 256 + 3]
    red, green, blue = middle
    assert red > 200 and green < 60 and blue < 60, middle
    again, _, _ = _clip("fal", render=True, image=RED_PNG)
    assert again == data and ClipStore.renders in (before, before + 1)  # cached (or already, by hash)
    other, _, _ = _clip("runware", render=True, image=PNG_BYTES)
    assert other != data


def test_a_requested_frame_rate_is_honoured_in_the_clip() -> None:
    data, _, _ = _clip("runware", fps=30)
    probed = facts(data)
    assert probed["fps"] == 30.0 and probed["frames"] == 151 and probed["audio"] == "aac"


def test_packaged_assets_match_the_manifest() -> None:
    import hashlib
    import json

    folder = Path(__file__).resolve().parents[2] / "gateway" / "emulator" / "media"
    manifest = json.loads((folder / "MANIFEST.json").read_text())
    expected = {asset_name(fmt, variant) for fmt in CONTAINERS for variant in VARIANTS}
    assert set(manifest["files"]) == expected
    for name, entry in manifest["files"].items():
        data = (folder / name).read_bytes()
        assert len(data) == entry["bytes"] < 30_000 and hashlib.sha256(data).hexdigest() == entry["sha256"]


@pytest.mark.slow
def test_the_generator_script_reproduces_the_packaged_assets(tmp_path: Path) -> None:
    import importlib.util
    import json

    root = Path(__file__).resolve().parents[2]
    spec = importlib.util.spec_from_file_location("make_emulator_media", root / "scripts" / "make_emulator_media.py")
    assert spec is not None and spec.loader is not None
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    fresh = script.build(tmp_path)
    packaged = json.loads((root / "gateway" / "emulator" / "media" / "MANIFEST.json").read_text())
    for name in packaged["files"]:
        made = (tmp_path / name).read_bytes()
        assert facts(made) == facts((root / "gateway" / "emulator" / "media" / name).read_bytes()), name
        if fresh["av"] == packaged["av"]:  # same bundled encoders: the same bytes
            assert fresh["files"][name] == packaged["files"][name], name
