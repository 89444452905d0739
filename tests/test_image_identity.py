"""A request is identified by its content, and an image is read once (gateway/images.py, ImageInput)."""

from __future__ import annotations

import base64
import os
import signal
from pathlib import Path

import httpx
import pydantic
import pytest

from gateway import Gateway, OviRequest, Route
from gateway.clock import VirtualClock
from gateway.emulator import Emulator
from gateway.errors import InvalidRequest
from gateway.request import ImageInput
from gateway.store.journal import request_hash
from tests.conftest import PNG_BYTES

pytestmark = pytest.mark.anyio
PROMPT = "A knight. <S>Hold the line.<E>"
OTHER_PNG = PNG_BYTES[:-12] + b"\x00" * 8 + PNG_BYTES[-4:]  # the same magic, other bytes
SECRET = b"root:x:0:0:root:/root:/bin/bash\n" * 4


async def test_same_key_same_path_and_a_changed_png_is_a_different_request(png_file: Path) -> None:
    clock = VirtualClock()
    gateway = Gateway(emulator=Emulator(clock=clock, seed=1), clock=clock, journal=":memory:")
    first = await gateway.agenerate(OviRequest(prompt=PROMPT, image=png_file), provider="runware",
                                    idempotency_key="clip-1")
    png_file.write_bytes(OTHER_PNG)
    with pytest.raises(InvalidRequest, match="different request"):
        await gateway.agenerate(OviRequest(prompt=PROMPT, image=png_file), provider="runware",
                                idempotency_key="clip-1")
    png_file.write_bytes(PNG_BYTES)  # the same bytes again: the same request, the clip already made
    again = await gateway.agenerate(OviRequest(prompt=PROMPT, image=png_file), provider="runware",
                                    idempotency_key="clip-1")
    assert again.job_id == first.job_id
    await gateway.aclose()


def test_the_request_hash_covers_the_image_bytes_not_its_path_or_encoding(png_file: Path, tmp_path: Path) -> None:
    copy = tmp_path / "copy.png"
    copy.write_bytes(PNG_BYTES)
    other = tmp_path / "other.png"
    other.write_bytes(OTHER_PNG)

    def digest(image: object) -> str:
        return request_hash(OviRequest(prompt=PROMPT, image=image).model_dump_json())

    assert digest(png_file) == digest(copy) == digest(PNG_BYTES) == digest(base64.b64encode(PNG_BYTES).decode())
    assert digest(other) != digest(png_file)
    assert '"sha256"' in OviRequest(prompt=PROMPT, image=png_file).model_dump_json()  # in the journal's JSON


async def test_a_swapped_symlink_never_reaches_a_vendor_the_first_bytes_go_to_every_one(tmp_path: Path) -> None:
    real = tmp_path / "frame.png"
    real.write_bytes(PNG_BYTES)
    secret = tmp_path / "passwd"
    secret.write_bytes(SECRET)
    link = tmp_path / "link.png"
    link.symlink_to(real)
    request = OviRequest(prompt=PROMPT, image=link)
    link.unlink()
    link.symlink_to(secret)  # swapped after the request was made, before any vendor is asked

    clock = VirtualClock()
    emulator = Emulator(clock=clock, seed=2, faults="fal.submit=401")
    bodies: list[bytes] = []

    def recording(sent: httpx.Request) -> httpx.Response:
        bodies.append(sent.content)
        return emulator.handle(sent)

    gateway = Gateway(transport=httpx.MockTransport(recording), clock=clock,
                      keys={"fal": "fal-id:fal-secret-0", "runware": "rw-k-0000"}, journal=":memory:",
                      providers=["fal", "runware"])
    result = await gateway.agenerate(request, route=Route(order=["fal", "runware"]))
    await gateway.aclose()
    assert result.provider == "runware"
    sent = b"".join(bodies)
    assert SECRET[:20] not in sent and base64.b64encode(SECRET)[:20] not in sent
    assert PNG_BYTES in sent  # fal's upload got the original bytes ...
    assert base64.b64encode(PNG_BYTES) in sent  # ... and so did Runware's inline data URI


def test_a_request_read_back_from_json_refuses_a_changed_file_and_sends_nothing(png_file: Path) -> None:
    stored = OviRequest(prompt=PROMPT, image=png_file).model_dump_json()
    png_file.write_bytes(OTHER_PNG)
    resumed = OviRequest.model_validate_json(stored)  # polling a paid job needs no image: loading never reads it
    with pytest.raises(InvalidRequest, match="changed since the request was made"):
        resumed.image.read_bytes()  # type: ignore[union-attr]
    png_file.write_bytes(PNG_BYTES)
    assert OviRequest.model_validate_json(stored).image.read_bytes() == PNG_BYTES  # type: ignore[union-attr]


def _refusal(**fields: object) -> str:
    with pytest.raises(pydantic.ValidationError) as caught:
        OviRequest(prompt=PROMPT, **fields)
    return str(caught.value)


def test_a_fifo_is_refused_at_once_instead_of_hanging(tmp_path: Path) -> None:
    fifo = tmp_path / "frame.png"
    os.mkfifo(fifo)
    previous = signal.signal(signal.SIGALRM, lambda *_: (_ for _ in ()).throw(TimeoutError("hung on the FIFO")))
    signal.alarm(5)
    try:
        assert "is a FIFO (named pipe)" in _refusal(image=fifo)
        assert "is a FIFO" in _refusal(image=str(fifo))
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


@pytest.mark.parametrize(("path", "what"), [("/dev/zero", "a character device"), ("/", "a directory")])
def test_devices_and_directories_are_refused(path: str, what: str) -> None:
    assert f"is {what}" in _refusal(image=Path(path))


@pytest.mark.parametrize("url", ["http://127.0.0.1\\@public.com/a.png", "http://１２７.０.０.１/a.png",
                                 "http://[64:ff9b::7f00:1]/a.png", "http://[::ffff:127.0.0.1]/a.png",
                                 "http://[::ffff:a9fe:a9fe]/latest", "https://user:pw@example.com/a.png",
                                 "http://0x7f.1/a.png", "http://0177.0.0.1/a.png", "http://metadata/a.png"])
def test_the_public_address_check_is_not_fooled(url: str) -> None:
    assert "image" in _refusal(image=url)


@pytest.mark.parametrize("build", [
    lambda: ImageInput(kind="url", value="http://127.0.0.1/a.png"),
    lambda: ImageInput(kind="url", value="http://[64:ff9b::a9fe:a9fe]/latest"),
    lambda: ImageInput.model_validate({"kind": "url", "value": "http://10.0.0.1/a.png"}),
    lambda: ImageInput.model_validate_json('{"kind": "url", "value": "http://localhost/a.png"}'),
    lambda: ImageInput(kind="file", value="/etc/passwd"),
    lambda: ImageInput(kind="base64", value=base64.b64encode(SECRET).decode()),
    lambda: ImageInput(kind="base64", value=base64.b64encode(PNG_BYTES).decode(), mime="image/jpeg"),
    lambda: ImageInput(kind="base64", value=base64.b64encode(PNG_BYTES).decode(), sha256="0" * 64),
])
def test_every_way_of_building_an_image_input_is_checked(build) -> None:
    with pytest.raises(pydantic.ValidationError):
        build()


def test_a_direct_image_input_gets_its_facts_and_a_public_url_passes(png_file: Path) -> None:
    direct = ImageInput(kind="file", value=str(png_file))
    assert direct.mime == "image/png" and direct.sha256 == ImageInput.coerce(PNG_BYTES).sha256
    assert ImageInput(kind="url", value="https://8.8.8.8/a.png").sha256 is None
