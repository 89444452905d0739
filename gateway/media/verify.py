"""Is a downloaded clip really an Ovi clip? Probe it with PyAV before calling it a success.

Ovi makes 5 s at 24 fps with sound (121 frames; reference/providers.md §4.1), and vendors do hand back
broken successes (an empty file, a cut download, a clip without audio). ``verify(path, fps=...)``
checks, in this order:

1. the container parses (PyAV opens it and reads every packet);
2. a video stream exists, and its first frame decodes;
3. the frame rate is the requested one (24 when the request left it to the vendor);
4. at 24 fps the clip lasts 5.0 ± 0.25 s (Ovi's 120–121 frames); at another requested fps a duration
   off 5 s is only a warning, because no vendor documents what Ovi does there;
5. an audio stream exists and holds audio.

A failing check raises ``DefectiveClip`` naming each problem; the facts found (size, sha256, duration,
streams) come back either way as ``MediaFacts``. Without PyAV (the ``media`` extra) nothing is probed:
the facts carry only size and sha256 and say plainly ``verified=False``.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from gateway.errors import DefectiveClip

__all__ = ["EXPECTED_FPS", "EXPECTED_SECONDS", "SECONDS_TOLERANCE", "MediaFacts", "probe", "verify"]

EXPECTED_FPS = 24
EXPECTED_SECONDS = 5.0
SECONDS_TOLERANCE = 0.25
"""Seconds either side of 5.0 that a 24 fps clip may last (114–126 frames; Ovi makes 121)."""
NOT_VERIFIED = "not verified: PyAV is not installed (pip install 'ovi-gateway[media]')"


class MediaFacts(BaseModel):
    """What a downloaded clip holds, as ffprobe would tell it. Seconds, bytes, frames per second, Hz.

    ``verified`` is True only when PyAV probed the file; ``problems`` are failed checks (the clip is
    defective), ``warnings`` notes that do not fail it.
    """

    # defer_build: the validator is built on first use, once, not at import (start-up, issue 14)
    model_config = ConfigDict(frozen=True, defer_build=True)

    verified: bool
    size_bytes: int
    sha256: str
    container: str | None = None
    duration_s: float | None = None
    video_codec: str | None = None
    width: int | None = None
    height: int | None = None
    fps: float | None = None
    frames: int | None = None
    audio_codec: str | None = None
    audio_sample_rate: int | None = None
    audio_channels: int | None = None
    audio_s: float | None = None
    problems: list[str] = Field(default_factory=list)
    warnings: list[str] = Field(default_factory=list)

    @property
    def ok(self) -> bool:
        """Probed and no check failed."""
        return self.verified and not self.problems

    def summary(self) -> str:
        """One line, e.g. ``h264 992x512 24 fps 121 frames 5.04 s + aac 16000 Hz, 301 KB``."""
        if not self.verified:
            return f"{NOT_VERIFIED}; {self.size_bytes} bytes, sha256 {self.sha256[:12]}…"
        video = (f"{self.video_codec} {self.width}x{self.height} {self.fps:g} fps {self.frames} frames"
                 if self.video_codec else "no video")
        length = f" {self.duration_s:.2f} s" if self.duration_s is not None else ""
        audio = f" + {self.audio_codec} {self.audio_sample_rate} Hz" if self.audio_codec else " + no audio"
        return f"{video}{length}{audio}, {self.size_bytes} bytes"


def _hash(path: Path) -> tuple[int, str]:
    digest, size = hashlib.sha256(), 0
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
            size += len(block)
    return size, digest.hexdigest()


def probe(path: str | os.PathLike[str], *, fps: int | None = None) -> MediaFacts:
    """The facts of the clip at ``path`` and the checks above as ``problems``/``warnings``; raises nothing
    for a broken clip (``verify`` does). ``fps``: the frame rate the request asked for (``None``: 24)."""
    target = Path(path)
    size, sha256 = _hash(target)
    try:
        import av
    except ImportError:
        return MediaFacts(verified=False, size_bytes=size, sha256=sha256, warnings=[NOT_VERIFIED])
    expected_fps = fps or EXPECTED_FPS
    facts: dict[str, object] = {}
    problems: list[str] = []
    warnings: list[str] = []
    try:
        with av.open(str(target), "r") as container:
            facts["container"] = container.format.name
            if not container.streams.video:
                problems.append("no video stream")
            else:
                video = container.streams.video[0]
                rate = video.average_rate or video.guessed_rate
                facts.update(video_codec=video.codec_context.name, width=video.width, height=video.height,
                             fps=None if rate is None else round(float(rate), 3))
            if container.streams.audio:
                audio = container.streams.audio[0]
                facts.update(audio_codec=audio.codec_context.name, audio_sample_rate=audio.sample_rate,
                             audio_channels=audio.channels)
            spans = _read_packets(container, problems)
            facts.update(spans)
            if container.streams.video and not problems and not _first_frame_decodes(container):
                problems.append("the first video frame does not decode")
    except av.FFmpegError as error:
        problems.append(f"the container does not parse ({error.strerror or type(error).__name__})")
    _check(facts, expected_fps, fps is not None and fps != EXPECTED_FPS, problems, warnings)
    return MediaFacts(verified=True, size_bytes=size, sha256=sha256, problems=problems, warnings=warnings,
                      **facts)  # type: ignore[arg-type]


def _read_packets(container: object, problems: list[str]) -> dict[str, object]:
    """Demux every packet (cheap: nothing is decoded) for the frame count and each stream's extent."""
    import av

    frames, ends = 0, {"video": 0.0, "audio": 0.0}
    starts: dict[str, float] = {}
    audio_packets = 0
    try:
        for packet in container.demux():  # type: ignore[attr-defined]
            if packet.size == 0 or packet.pts is None or packet.time_base is None:
                continue
            kind = packet.stream.type
            if kind not in ends:
                continue
            start = float(packet.pts * packet.time_base)
            end = start + float((packet.duration or 0) * packet.time_base)
            starts.setdefault(kind, start)
            starts[kind] = min(starts[kind], start)
            ends[kind] = max(ends[kind], end)
            frames += kind == "video"
            audio_packets += kind == "audio"
    except av.FFmpegError as error:
        problems.append(f"the clip is cut short or corrupt after {frames} frames "
                        f"({error.strerror or type(error).__name__})")
    out: dict[str, object] = {"frames": frames}
    if "video" in starts:
        out["duration_s"] = round(ends["video"] - starts["video"], 3)
    if "audio" in starts and audio_packets:
        out["audio_s"] = round(ends["audio"] - starts["audio"], 3)
    return out


