"""Real, playable clips for the emulator, encoded with PyAV (the ``av`` wheel bundles libx264, aac, VP9, Opus).

One function, ``encode_clip``, makes every clip the emulator serves: the packaged assets under
``gateway/emulator/media/`` (written by ``scripts/make_emulator_media.py``) and, when the emulator is
asked to render, a clip of the request's own image. The shape is Ovi's: 121 frames at 24 fps (5.04 s)
of H.264 with AAC audio in MP4 or MOV, VP9 with Opus in WEBM; the sound is a soft syllable-like tone so a
player shows an audio track that is really there.

Defective variants stand in for the broken successes vendors do return: ``noaudio`` (no audio stream),
``short`` (2 s). A truncated download is made by cutting a good clip's bytes (see ``gateway.emulator.clips``).
Nothing here runs unless PyAV is installed; callers check ``available()`` first.
"""

from __future__ import annotations

import io
import math
from dataclasses import dataclass
from typing import Any

__all__ = ["CONTAINERS", "FPS", "FRAMES", "HEIGHT", "VARIANTS", "WIDTH", "ClipSpec", "available", "encode_clip"]

WIDTH, HEIGHT = 512, 256
"""About half of Ovi's default 992x512 frame, so a clip stays a few tens of KB; 512 keeps every plane's rows
unpadded, which keeps libx264 bit-exact run to run (it reads the padding of a 248-byte chroma row)."""
FPS = 24
FRAMES = 121
"""Ovi 1.0 makes 121 frames (video latent length 31) at 24 fps: 5.04 s (reference/providers.md §4.1)."""
SHORT_SECONDS = 2.0
VARIANTS = ("ok", "noaudio", "short")
CONTAINERS: dict[str, tuple[str, str, str, int]] = {
    # format: (PyAV container, video encoder, audio encoder, audio sample rate in Hz)
    "mp4": ("mp4", "libx264", "aac", 16000),   # Ovi muxes 16 kHz audio with libx264 + aac (upstream io_utils)
    "mov": ("mov", "libx264", "aac", 16000),
    "webm": ("webm", "libvpx-vp9", "libopus", 48000),  # Opus runs at 48 kHz
}


def available() -> bool:
    """Whether PyAV is importable (the ``media`` extra)."""
    try:
        import av  # noqa: F401
    except ImportError:
        return False
    return True


@dataclass(frozen=True)
class ClipSpec:
    """What to encode: container (``mp4``/``mov``/``webm``), variant (``ok``/``noaudio``/``short``),
    frames per second, and the picture (``None``: the emulator's test card)."""

    fmt: str = "mp4"
    variant: str = "ok"
    fps: int = FPS
    image: bytes | None = None


def encode_clip(spec: ClipSpec) -> bytes:
    """The encoded clip as bytes. At ``fps`` other than 24 the clip keeps Ovi's 121 frames' length in
    seconds (5.04 s), as a vendor resampling in time would."""
    import av

    if spec.fmt not in CONTAINERS or spec.variant not in VARIANTS:
        raise ValueError(f"no clip for format {spec.fmt!r} variant {spec.variant!r}")
    container_name, video_codec, audio_codec, rate = CONTAINERS[spec.fmt]
    seconds = SHORT_SECONDS if spec.variant == "short" else FRAMES / FPS
    frames = max(1, round(seconds * spec.fps))
    picture = _picture(spec.image)
    buffer = io.BytesIO()
    # bitexact: no encoder version strings in the container, so the same PyAV makes the same bytes
    with av.open(buffer, "w", format=container_name, container_options={"fflags": "+bitexact"}) as out:
        video = out.add_stream(video_codec, rate=spec.fps)
        assert isinstance(video, av.VideoStream)
        video.width, video.height, video.pix_fmt = WIDTH, HEIGHT, "yuv420p"
        if video_codec == "libx264":
            video.options = {"preset": "veryslow", "crf": "34", "tune": "stillimage", "threads": "1"}
        else:
            video.options = {"crf": "50", "b": "0", "deadline": "good", "cpu-used": "4", "row-mt": "0",
                             "threads": "1"}
        video.codec_context.flags |= av.codec.context.Flags.bitexact
        video.codec_context.thread_count = 1  # threaded encoders are not bit-exact run to run
        audio = None
        if spec.variant != "noaudio":
            audio = out.add_stream(audio_codec, rate=rate)
            assert isinstance(audio, av.AudioStream)
            audio.layout = "mono"
            audio.bit_rate = 16000 if audio_codec == "aac" else 12000
        for index in range(frames):
            frame = av.VideoFrame(WIDTH, HEIGHT, "rgb24")
            frame.planes[0].update(_with_bar(picture, frame.planes[0].line_size, index / max(1, frames - 1)))
            frame.pts = index
            out.mux(video.encode(frame))
        out.mux(video.encode())
        if audio is not None:
            _encode_tone(out, audio, rate, frames / spec.fps)
    return buffer.getvalue()


