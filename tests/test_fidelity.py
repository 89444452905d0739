"""Fidelity: the documented exchanges (cassettes) and the emulator's answers, read by the same adapters,
give the same normalized results — ids, URLs and numbers aside — and final bodies of the same shape."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from pydantic import SecretStr

from gateway.clock import VirtualClock
from gateway.contract import JobState, ProviderContext, ProviderOutput, SubmitContext
from gateway.emulator import Emulator
from gateway.registry import Registry
from tests.cassettes import test_fal_cassettes as fal_tapes
from tests.cassettes import test_runware_cassettes as runware_tapes
from tests.cassettes import test_wavespeed_cassettes as wavespeed_tapes

pytestmark = [pytest.mark.anyio, pytest.mark.skipif(runware_tapes.RECORD or fal_tapes.RECORD or wavespeed_tapes.RECORD,
                                                    reason="compares the committed cassettes")]


async def _runware_tape() -> tuple[Any, SubmitContext, ProviderOutput]:
    request, ctx = runware_tapes.doc_request("success_i2v_arcade")
    with runware_tapes.use("success_i2v_arcade"):
        async with httpx.AsyncClient() as http:
            provider = Registry.load().classes["runware"](ProviderContext(api_key=SecretStr("k"), http=http))
            handle = await provider.submit(request, ctx)
            status = await runware_tapes.run(provider, handle)
            return request, ctx, await provider.result(handle, status)


async def _fal_tape() -> tuple[Any, SubmitContext, ProviderOutput]:
    _, _, out = await fal_tapes.run("i2v_success", fal_tapes.SEED_REQUEST)
    return fal_tapes.SEED_REQUEST, fal_tapes.CTX, out


async def _wavespeed_tape() -> tuple[Any, SubmitContext, ProviderOutput]:
    request = wavespeed_tapes.OviRequest(prompt=wavespeed_tapes.docs.KNIGHT, image=wavespeed_tapes.docs.IMAGE)
    _, _, out = await wavespeed_tapes.run("i2v_success", request)
    return request, wavespeed_tapes.CTX, out


TAPES = {"runware": _runware_tape, "fal": _fal_tape, "wavespeed": _wavespeed_tape}


async def _emulated(vendor: str, request: Any, ctx: SubmitContext) -> ProviderOutput:
    clock = VirtualClock()
    emulator = Emulator(clock=clock, seed=21)
    async with httpx.AsyncClient(transport=emulator.transport()) as http:
        provider = Registry.load().classes[vendor](
            ProviderContext(api_key=SecretStr("k"), http=http, transport=emulator.transport()))
        handle = await provider.submit(request, ctx)
        clock.advance(120)
        status = await provider.status(handle)
        assert status.state is JobState.SUCCEEDED
        output = await provider.result(handle, status)
        closer = getattr(provider, "aclose", None)
        if closer is not None:
            await closer()
        return output


def _shape(value: Any) -> Any:
    """A body with every leaf replaced by its type, lists by their first element's shape."""
    if isinstance(value, dict):
        return {key: _shape(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_shape(value[0])] if value else []
    return "number" if isinstance(value, (int, float)) and not isinstance(value, bool) else type(value).__name__


def _normalized(output: ProviderOutput) -> dict[str, Any]:
    return {"video": output.video_url.startswith("https://") and output.video_url.endswith(".mp4"),
            "seed": type(output.seed).__name__, "cost": type(output.cost_usd).__name__,
            "nsfw": type(output.nsfw).__name__, "inference_s": type(output.inference_s).__name__}


@pytest.mark.parametrize("vendor", sorted(TAPES))
async def test_cassette_and_emulator_read_the_same(vendor: str) -> None:
    request, ctx, taped = await TAPES[vendor]()
    emulated = await _emulated(vendor, request, ctx)
    assert _normalized(emulated) == _normalized(taped)
    assert _covers(_shape(emulated.raw), _shape(taped.raw))


def _covers(emulated: Any, documented: Any) -> bool:
    """Every field of the documented body is in the emulator's, with the same shape (the emulator may
    also send fields the schema documents as optional, e.g. fal's File.content_type)."""
    if isinstance(documented, dict):
        return isinstance(emulated, dict) and all(
            key in emulated and _covers(emulated[key], sub) for key, sub in documented.items())
    if isinstance(documented, list):
        return isinstance(emulated, list) and (
            not documented or (bool(emulated) and _covers(emulated[0], documented[0])))
    return emulated == documented


def test_the_shape_check_can_fail() -> None:
    assert not _covers(_shape({"video": {}}), _shape({"video": {"url": "x"}}))
    assert not _covers(_shape({"seed": "1"}), _shape({"seed": 1}))
