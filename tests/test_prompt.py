"""The Ovi prompt grammar: parse, validate, build, exact round trips (gateway/prompt.py)."""

from __future__ import annotations

import re

import pydantic
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from gateway.errors import InvalidRequest
from gateway.prompt import OviPrompt, PromptError, PromptPart
from gateway.request import OviRequest

TAGS = ("<S>", "<E>", "<AUDCAP>", "<ENDAUDCAP>")
_TAG_RE = re.compile(r"<S>|<E>|<AUDCAP>|<ENDAUDCAP>")

PROPS = settings(max_examples=200, deadline=None, derandomize=True,
                 suppress_health_check=[HealthCheck.too_slow])


# ---------------------------------------------------------------- valid prompts

def test_scene_speech_and_caption() -> None:
    text = "A knight in the rain. <S>I will defend this land.<E> <AUDCAP>Thunder, war drums.<ENDAUDCAP>"
    p = OviPrompt.parse(text)
    assert p.scene == "A knight in the rain."
    assert p.speech == ["I will defend this land."]
    assert p.audio_caption == "Thunder, war drums."
    assert [part.kind for part in p.parts] == ["text", "speech", "text", "audio"]
    assert str(p) == text


def test_several_speech_segments_in_order() -> None:
    text = "Two friends talk. <S>Hi there.<E> She answers <S>Hello!<E> and he laughs <S>Ha.<E>"
    p = OviPrompt.parse(text)
    assert p.speech == ["Hi there.", "Hello!", "Ha."]
    assert p.audio_caption is None
    assert p.scene == "Two friends talk. She answers and he laughs"
    assert str(p) == text


def test_caption_need_not_be_last() -> None:
    text = "<AUDCAP>Rain on a tin roof.<ENDAUDCAP> A man says <S>Let's go.<E> and leaves."
    p = OviPrompt.parse(text)
    assert p.audio_caption == "Rain on a tin roof."
    assert p.speech == ["Let's go."]
    assert p.parts[0] == PromptPart("audio", "Rain on a tin roof.")
    assert p.scene == "A man says and leaves."
    assert str(p) == text


def test_bracketed_delivery_hint_kept_inside_speech() -> None:
    p = OviPrompt.parse("<S>[soft whisper] hi<E>")
    assert p.speech == ["[soft whisper] hi"]
    assert p.scene == ""
    assert p.parts == (PromptPart("speech", "[soft whisper] hi"),)


def test_scene_only_prompt() -> None:
    p = OviPrompt.parse("  A quiet lake at dawn.  ")
    assert p.parts == (PromptPart("text", "  A quiet lake at dawn.  "),)
    assert p.scene == "A quiet lake at dawn."
    assert p.speech == []
    assert p.audio_caption is None


def test_inner_whitespace_preserved_exactly() -> None:
    p = OviPrompt.parse("x <S>  spaced out  <E>")
    assert p.speech == ["  spaced out  "]


def test_tags_are_case_sensitive() -> None:
    # Lower-case look-alikes are plain text to Ovi's tokenizer: the vendor would render them literally,
    # so they are refused with the tag they probably meant (issue 9) instead of silently passing.
    with pytest.raises(PromptError, match="did you mean `<S>`"):
        OviPrompt.parse("a <s>not speech</s> <audcap>nope<endaudcap>")


SEED_PROMPTS = [
    'A wide shot of a medieval knight standing in the rain, sword planted into the ground, glowing with mystical energy.  \n<S>I will defend this land until my last breath.<E>  \n<AUDCAP>Thunder rolls across the dark sky, distant war drums echo.<ENDAUDCAP>',
    'An intimate close-up of a European woman with long dark hair as she gently brushes her hair in a softly lit bedroom, her delicate hand moving in the foreground. She looks directly into the camera with calm, focused eyes, a faint serene smile glowing in the warm lamp light. She says, <S>[soft whisper] I am an artificial intelligence.<E>.<AUDCAP>Soft whispering female voice, ASMR tone with gentle breaths, cozy room acoustics, subtle emphasis on "I am an artificial intelligence".<ENDAUDCAP>',
]
"""Every Ovi prompt quoted in the vendor seeds (fal's example JSON, WaveSpeed's prompt example), verbatim."""


