"""The per-job hot path does its work once, without changing what it does (issue 14 item 3).

Each test pins one optimization to the behaviour it must keep: a cached value still redacts, a class
bound still maps a fired bound to the taxonomy, cached headers still carry the key and exactly one
User-Agent. Figures are in ``benchmarks/`` (never from timed tests).
"""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from pydantic import SecretStr

from gateway import secrets
from gateway.clock import VirtualClock
from gateway.contract import ProviderContext, SubmitContext
from gateway.errors import MalformedResponse, ProviderUnavailable, SubmitOutcomeUnknown
from gateway.http import USER_AGENT, decode
from gateway.jobs.bounds import bounded_call
from gateway.request import OviRequest
from providers.wavespeed import WaveSpeedProvider

pytestmark = pytest.mark.anyio


def test_a_known_secret_is_not_registered_again_and_still_redacts(monkeypatch: pytest.MonkeyPatch) -> None:
    secrets.register_api_key("hot-path-id:hot-path-secret-1")

    def recomputed(*args: Any, **kwargs: Any) -> set[str]:
        raise AssertionError("a registered value's forms were computed again")

    monkeypatch.setattr(secrets, "_forms", recomputed)
    secrets.register("hot-path-id:hot-path-secret-1")  # what every adapter call does with its key
    secrets.register_api_key("hot-path-id:hot-path-secret-1")
    assert secrets.redact("echo hot-path-id:hot-path-secret-1 and hot-path-secret-1") == "echo *** and ***"


def test_decoding_any_keeps_the_value_and_still_refuses_what_is_not_json() -> None:
    assert decode(Any, b'{"code": 1400, "data": [1, "x"]}', provider="x") == {"code": 1400, "data": [1, "x"]}
    assert decode(Any, {"already": "decoded"}, provider="x") == {"already": "decoded"}
    with pytest.raises(MalformedResponse, match="answer is not JSON"):
        decode(Any, b"<html>", provider="x")


async def test_a_bound_that_fires_is_a_failed_check_or_an_unknown_submit() -> None:
    clock = VirtualClock()
    with pytest.raises(ProviderUnavailable, match="v did not finish answering the status check within 2 s"):
        async with bounded_call(clock, None, provider="v", what="status check", cap=2.0):
            await clock.sleep(5)
    assert clock.now() == 2.0
    ctx = SubmitContext(idempotency_key="0b6f3c1e-5d2a-4c8b-9e7f-123456789abc")
    with pytest.raises(SubmitOutcomeUnknown, match="within 1 s; the submit may have reached it") as caught:
        async with bounded_call(clock, clock.now() + 1.0, provider="v", what="submit", submit=ctx):
            await clock.sleep(5)
    assert caught.value.may_be_billed and caught.value.job_hint["idempotency_key"] == ctx.idempotency_key


async def test_a_bound_passes_the_bodys_own_errors_and_maps_its_bare_timeout() -> None:
    clock = VirtualClock()
    with pytest.raises(ValueError, match="the body's own"):
        async with bounded_call(clock, None, provider="v", what="result"):
            raise ValueError("the body's own")
    with pytest.raises(ProviderUnavailable, match="did not finish answering the result"):
        async with bounded_call(clock, None, provider="v", what="result"):
            raise TimeoutError  # what the generator version mapped too
    async with bounded_call(clock, None, provider="v", what="result"):
        await clock.sleep(1)  # within the bound: nothing raised
    assert clock.now() == 1.0


