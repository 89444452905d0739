"""The helpers every adapter shares for keys and answers (``gateway.http.require_key`` / ``decode``)."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from pydantic import BaseModel, SecretStr

from gateway.contract import ProviderContext, SubmitContext
from gateway.errors import ConfigurationError, MalformedResponse
from gateway.http import decode, require_key
from gateway.request import OviRequest
from providers.fal import FalProvider
from providers.runware import RunwareProvider
from providers.wavespeed import WaveSpeedProvider


class Answer(BaseModel):
    id: str
    count: int = 0


@pytest.mark.parametrize("key", [None, "", SecretStr("")])
def test_require_key_names_the_environment_variable(key) -> None:
    with pytest.raises(ConfigurationError, match="set WAVESPEED_API_KEY") as info:
        require_key(key, provider="wavespeed", env_key="WAVESPEED_API_KEY")
    assert info.value.provider == "wavespeed" and info.value.failover


def test_require_key_returns_the_value() -> None:
    assert require_key(SecretStr("k-123"), provider="fal", env_key="FAL_KEY") == "k-123"
    assert require_key("k-456", provider="fal", env_key="FAL_KEY") == "k-456"


@pytest.mark.parametrize("body", [b'{"id": "a", "count": 2}', '{"id": "a", "count": 2}', {"id": "a", "count": 2}])
def test_decode_takes_bytes_text_or_decoded_json(body) -> None:
    assert decode(Answer, body, provider="x") == Answer(id="a", count=2)
    assert decode(dict[str, Any], body, provider="x") == {"id": "a", "count": 2}


def test_decode_refuses_what_is_not_json_and_redacts_the_excerpt() -> None:
    with pytest.raises(MalformedResponse, match="status answer is not JSON") as info:
        decode(Answer, b"<html>key sk-secret-1</html>", provider="fal", what="status answer",
               may_be_billed=True, secrets=["sk-secret-1"])
    assert info.value.may_be_billed and info.value.provider == "fal"
    assert "sk-secret-1" not in str(info.value)


def test_decode_names_fields_but_not_values() -> None:
    with pytest.raises(MalformedResponse) as info:
        decode(Answer, {"id": "echoed-secret-prompt", "count": "many"}, provider="runware")
    assert "count" in str(info.value) and "echoed-secret-prompt" not in str(info.value)
    assert not info.value.may_be_billed


@pytest.mark.anyio
@pytest.mark.parametrize("cls", [RunwareProvider, FalProvider, WaveSpeedProvider])
async def test_every_adapter_names_its_env_key_when_no_key(cls) -> None:
    async with httpx.AsyncClient() as http:
        provider = cls(ProviderContext(api_key=None, http=http))
        with pytest.raises(ConfigurationError, match=f"{cls.name} needs an API key: set {cls.env_key}"):
            await provider.submit(OviRequest(prompt="p", image="https://example.com/a.png"),
                                  SubmitContext(idempotency_key="0b6f3c1e-5d2a-4c8b-9e7f-123456789abc"))
