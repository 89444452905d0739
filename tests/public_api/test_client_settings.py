"""``Gateway``'s client settings: timeout, http_client, base_urls, proxies from httpx's environment, random
keys whatever the jitter seed (and the deprecated ``seed=``), and the sync API inside a running loop."""

from __future__ import annotations

import warnings

import httpx
import pytest

from gateway import ConfigurationError, Gateway, GatewayError, OviRequest, Route
from gateway.clock import VirtualClock
from gateway.emulator import Emulator
from gateway.registry import Registry
from providers.runware import RunwareProvider

pytestmark = pytest.mark.anyio

REQUEST = OviRequest(prompt="A knight in the rain. <S>I will defend this land.<E>",
                     image="https://example.com/knight.png")
VENDORS = ("runware", "fal", "wavespeed")


class Recorder(httpx.AsyncBaseTransport):
    """Records every request (URL and timeout) and passes it on, or answers 503 when there is no inner."""

    def __init__(self, inner: httpx.AsyncBaseTransport | None = None) -> None:
        self.inner = inner
        self.seen: list[httpx.Request] = []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.seen.append(request)
        if self.inner is None:
            return httpx.Response(503, json={"error": "relay down"})
        return await self.inner.handle_async_request(request)


def _keys() -> dict[str, str]:
    return {name: "test-key" for name in VENDORS}


async def test_a_timeout_reaches_every_request_of_every_vendor() -> None:
    clock = VirtualClock()
    recorder = Recorder(Emulator(clock=clock).transport())
    gateway = Gateway(transport=recorder, keys=_keys(), clock=clock, journal=None, timeout=7.5)
    for vendor in VENDORS:
        result = await gateway.agenerate(REQUEST, provider=vendor)
        assert result.provider == vendor
    await gateway.aclose()
    hosts = {r.url.host for r in recorder.seen}
    assert {"api.runware.ai", "queue.fal.run", "api.wavespeed.ai"} <= hosts, hosts
    timeouts = {tuple(sorted(r.extensions["timeout"].items())) for r in recorder.seen}
    assert timeouts == {(("connect", 7.5), ("pool", 7.5), ("read", 7.5), ("write", 7.5))}


async def test_without_a_timeout_the_adapters_keep_their_step_defaults() -> None:
    clock = VirtualClock()
    recorder = Recorder(Emulator(clock=clock).transport())
    gateway = Gateway(transport=recorder, keys=_keys(), clock=clock, journal=None)
    await gateway.agenerate(REQUEST, provider="runware")
    await gateway.aclose()
    assert {r.extensions["timeout"]["connect"] for r in recorder.seen} == {10.0}


async def test_a_callers_http_client_carries_all_traffic_and_stays_open() -> None:
    clock = VirtualClock()
    hooked: list[str] = []

    async def hook(request: httpx.Request) -> None:
        hooked.append(request.url.host)

    client = httpx.AsyncClient(transport=Emulator(clock=clock).transport(), event_hooks={"request": [hook]})
    gateway = Gateway(http_client=client, keys=_keys(), clock=clock, journal=None)
    for vendor in VENDORS:
        assert (await gateway.agenerate(REQUEST, provider=vendor)).provider == vendor
    await gateway.aclose()
    assert {"api.runware.ai", "queue.fal.run", "api.wavespeed.ai"} <= set(hooked)  # fal-client's too
    assert not client.is_closed
    await client.aclose()


def test_http_client_and_a_transport_are_refused_together() -> None:
    with pytest.raises(ConfigurationError, match="not both"):
        Gateway(http_client=httpx.AsyncClient(), emulator=Emulator(), journal=None)


@pytest.mark.parametrize(("vendor", "base"), [("runware", "https://relay.example/v1"),
                                               ("wavespeed", "https://relay.example/ws"),
                                               ("fal", "https://relay.example/fal")])
async def test_base_urls_reach_each_adapter(vendor: str, base: str) -> None:
    recorder = Recorder()  # answers 503: this only looks at where requests went
    gateway = Gateway(transport=recorder, keys=_keys(), clock=VirtualClock(), journal=None,
                      base_urls={vendor: base})
    with pytest.raises(GatewayError):
        await gateway.agenerate(REQUEST, route=Route(provider=vendor, max_tries=1))
    await gateway.aclose()
    assert recorder.seen and {str(r.url).startswith(base) for r in recorder.seen} == {True}, \
        [str(r.url) for r in recorder.seen]
    assert {r.headers["host"] for r in recorder.seen} == {"relay.example"}


def test_base_urls_are_checked() -> None:
    with pytest.raises(ConfigurationError, match="no provider named 'runwar'"):
        Gateway(emulator=Emulator(), journal=None, base_urls={"runwar": "https://relay.example"})
    with pytest.raises(ConfigurationError, match="http\\(s\\) URL"):
        Gateway(emulator=Emulator(), journal=None, base_urls={"fal": "relay.example"})

    class Fixed(RunwareProvider):
        accepted_options = frozenset()

    with pytest.raises(ConfigurationError, match="takes no base_url"):
        Gateway(registry=Registry.from_classes({"runware": Fixed}), emulator=Emulator(), journal=None,
                base_urls={"runware": "https://relay.example/v1"})


async def test_proxies_come_from_httpx_environment_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.example:3128")
    gateway = Gateway(keys=_keys(), journal=None)
    gateway._providers()
    http = next(iter(gateway._sessions.values()))[0]
    assert http is not None
    pool = http._transport_for_url(httpx.URL("https://api.runware.ai/v1"))._pool  # type: ignore[attr-defined]
    assert type(pool).__name__ == "AsyncHTTPProxy"
    await gateway.aclose()


async def test_same_jitter_seed_still_makes_distinct_keys() -> None:
    """Issue 9: a seeded gateway made the same clip keys and Runware taskUUIDs in every process, so a
    second process asking for another prompt got the first one's video."""
    seen = []
    for _ in range(2):
        clock = VirtualClock()
        emulator = Emulator(clock=clock, seed=1)
        gateway = Gateway(emulator=emulator, clock=clock, journal=":memory:", jitter_seed=1)
        result = await gateway.agenerate(REQUEST, provider="runware")
        assert result.provider == "runware"
        (job,) = emulator.ledger.jobs
        assert gateway.journal is not None and gateway.journal.get_clip(result.idempotency_key) is not None
        seen.append((job.idempotency_key, result.idempotency_key))  # the task's key, and the clip's it made
        await gateway.aclose()
    (task_a, clip_a), (task_b, clip_b) = seen
    assert task_a != task_b and clip_a != clip_b


def test_seed_is_a_deprecated_name_for_jitter_seed() -> None:
    with pytest.warns(DeprecationWarning, match="jitter_seed"):
        old = Gateway(emulator=Emulator(), journal=None, seed=5)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        new = Gateway(emulator=Emulator(), journal=None, jitter_seed=5)
    assert [old.rng.random() for _ in range(3)] == [new.rng.random() for _ in range(3)]
    assert old._new_key() != new._new_key()


async def test_the_key_factory_is_the_test_seam_for_keys() -> None:
    keys = iter(["11111111-1111-4111-8111-111111111111", "22222222-2222-4222-8222-222222222222"])
    clock = VirtualClock()
    emulator = Emulator(clock=clock)
    gateway = Gateway(emulator=emulator, clock=clock, journal=":memory:", key_factory=lambda: next(keys))
    await gateway.agenerate(REQUEST, provider="runware")
    assert [j.idempotency_key for j in emulator.ledger.jobs] == ["22222222-2222-4222-8222-222222222222"]
    await gateway.aclose()