async def test_a_real_clock_bound_fires_as_the_taxonomy_and_leaves_no_cancel_behind() -> None:
    """On ``RealClock`` the bound is one ``call_at`` (not ``asyncio.timeout``); a bound of 0 s fires on the
    next loop turn, so no real time passes."""
    import asyncio

    from gateway.clock import RealClock

    clock, task = RealClock(), asyncio.current_task()
    assert task is not None
    with pytest.raises(ProviderUnavailable, match="v did not finish answering the status check within 0 s"):
        async with bounded_call(clock, None, provider="v", what="status check", cap=0.0):
            await asyncio.Event().wait()
    assert task.cancelling() == 0  # the bound's own cancel was taken back
    ctx = SubmitContext(idempotency_key="0b6f3c1e-5d2a-4c8b-9e7f-123456789abc")
    with pytest.raises(SubmitOutcomeUnknown, match="the submit may have reached it"):
        async with bounded_call(clock, clock.now() - 1.0, provider="v", what="submit", submit=ctx):
            await asyncio.Event().wait()
    bound = bounded_call(clock, None, provider="v", what="result")
    async with bound:
        await asyncio.sleep(0)
    assert not bound._armed()  # an answer in time leaves no timer that could cancel later work
    with pytest.raises(ValueError, match="the body's own"):
        async with bounded_call(clock, None, provider="v", what="result"):
            raise ValueError("the body's own")


async def test_a_real_clock_bound_never_turns_the_callers_cancel_into_a_timeout() -> None:
    import asyncio

    from gateway.clock import RealClock

    entered = asyncio.Event()

    async def body() -> None:
        async with bounded_call(RealClock(), None, provider="v", what="status check"):
            entered.set()
            await asyncio.Event().wait()

    task = asyncio.ensure_future(body())
    await entered.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert task.cancelled()

    async def both() -> None:  # the bound fires and the caller cancels too: still the caller's cancel
        async with bounded_call(RealClock(), None, provider="v", what="status check", cap=0.0):
            asyncio.current_task().cancel()  # type: ignore[union-attr]
            await asyncio.Event().wait()

    task = asyncio.ensure_future(both())
    with pytest.raises(asyncio.CancelledError):
        await task


async def test_a_zero_wait_first_check_follows_the_submit_without_a_loop_turn(clock: VirtualClock) -> None:
    """With nothing to wait for (a zero-wait ``PollPolicy``), the first status check follows the submit's
    answer at once, as fal-client's own ``get`` does; every later check still yields to the loop."""
    from gateway import Gateway
    from gateway.emulator import Emulator
    from gateway.jobs.polling import PollPolicy

    sleeps: list[float] = []
    real_sleep = clock.sleep

    async def counted(seconds: float) -> None:
        sleeps.append(seconds)
        await real_sleep(seconds)

    clock.sleep = counted  # type: ignore[method-assign]
    zero = PollPolicy(expected=0.0, first_fraction=0.0, interval=0.0, learn=False)
    done = Gateway(emulator=Emulator(clock=clock, job_time=lambda rng: 0.0, seed=3), clock=clock, journal=None,
                   poll=zero)
    result = await done.agenerate(OviRequest(prompt="a knight", image="https://example.com/a.png"), provider="fal")
    assert result.provider == "fal" and sleeps == []
    await done.aclose()
    later = Gateway(emulator=Emulator(clock=clock, job_time=lambda rng: 2.0, seed=3), clock=clock, journal=None,
                    poll=PollPolicy(expected=0.0, first_fraction=0.0, interval=1.0, learn=False))
    result = await later.agenerate(OviRequest(prompt="a knight", image="https://example.com/a.png"), provider="fal")
    assert result.provider == "fal" and sleeps and all(s > 0 for s in sleeps)  # checks after the first wait
    await later.aclose()


def test_without_pushes_or_limits_the_runner_reads_the_sessions_adapters(tmp_path: Any) -> None:
    import asyncio

    from gateway import Gateway
    from gateway.emulator import Emulator
    from gateway.jobs.limits import LimitedProvider, VendorLimits

    async def main() -> None:
        plain = Gateway(emulator=Emulator(seed=1), journal=None)
        assert plain._runner(None).providers is plain._providers()  # no copy per call
        limited = Gateway(emulator=Emulator(seed=1), journal=tmp_path / "j.sqlite3",
                          limits={"fal": VendorLimits(rpm=60)})
        wrapped = limited._runner(None).providers
        assert isinstance(wrapped["fal"], LimitedProvider) and wrapped is not limited._providers()
        await plain.aclose()
        await limited.aclose()

    asyncio.run(main())


