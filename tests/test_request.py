"""OviRequest and its image input forms (gateway/request.py)."""

from __future__ import annotations

import base64
from pathlib import Path

import pydantic
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import gateway.images as request_module  # where the image size cap lives
from gateway.request import ImageInput, Mode, OviRequest, sniff_image
from tests.conftest import PNG_BYTES

B64 = base64.b64encode(PNG_BYTES).decode()
JPEG_BYTES = b"\xff\xd8\xff\xe0" + b"\x00" * 20
PROMPT = "A knight. <S>Hi.<E>"


def _error_text(**fields: object) -> str:
    with pytest.raises(pydantic.ValidationError) as info:
        OviRequest(**fields)
    return str(info.value)


# ---------------------------------------------------------------- model basics

def test_defaults_are_none_and_mode_text() -> None:
    req = OviRequest(prompt=PROMPT)
    for name in ("image", "seed", "steps", "negative_prompt", "audio_negative_prompt", "video_guidance",
                 "audio_guidance", "slg_layer", "fps", "output_format", "output_quality", "size"):
        assert getattr(req, name) is None, name
    assert req.mode is Mode.TEXT_TO_VIDEO
    assert req.set_fields() == {}


def test_frozen() -> None:
    req = OviRequest(prompt=PROMPT, seed=1)
    with pytest.raises(pydantic.ValidationError):
        req.seed = 2  # type: ignore[misc]
    assert req.seed == 1


def test_extra_field_forbidden_and_named() -> None:
    text = _error_text(prompt=PROMPT, colour="red")
    assert "colour" in text
    assert "extra" in text.lower()


def test_prompt_required() -> None:
    assert "prompt" in _error_text()


def test_seed_zero_kept_and_set_fields() -> None:
    req = OviRequest(prompt=PROMPT, seed=0, steps=30, negative_prompt="blur", fps=24, output_format="MP4")
    assert req.seed == 0
    assert req.set_fields() == {"seed": 0, "steps": 30, "negative_prompt": "blur", "fps": 24,
                                "output_format": "MP4"}


def test_set_fields_excludes_prompt_and_image() -> None:
    req = OviRequest(prompt=PROMPT, image=B64, seed=5)
    assert req.set_fields() == {"seed": 5}
    assert req.mode is Mode.IMAGE_TO_VIDEO


@pytest.mark.parametrize(("field", "value"), [
    ("seed", -1), ("seed", 2**63), ("steps", 0), ("fps", 0), ("output_quality", 0), ("output_quality", 101),
    ("video_guidance", -0.1), ("audio_guidance", float("nan")), ("video_guidance", float("inf")),
    ("slg_layer", -1), ("output_format", "AVI"),
])
def test_field_ranges(field: str, value: object) -> None:
    assert field in _error_text(prompt=PROMPT, **{field: value})


def test_seed_upper_bound_accepted() -> None:
    assert OviRequest(prompt=PROMPT, seed=2**63 - 1).seed == 2**63 - 1


def test_parsed_prompt() -> None:
    p = OviRequest(prompt=PROMPT).parsed_prompt
    assert p.scene == "A knight." and p.speech == ["Hi."]


# ---------------------------------------------------------------- image forms

def test_https_url() -> None:
    req = OviRequest(prompt=PROMPT, image="  https://example.com/knight.jpg ")
    assert req.image == ImageInput(kind="url", value="https://example.com/knight.jpg")
    assert req.image.mime is None
    with pytest.raises(ValueError, match="URL image has no local bytes"):
        req.image.read_bytes()


def test_public_http_ip_url_allowed() -> None:
    assert OviRequest(prompt=PROMPT, image="http://8.8.8.8/a.png").image.kind == "url"


def test_data_uri() -> None:
    uri = f"data:image/png;base64,{B64}"
    img = OviRequest(prompt=PROMPT, image=uri).image
    assert (img.kind, img.mime, img.value) == ("data_uri", "image/png", uri)
    assert img.read_bytes() == PNG_BYTES
    assert img.as_data_uri() == uri


def test_bare_base64() -> None:
    img = OviRequest(prompt=PROMPT, image=B64).image
    assert (img.kind, img.mime) == ("base64", "image/png")
    assert img.read_bytes() == PNG_BYTES
    assert img.as_data_uri() == f"data:image/png;base64,{B64}"


def test_raw_bytes() -> None:
    img = OviRequest(prompt=PROMPT, image=PNG_BYTES).image
    assert (img.kind, img.mime, img.value) == ("base64", "image/png", B64)


