"""Full WaveSpeed exchanges (submit → polls → result) replayed from cassettes/wavespeed/*.yaml.

The cassettes are written by ``make_wavespeed_cassettes.py`` from documented bodies. To re-record against
the real API: ``OVI_RECORD=1 WAVESPEED_API_KEY=… pytest tests/cassettes/test_wavespeed_cassettes.py``
(record_mode "all"; this costs about $0.30, and ids from the docs are then not asserted).
"""

from __future__ import annotations

import asyncio
import os

import httpx
import pytest
from pydantic import SecretStr

from gateway.contract import JobState, ProviderContext, SubmitContext
from gateway.errors import AuthError, GenerationFailed
from gateway.request import OviRequest
from providers.wavespeed import WaveSpeedProvider
from tests.cassettes import make_wavespeed_cassettes as docs
from tests.cassettes.recorder import recorder, recording
from tests.conftest import CASSETTES

pytestmark = pytest.mark.anyio

RECORD = recording("WAVESPEED_API_KEY")
KEY = os.environ["WAVESPEED_API_KEY"] if RECORD else "test-key-not-real"
CTX = SubmitContext(idempotency_key="3d9c6a2e-8f1b-4b7d-a5e3-0c2f4e6a8b1d")
VCR = recorder("wavespeed", "WAVESPEED_API_KEY")


async def run(name: str, request: OviRequest, key: str = KEY):
    """Submit, poll until final, fetch the result; returns (handle, last status, output or error)."""
    with VCR.use_cassette(f"{name}.yaml", allow_playback_repeats=False) as cassette:
        async with httpx.AsyncClient() as http:
            provider = WaveSpeedProvider(ProviderContext(api_key=SecretStr(key), http=http))
            outcome: object = None
            handle = status = None
            try:
                handle = await provider.submit(request, CTX)
                status = await provider.status(handle)
                for _ in range(200):
                    if status.state.final:
                        break
                    if RECORD:
                        await asyncio.sleep(5)  # the docs ask for ≥ 5 s between video polls
                    status = await provider.status(handle)
                outcome = await provider.result(handle, status)
            except Exception as exc:
                outcome = exc
        if not RECORD:
            assert cassette.all_played, f"{name}: not every recorded interaction was played"
    return handle, status, outcome


async def test_image_to_video_success() -> None:
    handle, status, out = await run("i2v_success", OviRequest(prompt=docs.KNIGHT, image=docs.IMAGE))
    assert status.state is JobState.SUCCEEDED
    assert out.video_url.endswith(".mp4") and out.cost_usd is None
    if not RECORD:
        assert handle.job_id == docs.I2V_TASK
        assert out.video_url == f"https://cdn.wavespeed.ai/outputs/{docs.I2V_TASK}.mp4"
        assert out.inference_s == pytest.approx(58.412) and out.nsfw is False


async def test_text_to_video_success() -> None:
    request = OviRequest(prompt=docs.T2V_PROMPT, size="960x540", seed=42)
    handle, status, out = await run("t2v_success", request)
    assert status.state is JobState.SUCCEEDED and out.video_url.endswith(".mp4")
    if not RECORD:
        assert handle.job_id == docs.T2V_TASK and out.inference_s == pytest.approx(61.23)


async def test_generation_failure() -> None:
    if RECORD:
        pytest.skip("a vendor-side failure cannot be provoked on demand")
    _handle, status, error = await run("generation_failed", OviRequest(prompt=docs.KNIGHT, image=docs.IMAGE, seed=7))
    assert status.state is JobState.FAILED
    assert isinstance(status.error, GenerationFailed) and status.error.vendor_code == "1403"
    assert isinstance(error, GenerationFailed) and "Task execution failed" in str(error)


async def test_auth_error() -> None:
    handle, _status, error = await run("auth_error", OviRequest(prompt=docs.KNIGHT, image=docs.IMAGE),
                                      key="invalid-key")
    assert handle is None and isinstance(error, AuthError) and error.status_code == 401
    assert error.may_be_billed is False


def test_cassettes_hold_no_secrets_and_match_the_generator(tmp_path) -> None:
    for path in (CASSETTES / "wavespeed").glob("*.yaml"):
        text = path.read_text()
        assert "authorization" not in text.lower() and "Bearer" not in text
        assert KEY not in text
    if not RECORD:
        for written in docs.write(tmp_path):
            assert written.read_text() == (CASSETTES / "wavespeed" / written.name).read_text()