SUBMITTED = {"code": 200, "message": "success", "data": {"id": "pred-1", "status": "created",
                                                        "urls": {"get": "https://x/pred-1"}}}


@pytest.mark.parametrize("client_headers, expected_agents", [
    ({"user-agent": USER_AGENT}, [USER_AGENT]),  # the gateway's own client: sent once, not twice
    ({}, [USER_AGENT]),                          # a caller's client without it: the adapter adds it
    ({"user-agent": "theirs/1"}, [USER_AGENT]),  # a caller's own agent: ours replaces it, as before
])
async def test_wavespeed_requests_carry_the_key_and_one_user_agent(client_headers: dict[str, str],
                                                                   expected_agents: list[str]) -> None:
    seen: list[httpx.Request] = []

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json=SUBMITTED)

    request = OviRequest(prompt="a knight", image="https://example.com/a.png")
    async with httpx.AsyncClient(transport=httpx.MockTransport(answer), headers=client_headers) as http:
        for key in ("ws-key-one-123", "ws-key-one-123", "ws-key-two-456"):  # the header cache follows the key
            provider = WaveSpeedProvider(ProviderContext(api_key=SecretStr(key), http=http))
            for _ in range(2):
                handle = await provider.submit(request, SubmitContext(idempotency_key="k"))
                await provider.status(handle)
    assert [r.headers["authorization"] for r in seen[-4:]] == ["Bearer ws-key-two-456"] * 4
    assert {r.headers["authorization"] for r in seen[:8]} == {"Bearer ws-key-one-123"}
    assert all(r.headers.get_list("user-agent") == expected_agents for r in seen)
    assert [str(r.url) for r in seen[:2]] == ["https://api.wavespeed.ai/api/v3/character-ai/ovi/image-to-video",
                                              "https://api.wavespeed.ai/api/v3/predictions/pred-1/result"]


def test_a_pinned_route_is_made_once_per_route_and_vendor() -> None:
    from gateway.routing.planner import Route, pinned

    route = Route(max_tries=2, ignore=["runware"])
    first = pinned(route, "fal")
    assert first is pinned(route, "fal")  # shared by every call, not a copy per in-flight job
    assert first.provider == "fal" and first.max_tries == 2 and first.ignore == ["runware"]
    assert route.provider is None  # the caller's route is untouched
    assert pinned(route, "wavespeed").provider == "wavespeed"
    other = Route(max_tries=5)
    assert pinned(other, "fal") is not first and pinned(other, "fal").max_tries == 5