def test_seed_examples_found() -> None:
    prompts = SEED_PROMPTS
    assert len(prompts) >= 2
    assert any("<AUDCAP>" in p for p in prompts)


@pytest.mark.parametrize("text", SEED_PROMPTS, ids=lambda t: t[:30])
def test_vendor_seed_examples_parse(text: str) -> None:
    p = OviPrompt.parse(text)
    assert str(p) == text
    assert len(p.speech) == 1
    assert p.audio_caption is not None
    assert OviRequest(prompt=text).prompt == text


def test_fal_seed_example_structure() -> None:
    fal = next(t for t in SEED_PROMPTS if "artificial intelligence" in t)
    p = OviPrompt.parse(fal)
    assert p.speech == ["[soft whisper] I am an artificial intelligence."]
    assert p.audio_caption.startswith("Soft whispering female voice")
    assert p.audio_caption.endswith('"I am an artificial intelligence".')
    assert p.scene.endswith("She says, .")


def test_wavespeed_seed_example_structure() -> None:
    wave = next(t for t in SEED_PROMPTS if "medieval knight" in t)
    p = OviPrompt.parse(wave)
    assert p.speech == ["I will defend this land until my last breath."]
    assert p.audio_caption == "Thunder rolls across the dark sky, distant war drums echo."
    assert p.scene.startswith("A wide shot of a medieval knight")


# ---------------------------------------------------------------- errors

@pytest.mark.parametrize(
    ("text", "position", "problem", "fix"),
    [
        ("Scene <S>hi", 6, "<S> is never closed", "<E>"),
        ("<S>hello", 0, "<S> is never closed", "<E>"),
        ("x <AUDCAP>rain", 2, "<AUDCAP> is never closed", "<ENDAUDCAP>"),
        ("Hi <E>", 3, "<E> closes nothing", "<S>"),
        ("rain<ENDAUDCAP>", 4, "<ENDAUDCAP> closes nothing", "<AUDCAP>"),
        ("<S>a <AUDCAP>x<ENDAUDCAP><E>", 5, "<AUDCAP> inside the <S> segment opened at character 0",
         "tags cannot nest"),
        ("<S>a <S>b<E>", 5, "<S> inside the <S> segment", "close it with <E> first"),
        ("<AUDCAP>a <E>", 10, "<E> inside the <AUDCAP> segment", "close it with <ENDAUDCAP> first"),
        ("<AUDCAP>a<ENDAUDCAP> b <AUDCAP>c<ENDAUDCAP>", 23, "a second <AUDCAP> audio caption",
         "merge all sound descriptions"),
        ("x <S>  <E>", 2, "empty <S><E> segment", "between the tags"),
        ("x <AUDCAP><ENDAUDCAP>", 2, "empty <AUDCAP><ENDAUDCAP> segment", "between the tags"),
        ("", 0, "the prompt is empty", "describe the scene"),
        ("  \n\t ", 0, "the prompt is empty", "describe the scene"),
    ],
)
def test_errors_name_position_and_fix(text: str, position: int, problem: str, fix: str) -> None:
    with pytest.raises(PromptError) as info:
        OviPrompt.parse(text)
    err = info.value
    assert err.position == position
    assert problem in str(err)
    assert f"at character {position};" in str(err)
    assert fix in err.fix
    assert err.fix in str(err)


def test_error_hierarchy() -> None:
    with pytest.raises(PromptError) as info:
        OviPrompt.parse("<E>")
    assert isinstance(info.value, InvalidRequest)
    assert isinstance(info.value, ValueError)
    assert info.value.retryable is False and info.value.failover is False


