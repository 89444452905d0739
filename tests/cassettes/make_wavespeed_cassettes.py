"""Write cassettes/wavespeed/*.yaml from WaveSpeed's documented bodies (reproducible; run as a module).

    .venv/bin/python -m tests.cassettes.make_wavespeed_cassettes

Where each body comes from:
- request bodies: the Ovi I2V parameter table and curl example (seeds/wavespeed-ovi-image-to-video.md,
  https://wavespeed.ai/docs/docs-api/character-ai/character-ai-ovi-image-to-video: ``image``, ``prompt``,
  ``seed`` −1 = random) with that page's knight prompt example; the T2V page
  (https://www.wavespeed.ai/docs/docs-api/character-ai/character-ai-ovi-text-to-video: ``size`` "960*540").
  The image URL is ours (the docs give none).
- submit and result envelopes: the "Response Parameters" table of the same page and
  https://wavespeed.ai/docs/shared/submit-response (``created_at`` "2023-04-01T12:34:56.789Z" is the
  docs' own example); ``outputs`` and ``timings.inference`` (ms) once ``completed``.
- the failure: https://wavespeed.ai/docs/get-result (failed tasks are HTTP 200 with ``data.status``
  "failed" and ``data.error``) and https://wavespeed.ai/docs/error-codes (``data.code`` 1403 "task
  execution failed").
- the auth error: HTTP 401 (vendor blog https://wavespeed.ai/blog/posts/wavespeed-api-auth-errors); its
  body ``{"code": 401, "message": …}`` is UNCONFIRMED, modeled on the envelope's code/message.
Task ids and output URLs are made up (the docs show placeholders).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from vcr.request import Request

from tests.cassettes.recorder import write_scenarios

CASSETTE_DIR = Path(__file__).resolve().parents[2] / "cassettes" / "wavespeed"
API = "https://api.wavespeed.ai/api/v3"
I2V = "character-ai/ovi/image-to-video"
T2V = "character-ai/ovi/text-to-video"
IMAGE = "https://example.com/knight.jpg"
KNIGHT = ("A wide shot of a medieval knight standing in the rain, sword planted into the ground, glowing with "
          "mystical energy.\n<S>I will defend this land until my last breath.<E>\n"
          "<AUDCAP>Thunder rolls across the dark sky, distant war drums echo.<ENDAUDCAP>")
T2V_PROMPT = ("A street musician plays under neon lights at night. <S>This one is for the night owls.<E> "
              "<AUDCAP>Acoustic guitar, light rain, distant traffic.<ENDAUDCAP>")
CREATED_AT = "2023-04-01T12:34:56.789Z"

I2V_TASK = "b1e1c6f4d2a94e0c8a7f3d5b9c2e4a61"
T2V_TASK = "7c3a9e5d1b2f4c6e8a0d2f4b6c8e0a13"
FAILED_TASK = "e4f6a8c0b2d44e6f8a1c3e5b7d9f1a25"


def envelope(task: str, model: str, status: str, **data: Any) -> dict[str, Any]:
    """The documented submit/result envelope."""
    body: dict[str, Any] = {
        "id": task, "model": model, "outputs": [], "urls": {"get": f"{API}/predictions/{task}/result"},
        "has_nsfw_contents": [], "status": status, "created_at": CREATED_AT, "error": "",
        "timings": {"inference": 0},
    }
    body.update(data)
    return {"code": 200, "message": "success", "data": body}


def completed(task: str, model: str, inference_ms: int) -> dict[str, Any]:
    return envelope(task, model, "completed", outputs=[f"https://cdn.wavespeed.ai/outputs/{task}.mp4"],
                    has_nsfw_contents=[False], timings={"inference": inference_ms})


def post(model: str, body: dict[str, Any]) -> Request:
    return Request("POST", f"{API}/{model}", json.dumps(body), {"content-type": "application/json"})


def get(task: str) -> Request:
    return Request("GET", f"{API}/predictions/{task}/result", None, {})


def answer(status: int, body: dict[str, Any], headers: dict[str, str] | None = None) -> dict[str, Any]:
    return {"status": {"code": status, "message": {200: "OK", 401: "Unauthorized"}[status]},
            "headers": {"content-type": ["application/json"], **{k: [v] for k, v in (headers or {}).items()}},
            "body": {"string": json.dumps(body)}}


SCENARIOS: dict[str, list[tuple[Request, dict[str, Any]]]] = {
    "i2v_success": [
        (post(I2V, {"image": IMAGE, "prompt": KNIGHT, "seed": -1}), answer(200, envelope(I2V_TASK, I2V, "created"))),
        (get(I2V_TASK), answer(200, envelope(I2V_TASK, I2V, "processing"))),
        (get(I2V_TASK), answer(200, completed(I2V_TASK, I2V, 58412))),
    ],
    "t2v_success": [
        (post(T2V, {"prompt": T2V_PROMPT, "size": "960*540", "seed": 42}),
         answer(200, envelope(T2V_TASK, T2V, "created"))),
        (get(T2V_TASK), answer(200, envelope(T2V_TASK, T2V, "created"))),
        (get(T2V_TASK), answer(200, envelope(T2V_TASK, T2V, "processing"))),
        (get(T2V_TASK), answer(200, completed(T2V_TASK, T2V, 61230))),
    ],
    "generation_failed": [
        (post(I2V, {"image": IMAGE, "prompt": KNIGHT, "seed": 7}), answer(200, envelope(FAILED_TASK, I2V, "created"))),
        (get(FAILED_TASK), answer(200, envelope(FAILED_TASK, I2V, "processing"))),
        (get(FAILED_TASK), answer(200, envelope(FAILED_TASK, I2V, "failed", error="Task execution failed",
                                                code=1403))),
    ],
    "auth_error": [
        (post(I2V, {"image": IMAGE, "prompt": KNIGHT, "seed": -1}),
         answer(401, {"code": 401, "message": "Unauthorized: invalid API key"})),
    ],
}


def write(directory: Path = CASSETTE_DIR) -> list[Path]:
    """Write every scenario's cassette; returns the paths written."""
    return write_scenarios(SCENARIOS, directory)


if __name__ == "__main__":
    for written in write():
        print(written)