@pytest.mark.parametrize("how", ["provider", "only"])
async def test_a_job_in_flight_keeps_no_planning_leftovers(clock: VirtualClock, how: str) -> None:
    """Quotes and exclusion reasons of the vendors not chosen die with planning: at 10,000 jobs in flight
    they were a quarter of the gateway's memory per job."""
    import asyncio
    import gc

    from gateway import Gateway
    from gateway.emulator import Emulator
    from gateway.routing.pricing import Quote

    emulator = Emulator(clock=clock, job_time=lambda rng: 30.0, seed=3)
    gateway = Gateway(emulator=emulator, clock=clock, journal=None)
    request = OviRequest(prompt="a knight", image="https://example.com/a.png")
    gc.collect()
    before = {id(o) for o in gc.get_objects() if isinstance(o, Quote)}  # other tests' quotes
    from gateway.routing.planner import Route

    # provider=: only the pinned vendor is quoted; only=: every vendor is, and the others' quotes must go.
    call = (gateway.agenerate(request, provider="wavespeed") if how == "provider"
            else gateway.agenerate(request, route=Route(only=["wavespeed"])))
    task = asyncio.ensure_future(call)
    while not emulator["wavespeed"].jobs:  # submitted, now waiting for its first check
        await asyncio.sleep(0)
    await asyncio.sleep(0)
    gc.collect()
    # Planning's quotes are cached per request shape (shared by every job of that shape, not per job):
    # beside those, a job in flight keeps no quote, and no plan with the others' exclusion reasons.
    from gateway.routing.planner import Plan

    cached = {id(q) for q in gateway.book.quotes.values()}
    alive = [o.provider for o in gc.get_objects() if isinstance(o, Quote) and id(o) not in before | cached]
    assert alive == []
    assert sorted(q.provider for q in gateway.book.quotes.values()) == (
        ["wavespeed"] if how == "provider" else ["fal", "runware", "wavespeed"])
    assert not [o for o in gc.get_objects() if isinstance(o, Plan) and o.excluded]
    result = await task
    assert result.provider == "wavespeed" and result.quoted_usd is not None
    await gateway.aclose()


@pytest.mark.parametrize("client_headers", [{"user-agent": USER_AGENT}, {}, {"user-agent": "theirs/1"}])
async def test_runware_requests_carry_the_key_and_one_user_agent(client_headers: dict[str, str]) -> None:
    from providers.runware import RunwareProvider

    seen: list[httpx.Request] = []

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        task = {"taskType": "videoInference", "taskUUID": "0b6f3c1e-5d2a-4c8b-9e7f-123456789abc"}
        return httpx.Response(200, json={"data": [{**task, "status": "processing"}]})

    request = OviRequest(prompt="a knight", image="https://example.com/a.png")
    ctx = SubmitContext(idempotency_key="0b6f3c1e-5d2a-4c8b-9e7f-123456789abc")
    async with httpx.AsyncClient(transport=httpx.MockTransport(answer), headers=client_headers) as http:
        provider = RunwareProvider(ProviderContext(api_key=SecretStr("rw-key-123456"), http=http))
        for _ in range(2):
            handle = await provider.submit(request, ctx)
            assert (await provider.status(handle)).state.value == "running"
    assert len(seen) == 4 and all(str(r.url) == "https://api.runware.ai/v1" for r in seen)
    assert all(r.headers["authorization"] == "Bearer rw-key-123456" for r in seen)
    assert all(r.headers.get_list("user-agent") == [USER_AGENT] for r in seen)
    assert all(r.headers["accept"] == "application/json" for r in seen)


async def test_the_loopback_transport_rewrites_only_urls_that_point_elsewhere() -> None:
    from gateway.emulator.loopback import LoopbackTransport

    transport = LoopbackTransport("http://127.0.0.1:8765")
    seen: list[httpx.Request] = []

    class Inner(httpx.AsyncBaseTransport):
        async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
            seen.append(request)
            return httpx.Response(200)

    transport.inner = Inner()  # type: ignore[assignment]
    vendor = httpx.Request("GET", "https://queue.fal.run/fal-ai/ovi/requests/r1/status?logs=0")
    own = httpx.Request("GET", "http://127.0.0.1:8765/fal-ai/ovi/requests/r1/status")
    same_url = own.url
    await transport.handle_async_request(vendor)
    await transport.handle_async_request(own)
    assert str(seen[0].url) == "http://127.0.0.1:8765/fal-ai/ovi/requests/r1/status?logs=0"
    assert seen[0].headers["host"] == "127.0.0.1:8765"
    assert seen[1].url is same_url and seen[1].headers["host"] == "127.0.0.1:8765"
    other_port = httpx.Request("GET", "http://127.0.0.1:9999/x")
    await transport.handle_async_request(other_port)
    assert str(seen[2].url) == "http://127.0.0.1:8765/x" and seen[2].headers["host"] == "127.0.0.1:8765"


