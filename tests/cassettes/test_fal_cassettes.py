"""Full fal.ai exchanges (submit → polls → result) through fal-client, replayed from cassettes/fal/*.yaml.

The cassettes are written by ``make_fal_cassettes.py`` from documented bodies. vcrpy 9.4 patches httpx
at the transport level (``AsyncHTTPTransport.handle_async_request``), underneath the adapter's
``SingleShotTransport`` wrapper, so replay runs the same no-retry path as real traffic — with the
default transport (``ctx.transport=None``: fal-client's backup-domain transport over
``AsyncHTTPTransport``) and with an injected ``AsyncHTTPTransport`` alike.

Re-record against the real API: ``OVI_RECORD=1 FAL_KEY=… pytest tests/cassettes/test_fal_cassettes.py``
(record_mode "all"; costs about $0.40; request ids from the docs are then not asserted).
"""

from __future__ import annotations

import asyncio
import os
import re

import httpx
import pytest
from pydantic import SecretStr

from gateway.contract import JobState, ProviderContext, SubmitContext
from gateway.errors import AuthError, GenerationFailed
from gateway.request import OviRequest
from providers.fal import FalProvider
from tests.cassettes import make_fal_cassettes as docs
from tests.cassettes.recorder import recorder, recording
from tests.conftest import CASSETTES

pytestmark = pytest.mark.anyio

RECORD = recording("FAL_KEY")
KEY = os.environ["FAL_KEY"] if RECORD else "test-key-not-real"
CTX = SubmitContext(idempotency_key="6a1f0e2d-3c4b-4a59-8e7d-1f2a3b4c5d6e")
VCR = recorder("fal", "FAL_KEY")


async def run(name: str, request: OviRequest, key: str = KEY,
              transport: httpx.AsyncBaseTransport | None = None):
    """Submit, poll until final, fetch the result; returns (handle, last status, output or error)."""
    with VCR.use_cassette(f"{name}.yaml", allow_playback_repeats=False) as cassette:
        async with httpx.AsyncClient() as http:
            provider = FalProvider(ProviderContext(api_key=SecretStr(key), http=http, transport=transport))
            outcome: object = None
            handle = status = None
            try:
                handle = await provider.submit(request, CTX)
                status = await provider.status(handle)
                for _ in range(300):
                    if status.state.final:
                        break
                    if RECORD:
                        await asyncio.sleep(2)
                    status = await provider.status(handle)
                outcome = await provider.result(handle, status)
            except Exception as exc:
                outcome = exc
        if not RECORD:
            assert cassette.all_played, f"{name}: not every recorded interaction was played"
    return handle, status, outcome


SEED_REQUEST = OviRequest(prompt=docs.SEED_PROMPT, image=docs.SEED_IMAGE,
                          negative_prompt="jitter, bad hands, blur, distortion", steps=30,
                          audio_negative_prompt="robotic, muffled, echo, distorted")


@pytest.mark.parametrize("transport", [None, "injected"])
async def test_image_to_video_success(transport: str | None) -> None:
    injected = httpx.AsyncHTTPTransport() if transport else None
    handle, status, out = await run("i2v_success", SEED_REQUEST, transport=injected)
    assert not isinstance(out, Exception), out
    assert status.state is JobState.SUCCEEDED
    assert handle.data["endpoint"] == "fal-ai/ovi/image-to-video"
    assert "/fal-ai/ovi/requests/" in handle.data["status_url"]
    assert out.cost_usd is None and isinstance(out.seed, int)
    if not RECORD:
        assert handle.job_id == docs.I2V_ID
        assert out.video_url == docs.SEED_VIDEO and out.seed == docs.RESULT_SEED
        assert out.inference_s == pytest.approx(58.41)


async def test_text_to_video_success() -> None:
    request = OviRequest(prompt=docs.T2V_PROMPT, size=docs.T2V_RESOLUTION)
    handle, status, out = await run("t2v_success", request)
    assert not isinstance(out, Exception), out
    assert status.state is JobState.SUCCEEDED and handle.data["endpoint"] == "fal-ai/ovi"
    if not RECORD:
        assert handle.job_id == docs.T2V_ID and out.video_url == docs.T2V_VIDEO and out.seed == 42


async def test_generation_failure() -> None:
    if RECORD:
        pytest.skip("a vendor-side failure cannot be provoked on demand")
    request = OviRequest(prompt=docs.SEED_PROMPT, image=docs.SEED_IMAGE, seed=7)
    _handle, status, error = await run("generation_failed", request)
    assert status.state is JobState.SUCCEEDED  # fal: a failed request reaches COMPLETED too
    assert isinstance(error, GenerationFailed) and error.vendor_code == "runner_server_error"
    # fal FAQ: "server errors (5xx) are never charged" — the failed request cost nothing.
    assert error.status_code == 500 and error.may_be_billed is False


async def test_auth_error() -> None:
    handle, _status, error = await run("auth_error", OviRequest(prompt=docs.SEED_PROMPT, image=docs.SEED_IMAGE),
                                      key="invalid-key")
    assert handle is None and isinstance(error, AuthError) and error.status_code == 401
    assert error.may_be_billed is False


def test_cassettes_hold_no_secrets_and_match_the_generator(tmp_path) -> None:
    for path in (CASSETTES / "fal").glob("*.yaml"):
        text = path.read_text()
        assert not re.search(r"(?im)^\s*-?\s*authorization\s*:", text)
        assert not re.search(r"Key [A-Za-z0-9_\-:]{8,}", text)
        assert KEY not in text
    if not RECORD:
        for written in docs.write(tmp_path):
            assert written.read_text() == (CASSETTES / "fal" / written.name).read_text()
