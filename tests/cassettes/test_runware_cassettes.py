"""Replay Runware's documented exchanges (cassettes/runware/*.yaml) through the real adapter with vcrpy.

Replay: ``record_mode="none"``, each interaction played once, all of them played. Requests match on
method, scheme, host, path, query and the JSON body, so our payload must equal the recorded one.

Re-record against the real API: ``OVI_RECORD=1 RUNWARE_API_KEY=… pytest tests/cassettes/test_runware_cassettes.py``
(real, paid jobs with fresh taskUUIDs; ids are then not compared with the documents; the failure
scenario cannot be provoked on purpose and is skipped). ``python -m tests.cassettes.make_runware_cassettes``
restores the documented cassettes.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from decimal import Decimal
from pathlib import Path

import httpx
import pytest
from pydantic import SecretStr

from gateway.contract import JobState, ProviderContext, SubmitContext
from gateway.errors import AuthError, GenerationFailed
from gateway.request import OviRequest
from providers.runware import RunwareProvider
from tests.cassettes.make_runware_cassettes import (
    CASSETTE_DIR,
    DOC_EXAMPLES,
    FAILURE_TASK_UUID,
    SCENARIOS,
    render,
)
from tests.cassettes.recorder import recorder

pytestmark = pytest.mark.anyio

RECORD = os.environ.get("OVI_RECORD") == "1"  # the key check is the fixture below: it skips, not replays
KEY = os.environ.get("RUNWARE_API_KEY") if RECORD else "replay-key"
RECORDER = recorder("runware", "RUNWARE_API_KEY")


def use(name: str):
    return RECORDER.use_cassette(f"{name}.yaml", allow_playback_repeats=False)


@pytest.fixture(autouse=True)
def _need_key_when_recording() -> None:
    if RECORD and not KEY:
        pytest.skip("OVI_RECORD=1 needs RUNWARE_API_KEY")


def doc_request(name: str) -> tuple[OviRequest, SubmitContext]:
    doc = DOC_EXAMPLES[name]["request"]
    request = OviRequest(prompt=doc["positivePrompt"], image=doc["inputs"]["image"], seed=doc["seed"],
                         steps=doc["steps"], fps=doc["fps"])
    return request, SubmitContext(idempotency_key=str(uuid.uuid4()) if RECORD else doc["taskUUID"])


async def run(provider: RunwareProvider, handle):
    for _ in range(400 if RECORD else 5):
        status = await provider.status(handle)
        if status.state.final:
            return status
        if RECORD:
            await asyncio.sleep(3)  # real time, only while recording against Runware
    raise AssertionError("the job did not finish")


@pytest.mark.parametrize("name", sorted(DOC_EXAMPLES))
async def test_documented_image_to_video(name: str) -> None:
    request, ctx = doc_request(name)
    with use(name) as cassette:
        async with httpx.AsyncClient() as http:
            provider = RunwareProvider(ProviderContext(api_key=SecretStr(KEY), http=http))
            handle = await provider.submit(request, ctx)
            status = await run(provider, handle)
            assert status.state is JobState.SUCCEEDED
            out = await provider.result(handle, status)
        if not RECORD:
            assert cassette.all_played and cassette.play_count == 3
            doc = DOC_EXAMPLES[name]["response"]
            assert handle.job_id == doc["taskUUID"]
            assert (out.video_url, out.seed, out.cost_usd) == (doc["videoURL"], doc["seed"], Decimal(str(doc["cost"])))
        else:
            assert out.video_url.startswith("https://") and out.cost_usd is not None


@pytest.mark.skipif(RECORD, reason="a generation failure cannot be provoked on purpose")
async def test_generation_failure() -> None:
    request, _ = doc_request("success_i2v_arcade")
    with use("generation_failure") as cassette:
        async with httpx.AsyncClient() as http:
            provider = RunwareProvider(ProviderContext(api_key=SecretStr(KEY), http=http))
            handle = await provider.submit(request, SubmitContext(FAILURE_TASK_UUID))
            status = await run(provider, handle)
        assert cassette.all_played and cassette.play_count == 3
    assert status.state is JobState.FAILED and isinstance(status.error, GenerationFailed)
    assert status.error.vendor_code == "inferenceError" and status.error.failover is True


async def test_auth_error() -> None:
    request, ctx = doc_request("success_i2v_arcade")
    with use("auth_error") as cassette:
        async with httpx.AsyncClient() as http:
            provider = RunwareProvider(ProviderContext(api_key=SecretStr("not-a-valid-runware-key"), http=http))
            with pytest.raises(AuthError) as info:
                await provider.submit(request, ctx)
        assert cassette.all_played and cassette.play_count == 1
    assert info.value.status_code == 401 and info.value.vendor_code == "invalidApiKey"
    assert info.value.may_be_billed is False and "not-a-valid-runware-key" not in str(info.value)


@pytest.mark.skipif(RECORD, reason="recording replaces the documented cassettes")
@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_cassettes_are_what_the_generator_writes(name: str) -> None:
    assert (CASSETTE_DIR / f"{name}.yaml").read_text(encoding="utf-8") == render(name)


def test_every_runware_cassette_is_replayed_here() -> None:
    assert {p.stem for p in Path(CASSETTE_DIR).glob("*.yaml")} == set(SCENARIOS)