def test_planning_quotes_are_reused_per_request_shape_and_follow_the_book() -> None:
    """The runner's quotes are cached by vendor and request shape (mode and set fields); ``Gateway.quote``
    makes fresh ones; a different shape, or a recalibrated rule, is quoted again."""
    from decimal import Decimal

    from gateway import Gateway
    from gateway.request import Mode
    from gateway.routing.quoting import quotes_for

    gateway = Gateway(journal=None, keys={"runware": "k", "fal": "k", "wavespeed": "k"})
    image = "https://example.com/a.png"
    first = quotes_for(gateway.classes, gateway.book, OviRequest(prompt="a knight", image=image, steps=30),
                       cached=True)
    again = quotes_for(gateway.classes, gateway.book, OviRequest(prompt="another knight <S>Hi.<E>", image=image,
                                                                 steps=30), cached=True)
    assert all(again[name] is first[name] for name in first)  # the prompt is not part of the shape
    more = quotes_for(gateway.classes, gateway.book, OviRequest(prompt="a knight", image=image, steps=40),
                      cached=True)
    assert more["runware"].price_usd > first["runware"].price_usd  # steps price a compute-billed vendor
    text = quotes_for(gateway.classes, gateway.book, OviRequest(prompt="a knight", steps=30), cached=True)
    assert text["fal"] is not first["fal"] and text["fal"].feasible  # the mode is part of the shape
    fresh = quotes_for(gateway.classes, gateway.book, OviRequest(prompt="a knight", image=image, steps=30))
    assert fresh["runware"] is not first["runware"] and fresh["runware"] == first["runware"]
    before = first["runware"].price_usd
    gateway.book.calibrate("runware", Mode.IMAGE_TO_VIDEO, [(Decimal("0.2342"), 30)] * 3)
    after = quotes_for(gateway.classes, gateway.book, OviRequest(prompt="a knight", image=image, steps=30),
                       cached=True)
    assert after["runware"].price_usd is not None and before is not None
    assert after["runware"].price_usd > before  # the new scale is quoted, not the cached old price


def test_wavespeed_validates_the_final_polls_body_once_and_any_other_body_again(
        monkeypatch: pytest.MonkeyPatch) -> None:
    from gateway.contract import JobHandle
    from providers.wavespeed import translate

    done = {"code": 200, "message": "success", "data": {"id": "pred-1", "status": "completed",
                                                       "outputs": ["https://x/clip.mp4"]}}
    validated: list[Any] = []
    real = translate.decode

    def counted(model: Any, body: Any, **kwargs: Any) -> Any:
        if model is translate.Envelope:
            validated.append(body)
        return real(model, body, **kwargs)

    monkeypatch.setattr(translate, "decode", counted)
    handle = JobHandle("wavespeed", "pred-1", {})
    status = translate.status_of(json_bytes(done))
    assert translate.parse_output(status.raw, handle).video_url == "https://x/clip.mp4"
    assert len(validated) == 1  # the poll's body, not again for the result
    failed = {**done, "data": {**done["data"], "status": "failed", "error": "boom", "outputs": []}}
    with pytest.raises(Exception, match="boom"):  # an equal-looking id, another body: read afresh
        translate.parse_output(failed, handle)
    assert len(validated) == 2


def json_bytes(value: Any) -> bytes:
    import json

    return json.dumps(value).encode()


def _fal_counting_request_handles(monkeypatch: pytest.MonkeyPatch) -> tuple[Any, Any, list[str]]:
    """fal's adapter on a zero-time emulator, and the request ids fal-client request handles are made for."""
    from gateway.clock import VirtualClock
    from gateway.emulator import Emulator
    from providers.fal import FalProvider
    from providers.fal.queue import FalQueueClient

    emulator = Emulator(clock=VirtualClock(), job_time=lambda rng: 0.0)
    transport = emulator.transport()
    made: list[str] = []
    real = FalQueueClient.request_handle

    async def counted(self: FalQueueClient, data: Any) -> Any:
        made.append(data["request_id"])
        return await real(self, data)

    monkeypatch.setattr(FalQueueClient, "request_handle", counted)
    fal = FalProvider(ProviderContext(api_key=SecretStr("k"), http=httpx.AsyncClient(transport=transport),
                                      transport=transport))
    return emulator, fal, made


