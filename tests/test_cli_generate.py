"""``ovi-gateway generate`` never pays twice: derived keys, --out checked first, existing files kept,
resume commands on Ctrl-C and exit 4, one JSON object for every outcome, one-line configuration errors."""

from __future__ import annotations

import json
import shlex
import shutil
from pathlib import Path
from typing import Any

import pytest

from gateway.cli.generate import default_out, derive_key
from gateway.client import Gateway
from gateway.jobs.runner import Event
from gateway.request import OviRequest
from tests.cli_support import billed, go_offline, record_emulators, run
from tests.conftest import PNG_BYTES

PROMPT = "A knight in the rain. <S>I will defend this land.<E> <AUDCAP>Thunder, war drums.<ENDAUDCAP>"
REQUEST = ["--prompt", PROMPT, "--image", "https://example.com/knight.png"]


@pytest.fixture(autouse=True)
def offline(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    go_offline(monkeypatch, tmp_path)
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))


@pytest.fixture
def emulators(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """Every built-in emulator the commands make, to read their billing ledgers."""
    return record_emulators(monkeypatch)


def test_the_key_follows_the_image_content_and_the_out_path_not_the_image_path(tmp_path: Path) -> None:
    first, moved = tmp_path / "a.png", tmp_path / "sub" / "renamed.png"
    first.write_bytes(PNG_BYTES)
    moved.parent.mkdir()
    shutil.copy(first, moved)
    key = derive_key(OviRequest(prompt=PROMPT, image=first), Path("clip.mp4"))
    assert derive_key(OviRequest(prompt=PROMPT, image=moved), Path("clip.mp4")) == key
    assert derive_key(OviRequest(prompt=PROMPT, image=first), Path("other.mp4")) != key
    assert derive_key(OviRequest(prompt=PROMPT, image=first, seed=1), Path("clip.mp4")) != key
    assert derive_key(OviRequest(prompt=PROMPT, image=first), Path("clip.mp4"), nonce="x") != key


def test_an_unwritable_out_fails_before_anything_is_paid(emulators: list[Any]) -> None:
    result = run("generate", *REQUEST, "--out", "/proc/clip.mp4")
    assert result.exit_code == 2
    assert "--out /proc/clip.mp4: cannot write there" in result.stderr and "nothing was paid" in result.stderr
    assert billed(emulators) == 0 and len(result.stderr.strip().splitlines()) == 1


def test_rerunning_the_same_command_returns_the_clip_already_made(emulators: list[Any], tmp_path: Path) -> None:
    args = ["generate", *REQUEST, "--out", "clip.mp4", "--journal", str(tmp_path / "j.sqlite3")]
    first = run(*args)
    assert first.exit_code == 0, first.stderr
    made = (tmp_path / "clip.mp4").read_bytes()
    again = run(*args, "--json")
    assert again.exit_code == 0, again.stderr
    assert "already saved: this file is the clip made earlier" in again.stderr
    data = json.loads(again.stdout)
    assert data["ok"] is True and data["emulated"] is True and data["saved_to"] == "clip.mp4"
    assert billed(emulators) == 1  # the second run paid nothing
    (tmp_path / "clip.mp4").unlink()
    # The file is gone: the recorded clip is fetched again, but the emulator that made it exited with
    # its process; the run says so instead of quietly making (or paying for) another.
    third = run(*args)
    assert third.exit_code == 3 and billed(emulators) == 1
    assert "already made by an earlier run" in third.stderr and "--new" in third.stderr
    assert made


def test_an_existing_other_file_is_kept_unless_force(emulators: list[Any], tmp_path: Path) -> None:
    target = tmp_path / "clip.mp4"
    target.write_bytes(b"my holiday video")
    kept = run("generate", *REQUEST, "--out", str(target))
    assert kept.exit_code == 2 and "exists" in kept.stderr and "--force" in kept.stderr
    assert target.read_bytes() == b"my holiday video" and billed(emulators) == 0
    forced = run("generate", *REQUEST, "--out", str(target), "--force")
    assert forced.exit_code == 0, forced.stderr
    assert target.read_bytes() != b"my holiday video" and billed(emulators) == 1


def test_without_out_the_file_is_named_from_the_key_and_new_draws_another(tmp_path: Path) -> None:
    result = run("generate", *REQUEST, "--json")
    assert result.exit_code == 0, result.stderr
    data = json.loads(result.stdout)
    request = OviRequest(prompt=PROMPT, image="https://example.com/knight.png")
    key = derive_key(request, None)
    assert data["idempotency_key"] == key and data["saved_to"] == str(default_out(key, request))
    assert (tmp_path / default_out(key, request)).exists()
    fresh = json.loads(run("generate", *REQUEST, "--new", "--json").stdout)
    assert fresh["idempotency_key"] != key and Path(fresh["saved_to"]).exists()


def test_json_errors_are_one_object_on_stdout() -> None:
    no_route = run("generate", *REQUEST, "--steps", "80", "--max-price", "0.01", "--json")
    assert no_route.exit_code == 2
    data = json.loads(no_route.stdout)
    assert data["ok"] is False and data["error"] == "NoRoute" and data["emulated"] is True
    assert data["saved_to"] is None and data["exit_code"] == 2
    failed = run("generate", *REQUEST, "--json", "--faults",
                 "runware.submit=401; wavespeed.submit=401; fal.submit=401")
    assert failed.exit_code == 3 and json.loads(failed.stdout)["error"] == "AllProvidersFailed"
    usage = run("generate", *REQUEST, "--order", "acme", "--json")
    assert usage.exit_code == 2 and "unknown vendor acme" in json.loads(usage.stdout)["message"]


def test_exit_4_names_the_job_and_in_json_gives_its_id() -> None:
    result = run("generate", *REQUEST, "--provider", "fal", "--faults", "fal.job=stuck", "--deadline", "0.3",
                 "--json")
    assert result.exit_code == 4, result.stderr
    data = json.loads(result.stdout)
    assert data["error"] == "DeadlineExceeded" and data["provider"] == "fal" and data["job_id"]
    assert f"job {data['job_id']} on fal may still be running" in result.stderr
    assert data["resume"] is None and "run: ovi-gateway" not in result.stderr  # the built-in emulator is gone


@pytest.mark.slow  # a loopback server, real time
def test_ctrl_c_names_the_job_and_the_exact_command_that_finishes_it(monkeypatch: pytest.MonkeyPatch,
                                                                     tmp_path: Path) -> None:
    from gateway.emulator import Emulator

    emulator = Emulator(job_time=lambda rng: 0.05)
    server = emulator.serve(0)
    url = f"http://127.0.0.1:{server.server_port}"
    journal = str(tmp_path / "j.sqlite3")
    real_generate = Gateway.generate
    try:
        def interrupted(self: Gateway, request: OviRequest, **kwargs: Any) -> None:
            kwargs["on_event"](Event("accepted", "fal", 0.1, message="job-42"))
            raise KeyboardInterrupt

        monkeypatch.setattr(Gateway, "generate", interrupted)
        stopped = run("generate", *REQUEST, "--out", "clip.mp4", "--emulator-url", url, "--journal", journal)
        assert stopped.exit_code == 130
        assert "job job-42 on fal may still be running" in stopped.stderr
        command = stopped.stderr.split("to finish it without paying again, run: ", 1)[1].strip()
        argv = shlex.split(command)
        assert argv[:2] == ["ovi-gateway", "generate"] and "--journal" in argv and url in argv
        monkeypatch.setattr(Gateway, "generate", real_generate)
        finished = run(*argv[1:], "--json")
        assert finished.exit_code == 0, finished.stderr
        request = OviRequest(prompt=PROMPT, image="https://example.com/knight.png")
        assert json.loads(finished.stdout)["idempotency_key"] == derive_key(request, Path("clip.mp4"))
        assert len(emulator.ledger.billable()) == 1
    finally:
        server.shutdown()
        server.server_close()


def test_configuration_errors_are_one_line_and_exit_2(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    journal = run("generate", *REQUEST, "--journal", "/proc/nope/journal.sqlite3")
    assert journal.exit_code == 2 and journal.stderr.strip().splitlines()[-1].startswith("error: --journal")
    assert "Traceback" not in journal.stderr
    prices = tmp_path / "prices.toml"
    prices.write_text("this is = = not toml")
    monkeypatch.setenv("OVI_GATEWAY_PRICES", str(prices))
    for args in (["quote", *REQUEST], ["generate", *REQUEST], ["generate", *REQUEST, "--json"]):
        result = run(*args)
        assert result.exit_code == 2, result.stderr
        assert f"OVI_GATEWAY_PRICES={prices}" in result.stderr and "Traceback" not in result.stderr
    monkeypatch.setenv("OVI_GATEWAY_PRICES", str(tmp_path / "missing.toml"))
    assert run("quote", *REQUEST).exit_code == 2


def test_ctrl_c_mid_submit_names_the_submit_on_record(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Interrupted between the journal's intent and the vendor's answer: no job id yet, but a paid job may
    exist, so the submit on record is named (the display never saw it accepted)."""
    def interrupted_mid_submit(self: Gateway, request: OviRequest, **kwargs: Any) -> None:
        assert self.journal is not None
        key = kwargs["idempotency_key"]
        self.journal.open_clip(key, request.model_dump_json(), "h")
        self.journal.intent(clip_key=key, submit_key="s-1", provider="fal", quote_usd=None)
        raise KeyboardInterrupt

    monkeypatch.setattr(Gateway, "generate", interrupted_mid_submit)
    stopped = run("generate", *REQUEST, "--out", "clip.mp4", "--json")
    assert stopped.exit_code == 130
    assert "job (sent, not yet acknowledged) on fal may still be running" in stopped.stderr
    data = json.loads(stopped.stdout)
    assert data["provider"] == "fal" and data["error"] == "Interrupted" and data["resume"] is None
