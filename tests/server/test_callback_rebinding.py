"""DNS rebinding cannot turn a callback inside: each delivery resolves the callback host once, checks
every address, and connects to the address it checked — the ``Host`` header and TLS (SNI and the
certificate check, through httpx's ``sni_hostname``) keep the name. Before, the name was checked and
then resolved again by httpx at connect time, so a resolver answering public to the check and private
to the connect made the signed POST reach the private address."""

from __future__ import annotations

import base64
import socket
from typing import Any

import httpx
import pytest

from gateway.server.callbacks import Callbacks, parse_secret
from gateway.store.server_rows import OutboxRow

pytestmark = pytest.mark.anyio

SECRET = "whsec_" + base64.b64encode(b"k" * 32).decode()
PUBLIC, PRIVATE = "93.184.216.34", "127.0.0.1"


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


class Rebinding:
    """The system resolver, for one name: public on the first lookup, private on every later one."""

    def __init__(self, name: str) -> None:
        self.name, self.lookups = name, 0

    def __call__(self, host: Any, port: Any, *args: Any, **kwargs: Any) -> list[Any]:
        assert host == self.name, host
        self.lookups += 1
        address = PUBLIC if self.lookups == 1 else PRIVATE
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (address, int(port or 443)))]


class Connecting(httpx.AsyncBaseTransport):
    """A transport that connects as httpcore does: a name in the URL is resolved (through the same system
    resolver) at connect time; an address is used as is. Records where each POST went."""

    def __init__(self) -> None:
        self.connected: list[tuple[str, str, Any]] = []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        host = request.url.host
        try:
            socket.inet_pton(socket.AF_INET, host)
            address = host
        except OSError:
            address = socket.getaddrinfo(host, request.url.port or 443, type=socket.SOCK_STREAM)[0][4][0]
        self.connected.append((address, request.headers["host"], request.extensions.get("sni_hostname")))
        return httpx.Response(204)


class Outbox:
    """Just enough of the store's outbox for one delivery."""

    def __init__(self) -> None:
        self.delivered: list[int] = []
        self.retried: list[tuple[int, str]] = []

    def wall(self) -> float:
        return 1_700_000_000.0

    def outbox_delivered(self, row_id: int, owner: str) -> None:
        self.delivered.append(row_id)

    def outbox_retry(self, row_id: int, owner: str, *, error: str, next_at: float | None) -> None:
        self.retried.append((row_id, error))


def _row(url: str) -> OutboxRow:
    return OutboxRow(id=7, event_id="evt_v_completed", clip_key="v", url=url, body='{"id":"evt_v_completed"}',
                     attempts=0)


async def test_a_name_answering_public_then_private_is_posted_to_the_public_address(
        monkeypatch: pytest.MonkeyPatch) -> None:
    resolver = Rebinding("hooks.example.com")
    monkeypatch.setattr(socket, "getaddrinfo", resolver)
    transport, outbox = Connecting(), Outbox()

    async def nothing(*args: Any) -> None:
        return None

    drainer = Callbacks(outbox, parse_secret(SECRET), nothing, owner="t", sleep=nothing, transport=transport)
    await drainer._deliver(_row("https://hooks.example.com:8443/ovi?x=1"))
    await drainer._http.aclose()
    assert transport.connected == [(PUBLIC, "hooks.example.com:8443", "hooks.example.com")]
    assert PRIVATE not in [address for address, *_ in transport.connected]
    assert resolver.lookups == 1 and outbox.delivered == [7]