# ---- pictures --------------------------------------------------------------------------------
def _picture(image: bytes | None) -> list[bytes]:
    """The still picture as rows of RGB bytes, WIDTH pixels each: the request's image letterboxed, or a
    test card when there is none (or it cannot be decoded)."""
    if image is not None:
        rows = _decode_image(image)
        if rows is not None:
            return rows
    return _test_card()


def _test_card() -> list[bytes]:
    """Soft vertical colour bands over a top-to-bottom fade (compresses to almost nothing)."""
    bands = [(70, 90, 140), (90, 140, 110), (150, 120, 80), (120, 80, 120), (80, 120, 150), (140, 140, 140)]
    rows = []
    for y in range(HEIGHT):
        shade = 0.55 + 0.45 * (1 - y / HEIGHT)
        row = bytearray()
        for x in range(WIDTH):
            r, g, b = bands[x * len(bands) // WIDTH]
            row += bytes((int(r * shade), int(g * shade), int(b * shade)))
        rows.append(bytes(row))
    return rows


def _decode_image(data: bytes) -> list[bytes] | None:
    import av

    try:
        with av.open(io.BytesIO(data), "r") as source:
            frame = next(source.decode(video=0))
    except (av.FFmpegError, StopIteration, ValueError, OSError):
        return None
    scale = min(WIDTH / frame.width, HEIGHT / frame.height)
    width = max(2, min(WIDTH, round(frame.width * scale)))
    height = max(2, min(HEIGHT, round(frame.height * scale)))
    rgb = frame.reformat(width=width, height=height, format="rgb24")
    plane = rgb.planes[0]
    raw = bytes(plane)
    left, top = (WIDTH - width) // 2, (HEIGHT - height) // 2
    black = bytes(3 * WIDTH)
    pad_left, pad_right = bytes(3 * left), bytes(3 * (WIDTH - width - left))
    rows = [black] * top
    rows += [pad_left + raw[y * plane.line_size:y * plane.line_size + 3 * width] + pad_right for y in range(height)]
    rows += [black] * (HEIGHT - top - height)
    return rows


def _with_bar(rows: list[bytes], line_size: int, progress: float) -> bytes:
    """One frame: the picture with a light progress bar along the bottom, so the clip visibly moves."""
    bar_height, filled = 6, int(WIDTH * progress)
    bar = bytes((235, 235, 235)) * filled + bytes((40, 40, 40)) * (WIDTH - filled)
    pad = bytes(line_size - 3 * WIDTH)
    out = bytearray()
    for y, row in enumerate(rows):
        out += (bar if y >= HEIGHT - bar_height else row) + pad
    return bytes(out)


# ---- sound -----------------------------------------------------------------------------------
def _encode_tone(out: Any, stream: Any, rate: int, seconds: float) -> None:
    """Syllable-like pulses of a soft 220/330 Hz tone, float samples in the encoder's own frame size."""
    import av

    total = round(rate * seconds)
    samples = []
    for n in range(total):
        t = n / rate
        syllable = 0.5 - 0.5 * math.cos(2 * math.pi * 3.0 * t)  # three soft pulses a second
        samples.append(0.2 * syllable * (math.sin(2 * math.pi * 220 * t) + 0.5 * math.sin(2 * math.pi * 330 * t)))
    chunk = stream.codec_context.frame_size or 1024
    import array

    for start in range(0, total, chunk):
        part = array.array("f", samples[start:start + chunk])
        frame = av.AudioFrame(format="flt", layout="mono", samples=len(part))
        frame.sample_rate = rate
        frame.planes[0].update(part.tobytes() + bytes(frame.planes[0].buffer_size - 4 * len(part)))
        frame.pts = start
        out.mux(stream.encode(frame))
    out.mux(stream.encode())