def test_non_string_prompt_is_prompt_error() -> None:
    with pytest.raises(PromptError) as info:
        OviPrompt.parse(42)  # type: ignore[arg-type]
    assert info.value.position == 0


def test_request_with_bad_prompt_names_position() -> None:
    with pytest.raises(pydantic.ValidationError) as info:
        OviRequest(prompt="Scene <S>hi")
    text = str(info.value)
    assert "prompt" in text
    assert "at character 6" in text
    assert "end the speech segment with <E>" in text


def test_request_accepts_oviprompt_object() -> None:
    p = OviPrompt.build("A lake.", ["Hello."])
    req = OviRequest(prompt=p)
    assert req.prompt == "A lake. <S>Hello.<E>"
    assert req.parsed_prompt == p


# ---------------------------------------------------------------- build

def test_build_exact_text() -> None:
    p = OviPrompt.build("  A knight.  ", ["One.", "Two."], "Drums.")
    assert str(p) == "A knight. <S>One.<E> <S>Two.<E> <AUDCAP>Drums.<ENDAUDCAP>"
    assert p.scene == "A knight."
    assert p.speech == ["One.", "Two."]
    assert p.audio_caption == "Drums."


def test_build_without_scene() -> None:
    assert str(OviPrompt.build("", ["Hi."])) == "<S>Hi.<E>"
    assert str(OviPrompt.build("   ", (), "Wind.")) == "<AUDCAP>Wind.<ENDAUDCAP>"


def test_build_then_parse_round_trip() -> None:
    built = OviPrompt.build("Scene.", ["[excited] Go!", "Now."], "Crowd cheering.")
    again = OviPrompt.parse(str(built))
    assert again == built
    assert str(again) == str(built)


def test_build_validates_parts() -> None:
    with pytest.raises(PromptError):
        OviPrompt.build("Scene", ["  "])
    with pytest.raises(PromptError):
        OviPrompt.build("Scene", ["a<E>b"])
    with pytest.raises(PromptError):
        OviPrompt.build("", [])


# ---------------------------------------------------------------- properties

_tokens = st.sampled_from(TAGS)
_ALPHABET = "ab <>SEAUDCPN[]\n\t\u00e9\u3000"
_chunk = st.one_of(_tokens, st.text(_ALPHABET, max_size=6), st.sampled_from(["<S", "E>", "<ENDAUDCAP", "[hint]"]))
_tagged_text = st.lists(_chunk, max_size=12).map("".join)


def _check_any(text: str) -> None:
    try:
        p = OviPrompt.parse(text)
    except PromptError as err:
        assert isinstance(err, ValueError)
        assert 0 <= err.position <= max(0, len(text) - 1)
        assert err.fix
        return
    assert str(p) == text
    assert sum(part.kind == "audio" for part in p.parts) <= 1
    for part in p.parts:
        assert not _TAG_RE.search(part.text)
        if part.kind != "text":
            assert part.text.strip()


@PROPS
@given(st.text(max_size=60))
def test_any_text_parses_or_raises_prompt_error(text: str) -> None:
    _check_any(text)


@PROPS
@given(_tagged_text)
def test_tag_soup_parses_or_raises_prompt_error(text: str) -> None:
    _check_any(text)


_free = st.text(_ALPHABET, max_size=20).filter(lambda s: not _TAG_RE.search(s))
_line = _free.filter(lambda s: bool(s.strip()))


@PROPS
@given(_free, st.lists(_line, max_size=4), st.one_of(st.none(), _line))
def test_build_parse_round_trip(scene: str, speech: list[str], caption: str | None) -> None:
    assume(scene.strip() or speech or caption is not None)
    built = OviPrompt.build(scene, speech, caption)
    parsed = OviPrompt.parse(str(built))
    assert parsed.speech == speech
    assert parsed.audio_caption == caption
    assert parsed.scene == scene.strip()
    assert str(parsed) == str(built)
