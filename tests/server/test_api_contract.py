"""What the schemathesis run (tests/server/test_fuzz.py) found, pinned in process: a 405 lists every
method of its path and uses the error envelope; a route naming a vendor the server does not run is the
caller's 400, not a 503."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.anyio

PROMPT = "A knight in the rain. <S>I will defend this land.<E>"


@pytest.mark.parametrize(("path", "allowed"), [("/v1/videos", {"GET", "POST"}),
                                               ("/v1/videos/video_x", {"GET", "DELETE"})])
async def test_a_405_lists_every_method_of_the_path_in_the_error_envelope(world, path, allowed) -> None:
    answer = await world.http.request("PATCH", path)
    assert answer.status_code == 405
    assert {m.strip() for m in answer.headers["allow"].split(",")} - {"HEAD"} == allowed
    assert answer.json()["error"]["code"] == "method_not_allowed"


@pytest.mark.parametrize("fields", [{"provider": "null"}, {"order": "fal,bogus"}, {"provider[only][]": "nope"}])
async def test_a_vendor_the_server_does_not_run_is_a_400(world, fields) -> None:
    answer = await world.http.post("/v1/videos", data={"prompt": PROMPT, **fields})
    assert answer.status_code == 400, answer.text
    error = answer.json()["error"]
    assert error["code"] == "unknown_provider" and error["param"] in ("provider", "order", "only")
    assert "fal" in error["message"] and world.emulator.ledger.requests == []