def test_local_path(png_file: Path) -> None:
    img = OviRequest(prompt=PROMPT, image=png_file).image
    assert (img.kind, img.value, img.mime) == ("file", str(png_file), "image/png")
    assert img.read_bytes() == PNG_BYTES
    assert img.as_data_uri() == f"data:image/png;base64,{B64}"


def test_local_str_path(png_file: Path) -> None:
    img = OviRequest(prompt=PROMPT, image=str(png_file)).image
    assert (img.kind, img.value, img.mime) == ("file", str(png_file), "image/png")


def test_json_round_trip_rechecks_image(png_file: Path) -> None:
    req = OviRequest(prompt=PROMPT, image=png_file, seed=3)
    again = OviRequest.model_validate_json(req.model_dump_json())
    assert again == req


def test_repr_hides_inline_data() -> None:
    img = ImageInput.coerce(B64)
    assert B64 not in repr(img)
    assert f"<{len(B64)} chars>" in repr(img)


@pytest.mark.parametrize("url", [
    "file:///etc/passwd",
    "ftp://example.com/a.png",
    "http://localhost/a.png",
    "http://LOCALHOST./a.png",
    "http://cam.localhost/a.png",
    "http://metadata.google.internal/a.png",
    "http://127.0.0.1/a.png",
    "http://10.0.0.5/a.png",
    "http://192.168.1.1/a.png",
    "http://[::1]/a.png",
    "http://169.254.169.254/latest/meta-data/",
    "http://0.0.0.0/a.png",
    "https:///nohost.png",
])
def test_refused_urls(url: str) -> None:
    text = _error_text(prompt=PROMPT, image=url)
    assert "image" in text
    assert "Value error" in text


def test_refused_url_messages() -> None:
    assert "scheme 'file' is not allowed" in _error_text(prompt=PROMPT, image="file:///etc/passwd")
    assert "private or reserved" in _error_text(prompt=PROMPT, image="http://10.0.0.5/x")
    assert "not reachable" in _error_text(prompt=PROMPT, image="http://localhost/x")


@pytest.mark.parametrize("url", ["http://127.1/a.png", "http://2130706433/a.png"])
def test_refused_shorthand_loopback(url: str) -> None:
    assert "image" in _error_text(prompt=PROMPT, image=url)


def test_non_image_bytes_in_data_uri() -> None:
    bogus = base64.b64encode(b"hello, this is not an image").decode()
    text = _error_text(prompt=PROMPT, image=f"data:image/png;base64,{bogus}")
    assert "image" in text and "not a PNG, JPEG, WebP, GIF or BMP image" in text


def test_data_uri_mime_mismatch() -> None:
    text = _error_text(prompt=PROMPT, image=f"data:image/jpeg;base64,{B64}")
    assert "says image/jpeg but holds image/png" in text


def test_data_uri_jpg_alias_accepted_for_jpeg() -> None:
    jpeg = base64.b64encode(JPEG_BYTES).decode()
    assert OviRequest(prompt=PROMPT, image=f"data:image/jpg;base64,{jpeg}").image.mime == "image/jpeg"


def test_data_uri_jpg_alias_with_png_bytes_refused() -> None:
    assert "image" in _error_text(prompt=PROMPT, image=f"data:image/jpg;base64,{B64}")


def test_data_uri_malformed_and_bad_base64() -> None:
    assert "must look like data:image/png;base64" in _error_text(prompt=PROMPT, image="data:image/png,abc")
    assert "not valid base64" in _error_text(prompt=PROMPT, image="data:image/png;base64,@@@@")


def test_missing_path(tmp_path: Path) -> None:
    text = _error_text(prompt=PROMPT, image=tmp_path / "nope.png")
    assert "image" in text and "cannot be read" in text
    assert "cannot be read" in _error_text(prompt=PROMPT, image=str(tmp_path / "nope.png"))


def test_unreadable_path_directory(tmp_path: Path) -> None:
    assert "is a directory; pass a regular image file" in _error_text(prompt=PROMPT, image=tmp_path)


def test_non_image_file(tmp_path: Path) -> None:
    f = tmp_path / "notes.txt"
    f.write_text("hello")
    assert "not a PNG" in _error_text(prompt=PROMPT, image=f)


@pytest.mark.parametrize("bad", ["", "   ", 12, 3.5, ["x"]])
def test_image_wrong_type_or_blank(bad: object) -> None:
    assert "image" in _error_text(prompt=PROMPT, image=bad)


