"""Write cassettes/fal/*.yaml from fal.ai's documented bodies (reproducible; run as a module).

    .venv/bin/python -m tests.cassettes.make_fal_cassettes

Where each body comes from:
- the I2V request: the "Full Example" of seeds/fal-ovi-image-to-video.md
  (https://fal.ai/models/fal-ai/ovi/image-to-video/llms.txt), literally; its output video URL is that
  page's "Example Response". The page's example omits ``seed`` although its output schema marks it
  required, so the result here adds ``"seed": 1234567`` (our value).
- the T2V request: https://fal.ai/models/fal-ai/ovi/llms.txt fields (``prompt``, ``resolution`` from the
  7-value enum); the prompt and the output URL are ours.
- submit, status and result shapes: the queue docs (https://docs.fal.ai/model-endpoints/queue,
  https://fal.ai/docs/api-reference/inference-api): submit answers ``request_id``, ``response_url``,
  ``status_url``, ``cancel_url``, ``status`` IN_QUEUE, ``queue_position``; status is 202 while
  IN_QUEUE / IN_PROGRESS and 200 when COMPLETED (``metrics.inference_time``); status/result URLs use
  owner/app only (``fal-ai/ovi/requests/{id}``). fal-client sends ``?logs=false`` on status GETs.
- the failure: a failed request reaches COMPLETED and the result GET returns the model's error
  (https://fal.ai/docs/inference-api/queue/result) in the request-error shape with ``error_type``
  ``runner_server_error`` (500) and the ``X-Fal-Error-Type`` header
  (https://docs.fal.ai/documentation/model-apis/request-errors).
- the auth error: HTTP 401 with a FastAPI-style ``{"detail": …}``; the exact text is UNCONFIRMED.
The I2V request id is the queue docs' own example id; the others are made up (UUID-shaped).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from vcr.request import Request

from tests.cassettes.recorder import write_scenarios

CASSETTE_DIR = Path(__file__).resolve().parents[2] / "cassettes" / "fal"
QUEUE = "https://queue.fal.run"
I2V = "fal-ai/ovi/image-to-video"
T2V = "fal-ai/ovi"

SEED_PROMPT = (
    "An intimate close-up of a European woman with long dark hair as she gently brushes her hair in a softly "
    "lit bedroom, her delicate hand moving in the foreground. She looks directly into the camera with calm, "
    "focused eyes, a faint serene smile glowing in the warm lamp light. She says, <S>[soft whisper] I am an "
    "artificial intelligence.<E>.<AUDCAP>Soft whispering female voice, ASMR tone with gentle breaths, cozy room "
    "acoustics, subtle emphasis on \"I am an artificial intelligence\".<ENDAUDCAP>"
)
SEED_IMAGE = "https://storage.googleapis.com/falserverless/example_inputs/ovi_i2v_input.png"
SEED_VIDEO = "https://storage.googleapis.com/falserverless/example_inputs/ovi_i2v_output.mp4"
FULL_EXAMPLE = {
    "prompt": SEED_PROMPT,
    "negative_prompt": "jitter, bad hands, blur, distortion",
    "num_inference_steps": 30,
    "audio_negative_prompt": "robotic, muffled, echo, distorted",
    "image_url": SEED_IMAGE,
}
RESULT_SEED = 1234567
T2V_PROMPT = ("A street musician plays under neon lights at night. <S>This one is for the night owls.<E> "
              "<AUDCAP>Acoustic guitar, light rain, distant traffic.<ENDAUDCAP>")
T2V_RESOLUTION = "992x512"
T2V_VIDEO = "https://v3.fal.media/files/koala/Xq3b9Lw2_ovi_t2v_output.mp4"

I2V_ID = "80e732af-660e-45cd-bd63-580e4f2a94cc"
T2V_ID = "3f6b2d1c-7a8e-4c5d-9b0a-1e2f3a4b5c6d"
FAILED_ID = "c2d4e6f8-1a3b-4c5d-8e7f-9a0b1c2d3e4f"
INFERENCE_S = {I2V_ID: 58.41, T2V_ID: 61.23, FAILED_ID: 33.7}


def urls(request_id: str) -> dict[str, str]:
    """The queue URLs fal answers: owner/app only, never the ``/image-to-video`` subpath."""
    base = f"{QUEUE}/fal-ai/ovi/requests/{request_id}"
    return {"response_url": base, "status_url": base + "/status", "cancel_url": base + "/cancel"}


def ack(request_id: str) -> dict[str, Any]:
    return {"request_id": request_id, **urls(request_id), "status": "IN_QUEUE", "queue_position": 0}


def queued(request_id: str, position: int) -> dict[str, Any]:
    return {"status": "IN_QUEUE", "queue_position": position, "response_url": urls(request_id)["response_url"]}


def running(request_id: str) -> dict[str, Any]:
    return {"status": "IN_PROGRESS", "logs": None, "response_url": urls(request_id)["response_url"]}


def completed(request_id: str) -> dict[str, Any]:
    return {"status": "COMPLETED", "logs": None, "metrics": {"inference_time": INFERENCE_S[request_id]},
            "response_url": urls(request_id)["response_url"]}


def post(model: str, body: dict[str, Any]) -> Request:
    # the adapter turns off fal's model fallbacks on every submit (reference/providers.md 1.3)
    return Request("POST", f"{QUEUE}/{model}", json.dumps(body), {"content-type": "application/json",
                                                                   "x-fal-disable-fallbacks": "true"})


def status(request_id: str) -> Request:
    return Request("GET", urls(request_id)["status_url"] + "?logs=false", None, {})


def result(request_id: str) -> Request:
    return Request("GET", urls(request_id)["response_url"], None, {})


REASONS = {200: "OK", 202: "Accepted", 401: "Unauthorized", 500: "Internal Server Error"}


def answer(code: int, body: dict[str, Any], headers: dict[str, str] | None = None) -> dict[str, Any]:
    return {"status": {"code": code, "message": REASONS[code]},
            "headers": {"content-type": ["application/json"], **{k: [v] for k, v in (headers or {}).items()}},
            "body": {"string": json.dumps(body)}}


def rid(request_id: str) -> dict[str, str]:
    return {"x-fal-request-id": request_id}


SCENARIOS: dict[str, list[tuple[Request, dict[str, Any]]]] = {
    "i2v_success": [
        (post(I2V, FULL_EXAMPLE), answer(200, ack(I2V_ID), rid(I2V_ID))),
        (status(I2V_ID), answer(202, queued(I2V_ID, 0), rid(I2V_ID))),
        (status(I2V_ID), answer(202, running(I2V_ID), rid(I2V_ID))),
        (status(I2V_ID), answer(200, completed(I2V_ID), rid(I2V_ID))),
        (result(I2V_ID), answer(200, {"video": {"url": SEED_VIDEO}, "seed": RESULT_SEED}, rid(I2V_ID))),
    ],
    "t2v_success": [
        (post(T2V, {"prompt": T2V_PROMPT, "resolution": T2V_RESOLUTION}), answer(200, ack(T2V_ID), rid(T2V_ID))),
        (status(T2V_ID), answer(202, queued(T2V_ID, 2), rid(T2V_ID))),
        (status(T2V_ID), answer(202, running(T2V_ID), rid(T2V_ID))),
        (status(T2V_ID), answer(200, completed(T2V_ID), rid(T2V_ID))),
        (result(T2V_ID), answer(200, {"video": {"url": T2V_VIDEO, "content_type": "video/mp4",
                                                "file_name": "ovi_t2v_output.mp4", "file_size": 2841733},
                                      "seed": 42}, rid(T2V_ID))),
    ],
    "generation_failed": [
        (post(I2V, {"prompt": SEED_PROMPT, "image_url": SEED_IMAGE, "seed": 7}), answer(200, ack(FAILED_ID))),
        (status(FAILED_ID), answer(202, running(FAILED_ID), rid(FAILED_ID))),
        (status(FAILED_ID), answer(200, completed(FAILED_ID), rid(FAILED_ID))),
        (result(FAILED_ID), answer(500, {"detail": "Internal error while generating the video",
                                         "error_type": "runner_server_error"},
                                   {**rid(FAILED_ID), "x-fal-error-type": "runner_server_error"})),
    ],
    "auth_error": [
        (post(I2V, {"prompt": SEED_PROMPT, "image_url": SEED_IMAGE}),
         answer(401, {"detail": "No user found for Key ID and Secret"})),
    ],
}


def write(directory: Path = CASSETTE_DIR) -> list[Path]:
    """Write every scenario's cassette; returns the paths written."""
    return write_scenarios(SCENARIOS, directory)


if __name__ == "__main__":
    for written in write():
        print(written)