def _first_frame_decodes(container: object) -> bool:
    import av

    try:
        container.seek(0)  # type: ignore[attr-defined]
        return next(iter(container.decode(video=0)), None) is not None  # type: ignore[attr-defined]
    except (av.FFmpegError, StopIteration):
        return False


def _check(facts: dict[str, object], expected_fps: int, other_fps: bool, problems: list[str],
           warnings: list[str]) -> None:
    if "video_codec" in facts:
        rate = facts.get("fps")
        if not isinstance(rate, float) or abs(rate - expected_fps) > 0.01 * expected_fps:
            problems.append(f"video runs at {rate} fps, not the {expected_fps} fps asked for")
        seconds = facts.get("duration_s")
        if not isinstance(seconds, float) or abs(seconds - EXPECTED_SECONDS) > SECONDS_TOLERANCE:
            shown = "unknown" if not isinstance(seconds, float) else f"{seconds:.2f} s"
            note = (f"video lasts {shown} ({facts.get('frames')} frames), not "
                    f"{EXPECTED_SECONDS:g} ± {SECONDS_TOLERANCE:g} s")
            if other_fps:
                warnings.append(note + f" (at {expected_fps} fps no vendor documents Ovi's length)")
            else:
                problems.append(note)
    if "container" in facts:
        if "audio_codec" not in facts:
            problems.append("no audio stream (Ovi clips carry speech and sound)")
        elif "audio_s" not in facts:
            problems.append("the audio stream holds no audio")


def verify(path: str | os.PathLike[str], *, fps: int | None = None, url: str | None = None,
           provider: str | None = None, job_id: str | None = None) -> MediaFacts:
    """``probe`` the clip and raise ``DefectiveClip`` (carrying the facts, the job and its URL) when a check
    fails. Without PyAV, returns unverified facts instead (see ``MediaFacts.verified``)."""
    facts = probe(path, fps=fps)
    if facts.problems:
        where = f" of job {job_id}" if job_id else ""
        raise DefectiveClip(f"the clip{where} is defective: {'; '.join(facts.problems)}", provider=provider,
                            facts=facts, video_url=url, job_id=job_id)
    return facts