async def test_fal_reuses_the_request_of_the_handle_it_just_checked(monkeypatch: pytest.MonkeyPatch) -> None:
    """A job's final status check and its result GET share one fal-client request handle; another job's
    handle gets its own (every call still goes to that handle's own URLs)."""
    _, fal, made = _fal_counting_request_handles(monkeypatch)
    request = OviRequest(prompt="a knight <S>Hold.<E>", image="https://example.com/a.png")
    first = await fal.submit(request, SubmitContext(idempotency_key="k1"))
    second = await fal.submit(request, SubmitContext(idempotency_key="k2"))
    status = await fal.status(first)
    assert (await fal.result(first, status)).video_url
    assert made == [first.job_id]
    other = await fal.result(second, await fal.status(second))
    assert made == [first.job_id, second.job_id] and second.job_id in other.video_url


async def test_a_job_in_flight_holds_one_agenerate_frame_and_shared_callbacks(clock: VirtualClock) -> None:
    """Every job in flight is garbage-collector work at 10,000 jobs: ``agenerate`` scrubs its own errors
    (no wrapper coroutine and args tuple per job), and the runner's key maker and the delivery's fetcher
    are one bound method each, not one per job."""
    import asyncio
    import gc

    from gateway import Gateway
    from gateway.emulator import Emulator

    gateway = Gateway(emulator=Emulator(clock=clock, job_time=lambda rng: 30.0, seed=3), clock=clock, journal=None)
    request = OviRequest(prompt="a knight", image="https://example.com/a.png")
    tasks = [asyncio.ensure_future(gateway.agenerate(request, provider="wavespeed")) for _ in range(20)]
    for _ in range(50):
        await asyncio.sleep(0)
    frames = [o for o in gc.get_objects() if type(o).__name__ == "coroutine" and o.cr_frame is not None
              and o.__qualname__ == "Gateway.agenerate"]
    assert len(frames) == 20  # one per job: no scrubbing wrapper beside it
    first, second = gateway._runner(None), gateway._runner(None)
    assert first.new_key is second.new_key and first.deliver.fetch is second.deliver.fetch  # type: ignore[union-attr]
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    await gateway.aclose()


async def test_agenerate_still_scrubs_what_it_raises(monkeypatch: pytest.MonkeyPatch) -> None:
    """``agenerate`` has no ``scrubbing`` wrapper now: it scrubs itself, chain included."""
    import gateway.client as client_module
    from gateway import Gateway
    from gateway.errors import InvalidRequest

    scrubbed: list[BaseException] = []
    real = client_module.scrub

    def recorded(exc: BaseException) -> None:
        scrubbed.append(exc)
        real(exc)

    monkeypatch.setattr(client_module, "scrub", recorded)
    gateway = Gateway(journal=None, keys={"fal": "k"})
    with pytest.raises(InvalidRequest) as caught:
        await gateway.agenerate("not a request")  # type: ignore[arg-type]
    assert scrubbed == [caught.value]


def test_a_host_name_is_not_parsed_as_an_ip_address_and_every_ip_form_still_is(
        monkeypatch: pytest.MonkeyPatch) -> None:
    import ipaddress

    from gateway import addresses
    from gateway.addresses import UnsafeURL

    real = ipaddress.ip_address
    asked: list[str] = []

    def counted(host: str) -> Any:
        asked.append(host)
        return real(host)

    monkeypatch.setattr(addresses.ipaddress, "ip_address", counted)
    assert addresses.check_public_host("example.com") == "example.com"
    assert asked == []  # a name: no two exceptions from ipaddress for it
    for local in ("127.0.0.1", "127.1", "0x7f.1", "2130706433", "::1", "[::ffff:127.0.0.1]", "fe80::1"):
        with pytest.raises(UnsafeURL):
            addresses.check_public_host(local)
    assert addresses.check_public_host("8.8.8.8") == "8.8.8.8"


