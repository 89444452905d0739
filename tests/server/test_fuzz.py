"""schemathesis fuzzes a real ``ovi-gateway serve --emulator`` (uvicorn, its own process) over loopback
against the server's own ``/openapi.json``, bounded: 8 operations × 25 examples (≤ 200), one seed, a 60 s
budget. Checks: every schemathesis check but ``positive_data_acceptance`` — no 5xx, status codes, content
types, headers and bodies as documented, schema-invalid input refused, a 405's ``Allow``, auth enforced.

Why a real process, not the ASGI app in process: the fuzzer's bytes then go through what clients meet —
uvicorn's HTTP parsing (odd headers, bodies, methods), python-multipart, the CLI's wiring of the app, and
followers running on the server's own loop — where an in-process transport would skip the first three.

``positive_data_acceptance`` ("a schema-valid request must be accepted") is left out on purpose: the
document cannot state Ovi's prompt grammar or each vendor's limits (fal's steps 1–50, seed ranges), so such
requests are refused with 400 naming the field — refuse, never drop — which that check counts as a failure.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.server.test_openai_sdk import KEY, Served

pytestmark = pytest.mark.slow
pytest.importorskip("schemathesis")

EXAMPLES = 25
BUDGET_S = 60


def test_the_server_holds_to_its_own_openapi_document(tmp_path) -> None:
    served = Served(tmp_path)
    try:
        run = subprocess.run(
            [str(Path(sys.executable).with_name("schemathesis")), "run", f"{served.base}/openapi.json",
             "--header", f"Authorization: Bearer {KEY}", "--phases", "examples,fuzzing",
             "--max-examples", str(EXAMPLES), "--seed", "12", "--checks", "all",
             "--exclude-checks", "positive_data_acceptance"],
            cwd=tmp_path, capture_output=True, text=True, timeout=BUDGET_S)
    finally:
        served.stop()
    assert run.returncode == 0, run.stdout[-6000:] + run.stderr[-2000:]
    tested = re.search(r"Tested: (\d+)", run.stdout)
    generated = re.search(r"(\d+) generated", run.stdout)
    assert tested is not None and int(tested.group(1)) == 8, run.stdout[-3000:]  # every operation fuzzed
    assert generated is not None and 0 < int(generated.group(1)) <= 8 * EXAMPLES, run.stdout[-3000:]
