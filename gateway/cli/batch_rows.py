"""Reading a batch file: JSON Lines or CSV rows into requests, per-row routes, keys and output paths.

Columns (CSV header names; the same names as JSON keys on each JSON Lines object):

- one per ``OviRequest`` field: ``prompt`` (required), ``image``, ``seed``, ``steps``, ``negative_prompt``,
  ``audio_negative_prompt``, ``video_guidance``, ``audio_guidance``, ``slg_layer``, ``fps``,
  ``output_format``, ``output_quality``, ``size``;
- one per ``Route`` field, prefixed ``route.``: ``route.provider``, ``route.order`` (vendors separated by
  commas or spaces), ``route.only``, ``route.ignore``, ``route.max_price``, ``route.allow_fallbacks``,
  ``route.allow_degrade``, ``route.deadline``, ``route.failover_on_unknown``, ``route.max_tries``,
  ``route.job_retries``, ``route.failover_on_content_rejection`` (a JSON Lines row may instead carry a
  ``"route"`` object);
- optional ``key`` (the row's idempotency key; default derived from the request and its output path) and
  ``out`` (the output file, relative to ``--out-dir``; default named from the key).

An empty CSV cell means "not set". A local ``image`` path is taken relative to the batch file's folder.
A row that does not parse or validate is reported with its line number and skipped.
"""

from __future__ import annotations

import csv
import io
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from gateway.cli import render
from gateway.request import OviRequest
from gateway.routing.planner import Route

__all__ = ["COLUMNS", "BadRow", "Row", "read_rows"]

REQUEST_COLUMNS = tuple(OviRequest.model_fields)
ROUTE_COLUMNS = tuple(f"route.{name}" for name in Route.model_fields)
COLUMNS = (*REQUEST_COLUMNS, *ROUTE_COLUMNS, "key", "out")
"""Every column a batch file may have."""
_LISTS = ("order", "only", "ignore")
_SAFE = re.compile(r"[^A-Za-z0-9._-]+")


@dataclass(frozen=True)
class Row:
    """One valid batch row: its line in the file, the request, its route fields, key and output path."""

    line: int
    request: OviRequest
    route: dict[str, Any] = field(default_factory=dict)
    key: str | None = None
    out: str | None = None


@dataclass(frozen=True)
class BadRow:
    """A row that is skipped: its line number and why."""

    line: int
    error: str


def read_rows(path: Path) -> tuple[list[Row], list[BadRow]]:
    """The batch file's rows: JSON Lines (``.jsonl``/``.ndjson``, or content starting with ``{``) or CSV.
    Raises ``ValueError`` for a file-level problem (unreadable, an unknown CSV column)."""
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as error:
        raise ValueError(f"cannot read {path}: {getattr(error, 'strerror', None) or error}") from None
    folder = path.resolve().parent
    as_json = path.suffix.lower() in (".jsonl", ".ndjson") or (
        path.suffix.lower() != ".csv" and text.lstrip().startswith("{"))
    raw = _json_lines(text) if as_json else _csv_rows(text)
    rows: list[Row] = []
    bad: list[BadRow] = []
    for line, data in raw:
        if isinstance(data, str):
            bad.append(BadRow(line, data))
            continue
        try:
            rows.append(_row(line, data, folder))
        except ValidationError as error:
            bad.append(BadRow(line, render.validation_line(error)))
        except ValueError as error:
            bad.append(BadRow(line, render.one_line(str(error))))
    return rows, bad


def _json_lines(text: str) -> list[tuple[int, dict[str, Any] | str]]:
    out: list[tuple[int, dict[str, Any] | str]] = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        try:
            value = json.loads(line)
        except ValueError as error:
            out.append((number, f"not JSON: {error}"))
            continue
        out.append((number, value if isinstance(value, dict) else "each line must be a JSON object"))
    return out


def _csv_rows(text: str) -> list[tuple[int, dict[str, Any] | str]]:
    reader = csv.DictReader(io.StringIO(text))
    header = [name.strip() for name in reader.fieldnames or []]
    unknown = [name for name in header if name not in COLUMNS]
    if unknown:
        raise ValueError(f"unknown column {', '.join(repr(u) for u in unknown)}; the columns are "
                         f"{', '.join(COLUMNS)}")
    if "prompt" not in header:
        raise ValueError("a batch CSV needs a 'prompt' column")
    reader.fieldnames = header
    out: list[tuple[int, dict[str, Any] | str]] = []
    for record in reader:
        line = reader.line_num
        if None in record:
            out.append((line, "more cells than header columns"))
            continue
        cells = {name: value.strip() for name, value in record.items() if value is not None and value.strip()}
        if cells:
            out.append((line, cells))
    return out


def _row(line: int, data: dict[str, Any], folder: Path) -> Row:
    data = dict(data)
    route: dict[str, Any] = dict(data.pop("route", None) or {})
    for name in [n for n in data if n.startswith("route.")]:
        route[name.removeprefix("route.")] = data.pop(name)
    unknown = sorted(set(route) - set(Route.model_fields))
    if unknown:
        raise ValueError(f"unknown route field {', '.join(unknown)}; use {', '.join(ROUTE_COLUMNS)}")
    for name in _LISTS:
        if isinstance(route.get(name), str):
            route[name] = [part for part in re.split(r"[,\s]+", route[name]) if part]
    Route.model_validate(route)  # a bad route field is this row's error, before anything runs
    key = data.pop("key", None)
    out = data.pop("out", None)
    if key is not None and (not isinstance(key, str) or not _SAFE.sub("", key)):
        raise ValueError("key must be a non-empty string")
    if out is not None and not isinstance(out, str):
        raise ValueError("out must be a file name")
    image = data.get("image")
    if isinstance(image, str) and not image.startswith(("http://", "https://", "data:")):
        local = folder / image
        if local.exists():
            data["image"] = local
    if isinstance(data.get("output_format"), str):
        data["output_format"] = data["output_format"].upper()
    return Row(line=line, request=OviRequest.model_validate(data), route=route, key=key, out=out)


def safe_name(key: str) -> str:
    """A file-name-safe form of a row key."""
    return _SAFE.sub("_", key).strip("._") or "clip"
