"""Bad input is refused before anything is sent: idempotency keys, lone surrogates, tag look-alikes."""

from __future__ import annotations

import pydantic
import pytest

from gateway import Gateway, OviRequest
from gateway.clock import VirtualClock
from gateway.emulator import Emulator
from gateway.errors import InvalidRequest
from gateway.prompt import OviPrompt, PromptError

pytestmark = pytest.mark.anyio
REQUEST = OviRequest(prompt="A knight. <S>Hold the line.<E>", image="https://example.com/k.png")


@pytest.mark.parametrize(("key", "says"), [(42, "must be a string, not int"), (b"k-1", "not bytes"),
                                           ("", "is empty"), ("   ", "is empty"), ("x" * 257, "at most 256"),
                                           ("a\nb", "control or invalid character at position 1"),
                                           ("k\udc80", "control or invalid character")])
async def test_bad_idempotency_keys_are_refused_before_any_vendor_is_asked(key: object, says: str) -> None:
    clock = VirtualClock()
    emulator = Emulator(clock=clock, seed=1)
    gateway = Gateway(emulator=emulator, clock=clock, journal=":memory:")
    with pytest.raises(InvalidRequest, match=says):
        await gateway.agenerate(REQUEST, provider="runware", idempotency_key=key)  # type: ignore[arg-type]
    with pytest.raises(InvalidRequest, match=says):
        await gateway.submit(REQUEST, provider="runware", idempotency_key=key)  # type: ignore[arg-type]
    await gateway.aclose()
    assert emulator.ledger.jobs == [] and emulator.ledger.requests == []  # nothing sent, nothing billed


async def test_a_good_key_still_works() -> None:
    clock = VirtualClock()
    gateway = Gateway(emulator=Emulator(clock=clock, seed=2), clock=clock, journal=":memory:")
    result = await gateway.agenerate(REQUEST, provider="runware", idempotency_key="order-17:clip-2")
    assert result.idempotency_key == "order-17:clip-2"
    await gateway.aclose()


@pytest.mark.parametrize(("text", "token", "meant"), [
    ("A knight. <s>Hold.<e>", "<s>", "<S>"),
    ("A knight. <S>Hold.</S>", "</S>", "<E>"),
    ("A knight. <S>Hold.<e>", "<e>", "<E>"),
    ("Rain. <AUDCAP>Thunder.<END_AUDCAP>", "<END_AUDCAP>", "<ENDAUDCAP>"),
    ("Rain. <AUDCAP>Thunder.</AUDCAP>", "</AUDCAP>", "<ENDAUDCAP>"),
    ("Rain. <audcap>Thunder.<endaudcap>", "<audcap>", "<AUDCAP>"),
    ("Rain. < S >Hi.<E>", "< S >", "<S>"),
])
def test_tag_lookalikes_are_refused_with_the_tag_meant(text: str, token: str, meant: str) -> None:
    with pytest.raises(PromptError) as caught:
        OviPrompt.parse(text)
    assert f"{token!r} is not an Ovi tag" in str(caught.value)
    assert f"did you mean `{meant}`" in str(caught.value)
    assert caught.value.position == text.index(token)
    with pytest.raises(pydantic.ValidationError, match="did you mean"):
        OviRequest(prompt=text)


def test_ordinary_angle_brackets_and_real_tags_pass() -> None:
    parsed = OviPrompt.parse("A sign reads <open> and <strong>. <S>Hello.<E> <AUDCAP>Rain.<ENDAUDCAP>")
    assert parsed.speech == ["Hello."] and parsed.audio_caption == "Rain."


@pytest.mark.parametrize("field", ["prompt", "negative_prompt", "audio_negative_prompt"])
def test_lone_surrogates_are_a_clear_error_naming_the_field(field: str) -> None:
    fields = {"prompt": "A knight. <S>Hold.<E>", field: "bad \udc80 text"}
    with pytest.raises(pydantic.ValidationError) as caught:
        OviRequest(**fields)  # type: ignore[arg-type]
    text = str(caught.value)
    assert field in text and "lone surrogate U+DC80" in text and "character 4" in text
