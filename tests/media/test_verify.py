"""gateway.media.verify: a downloaded clip is probed with PyAV before it counts as a success."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from gateway.emulator.clips import ClipStore
from gateway.emulator.render import ClipSpec, encode_clip
from gateway.errors import DefectiveClip
from gateway.media.verify import NOT_VERIFIED, probe, verify


def _file(tmp_path: Path, data: bytes, name: str = "clip.mp4") -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


@pytest.mark.parametrize(("fmt", "video", "audio"), [("mp4", "h264", "aac"), ("mov", "h264", "aac"),
                                                     ("webm", "vp9", "opus")])
def test_a_good_clip_passes_with_its_facts(tmp_path: Path, fmt: str, video: str, audio: str) -> None:
    data = ClipStore.asset(fmt)
    facts = verify(_file(tmp_path, data, f"clip.{fmt}"))
    assert facts.ok and facts.verified and facts.problems == [] and facts.warnings == []
    assert (facts.video_codec, facts.audio_codec, facts.fps, facts.frames) == (video, audio, 24.0, 121)
    assert (facts.width, facts.height, facts.size_bytes) == (512, 256, len(data))
    assert facts.duration_s is not None and abs(facts.duration_s - 5.042) < 0.01
    assert facts.audio_s is not None and facts.audio_s > 4.9
    import hashlib
    assert facts.sha256 == hashlib.sha256(data).hexdigest()


@pytest.mark.parametrize(("data", "problem"), [
    (ClipStore.asset("mp4", "noaudio"), "no audio stream"),
    (ClipStore.asset("webm", "noaudio"), "no audio stream"),
    (ClipStore.asset("mp4", "short"), "video lasts 2.00 s (48 frames), not 5 ± 0.25 s"),
    (ClipStore.asset("mp4")[:len(ClipStore.asset("mp4")) * 4 // 10], "the container does not parse"),
    (b"", "the container does not parse"),
    (b"\x00\x00\x00\x18ftypmp42\x00\x00\x00\x00mp42isom" + b"\x00" * 1000, "the container does not parse"),
])
def test_a_defective_clip_is_refused_naming_what_is_wrong(tmp_path: Path, data: bytes, problem: str) -> None:
    path = _file(tmp_path, data)
    with pytest.raises(DefectiveClip) as caught:
        verify(path, url="https://cdn.example/x.mp4", provider="fal", job_id="job-1")
    error = caught.value
    assert any(p.startswith(problem) for p in error.problems), error.problems
    assert problem in str(error) and "job-1" in str(error)
    assert error.may_be_billed and not error.failover and not error.retryable
    assert (error.video_url, error.job_id, error.provider) == ("https://cdn.example/x.mp4", "job-1", "fal")
    assert error.facts.size_bytes == len(data) and not error.facts.ok


def test_a_truncated_webm_is_cut_short(tmp_path: Path) -> None:
    data = ClipStore.asset("webm")
    facts = probe(_file(tmp_path, data[:len(data) // 2], "clip.webm"))
    assert facts.problems and not facts.ok
    assert facts.frames is not None and facts.frames < 121


def test_the_requested_frame_rate_is_checked(tmp_path: Path) -> None:
    at_24 = _file(tmp_path, ClipStore.asset("mp4"))
    with pytest.raises(DefectiveClip, match=r"video runs at 24\.0 fps, not the 30 fps asked for"):
        verify(at_24, fps=30)
    at_30 = _file(tmp_path, ClipStore().clip("mp4", "ok", 30), "thirty.mp4")
    facts = verify(at_30, fps=30)
    assert facts.ok and facts.fps == 30.0 and facts.frames == 151


def test_at_another_frame_rate_a_duration_off_five_seconds_only_warns(tmp_path: Path) -> None:
    short_at_30 = _file(tmp_path, encode_clip(ClipSpec("mp4", "short", 30)))
    facts = verify(short_at_30, fps=30)
    assert facts.ok and facts.problems == []
    assert facts.warnings and "video lasts 2.00 s" in facts.warnings[0] and "at 30 fps" in facts.warnings[0]
    with pytest.raises(DefectiveClip, match="no audio"):  # audio is still required there
        verify(_file(tmp_path, encode_clip(ClipSpec("mp4", "noaudio", 30)), "n.mp4"), fps=30)


def test_without_pyav_the_clip_is_plainly_not_verified(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "av", None)  # import av -> ImportError
    garbage = _file(tmp_path, b"not a video at all")
    facts = verify(garbage)  # nothing can be checked, so nothing is refused
    assert not facts.verified and not facts.ok and facts.size_bytes == 18
    assert facts.warnings == [NOT_VERIFIED] and "not verified" in facts.summary()
    assert facts.video_codec is None and facts.duration_s is None