def test_a_random_key_is_a_uuid4_string_with_every_random_bit_in_play() -> None:
    """``random_key`` (every clip and submit takes one) writes out ``str(uuid.uuid4())``: the same form,
    version and variant, and distinct keys whose random digits take every value."""
    import uuid

    from gateway.client_setup import random_key

    keys = [random_key() for _ in range(2000)]
    assert len(set(keys)) == len(keys)
    for key in keys:
        parsed = uuid.UUID(key)
        assert str(parsed) == key and parsed.version == 4 and parsed.variant == uuid.RFC_4122
    digits = {position: {key[position] for key in keys} for position in range(36) if keys[0][position] != "-"}
    assert digits.pop(14) == {"4"} and digits.pop(19) == set("89ab")
    assert all(len(seen) == 16 for seen in digits.values())  # no random digit stuck (2000 keys: ~never by chance)


async def test_the_gateways_own_vendor_client_keeps_no_cookies_and_a_callers_client_keeps_its_own() -> None:
    """The client the gateway builds for vendor calls never stores a ``Set-Cookie`` nor sends one back
    (vendors authenticate by key; WaveSpeed's SDK keeps none either); a caller's ``http_client`` is used as
    it is, cookies and all."""
    from gateway.transports import VendorClient

    sent: list[str | None] = []

    def answer(request: httpx.Request) -> httpx.Response:
        sent.append(request.headers.get("cookie"))
        return httpx.Response(200, headers={"set-cookie": "lb=sticky-1; Path=/"}, json={"ok": True})

    async with VendorClient(transport=httpx.MockTransport(answer)) as ours:
        for _ in range(2):
            (await ours.get("https://api.wavespeed.ai/api/v3/predictions/x/result")).raise_for_status()
        assert len(ours.cookies) == 0
        with pytest.raises(AttributeError, match="keeps no cookies"):
            ours.cookies = {"a": "b"}
    async with httpx.AsyncClient(transport=httpx.MockTransport(answer)) as theirs:
        for _ in range(2):
            await theirs.get("https://api.wavespeed.ai/api/v3/predictions/x/result")
    assert sent == [None, None, None, "lb=sticky-1"]

    from gateway import Gateway
    from gateway.emulator import Emulator

    gateway = Gateway(emulator=Emulator(), journal=None)
    assert all(type(p._ctx.http) is VendorClient for p in gateway._providers().values())  # type: ignore[attr-defined]
    caller = httpx.AsyncClient()
    try:
        assert all(p._ctx.http is caller  # type: ignore[attr-defined]
                   for p in Gateway(http_client=caller, journal=None, keys={"fal": "k" * 12})._providers().values())
    finally:
        await caller.aclose()
        await gateway.aclose()


