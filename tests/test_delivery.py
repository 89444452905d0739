"""Finished clips: expiry on the result, verification before success, failover on a defective clip
(a deliberate pay-twice path, reported), keep_dir, and the journal's record of every download."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner

from gateway import AllProvidersFailed, Gateway, OviRequest, Route
from gateway.cli import commands as cli
from gateway.clock import VirtualClock
from gateway.emulator import Emulator
from gateway.errors import DefectiveClip
from gateway.store.journal import Journal

pytestmark = pytest.mark.anyio

PROMPT = "A knight in the rain. <S>I will defend this land.<E> <AUDCAP>Thunder, war drums.<ENDAUDCAP>"
REQUEST = OviRequest(prompt=PROMPT, image="https://example.com/knight.png")


def _setup(faults: str | None = None, **options: object) -> tuple[Gateway, Emulator, Journal]:
    clock = VirtualClock()
    emulator = Emulator(clock=clock, faults=faults, seed=3)
    journal = Journal(":memory:")
    return Gateway(emulator=emulator, clock=clock, journal=journal, **options), emulator, journal  # type: ignore[arg-type]


def _downloads(emulator: Emulator) -> int:
    return emulator.ledger.calls(operation="download")


def test_results_carry_the_vendors_documented_expiry() -> None:
    gateway, emulator, _ = _setup()
    now = datetime.now(UTC)
    fal = gateway.generate(REQUEST, provider="fal")
    wavespeed = gateway.generate(REQUEST, provider="wavespeed")
    runware = gateway.generate(REQUEST, provider="runware")
    assert fal.expires_at is not None and abs(fal.expires_at - (now + timedelta(hours=1))) < timedelta(minutes=1)
    assert wavespeed.expires_at is not None
    assert abs(wavespeed.expires_at - (now + timedelta(days=7))) < timedelta(minutes=1)
    assert runware.expires_at is None and runware.expiry == "unknown"
    assert fal.verified is None and fal.media is None  # nothing is downloaded unless asked
    assert _downloads(emulator) == 0


def test_download_of_a_defective_clip_raises_keeps_the_file_aside_and_the_job_on_record(tmp_path: Path) -> None:
    gateway, emulator, journal = _setup("fal.job=noaudio")
    result = gateway.generate(REQUEST, provider="fal")  # the vendor said success, and billed
    target = tmp_path / "clip.mp4"
    with pytest.raises(DefectiveClip, match="no audio stream") as caught:
        result.download(target)
    assert not target.exists() and caught.value.saved_to == str(tmp_path / "clip.defective.mp4")
    assert Path(caught.value.saved_to).stat().st_size > 0
    (record,) = journal.downloads(result.idempotency_key or "")
    assert (record.verdict, record.provider, record.job_id, record.video_url) == (
        "defective", "fal", result.job_id, result.video_url)
    assert "no audio stream" in record.facts["problems"][0]
    assert journal.get_clip(result.idempotency_key or "").state == "succeeded"  # paid: kept, not failed
    assert len(emulator.ledger.billable("fal")) == 1


def test_a_good_download_is_verified_and_recorded(tmp_path: Path) -> None:
    gateway, _, journal = _setup()
    result = gateway.generate(REQUEST, provider="wavespeed")
    assert [p.clip_key for p in journal.undownloaded()] == [result.idempotency_key]
    saved = result.download(tmp_path / "clip.mp4")
    assert result.verified is True and result.media is not None and result.media.frames == 121
    (record,) = journal.downloads(result.idempotency_key or "")
    assert record.verdict == "ok" and record.saved_to == str(saved) and record.sha256 == result.media.sha256
    assert journal.undownloaded() == []
    assert json.loads(result.model_dump_json())["verified"] is True


def test_failover_on_defective_pays_twice_on_purpose_and_says_so() -> None:
    gateway, emulator, journal = _setup("runware.job=short")
    result = gateway.generate(REQUEST, route=Route(failover_on_defective=True))
    assert result.provider == "wavespeed"  # the next cheapest
    assert result.media is not None and result.media.ok and result.saved_to is None
    assert result.possible_extra_charges == 1
    first = result.attempts[0]
    assert (first.provider, first.outcome, first.error_type, first.may_be_billed) == (
        "runware", "failed", "DefectiveClip", True)
    assert "video lasts 2.00 s" in (first.error or "")
    assert {j.vendor for j in emulator.ledger.billable()} == {"runware", "wavespeed"}  # billed twice, reported
    key = result.idempotency_key or ""
    runware = next(s for s in journal.submits(key) if s.provider == "runware")
    assert runware.state == "failed" and runware.may_be_billed and runware.job_id == first.job_id
    verdicts = [(r.provider, r.verdict) for r in journal.downloads(key)]
    assert verdicts == [("runware", "defective"), ("wavespeed", "ok")]


def test_without_the_opt_in_a_defective_clip_found_at_once_is_not_failed_over(tmp_path: Path) -> None:
    gateway, emulator, _ = _setup("runware.job=truncated", keep_dir=tmp_path)
    with pytest.raises(DefectiveClip, match="the container does not parse") as caught:
        gateway.generate(REQUEST)
    assert caught.value.saved_to is not None and caught.value.saved_to.endswith(".defective.mp4")
    assert [j.vendor for j in emulator.ledger.billable()] == ["runware"]  # nothing else was paid
    assert [a.error_type for a in caught.value.attempts] == ["DefectiveClip"]
    assert [p.name for p in tmp_path.iterdir()] == [Path(caught.value.saved_to).name]


def test_every_vendor_defective_fails_with_every_charge_reported() -> None:
    gateway, _, _ = _setup("runware.job=noaudio; fal.job=noaudio; wavespeed.job=noaudio")
    with pytest.raises(AllProvidersFailed) as caught:
        gateway.generate(REQUEST, route=Route(failover_on_defective=True))
    assert [a.error_type for a in caught.value.attempts] == ["DefectiveClip"] * 3
    assert caught.value.may_be_billed


def test_keep_dir_downloads_every_finished_clip_at_once(tmp_path: Path) -> None:
    gateway, emulator, journal = _setup(keep_dir=tmp_path / "kept")
    result = gateway.generate(REQUEST, provider="fal")
    assert result.saved_to == str(tmp_path / "kept" / f"{result.idempotency_key}.mp4")
    assert Path(result.saved_to).read_bytes()[4:8] == b"ftyp"
    assert result.verified is True and _downloads(emulator) == 1
    assert journal.undownloaded() == []
    replay = gateway.generate(REQUEST, idempotency_key=result.idempotency_key)
    assert replay.saved_to == result.saved_to and replay.media == result.media  # journaled with the result


@pytest.fixture
def offline(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("RUNWARE_API_KEY", "FAL_KEY", "WAVESPEED_API_KEY", "OVI_GATEWAY_PRICES"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("COLUMNS", "250")
    monkeypatch.setenv(cli.JOB_SECONDS_ENV, "0.05")


def _run(*args: str) -> object:
    return CliRunner().invoke(cli.cli, list(args), catch_exceptions=False)


@pytest.mark.usefixtures("offline")
def test_cli_generate_keeps_clips_says_verified_and_jobs_lists_what_is_not_downloaded(tmp_path: Path) -> None:
    journal = tmp_path / "journal.db"
    base = ["--prompt", PROMPT, "--image", "https://example.com/knight.png", "--journal", str(journal)]
    made = _run("generate", *base, "--out", str(tmp_path / "a.mp4"), "--keep-dir", str(tmp_path / "kept"),
                "--provider", "fal")
    assert made.exit_code == 0, made.stderr
    assert "verified: h264 512x256 24 fps 121 frames 5.04 s + aac" in made.stderr
    assert len(list((tmp_path / "kept").iterdir())) == 1
    listed = json.loads(_run("jobs", "--journal", str(journal), "--json").stdout)
    assert listed == {"unfinished": [], "not_downloaded": []}
    # a clip made through the library and never downloaded is listed, with its expiry
    with Journal(journal) as opened:
        clock = VirtualClock()
        gateway = Gateway(emulator=Emulator(clock=clock), clock=clock, journal=opened)
        result = gateway.generate(REQUEST, provider="wavespeed")
    pending = json.loads(_run("jobs", "--journal", str(journal), "--json").stdout)["not_downloaded"]
    assert [(p["clip_key"], p["provider"]) for p in pending] == [(result.idempotency_key, "wavespeed")]
    assert pending[0]["expires_at"].startswith(result.expiry[:16])
    table = _run("jobs", "--journal", str(journal)).stdout
    assert "Finished, not downloaded" in table and result.job_id in table


@pytest.mark.usefixtures("offline")
def test_cli_generate_refuses_a_defective_clip_naming_the_paid_job(tmp_path: Path) -> None:
    out = tmp_path / "clip.mp4"
    made = _run("generate", "--prompt", PROMPT, "--image", "https://example.com/knight.png", "--provider", "fal",
                "--faults", "fal.job=noaudio", "--out", str(out))
    assert made.exit_code == 3
    assert "defective: no audio stream" in made.stderr and "was paid" in made.stderr
    assert not out.exists() and (tmp_path / "clip.defective.mp4").exists()


def test_a_resumed_job_is_kept_and_verified_at_the_requested_fps(tmp_path: Path) -> None:
    from gateway.errors import DeadlineExceeded

    clock = VirtualClock()
    emulator = Emulator(clock=clock, seed=4)
    path = tmp_path / "journal.db"
    request = OviRequest(prompt=PROMPT, image="https://example.com/knight.png", fps=30)
    first = Gateway(emulator=emulator, clock=clock, journal=str(path))
    with pytest.raises(DeadlineExceeded):
        first.generate(request, provider="runware", route=Route(deadline=5))  # the job runs on, paid
    later = Gateway(emulator=emulator, clock=clock, journal=str(path), keep_dir=tmp_path / "kept")
    (outcome,) = later.resume()
    assert outcome.outcome == "succeeded" and outcome.result is not None
    kept = outcome.result
    assert kept.saved_to is not None and Path(kept.saved_to).exists()
    assert kept.fps == 30 and kept.media is not None and kept.media.fps == 30.0 and kept.media.ok
    assert len(emulator.ledger.billable()) == 1


@pytest.mark.usefixtures("offline")
def test_cli_without_pyav_saves_the_clip_and_says_plainly_it_was_not_verified(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    monkeypatch.setitem(sys.modules, "av", None)  # as on an install without the media extra
    out = tmp_path / "clip.mp4"
    made = _run("generate", "--prompt", PROMPT, "--image", "https://example.com/knight.png", "--out", str(out),
                "--json")
    assert made.exit_code == 0, made.stderr
    assert "not verified: PyAV is not installed (pip install 'ovi-gateway[media]')" in made.stderr
    assert json.loads(made.stdout)["verified"] is False and out.stat().st_size > 5000
