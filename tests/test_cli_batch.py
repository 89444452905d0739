"""``ovi-gateway batch``: rows from JSON Lines or CSV, bad rows skipped by line, resumable, one spend cap,
a report matching its schema, the documented exit codes; and the library's ``agenerate_many``."""

from __future__ import annotations

import json
from decimal import Decimal
from importlib import resources
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from click.testing import Result

from gateway.cli import batch_rows
from gateway.client import Gateway
from gateway.clock import VirtualClock
from gateway.emulator import Emulator
from gateway.request import OviRequest
from gateway.store.journal import Journal
from tests.cli_support import billed, go_offline, record_emulators, run
from tests.conftest import PNG_BYTES

SCHEMA = json.loads(resources.files("gateway.cli").joinpath("batch-report.schema.json").read_text())


@pytest.fixture(autouse=True)
def offline(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    go_offline(monkeypatch, tmp_path)
    (tmp_path / "frame.png").write_bytes(PNG_BYTES)


@pytest.fixture
def emulators(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    return record_emulators(monkeypatch)


def report_of(result: Result) -> dict[str, Any]:
    report = json.loads(result.stdout)
    jsonschema.validate(report, SCHEMA)
    return report


def write_csv(path: Path, rows: list[str], header: str = "prompt,image,seed,route.provider,key,out") -> Path:
    path.write_text("\n".join([header, *rows]) + "\n", encoding="utf-8")
    return path


def test_csv_rows_resolve_images_beside_the_file_and_bad_rows_carry_their_line(tmp_path: Path) -> None:
    folder = tmp_path / "jobs"
    folder.mkdir()
    (folder / "knight.png").write_bytes(PNG_BYTES)
    path = write_csv(folder / "rows.csv", [
        '"A knight. <S>Hold.<E>",knight.png,7,fal,first,',
        '"Broken <S>prompt",knight.png,1,,,',
        '"A horse.",https://example.com/h.png,x,,,',
        '"A ship.",,,"runware",,ship.mp4',
    ])
    rows, bad = batch_rows.read_rows(path)
    assert [r.line for r in rows] == [2, 5] and [b.line for b in bad] == [3, 4]
    assert "<E>" in bad[0].error and "seed" in bad[1].error
    first = rows[0]
    assert first.request.image is not None and Path(first.request.image.value) == folder / "knight.png"
    assert first.route == {"provider": "fal"} and first.key == "first" and first.request.seed == 7
    assert rows[1].out == "ship.mp4" and rows[1].request.image is None


def test_json_lines_take_a_route_object_or_prefixed_fields_and_unknown_columns_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "rows.jsonl"
    path.write_text("\n".join([
        json.dumps({"prompt": "A knight.", "route": {"order": "wavespeed fal"}}),
        "",
        json.dumps({"prompt": "A horse.", "route.max_price": "0.16", "key": "horse"}),
        "not json",
        json.dumps({"prompt": "A ship.", "route.bogus": 1}),
    ]) + "\n")
    rows, bad = batch_rows.read_rows(path)
    assert [r.route for r in rows] == [{"order": ["wavespeed", "fal"]}, {"max_price": "0.16"}]
    reasons = [(b.line, b.error.split(":")[0].split(";")[0]) for b in bad]
    assert reasons == [(4, "not JSON"), (5, "unknown route field bogus")]
    wrong = write_csv(tmp_path / "wrong.csv", ['"A knight."'], header="prompt,colour")
    result = run("batch", str(wrong))
    assert result.exit_code == 2 and "unknown column 'colour'" in result.stderr


def test_a_batch_runs_reports_and_a_rerun_pays_nothing_again(emulators: list[Any], tmp_path: Path) -> None:
    path = write_csv(tmp_path / "rows.csv", [f'"A knight {i}. <S>Hold.<E>",frame.png,{i},,,' for i in range(6)])
    args = ["batch", str(path), "--concurrency", "3", "--out-dir", "clips", "--json"]
    first = run(*args)
    assert first.exit_code == 0, first.stderr
    report = report_of(first)
    assert report["totals"] == {"rows": 6, "done": 6, "failed": 0, "unsettled": 0, "over_budget": 0, "bad": 0,
                                "paid_now": 6, "cost_usd": str(sum(Decimal(r["cost_usd"]) for r in report["rows"]))}
    assert all(Path(r["file"]).exists() and r["job_id"] for r in report["rows"])
    assert billed(emulators) == 6
    assert json.loads((tmp_path / "clips" / "rows.report.json").read_text()) == report
    again = run(*args)
    assert again.exit_code == 0, again.stderr
    assert report_of(again)["totals"]["paid_now"] == 0
    assert billed(emulators) == 6  # the rerun billed nothing
    assert [r["job_id"] for r in report_of(again)["rows"]] == [r["job_id"] for r in report["rows"]]


def test_max_spend_caps_the_batch_through_the_budget(emulators: list[Any], tmp_path: Path) -> None:
    path = write_csv(tmp_path / "rows.csv", [f'"A knight {i}.",frame.png,{i},runware,,' for i in range(5)])
    journal = tmp_path / "j.sqlite3"
    result = run("batch", str(path), "--concurrency", "1", "--max-spend", "0.25", "--journal", str(journal),
                 "--json")
    assert result.exit_code == 3, result.stderr
    report = report_of(result)
    assert (report["totals"]["done"], report["totals"]["over_budget"]) == (2, 3)
    assert all("BudgetExceeded" in r["error"] for r in report["rows"] if r["status"] == "over-budget")
    spent = Journal(journal, emulator_instance="any").reserved_and_spent(
        clip_prefix=f"batch-{report['batch_id']}-")
    assert spent == Decimal(report["totals"]["cost_usd"]) <= Decimal("0.25")
    assert billed(emulators) == 2


@pytest.mark.parametrize(("faults", "code", "status"), [
    ("runware.submit=401; wavespeed.submit=401; fal.submit=401", 3, "failed"),
    ("fal.submit=timeout", 4, "unsettled"),
])
def test_exit_codes_follow_the_worst_row(faults: str, code: int, status: str, tmp_path: Path) -> None:
    rows = ['"A knight.",frame.png,1,fal,,', '"Broken <S>",frame.png,1,,,']
    result = run("batch", str(write_csv(tmp_path / "rows.csv", rows)), "--faults", faults, "--json")
    assert result.exit_code == code, result.stderr
    statuses = {r["line"]: r["status"] for r in report_of(result)["rows"]}
    assert statuses == {2: status, 3: "bad"}


def test_only_bad_rows_exit_2_and_are_named_by_line(tmp_path: Path) -> None:
    path = write_csv(tmp_path / "rows.csv", ['"A knight.",frame.png,1,,,', '"Broken <S>",frame.png,1,,,'])
    result = run("batch", str(path))
    assert result.exit_code == 2, result.stderr
    assert f"{path}:3: skipped: invalid request: prompt" in result.stderr
    assert "Batch" in result.stdout and "1/2 done" in result.stdout


def test_an_existing_file_that_is_not_the_rows_clip_is_kept(tmp_path: Path) -> None:
    path = write_csv(tmp_path / "rows.csv", ['"A knight.",frame.png,1,,mine,'])
    (tmp_path / "mine.mp4").write_bytes(b"my own video")
    kept = run("batch", str(path), "--json")
    assert kept.exit_code == 2 and report_of(kept)["rows"][0]["status"] == "bad"
    assert (tmp_path / "mine.mp4").read_bytes() == b"my own video"
    assert run("batch", str(path), "--force").exit_code == 0
    assert (tmp_path / "mine.mp4").read_bytes() != b"my own video"


# ---- the library ---------------------------------------------------------------------------------
@pytest.mark.anyio
async def test_agenerate_many_yields_outcomes_as_they_finish_within_the_concurrency() -> None:
    clock = VirtualClock()
    times = iter([9.0, 1.0, 5.0, 2.0, 7.0, 3.0])
    emulator = Emulator(clock=clock, job_time=lambda rng: next(times), faults="fal.submit=401")
    gw = Gateway.offline(emulator=emulator, clock=clock, journal=":memory:", job_seconds=(1.0, 9.0))
    running = peak = 0
    real = gw.agenerate

    async def counting(*args: Any, **kwargs: Any) -> Any:
        nonlocal running, peak
        running += 1
        peak = max(peak, running)
        try:
            return await real(*args, **kwargs)
        finally:
            running -= 1

    gw.agenerate = counting  # type: ignore[method-assign]
    requests = [OviRequest(prompt=f"A knight {i}.", image="https://example.com/k.png") for i in range(6)]
    requests.append(OviRequest(prompt="Only fal.", image="https://example.com/k.png"))
    order = []
    async with gw:
        async for outcome in gw.agenerate_many(requests[:6], concurrency=3, provider="runware"):
            order.append(outcome.index)
            assert outcome.ok and outcome.result is not None and outcome.result.emulated
        failed = [o async for o in gw.agenerate_many(requests[6:], provider="fal")]
    assert peak == 3 and sorted(order) == list(range(6)) and order != list(range(6))
    assert len(failed) == 1 and not failed[0].ok and failed[0].index == 0
    assert type(failed[0].error).__name__ == "AuthError" and failed[0].error.provider == "fal"


@pytest.mark.anyio
async def test_leaving_agenerate_many_early_cancels_the_rest() -> None:
    clock = VirtualClock()
    gw = Gateway.offline(clock=clock, journal=":memory:", job_seconds=2.0)
    requests = [OviRequest(prompt=f"A knight {i}.", image="https://example.com/k.png") for i in range(10)]
    async with gw:
        outcomes = gw.agenerate_many(requests, concurrency=2)
        async for _first in outcomes:
            break
        await outcomes.aclose()  # type: ignore[attr-defined]
        assert gw.emulator is not None
        started = len(gw.emulator.ledger.jobs)
        await clock.sleep(60.0)  # time passes: nothing else is submitted
        assert len(gw.emulator.ledger.jobs) == started <= 4  # the first two, and at most one more per worker
