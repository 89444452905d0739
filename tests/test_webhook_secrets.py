"""Webhook URL tokens and signing secrets are in the secrets registry (review finding 15)."""

from __future__ import annotations

import json

import httpx
import pytest
from pydantic import SecretStr

import gateway.secrets as secrets
from gateway.contract import ProviderContext
from gateway.jobs.push import PushBox
from providers.wavespeed.provider import WaveSpeedProvider


class _NoEvents:
    def latest_trusted(self, vendor: str, job_id: str) -> bytes | None:
        return None


def test_a_jobs_url_token_is_redacted_wherever_its_url_is_echoed() -> None:
    box = PushBox(public_url="https://gw.example.com", secret=b"box-key-finding15-0123456789", events=_NoEvents())
    url = box.url("runware", "clip-15", "submit-15")
    token = url.rsplit("t=", 1)[1]
    assert len(token) == 64
    assert token not in secrets.redact(f"vendor said: bad webhookURL {url}")
    echoed = httpx.URL("https://queue.fal.run/x", params={"fal_webhook": url})  # fal-client's form
    assert token in str(echoed) and token not in secrets.redact(f"error at {echoed}")
    assert token not in secrets.redact(json.dumps({"webhookURL": url}))
    assert secrets.contains_secret(url) and not secrets.contains_secret(url.replace(f"t={token}", "t=x"))


def test_only_the_t_parameter_is_taken_for_a_token() -> None:
    PushBox(public_url="https://gw.example.com", secret=b"box-key-shape-0123456789", events=_NoEvents())
    clip = "https://cdn.example.com/clip.mp4?digest=" + "ab" * 32 + "&st=" + "cd" * 32
    assert secrets.redact(clip) == clip  # a vendor's clip URL reaches the journal intact


def test_registering_a_thousand_job_tokens_does_not_grow_the_registry() -> None:
    # Each per-job token used to be registered as a literal value, recompiling one pattern over all of them:
    # 115 ms per job at 900 tokens in the server benchmark. Tokens are now redacted by their form.
    box = PushBox(public_url="https://gw.example.com", secret=b"box-key-many-tokens-0123456789", events=_NoEvents())
    before = len(secrets._values)
    urls = [box.url("fal", f"clip-{n}", f"submit-{n}") for n in range(1000)]
    assert len(secrets._values) == before
    assert all(url.rsplit("t=", 1)[1] not in secrets.redact(url) for url in urls[::97])
    assert secrets.is_registered("box-key-finding15-0123456789")


def test_the_wavespeed_webhook_secret_is_registered_when_the_adapter_is_built(
        monkeypatch: pytest.MonkeyPatch) -> None:
    value = "whsec_finding15-wavespeed-signing-secret"
    monkeypatch.setenv("WAVESPEED_WEBHOOK_SECRET", value)
    WaveSpeedProvider(ProviderContext(api_key=SecretStr("k" * 12), http=httpx.AsyncClient()))
    assert value not in secrets.redact(f"echo {value}")
