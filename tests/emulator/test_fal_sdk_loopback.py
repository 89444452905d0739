"""fal-client's own, unmodified ``AsyncClient`` completes a job against the emulator on loopback HTTP."""

from __future__ import annotations

import asyncio
from pathlib import Path

import fal_client
import fal_client.client
import httpx
import pytest
from pydantic import SecretStr

from gateway.contract import JobState, ProviderContext, SubmitContext
from gateway.emulator import Emulator
from gateway.errors import SubmitOutcomeUnknown
from gateway.request import OviRequest
from providers.fal import FalProvider

pytestmark = [pytest.mark.slow, pytest.mark.anyio]

PROMPT = "A knight in the rain. <S>I will defend this land.<E> <AUDCAP>Thunder.<ENDAUDCAP>"


@pytest.fixture(scope="module")
def server():
    emulator = Emulator(job_time=lambda rng: 0.05)  # real clock: the job ends 50 ms after submit
    # One server for the module: shutting one down waits out serve_forever's 0.5 s poll.
    served = emulator.serve(0)
    yield emulator, served.server_port
    served.shutdown()
    served.server_close()


async def test_sdk_submit_status_get_on_loopback(server, monkeypatch: pytest.MonkeyPatch) -> None:
    emulator, port = server
    base = f"http://127.0.0.1:{port}"
    submits, billed = emulator.ledger.calls("fal", "submit"), len(emulator.ledger.billable("fal"))
    monkeypatch.setattr(fal_client.client, "QUEUE_URL_FORMAT", base + "/")
    client = fal_client.AsyncClient(key="k")
    handle = await client.submit("fal-ai/ovi/image-to-video",
                                 {"prompt": PROMPT, "image_url": "https://example.com/knight.png", "seed": 5})
    assert handle.status_url == f"{base}/fal-ai/ovi/requests/{handle.request_id}/status"
    assert handle.response_url == f"{base}/fal-ai/ovi/requests/{handle.request_id}"
    status = await handle.status()
    assert isinstance(status, (fal_client.Queued, fal_client.InProgress, fal_client.Completed))
    result = await handle.get(interval=0.02)
    assert result["seed"] == 5
    assert result["video"]["url"].startswith(f"{base}/files/")
    assert emulator.ledger.calls("fal", "submit") == submits + 1
    assert len(emulator.ledger.billable("fal")) == billed + 1
    # The handle fal-client rebuilds from an id alone points at the same place.
    again = await client.get_handle("fal-ai/ovi/image-to-video", handle.request_id)
    assert again.status_url == handle.status_url
    assert isinstance(await again.status(), fal_client.Completed)


async def test_adapter_default_transport_on_loopback(server, monkeypatch: pytest.MonkeyPatch,
                                                   png_file: Path) -> None:
    """The adapter with no injected transport (fal-client's own transport, as for real traffic)."""
    emulator, port = server
    base = f"http://127.0.0.1:{port}"
    uploads = emulator.ledger.calls("fal", "upload")
    for name, value in (("QUEUE_URL_FORMAT", base + "/"), ("REST_URL", base), ("CDN_URL", base)):
        monkeypatch.setattr(fal_client.client, name, value)
    fal = FalProvider(ProviderContext(api_key=SecretStr("k"), http=httpx.AsyncClient()))
    handle = await fal.submit(OviRequest(prompt=PROMPT, image=png_file),
                              SubmitContext(idempotency_key="0b5c1d2e-0000-4000-8000-000000000009"))
    assert emulator.ledger.calls("fal", "upload") == uploads + 2
    status = await fal.status(handle)
    for _ in range(50):
        if status.state.final:
            break
        await asyncio.sleep(0.02)
        status = await fal.status(handle)
    assert status.state is JobState.SUCCEEDED
    out = await fal.result(handle, status)
    assert out.video_url.startswith(f"{base}/files/")


async def test_lost_answer_body_on_loopback_is_one_post(server, monkeypatch: pytest.MonkeyPatch,
                                                        capfd: pytest.CaptureFixture[str]) -> None:
    """drop_body over real sockets: the server makes (and bills) the job, then hangs up; the adapter on
    fal-client's own transport sends one POST and reports an unknown outcome."""
    emulator, port = server
    base = f"http://127.0.0.1:{port}"
    submits, billed = emulator.ledger.calls("fal", "submit"), len(emulator.ledger.billable("fal"))
    monkeypatch.setattr(fal_client.client, "QUEUE_URL_FORMAT", base + "/")
    emulator["fal"].faults.add("submit", "drop_body")
    fal = FalProvider(ProviderContext(api_key=SecretStr("k"), http=httpx.AsyncClient()))
    with pytest.raises(SubmitOutcomeUnknown):
        await fal.submit(OviRequest(prompt=PROMPT, image="https://example.com/knight.png"),
                         SubmitContext(idempotency_key="0b5c1d2e-0000-4000-8000-00000000000a"))
    assert emulator.ledger.calls("fal", "submit") == submits + 1
    assert len(emulator.ledger.billable("fal")) == billed + 1
    assert "Traceback" not in capfd.readouterr().err  # the server hung up on purpose, it did not crash


def test_fal_run_on_loopback_answers_at_once_and_books_no_queue_job(server, monkeypatch: pytest.MonkeyPatch) -> None:
    """``fal_client.run`` (fal's synchronous ``fal.run`` host) pointed at the loopback prefix ``/fal-run/``."""
    emulator, port = server
    base = f"http://127.0.0.1:{port}"
    monkeypatch.setattr(fal_client.client, "RUN_URL_FORMAT", base + "/fal-run/")
    jobs, submits = len(emulator.ledger.jobs), emulator.ledger.calls("fal", "submit")
    result = fal_client.SyncClient(key="k").run("fal-ai/ovi/image-to-video",
                                                {"prompt": PROMPT, "image_url": "https://example.com/k.png", "seed": 4})
    assert result["seed"] == 4 and result["video"]["url"].startswith(f"{base}/files/")
    assert httpx.get(result["video"]["url"], timeout=5).status_code == 200
    [run] = emulator.ledger.jobs[jobs:]
    assert run.billable and run.job_id not in emulator["fal"].jobs
    assert emulator.ledger.calls("fal", "submit") == submits and emulator.ledger.calls("fal", "run") >= 1
