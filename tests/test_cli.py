"""The ``ovi-gateway`` command, run in-process with click's CliRunner against the built-in emulator."""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner

from gateway.cli import commands as cli
from gateway.cli import common
from gateway.offline import offline_journal_path
from gateway.store.journal import Journal, default_path, request_hash

KEY_VARIABLES = ("RUNWARE_API_KEY", "FAL_KEY", "WAVESPEED_API_KEY")
PROMPT = "A knight in the rain. <S>I will defend this land.<E> <AUDCAP>Thunder, war drums.<ENDAUDCAP>"
REQUEST = ["--prompt", PROMPT, "--image", "https://example.com/knight.png"]


@pytest.fixture(autouse=True)
def offline(monkeypatch: pytest.MonkeyPatch) -> None:
    """No vendor keys (so the emulator is used), wide tables, and short emulated jobs."""
    for name in (*KEY_VARIABLES, "OVI_GATEWAY_PRICES"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("COLUMNS", "250")
    monkeypatch.setenv(cli.JOB_SECONDS_ENV, "0.05")


def run(*args: str) -> object:
    return CliRunner().invoke(cli.cli, list(args), catch_exceptions=False)


@pytest.mark.parametrize("command", [[], ["quote"], ["generate"], ["providers"], ["emulate"], ["jobs"],
                                     ["jobs", "resume"], ["spend"], ["demo"]])
def test_every_command_has_help(command: list[str]) -> None:
    result = run(*command, "--help")
    assert result.exit_code == 0
    assert result.stdout.startswith("Usage: ")


def test_quote_in_emulator_mode_says_so_and_runware_is_cheapest_at_default_steps() -> None:
    result = run("quote", *REQUEST)
    assert result.exit_code == 0, result.stderr
    assert "no vendor API keys set: using the built-in emulator (offline); nothing is billed" in result.stderr
    rows = {line.split()[1]: line for line in result.stdout.splitlines()
            if line.startswith("│") and line.split()[1] in ("runware", "fal", "wavespeed")}
    assert set(rows) == {"runware", "fal", "wavespeed"}
    assert "$0.1171" in rows["runware"] and "estimated" in rows["runware"] and "cheapest" in rows["runware"]
    assert "$0.15" in rows["wavespeed"] and "fixed" in rows["wavespeed"]
    assert "$0.20" in rows["fal"]
    assert "cheapest: runware at $0.1171 (estimated)" in result.stdout


def test_quote_at_80_steps_only_runware_is_feasible_and_the_others_say_why() -> None:
    table = run("quote", *REQUEST, "--steps", "80")
    assert table.exit_code == 0
    fal_row = next(line for line in table.stdout.splitlines() if line.startswith("│ fal "))
    assert "no: steps=80" in fal_row and "1–50" in fal_row
    assert "cheapest: runware" in table.stdout
    result = run("quote", *REQUEST, "--steps", "80", "--json")
    data = json.loads(result.stdout)
    quotes = {q["provider"]: q for q in data["quotes"]}
    assert data["emulated"] is True and data["cheapest"] == "runware"
    assert [name for name, q in quotes.items() if q["feasible"]] == ["runware"]
    assert any("steps=80" in reason for reason in quotes["fal"]["reasons"])
    assert any("steps=80" in reason for reason in quotes["wavespeed"]["reasons"])


def test_quote_json_parses_and_prices_are_exact() -> None:
    data = json.loads(run("quote", *REQUEST, "--json").stdout)
    runware = next(q for q in data["quotes"] if q["provider"] == "runware")
    assert data["cheapest"] == "runware"
    assert Decimal(runware["price_usd"]) == Decimal("0.1171") and runware["estimated"] is True


def test_quote_reads_a_request_file_and_flags_override_it(tmp_path: Path) -> None:
    request_file = tmp_path / "request.json"
    request_file.write_text(json.dumps({"prompt": PROMPT, "image": "https://example.com/k.png", "steps": 80}))
    data = json.loads(run("quote", "--request", str(request_file), "--steps", "40", "--json").stdout)
    assert all(q["feasible"] for q in data["quotes"] if q["provider"] != "wavespeed")


def _runware_costs(path: Path, *, emulator_instance: str | None, reported: str) -> None:
    """One finished Runware submit at the default steps that reported ``reported`` USD."""
    journal = Journal(path, emulator_instance=emulator_instance)
    request_json = json.dumps({"prompt": PROMPT, "writer": emulator_instance})
    key = f"clip-{emulator_instance}"
    journal.open_clip(key, request_json, request_hash(request_json))
    journal.intent(clip_key=key, submit_key=f"submit-{emulator_instance}", provider="runware",
                   quote_usd=Decimal("0.1171"), steps=30)
    journal.finished(f"submit-{emulator_instance}", cost_usd=Decimal(reported), cost_source="reported")
    journal.close()


def runware_price(*args: str) -> Decimal:
    result = run("quote", *REQUEST, "--json", *args)
    assert result.exit_code == 0, result.stderr
    return Decimal(next(q for q in json.loads(result.stdout)["quotes"] if q["provider"] == "runware")["price_usd"])


def test_quote_calibrates_from_an_existing_journal_and_never_creates_one(tmp_path: Path) -> None:
    """A quote opens no journal for itself (Gateway(journal=None): start-up, issue 14), but the reported
    costs of one that exists still calibrate Runware's compute-billed estimate, as the gateway's would:
    an emulated quote reads the emulated rows only."""
    path = tmp_path / "offline-journal.sqlite3"
    assert runware_price("--journal", str(path)) == Decimal("0.1171")
    assert not path.exists()
    _runware_costs(path, emulator_instance="emu-gone", reported="0.1288")
    _runware_costs(path, emulator_instance=None, reported="0.20")  # a real vendor's bill: not for the emulator
    assert runware_price("--journal", str(path)) == Decimal("0.1288")
    default = common.default_journal_path().with_name("offline-journal.sqlite3")
    assert runware_price() == Decimal("0.1171") and not default.exists()
    default.parent.mkdir(parents=True)
    path.rename(default)
    assert runware_price() == Decimal("0.1288")  # the offline journal, found at its default place


def test_quote_with_a_key_calibrates_from_the_real_rows(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("RUNWARE_API_KEY", "sk-canary-123")
    path = tmp_path / "journal.sqlite3"
    _runware_costs(path, emulator_instance="emu-gone", reported="0.1288")
    _runware_costs(path, emulator_instance=None, reported="0.1230")
    assert runware_price("--journal", str(path)) == Decimal("0.1230")


def test_the_quote_default_journal_path_is_the_stores() -> None:
    assert common.default_journal_path() == default_path()
    assert common.default_journal_path().with_name("offline-journal.sqlite3") == offline_journal_path()


def test_invalid_prompt_exits_2_and_names_the_position() -> None:
    result = run("quote", "--prompt", "A knight. <S>I will defend this land.", "--image", "https://example.com/k.png")
    assert result.exit_code == 2
    assert "at character 10" in result.stderr and "<E>" in result.stderr
    assert result.stdout == ""


def test_missing_prompt_is_a_usage_error() -> None:
    assert run("quote").exit_code == 2


def test_providers_shows_keys_as_set_or_unset_and_never_the_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FAL_KEY", "sk-canary-123")
    result = run("providers")
    assert result.exit_code == 0
    assert "set (FAL_KEY)" in result.stdout and "unset (RUNWARE_API_KEY)" in result.stdout
    assert "steps: 1–50" in result.stdout and "runware:190@1" in result.stdout
    data = json.loads(run("providers", "--json").stdout)
    assert {p["name"]: p["key_set"] for p in data["providers"]} == {"fal": True, "runware": False, "wavespeed": False}
    for output in (result.output, result.stderr, json.dumps(data)):
        assert "sk-canary-123" not in output


def test_with_a_key_set_only_the_real_keyed_vendors_are_used(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FAL_KEY", "sk-canary-123")
    result = run("quote", *REQUEST)
    assert "using the real vendors with API keys: fal" in result.stderr
    assert "emulator" not in result.stderr
    assert "no API key (set RUNWARE_API_KEY)" in result.stdout
    assert "cheapest: fal" in result.stdout
    assert "sk-canary-123" not in result.output


def test_generate_json_downloads_the_clip(tmp_path: Path) -> None:
    out = tmp_path / "clip.mp4"
    result = run("generate", *REQUEST, "--provider", "fal", "--out", str(out), "--json")
    assert result.exit_code == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["provider"] == "fal" and data["attempts"][-1]["outcome"] == "succeeded"
    assert out.stat().st_size > 0
    assert "fal" in result.stderr  # the progress display


def test_generate_when_every_vendor_fails_exits_3_with_the_attempts() -> None:
    faults = "runware.submit=401; wavespeed.submit=401; fal.submit=401"
    result = run("generate", *REQUEST, "--faults", faults)
    assert result.exit_code == 3
    assert "error: AllProvidersFailed" in result.stderr
    assert sum("attempt " in line for line in result.stderr.splitlines()) == 3


def test_generate_with_an_unsettled_submit_exits_4_with_the_job_hint() -> None:
    result = run("generate", *REQUEST, "--provider", "fal", "--faults", "fal.submit=timeout")
    assert result.exit_code == 4
    assert "SubmitOutcomeUnknown" in result.stderr and "idempotency_key=" in result.stderr


def test_generate_with_no_route_exits_2_with_each_reason() -> None:
    result = run("generate", *REQUEST, "--steps", "80", "--max-price", "0.2")
    assert result.exit_code == 2
    assert "over max_price" in result.stderr and "1–50" in result.stderr


def test_unknown_vendor_is_a_usage_error() -> None:
    result = run("generate", *REQUEST, "--order", "runware,acme")
    assert result.exit_code == 2 and "unknown vendor acme" in result.stderr


def test_ctrl_c_exits_130(monkeypatch: pytest.MonkeyPatch) -> None:
    def interrupted(*args: object, **kwargs: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr("gateway.client.Gateway.generate", interrupted)
    assert run("generate", *REQUEST).exit_code == 130


def test_demo_fails_over_from_the_cheapest_vendor_and_writes_the_clip(tmp_path: Path) -> None:
    out = tmp_path / "ovi-demo.mp4"
    result = run("demo", "--out", str(out))
    assert result.exit_code == 0, result.stderr
    assert out.stat().st_size > 0
    assert "cheapest: runware at $0.1171" in result.stdout
    assert "runware.submit=refuse*3" in result.stdout
    assert "failing over to wavespeed" in result.stderr
    assert "failed over from runware to wavespeed" in result.stdout
    assert "Attempts" in result.stdout and "retried" in result.stdout


def test_emulate_serves_each_vendor_on_loopback(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: dict[str, object] = {}

    def serve_one_round(server: object) -> None:
        base = f"http://127.0.0.1:{server.server_port}"  # type: ignore[attr-defined]
        seen["ledger"] = httpx.get(f"{base}/_emulator/ledger", timeout=5).json()
        seen["runware"] = httpx.post(f"{base}/v1", json=[], timeout=5).status_code
        raise KeyboardInterrupt

    monkeypatch.setattr(cli, "block_until_interrupted", serve_one_round)
    result = run("emulate", "--port", "0", "--job-seconds", "1", "--faults", "fal.job=fail")
    assert result.exit_code == 130
    assert seen["ledger"] == {"requests": [], "jobs": []}
    assert seen["runware"] != 404  # routed to the runware emulator, whatever it thinks of an empty task list
    assert "emulator listening on http://127.0.0.1:" in result.stdout
    assert "/fal-ai" in result.stdout and "/api/v3" in result.stdout and "/v1" in result.stdout


def _journal_with_open_and_finished_submits(path: Path) -> None:
    journal = Journal(path)
    request_json = json.dumps({"prompt": PROMPT})
    journal.open_clip("clip-a", request_json, request_hash(request_json))
    journal.intent(clip_key="clip-a", submit_key="submit-a", provider="fal", quote_usd=Decimal("0.20"))
    journal.open_clip("clip-b", request_json, request_hash(request_json))
    journal.intent(clip_key="clip-b", submit_key="submit-b", provider="runware", quote_usd=Decimal("0.1171"))
    journal.finished("submit-b", cost_usd=Decimal("0.1180"), cost_source="reported")
    journal.finish_clip("clip-b", "{}")
    journal.close()


def test_jobs_lists_unfinished_submits_and_spend_sums_them(tmp_path: Path) -> None:
    path = tmp_path / "journal.db"
    _journal_with_open_and_finished_submits(path)
    listed = run("jobs", "--journal", str(path), "--json")
    assert listed.exit_code == 0
    assert [r["submit_key"] for r in json.loads(listed.stdout)["unfinished"]] == ["submit-a"]
    assert "clip-a" in run("jobs", "--journal", str(path)).stdout
    spent = json.loads(run("spend", "--journal", str(path), "--json").stdout)
    by_vendor = {row["provider"]: row for row in spent}
    assert Decimal(by_vendor["runware"]["reported_usd"]) == Decimal("0.1180")
    assert "$0.1180" in run("spend", "--journal", str(path)).stdout


def test_jobs_resume_with_no_keys_reports_what_it_cannot_finish(tmp_path: Path) -> None:
    path = tmp_path / "journal.db"
    _journal_with_open_and_finished_submits(path)
    result = run("jobs", "resume", "--journal", str(path))
    assert result.exit_code == 4  # fal's submit may hold a paid job and no fal key is set
    assert "not configured" in result.stdout


def test_jobs_and_spend_show_an_abandoned_submit(tmp_path: Path) -> None:
    path = tmp_path / "journal.db"
    _journal_with_open_and_finished_submits(path)
    journal = Journal(path)
    journal.abandoned("submit-a", error="abandoned after 5 resumes (may be billed): no answer")
    journal.close()
    listed = json.loads(run("jobs", "--journal", str(path), "--json").stdout)["unfinished"]
    assert [(r["submit_key"], r["state"], r["may_be_billed"]) for r in listed] == [("submit-a", "abandoned", True)]
    assert "abandoned (may be billed)" in run("jobs", "--journal", str(path)).stdout
    spent = {row["provider"]: row for row in json.loads(run("spend", "--journal", str(path), "--json").stdout)}
    assert spent["fal"]["possibly_billed"] == 1
