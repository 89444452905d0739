"""The README's main command ends in a real clip: ``ovi-gateway demo`` writes H.264 video with AAC audio,
5 s at 24 fps, showing the sample image (probed here with PyAV, as ffprobe would)."""

from __future__ import annotations

import io
from pathlib import Path

import av
import pytest
from click.testing import CliRunner

from gateway.cli import commands as cli


@pytest.fixture(autouse=True)
def offline(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("RUNWARE_API_KEY", "FAL_KEY", "WAVESPEED_API_KEY", "OVI_GATEWAY_PRICES"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("COLUMNS", "250")
    monkeypatch.setenv(cli.JOB_SECONDS_ENV, "0.05")


def test_demo_writes_a_playable_clip_with_audio(tmp_path: Path) -> None:
    out = tmp_path / "ovi-demo.mp4"
    result = CliRunner().invoke(cli.cli, ["demo", "--out", str(out)], catch_exceptions=False)
    assert result.exit_code == 0, result.stderr
    data = out.read_bytes()
    with av.open(io.BytesIO(data)) as container:
        assert container.format.name.startswith("mov,mp4")
        video, audio = container.streams.video[0], container.streams.audio[0]
        assert (video.codec_context.name, audio.codec_context.name) == ("h264", "aac")
        assert video.average_rate == 24 and abs(container.duration / 1e6 - 5.0) <= 0.25
        frames = list(container.decode(video=0))
    assert len(frames) == 121
    # the sample image (a grey and white checker) fills the middle of the frame, not the test card
    middle = frames[60].reformat(format="rgb24")
    row = bytes(middle.planes[0])[64 * middle.planes[0].line_size:][:3 * middle.width]
    assert set(row[:3 * 60]) == {0}  # letterbox
    assert min(row[3 * 130:3 * 360]) > 150  # grey/white, not the test card's colours