async def test_fal_follows_a_fresh_submit_on_its_own_request_and_reads_its_status_once(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A submit's fal-client request (made from the checked ack, on the client the submit used) serves the
    job's status check and result GET: no second request handle, each call on that job's own URLs; and the
    result step reads the inference time from the status body the check already validated."""
    from providers.fal.schemas import QueueStatus

    emulator, fal, made = _fal_counting_request_handles(monkeypatch)
    validated: list[Any] = []
    real_validate = QueueStatus.model_validate.__func__  # type: ignore[attr-defined]

    def counting(cls: type[QueueStatus], value: Any, *args: Any, **kwargs: Any) -> QueueStatus:
        validated.append(value)
        return real_validate(cls, value, *args, **kwargs)  # type: ignore[no-any-return]

    monkeypatch.setattr(QueueStatus, "model_validate", classmethod(counting))
    request = OviRequest(prompt="a knight <S>Hold.<E>", image="https://example.com/a.png")
    handle = await fal.submit(request, SubmitContext(idempotency_key="k1"))
    assert set(handle.data) == {"endpoint", "request_id", "response_url", "status_url", "cancel_url"}
    status = await fal.status(handle)
    output = await fal.result(handle, status)
    assert made == [] and handle.job_id in output.video_url
    assert len(validated) == 1  # the status check's body; the result step reads its metrics from that
    calls = [url for vendor, op, url in emulator.ledger.requests if vendor == "fal"]
    assert [u for u in calls if handle.job_id in u] == [handle.data["status_url"] + "?logs=false",
                                                        handle.data["response_url"]]


def test_an_api_key_registered_once_is_one_lookup_after_and_still_redacts(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every vendor call registers its key again (``require_key``): a key already registered with its halves
    costs one set lookup, and it and its halves are still masked; a new key is still registered in full."""
    secrets.register_api_key("hot-path-id-2:hot-path-secret-2")
    plain = secrets._plain

    def refused(value: Any) -> str:
        raise AssertionError("a registered key was read again")

    monkeypatch.setattr(secrets, "_plain", refused)
    secrets.register_api_key("hot-path-id-2:hot-path-secret-2")
    monkeypatch.setattr(secrets, "_plain", plain)
    assert secrets.redact("a hot-path-id-2:hot-path-secret-2 b hot-path-secret-2") == "a *** b ***"
    secrets.register_api_key(SecretStr("hot-path-id-3:hot-path-secret-3"))  # not a str: the full path
    secrets.register_api_key("another-new-key-0123")
    assert secrets.redact("hot-path-secret-3 another-new-key-0123") == "*** ***"


def test_a_url_image_is_checked_once_per_url_and_a_refused_one_every_time(monkeypatch: pytest.MonkeyPatch) -> None:
    from gateway import images
    from gateway.request import ImageInput

    checked: list[str] = []
    real = images.check_url

    def counted(url: str, **kwargs: Any) -> Any:
        checked.append(url)
        return real(url, **kwargs)

    monkeypatch.setattr(images, "check_url", counted)
    first = OviRequest(prompt="a knight", image="https://example.com/hot-path-once.png")
    again = OviRequest(prompt="a knight. <S>Hold.<E>", image="  https://example.com/hot-path-once.png ")
    assert first.image is again.image and checked == ["https://example.com/hot-path-once.png"]
    assert first.image == ImageInput(kind="url", value="https://example.com/hot-path-once.png")
    for _ in range(2):  # a refusal is not kept: checked (and refused, naming the field) on every request
        with pytest.raises(ValueError, match="image"):
            OviRequest(prompt="a knight", image="https://127.0.0.1/hot-path-local.png")
    assert checked.count("https://127.0.0.1/hot-path-local.png") == 2


def test_a_gateway_without_a_journal_sets_no_download_callback_and_one_with_a_journal_does(tmp_path: Any) -> None:
    import asyncio

    from gateway import Gateway
    from gateway.emulator import Emulator
    from gateway.jobs.polling import PollPolicy

    zero = PollPolicy(expected=0.0, first_fraction=0.0, interval=0.0, learn=False)

    async def main() -> None:
        for journal, recorded in ((None, False), (tmp_path / "j.sqlite3", True)):
            gateway = Gateway(emulator=Emulator(seed=3, job_time=lambda rng: 0.0), journal=journal, poll=zero)
            result = await gateway.agenerate(OviRequest(prompt="a knight", image="https://example.com/a.png"),
                                             provider="fal")
            assert (result._on_media is not None) is recorded
            await gateway.aclose()

    asyncio.run(main())
