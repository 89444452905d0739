"""A remote caller cannot make the server read its own files: every way a JSON or form body could name a
local path (a bare path, ``file://``, an ``ImageInput``-shaped ``kind: file`` object, base64-looking text
that is also an existing path) is refused with 400 naming the field, before any vendor is called."""

from __future__ import annotations

import base64
import shutil
import uuid
from pathlib import Path

import pytest

from tests.conftest import PNG_BYTES

pytestmark = pytest.mark.anyio

PROMPT = "A knight in the rain. <S>I will defend this land.<E>"


@pytest.fixture
def local_png(tmp_path):
    path = tmp_path / "knight.png"
    path.write_bytes(PNG_BYTES)
    return str(path)


@pytest.mark.parametrize(("field", "shape"), [
    ("input_reference", "path"), ("input_reference", "file_url"), ("input_reference", "image_url_path"),
    ("input_reference", "kind_file"), ("image", "path"), ("image", "kind_file"),
])
async def test_a_local_path_is_refused_with_400_naming_the_field(world, local_png, field, shape) -> None:
    value = {"path": local_png, "file_url": f"file://{local_png}", "image_url_path": {"image_url": local_png},
             "kind_file": {"kind": "file", "value": local_png, "mime": "image/png",
                           "sha256": "0" * 64}}[shape]
    answer = await world.http.post("/v1/videos", json={"prompt": PROMPT, field: value})
    assert answer.status_code == 400, answer.text
    assert answer.json()["error"]["param"] == field
    assert world.emulator.ledger.jobs == [] and world.emulator.ledger.requests == []


async def test_base64_text_that_is_also_a_path_is_read_as_base64_never_opened(world) -> None:
    # "/", letters and digits only: valid base64 text *and* an existing image file. ``ImageInput.coerce``
    # falls back to opening such a path when the text does not decode to an image; the server must not.
    folder = Path("/tmp") / f"ovigw{uuid.uuid4().hex}"
    folder.mkdir()
    try:
        text = f"{folder}/imagepng"
        text += "A" * (-len(text) % 4)
        Path(text).write_bytes(PNG_BYTES)
        assert base64.b64decode(text, validate=True)  # really base64-shaped
        answer = await world.http.post("/v1/videos", json={"prompt": PROMPT, "input_reference": text})
        assert answer.status_code == 400 and answer.json()["error"]["param"] == "input_reference", answer.text
        assert world.emulator.ledger.requests == []
    finally:
        shutil.rmtree(folder)


async def test_remote_forms_of_an_image_are_still_taken(world) -> None:
    encoded = base64.b64encode(PNG_BYTES).decode()
    for value in (encoded, f"data:image/png;base64,{encoded}", {"image_url": "https://example.com/k.png"}):
        answer = await world.http.post("/v1/videos", json={"prompt": PROMPT, "input_reference": value})
        assert answer.status_code == 200, answer.text