def test_huge_base64_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(request_module, "MAX_IMAGE_BYTES", 64)
    big = PNG_BYTES + b"\x00" * 200
    text = _error_text(prompt=PROMPT, image=base64.b64encode(big).decode())
    assert "image" in text and "larger than 64 bytes" in text
    text = _error_text(prompt=PROMPT, image=f"data:image/png;base64,{base64.b64encode(big).decode()}")
    assert "larger than 64 bytes" in text


def test_oversized_decoded_bytes_refused(monkeypatch: pytest.MonkeyPatch, png_file: Path) -> None:
    monkeypatch.setattr(request_module, "MAX_IMAGE_BYTES", len(PNG_BYTES) - 1)
    assert f"at most {len(PNG_BYTES) - 1} are accepted" in _error_text(prompt=PROMPT, image=png_file)
    assert "at most" in _error_text(prompt=PROMPT, image=PNG_BYTES)


def test_base64_looking_relative_path_falls_back_to_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "frames").mkdir()
    (tmp_path / "frames" / "shot0001xyz").write_bytes(PNG_BYTES)
    monkeypatch.chdir(tmp_path)
    img = OviRequest(prompt=PROMPT, image="frames/shot0001xyz").image
    assert img.kind == "file" and img.mime == "image/png"


def test_sniff_image() -> None:
    assert sniff_image(PNG_BYTES) == "image/png"
    assert sniff_image(JPEG_BYTES) == "image/jpeg"
    assert sniff_image(b"GIF89a....") == "image/gif"
    assert sniff_image(b"RIFF\x00\x00\x00\x00WEBPVP8 ") == "image/webp"
    assert sniff_image(b"BM\x00\x00") == "image/bmp"
    assert sniff_image(b"hello") is None


# ---------------------------------------------------------------- size

@pytest.mark.parametrize("size", ["992x512", "10x10", "99999x10"])
def test_size_ok(size: str) -> None:
    assert OviRequest(prompt=PROMPT, size=size).set_fields() == {"size": size}


@pytest.mark.parametrize("size", ["992X512", "992x", "1x1", "0992x512", "992 x 512", "100000x10", "-5x10"])
def test_size_bad_format(size: str) -> None:
    text = _error_text(prompt=PROMPT, size=size)
    assert "size" in text and "WIDTHxHEIGHT" in text


def test_size_with_image_refused() -> None:
    text = _error_text(prompt=PROMPT, size="992x512", image=B64)
    assert "size applies to text-to-video only" in text


# ---------------------------------------------------------------- property

_any_value = st.one_of(
    st.none(), st.booleans(), st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=12), st.binary(max_size=12),
    st.lists(st.integers(), max_size=2),
)
_image_value = st.one_of(
    _any_value,
    st.just(B64), st.just(PNG_BYTES), st.just(f"data:image/png;base64,{B64}"),
    st.sampled_from(["https://example.com/a.png", "http://10.0.0.1/a", "ftp://x/y", "data:x", "file:///x"]),
    st.fixed_dictionaries({"kind": st.sampled_from(["url", "data_uri", "base64", "file"]),
                           "value": st.text(max_size=12)}),
)
_fields = st.fixed_dictionaries(
    {"prompt": st.one_of(st.just(PROMPT), st.text(max_size=20), st.integers())},
    optional={
        "image": _image_value, "seed": _any_value, "steps": _any_value, "negative_prompt": _any_value,
        "audio_negative_prompt": _any_value, "video_guidance": _any_value, "audio_guidance": _any_value,
        "slg_layer": _any_value, "fps": _any_value,
        "output_format": st.one_of(st.sampled_from(["MP4", "WEBM", "MOV"]), _any_value),
        "output_quality": _any_value, "size": st.one_of(st.just("992x512"), _any_value),
        "bogus": _any_value,
    },
)


@settings(max_examples=200, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(_fields)
def test_arbitrary_fields_valid_or_validation_error(fields: dict[str, object]) -> None:
    try:
        req = OviRequest(**fields)
    except pydantic.ValidationError:
        return
    assert "bogus" not in fields
    assert str(req.parsed_prompt) == req.prompt
    assert req.mode is (Mode.IMAGE_TO_VIDEO if req.image is not None else Mode.TEXT_TO_VIDEO)
    assert all(v is not None for v in req.set_fields().values())


def test_image_dict_with_non_string_value_is_validation_error() -> None:
    with pytest.raises(pydantic.ValidationError):
        OviRequest(prompt=PROMPT, image={"kind": "file", "value": 5})
