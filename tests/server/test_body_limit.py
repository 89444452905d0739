"""The server's body cap holds for a body sent without ``Content-Length`` (chunked): it is refused with
413 in the API's error envelope, naming the cap, as soon as the bytes received pass it — not read whole
first. Before, only ``Content-Length`` was checked, so a chunked create body of any size was read."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

import httpx
import pytest

from gateway.client import Gateway
from gateway.clock import VirtualClock
from gateway.emulator import Emulator
from gateway.server import create_app

pytestmark = pytest.mark.anyio

KEY = "sk-test-body"
LIMIT = 4096
PROMPT = "A knight. <S>Hold the line.<E>"


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
async def http(tmp_path) -> AsyncIterator[httpx.AsyncClient]:
    clock = VirtualClock()
    gateway = Gateway(emulator=Emulator(clock=clock, seed=3), clock=clock, journal=str(tmp_path / "j.sqlite3"))
    app = create_app(gateway, api_keys=[KEY], media_dir=tmp_path / "media", emulator=True, max_body_bytes=LIMIT)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gw",
                                 headers={"authorization": f"Bearer {KEY}"}) as client:
        yield client
    await gateway.aclose()
    app.state.server.store.close()


class Chunks:
    """A request body streamed in ``count`` chunks of ``size`` bytes (httpx sends it chunked)."""

    def __init__(self, head: bytes, size: int, count: int) -> None:
        self.head, self.size, self.count, self.sent = head, size, count, 0

    async def __aiter__(self) -> AsyncIterator[bytes]:
        yield self.head
        for _ in range(self.count):
            self.sent += 1
            yield b" " * self.size


async def test_a_chunked_create_body_over_the_cap_is_refused_before_it_is_read(http: httpx.AsyncClient) -> None:
    body = Chunks(b'{"prompt": "' + PROMPT.encode() + b'", "input_reference": "https://example.com/k.png"',
                  size=1024, count=1000)  # ~1 MB, far over the 4 KB cap
    answer = await http.post("/v1/videos", content=body, headers={"content-type": "application/json"})
    assert answer.status_code == 413, answer.text
    assert answer.json() == {"error": {"message": f"request body over this server's limit of {LIMIT} bytes",
                                       "type": "invalid_request_error", "param": None, "code": "body_too_large"}}
    assert body.sent <= LIMIT // 1024 + 1  # stopped at the cap, not after the whole body
    assert (await http.get("/v1/videos")).json()["data"] == []  # nothing was made


async def test_a_declared_length_over_the_cap_is_refused_unread(http: httpx.AsyncClient) -> None:
    answer = await http.post("/v1/videos", content=b"{" + b" " * LIMIT + b"}",
                             headers={"content-type": "application/json"})
    assert answer.status_code == 413 and answer.json()["error"]["code"] == "body_too_large"


async def test_a_chunked_create_body_under_the_cap_makes_the_video(http: httpx.AsyncClient) -> None:
    text = json.dumps({"prompt": PROMPT, "input_reference": "https://example.com/k.png"}).encode()
    body = Chunks(text[:-1], size=100, count=3)  # whitespace before the closing brace: still one JSON object
    answer = await http.post("/v1/videos", content=_then(body, b"}"), headers={"content-type": "application/json"})
    assert answer.status_code == 200, answer.text
    assert answer.json()["object"] == "video"


async def _then(chunks: Chunks, last: bytes) -> AsyncIterator[bytes]:
    async for chunk in chunks:
        yield chunk
    yield last
