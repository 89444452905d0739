"""Every payload the Runware adapter builds is valid against Runware's own Ovi OpenAPI ``RequestBody``.

Property test: hypothesis draws requests across every honored field and all image forms; each
translated task array is validated with ``jsonschema`` (draft 2020-12) and a format checker, so the
``inputs.image`` ``anyOf`` (uuid | uri | data-URI pattern | base64 pattern) means something.
jsonschema checks ``format: uri`` only when ``rfc3987`` is installed; it is not, so a small checker
for absolute URIs (RFC 3986: a scheme, then no spaces) is registered instead.
"""

from __future__ import annotations

import base64
import json
import re
from pathlib import Path

import httpx
import jsonschema
import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from pydantic import SecretStr

from gateway.contract import ProviderContext, SubmitContext
from gateway.request import OviRequest
from providers.runware import RunwareProvider
from tests.conftest import PNG_BYTES

SPEC = json.loads((Path(__file__).resolve().parents[1] / "data" / "runware-ovi-openapi.json").read_text())
FORMATS = jsonschema.FormatChecker()


@FORMATS.checks("uri")
def _is_uri(value: object) -> bool:
    return not isinstance(value, str) or bool(re.match(r"^[A-Za-z][A-Za-z0-9+.-]*:\S+$", value))


VALIDATOR = jsonschema.Draft202012Validator(SPEC["components"]["schemas"]["RequestBody"], format_checker=FORMATS)
PROVIDER = RunwareProvider(ProviderContext(
    api_key=SecretStr("k"), http=httpx.AsyncClient(transport=httpx.MockTransport(lambda r: pytest.fail("no I/O")))))

JPEG = b"\xff\xd8\xff\xe0" + bytes(range(256)) * 2
IMAGES = st.one_of(
    st.builds(lambda host, path: f"https://h{host}.example.com/{path}.jpg",
              st.text("abcdefghijklmnopqrstuvwxyz0123456789-", max_size=20),
              st.text("ABCXYZabcxyz0189_/-%.~", max_size=40)),
    st.sampled_from([PNG_BYTES, JPEG]).map(lambda b: base64.b64encode(b).decode()),
    st.sampled_from([(PNG_BYTES, "png"), (JPEG, "jpeg")]).map(
        lambda p: f"data:image/{p[1]};base64,{base64.b64encode(p[0]).decode()}"),
)
TEXT = st.text(st.characters(blacklist_characters="<>", blacklist_categories=("Cs",)), max_size=60)
PROMPTS = st.builds(lambda scene, line: f"A scene {scene}" + (f" <S>{line}<E>" if line.strip() else ""),
                    TEXT, TEXT)
GUIDANCE = st.floats(0, 10, allow_nan=False)
REQUESTS = st.builds(
    OviRequest, prompt=PROMPTS, image=IMAGES,
    seed=st.none() | st.integers(0, 2**63 - 1), steps=st.none() | st.integers(1, 100),
    negative_prompt=st.none() | TEXT, audio_negative_prompt=st.none() | TEXT,
    video_guidance=st.none() | GUIDANCE, audio_guidance=st.none() | GUIDANCE,
    slg_layer=st.none() | st.integers(0, 30), fps=st.none() | st.integers(1, 120),
    output_format=st.none() | st.sampled_from(["MP4", "WEBM", "MOV"]),
    output_quality=st.none() | st.integers(20, 99),
)


@settings(max_examples=200, deadline=None, database=None, phases=[Phase.generate, Phase.shrink],
          suppress_health_check=[HealthCheck.too_slow])
@given(request=REQUESTS, key=st.uuids(version=4).map(str))
def test_every_translated_payload_matches_runware_schema(request: OviRequest, key: str) -> None:
    payload = PROVIDER.translate(request, SubmitContext(idempotency_key=key))
    errors = [e.message for e in VALIDATOR.iter_errors(json.loads(json.dumps(payload)))]
    assert errors == []
    task = payload[0]
    for name in ("seed", "steps", "fps"):
        assert (name in task) == (getattr(request, name) is not None)


def test_local_file_payload_matches_runware_schema(png_file: Path) -> None:
    ctx = SubmitContext("3f1c9a52-6d1e-4b8a-9c47-2e5b7d0a8f13")
    payload = PROVIDER.translate(OviRequest(prompt="x", image=png_file, seed=0), ctx)
    assert list(VALIDATOR.iter_errors(payload)) == []


@pytest.mark.parametrize("image", ["not an image!", "ftp ://x", "data:image/png;base64,a b"])
def test_the_validator_is_meaningful_for_images(image: str) -> None:
    task = {"taskType": "videoInference", "taskUUID": "3f1c9a52-6d1e-4b8a-9c47-2e5b7d0a8f13",
            "model": "runware:190@1", "positivePrompt": "x", "inputs": {"image": image}}
    assert list(VALIDATOR.iter_errors([task]))
    assert list(VALIDATOR.iter_errors([{**task, "taskUUID": "not-a-uuid", "inputs": {"image": "https://a.b/c"}}]))
    assert not list(VALIDATOR.iter_errors([{**task, "inputs": {"image": "https://a.b/c"}}]))
