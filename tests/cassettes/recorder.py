"""The vcrpy set-up every vendor's cassette tests share: replay only, unless re-recording is asked for.

``OVI_RECORD=1`` plus the vendor's key variable switches a vendor's tests to ``record_mode="all"``
against the real API. Requests match on method, scheme, host, path, query and the parsed JSON body;
the ``Authorization`` header never reaches a cassette.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import vcr
from vcr.serialize import serialize
from vcr.serializers import yamlserializer

from tests.conftest import CASSETTES


def recording(key_variable: str) -> bool:
    """Whether this run re-records against the real API (``OVI_RECORD=1`` and the key is set)."""
    return os.environ.get("OVI_RECORD") == "1" and bool(os.environ.get(key_variable))


def _json_body(r1: vcr.request.Request, r2: vcr.request.Request) -> None:
    def load(body: bytes | str | None) -> object:
        return json.loads(body) if body else None
    assert load(r1.body) == load(r2.body), f"JSON bodies differ: {r1.body!r} != {r2.body!r}"


def recorder(vendor: str, key_variable: str) -> vcr.VCR:
    """The VCR for ``cassettes/<vendor>/``."""
    configured = vcr.VCR(
        cassette_library_dir=str(CASSETTES / vendor),
        record_mode="all" if recording(key_variable) else "none",
        match_on=["method", "scheme", "host", "path", "query", "json_body"],
        filter_headers=["authorization"],
    )
    configured.register_matcher("json_body", _json_body)
    return configured


def write_scenarios(scenarios: Mapping[str, Sequence[tuple[Any, Any]]], directory: Path) -> list[Path]:
    """Write one cassette per scenario (a list of (vcr request, response dict) exchanges); returns the paths."""
    directory.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, exchanges in scenarios.items():
        cassette = {"requests": [r for r, _ in exchanges], "responses": [a for _, a in exchanges]}
        path = directory / f"{name}.yaml"
        path.write_text(serialize(cassette, yamlserializer))
        paths.append(path)
    return paths
