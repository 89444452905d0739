"""Write cassettes/runware/*.yaml from Runware's documented bodies (run: ``python -m tests.cassettes.make_runware_cassettes``).

Where each body comes from:

- The four success scenarios use the four examples on the Ovi model page
  (seeds/runware-ovi-model-docs.md, https://runware.ai/docs/models/ovi) literally: taskUUID, prompt,
  fps, seed, steps and image URL of each request; videoUUID, videoURL, seed and cost of each response.
  The recorded request is OUR body: the documented request plus ``deliveryMethod: "async"`` and
  ``includeCost: true``, which the adapter always adds (both documented fields of the same schema).
- The submit acknowledgement ``{"data": [{"taskType", "taskUUID"}]}`` and the ``processing`` poll item
  are the shapes of the videoInference page (seeds/runware-video-inference-api.md, "Response"); the
  final poll is the documented response item with ``"status": "success"`` (task-polling page,
  reference/providers.md 2.3).
- The poll request ``[{"taskType": "getResponse", "taskUUID": …}]`` is the task-polling page's.
- Generation failure: no Runware document shows a failed Ovi generation over REST; the body is the
  documented ``ErrorResponse`` schema (seeds/runware-ovi-openapi.json) with code ``inferenceError``
  (from Runware's SDK code lists, reference/providers.md 2.4), answered with HTTP 200 as Runware may.
  Its taskUUID is ours (no documented one exists).
- Auth error: HTTP 401 with the errors-page example body (reference/providers.md 2.4).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml

__all__ = ["AUTH_ERROR", "DOC_EXAMPLES", "FAILURE_TASK_UUID", "SCENARIOS", "write_all"]

API = "https://api.runware.ai/v1"
CASSETTE_DIR = Path(__file__).resolve().parents[2] / "cassettes" / "runware"

DOC_EXAMPLES: dict[str, dict[str, Any]] = {
    "success_i2v_arcade": {
        "request": {
            "taskType": "videoInference",
            "taskUUID": "fd9a5ac6-7acc-44ef-a961-cf55b99e41cd",
            "model": "runware:190@1",
            "positivePrompt": "Animate this rainy retro-futurist arcade concourse into a cohesive audiovisual sequence. The camera drifts forward at walking pace through the passageway as puddles ripple under falling droplets from ceiling leaks. Game cabinet screens pulse and flicker in staggered rhythms, vending machines hum softly, and reflected colors slide across the wet floor. A tram glides past in the background beyond the arches, sending a low metallic rumble through the space. People in translucent raincoats cross frame naturally, some pausing at machines, others hurrying through, with believable footfalls, fabric rustle, distant chatter, and reverberant ambience. Occasional thunder rolls outside and the electrical buzz subtly swells as lights blink overhead. Preserve the composition of the source image while adding cinematic motion, synchronized environmental sound, layered depth, and realistic timing.",
            "fps": 24,
            "seed": 71241,
            "steps": 30,
            "inputs": {"image": "https://assets.runware.ai/assets/inputs/839ea199-a462-46b8-90ce-c703cac214f3.jpg"},
        },
        "response": {
            "taskType": "videoInference",
            "taskUUID": "fd9a5ac6-7acc-44ef-a961-cf55b99e41cd",
            "videoUUID": "4585f688-3f56-4cdf-9750-de1343c9d355",
            "videoURL": "https://vm.runware.ai/video/os/a10dlim3/ws/5/vi/4585f688-3f56-4cdf-9750-de1343c9d355.mp4",
            "seed": 71241,
            "cost": 0.1171,
        },
    },
    "success_i2v_lighthouse": {
        "request": {
            "taskType": "videoInference",
            "taskUUID": "6537bd8a-b38e-4579-9b6f-7f48cd2f4f38",
            "model": "runware:190@1",
            "positivePrompt": "Animate this storm-battered lighthouse scene into a high-tension cinematic rescue sequence. The helicopter advances through heavy rain and crosswinds, rotor blades slicing mist into spiraling sheets. The lighthouse beacon sweeps across the sea and briefly catches the aircraft fuselage. Waves hammer the rocks in irregular bursts, white spray rising with each impact. Lightning flashes intermittently, revealing texture in the clouds and ocean surface. Camera feel: slow forward drift with subtle handheld turbulence, as if filmed from another aircraft nearby. Motion should feel physically grounded and coherent: rain driven sideways by wind, foam dragged back into the surf, helicopter navigation lights pulsing through the storm, searchlight glancing across wet stone. Audio should emerge naturally from the scene with synchronized thunder cracks, rotor thrum, wind gusts, rain striking metal, distant warning siren from the lighthouse, and booming surf. Moody, realistic, suspenseful, immersive.",
            "fps": 24,
            "seed": 79445,
            "steps": 40,
            "inputs": {"image": "https://assets.runware.ai/assets/inputs/597fde48-a2bd-4a5b-a57d-2e8673b348e1.jpg"},
        },
        "response": {
            "taskType": "videoInference",
            "taskUUID": "6537bd8a-b38e-4579-9b6f-7f48cd2f4f38",
            "videoUUID": "885007e4-58d3-42e8-9bca-5fa150e75eb7",
            "videoURL": "https://vm.runware.ai/video/os/a05d22/ws/5/vi/885007e4-58d3-42e8-9bca-5fa150e75eb7.mp4",
            "seed": 79445,
            "cost": 0.1472,
        },
    },
    "success_i2v_glacial": {
        "request": {
            "taskType": "videoInference",
            "taskUUID": "88fd8e24-b83e-45fd-b606-63f6d3cf3093",
            "model": "runware:190@1",
            "positivePrompt": "A cinematic aerial drift through a remote polar freight terminal at dawn, starting from a wide establishing view and gliding toward docked cargo airships as ground crews move between steel loading gantries. Fine snow streams across the frozen tarmac, turbine fans spool up with visible exhaust haze, suspended cables sway lightly in the wind, warning beacons blink in rhythmic intervals, and distant cargo containers shift on automated sleds. Emphasize realistic environmental motion, crisp cold atmosphere, volumetric breath from workers, subtle camera parallax, and synchronized industrial soundscape with gusting wind, engine rumble, metallic clanks, radio chatter, hydraulic whines, and echoing announcements. Naturalistic, high-detail, grounded cinematic realism.",
            "fps": 24,
            "seed": 14447,
            "steps": 40,
            "inputs": {"image": "https://assets.runware.ai/assets/inputs/da99c2f7-1bb5-466a-a313-bd44026f790d.jpg"},
        },
        "response": {
            "taskType": "videoInference",
            "taskUUID": "88fd8e24-b83e-45fd-b606-63f6d3cf3093",
            "videoUUID": "4344d183-7c03-4256-9ab7-d5af1cc20627",
            "videoURL": "https://vm.runware.ai/video/os/a05d22/ws/5/vi/4344d183-7c03-4256-9ab7-d5af1cc20627.mp4",
            "seed": 14447,
            "cost": 0.1459,
        },
    },
    "success_i2v_grassland": {
        "request": {
            "taskType": "videoInference",
            "taskUUID": "c4bdc7a1-ae63-476b-818c-d89d64111c00",
            "model": "runware:190@1",
            "positivePrompt": "Animate this still image into a grounded cinematic scene: strong wind ripples through tall grass in waves, guy-wires tremble subtly, loose tarp edge flickers, the service truck suspension shifts slightly in gusts, cloud shadows drift across the field, a flock of small birds lifts from the grass in the distance, the antenna beacon blinks faintly, synchronized natural audio with rushing wind, soft metal creaks, distant turbine-like electrical hum, intermittent radio static and clipped voice fragments from the relay shed, realistic motion, coherent environmental sound design, atmospheric documentary style",
            "fps": 24,
            "seed": 99804,
            "steps": 40,
            "inputs": {"image": "https://assets.runware.ai/assets/inputs/42361c12-04bc-489d-8036-61b72bfa935a.jpg"},
        },
        "response": {
            "taskType": "videoInference",
            "taskUUID": "c4bdc7a1-ae63-476b-818c-d89d64111c00",
            "videoUUID": "e1373a2c-ce29-425a-8413-64149a954294",
            "videoURL": "https://vm.runware.ai/video/os/a03d21/ws/5/vi/e1373a2c-ce29-425a-8413-64149a954294.mp4",
            "seed": 99804,
            "cost": 0.1466,
        },
    },
}

FAILURE_TASK_UUID = "3f1c9a52-6d1e-4b8a-9c47-2e5b7d0a8f13"
FAILURE_REQUEST = {**DOC_EXAMPLES["success_i2v_arcade"]["request"], "taskUUID": FAILURE_TASK_UUID}
FAILURE_ERRORS = {"errors": [{"code": "inferenceError", "message": "Inference failed for this task. Please try again.",
                              "taskType": "videoInference", "taskUUID": FAILURE_TASK_UUID}]}
AUTH_ERROR = {"errors": [{"code": "invalidApiKey", "message": "Invalid API key. Get one at https://my.runware.ai/signup",
                          "parameter": "apiKey", "taskType": "authentication"}]}
OURS = {"deliveryMethod": "async", "includeCost": True}
"""What our payload adds to the documented requests."""


def _interaction(request: Any, status: int, response: Any) -> dict[str, Any]:
    return {
        "request": {"body": json.dumps(request, indent=2), "headers": {"content-type": ["application/json"]},
                    "method": "POST", "uri": API},
        "response": {"status": {"code": status, "message": {200: "OK", 401: "Unauthorized"}[status]},
                     "headers": {"content-type": ["application/json"]},
                     "body": {"string": json.dumps(response, indent=2)}},
    }


def _poll(task_uuid: str) -> list[dict[str, str]]:
    return [{"taskType": "getResponse", "taskUUID": task_uuid}]


def _ack(task_uuid: str) -> dict[str, Any]:
    return {"data": [{"taskType": "videoInference", "taskUUID": task_uuid}]}


def _processing(task_uuid: str) -> dict[str, Any]:
    return {"data": [{"taskType": "videoInference", "taskUUID": task_uuid, "status": "processing"}]}


def _success(example: dict[str, Any]) -> list[dict[str, Any]]:
    task = example["request"]["taskUUID"]
    return [
        _interaction([{**example["request"], **OURS}], 200, _ack(task)),
        _interaction(_poll(task), 200, _processing(task)),
        _interaction(_poll(task), 200, {"data": [{**example["response"], "status": "success"}]}),
    ]


SCENARIOS: dict[str, list[dict[str, Any]]] = {
    **{name: _success(example) for name, example in DOC_EXAMPLES.items()},
    "generation_failure": [
        _interaction([{**FAILURE_REQUEST, **OURS}], 200, _ack(FAILURE_TASK_UUID)),
        _interaction(_poll(FAILURE_TASK_UUID), 200, _processing(FAILURE_TASK_UUID)),
        _interaction(_poll(FAILURE_TASK_UUID), 200, FAILURE_ERRORS),
    ],
    "auth_error": [
        _interaction([{**DOC_EXAMPLES["success_i2v_arcade"]["request"], **OURS}], 401, AUTH_ERROR),
    ],
}


class _Dumper(yaml.SafeDumper):
    pass


def _text(dumper: yaml.SafeDumper, value: str) -> yaml.Node:
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style="|" if "\n" in value else None)


_Dumper.add_representer(str, _text)


def render(name: str) -> str:
    """The YAML of one scenario, in vcrpy's cassette format (version 1)."""
    return yaml.dump({"interactions": SCENARIOS[name], "version": 1}, Dumper=_Dumper, sort_keys=False,
                     allow_unicode=True, width=4096)


def write_all(directory: Path = CASSETTE_DIR) -> list[Path]:
    """Write every scenario's cassette into ``directory``; returns the paths."""
    directory.mkdir(parents=True, exist_ok=True)
    paths = []
    for name in SCENARIOS:
        path = directory / f"{name}.yaml"
        path.write_text(render(name), encoding="utf-8")
        paths.append(path)
    return paths


if __name__ == "__main__":
    for written in write_all():
        print(written)
