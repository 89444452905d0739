"""The official ``wavespeed`` SDK (and our adapter) against the emulator served on real loopback HTTP.

Proves the emulator speaks the protocol the vendor's own client expects: submit, poll ``/result``,
and the SDK's upload ticket flow (``/api/v3/media/uploads`` + PUT, undocumented but what SDK 2.0.5 uses).
"""

from __future__ import annotations

import httpx
import pytest
from pydantic import SecretStr

from gateway.clock import RealClock
from gateway.contract import JobState, ProviderContext, SubmitContext
from gateway.emulator import Emulator
from gateway.emulator.clips import ClipStore
from gateway.request import OviRequest
from providers.wavespeed import WaveSpeedProvider

pytestmark = pytest.mark.slow

PROMPT = "A knight in the rain. <S>I will defend this land.<E> <AUDCAP>Thunder, war drums.<ENDAUDCAP>"


@pytest.fixture(scope="module")
def served():
    # one server per module: shutting one down waits out serve_forever's 0.5 s poll
    emulator = Emulator(clock=RealClock(), job_time=lambda rng: 0.05)
    server = emulator.serve(0)
    try:
        yield emulator, server.server_port
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def sdk_client(served):
    wavespeed = pytest.importorskip("wavespeed")
    _, port = served
    return wavespeed.Client(api_key="k", base_url=f"http://127.0.0.1:{port}", retry_interval=0.01)


def test_sdk_run_to_completion(served, sdk_client) -> None:
    import requests

    emulator, port = served
    before = len(emulator.ledger.jobs)
    output = sdk_client.run("character-ai/ovi/image-to-video",
                            {"image": "https://example.com/a.png", "prompt": PROMPT}, poll_interval=0.05,
                            timeout=10)
    (url,) = output["outputs"]
    assert url.startswith(f"http://127.0.0.1:{port}/")  # loopback clients keep talking to loopback
    assert requests.get(url, timeout=5).content == ClipStore.asset("mp4")
    new = emulator.ledger.jobs[before:]
    assert len(new) == 1 and new[0].billable and str(new[0].price) == "0.15"
    assert [job.vendor for job in emulator.ledger.jobs] == ["wavespeed"] * len(emulator.ledger.jobs)


def test_sdk_sees_a_failed_job(served, sdk_client) -> None:
    emulator, _ = served
    before = len(emulator.ledger.jobs)
    emulator["wavespeed"].faults.add("job", "fail")
    result = sdk_client.run_no_throw("character-ai/ovi/image-to-video",
                                     {"image": "https://example.com/a.png", "prompt": PROMPT}, poll_interval=0.05,
                                     timeout=10)
    assert result["status"] == "failed" and "Task execution failed" in result["error"]
    new = emulator.ledger.jobs[before:]
    assert len(new) == 1 and not new[0].billable


def test_sdk_upload_ticket_flow(served, sdk_client, png_file) -> None:
    import requests

    from tests.conftest import PNG_BYTES

    url = sdk_client.upload(str(png_file))
    assert requests.get(url, timeout=5).content == PNG_BYTES


@pytest.mark.anyio
async def test_adapter_over_loopback(served, png_file) -> None:
    import anyio

    emulator, port = served
    uploads = emulator.ledger.calls("wavespeed", "upload")
    async with httpx.AsyncClient() as http:
        provider = WaveSpeedProvider(ProviderContext(api_key=SecretStr("k"), http=http,
                                                     options={"base_url": f"http://127.0.0.1:{port}"}))
        handle = await provider.submit(OviRequest(prompt=PROMPT, image=png_file), SubmitContext("key-1"))
        assert handle.data["result_url"].startswith(f"http://127.0.0.1:{port}/api/v3/predictions/")
        status = await provider.status(handle)
        for _ in range(100):
            if status.state.final:
                break
            await anyio.sleep(0.02)
            status = await provider.status(handle)
        assert status.state is JobState.SUCCEEDED
        out = await provider.result(handle, status)
        assert (await http.get(out.video_url)).content == ClipStore.asset("mp4")
    assert emulator.ledger.calls("wavespeed", "upload") == uploads + 1
