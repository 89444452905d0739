"""``Gateway.offline()``: sealed from the network, seconds per clip, its own marked journal; the README's
library quick start runs as written."""

from __future__ import annotations

import contextlib
import re
import socket
import sqlite3
import subprocess
import sys
from decimal import Decimal
from pathlib import Path

import httpx
import pytest

from gateway import offline
from gateway.client import Gateway
from gateway.clock import VirtualClock
from gateway.errors import ConfigurationError, NoRoute
from gateway.request import OviRequest
from gateway.store.journal import Journal, request_hash

ROOT = Path(__file__).resolve().parent.parent
KEY_VARIABLES = ("RUNWARE_API_KEY", "FAL_KEY", "WAVESPEED_API_KEY", offline.EMULATOR_URL_ENV)
REQUEST = OviRequest(prompt="A knight. <S>Hold the line.<E>", image="https://example.com/k.png")


def quick_start() -> str:
    """The first python block under the README's "Library quick start" heading."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    section = text[text.index("## Library quick start"):]
    match = re.search(r"```python\n(.*?)```", section, re.S)
    assert match, "the README's library quick start has no python block"
    return match[1]


@pytest.fixture(autouse=True)
def isolated(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No keys, and the user data directory (both journals' home) inside tmp_path."""
    for name in KEY_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    monkeypatch.chdir(tmp_path)


@pytest.fixture
def virtual_time(monkeypatch: pytest.MonkeyPatch) -> VirtualClock:
    clock = VirtualClock()
    monkeypatch.setattr(offline, "default_clock", lambda: clock)
    return clock


@pytest.fixture
def sealed(monkeypatch: pytest.MonkeyPatch) -> dict[str, list[object]]:
    """Record, and refuse, every DNS lookup and every connect to a non-loopback address."""
    seen: dict[str, list[object]] = {"lookups": [], "connects": []}
    real_connect = socket.socket.connect

    def getaddrinfo(host: object, *args: object, **kwargs: object) -> list[object]:
        seen["lookups"].append(host)
        raise socket.gaierror(socket.EAI_NONAME, f"sealed test: no DNS lookup of {host!r}")

    def connect(self: socket.socket, address: object) -> None:
        host = address[0] if isinstance(address, tuple) else address
        if host not in ("127.0.0.1", "::1") and self.family != socket.AF_UNIX:
            seen["connects"].append(address)
            raise OSError(f"sealed test: no connect to {address!r}")
        real_connect(self, address)  # type: ignore[arg-type]

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    monkeypatch.setattr(socket.socket, "connect", connect)
    return seen


def test_the_readme_quick_start_runs_offline_as_written_and_touches_no_network(
        virtual_time: VirtualClock, sealed: dict[str, list[object]], tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    namespace: dict[str, object] = {}
    exec(compile(quick_start(), "README.md (library quick start)", "exec"), namespace)
    result = namespace["result"]
    assert result.emulated is True and result.attempts[-1].outcome == "succeeded"  # type: ignore[attr-defined]
    assert (tmp_path / "knight.mp4").stat().st_size > 0
    assert sealed == {"lookups": [], "connects": []}
    printed = capsys.readouterr().out
    assert "runware" in printed and "True" in printed
    # a few (virtual) seconds per clip, not a real job's minute
    assert virtual_time.now() < 3 * 5.0
    # the three clips went to the offline journal, marked; the real journal was never created
    data = tmp_path / "data" / "ovi-gateway"
    assert not (data / "journal.sqlite3").exists()
    with contextlib.closing(sqlite3.connect(data / "offline-journal.sqlite3")) as db:
        rows = db.execute("SELECT provider, emulator_instance FROM submits WHERE state = 'succeeded'").fetchall()
    assert sorted(p for p, _ in rows) == ["fal", "runware", "wavespeed"]
    assert len({instance for _, instance in rows}) == 1 and rows[0][1] is not None


def test_gateway_with_no_keys_stays_no_route_never_a_silent_switch(tmp_path: Path) -> None:
    with pytest.raises(NoRoute) as raised:
        Gateway(journal=":memory:").generate(REQUEST)
    assert "no API key" in str(raised.value.reasons)


def test_emulated_rows_never_count_as_real_spend_budget_or_calibration(virtual_time: VirtualClock,
                                                                       tmp_path: Path) -> None:
    shared = tmp_path / "one-file.sqlite3"  # even when a caller points both at one file
    gw = Gateway.offline(journal=str(shared))
    made = gw.generate(REQUEST, provider="runware")
    assert made.emulated and made.cost_source == "reported"
    real = Journal(shared)
    assert real.spend() == [] and real.reserved_and_spent() == Decimal(0)
    assert real.reported_costs("runware") == [] and real.unfinished() == []
    emulated = Journal(shared, emulator_instance=gw.emulator_instance)
    assert [row.provider for row in emulated.spend()] == ["runware"]


def test_a_rerun_after_the_emulator_is_gone_closes_its_open_rows_unbilled(virtual_time: VirtualClock,
                                                                        tmp_path: Path) -> None:
    path = tmp_path / "offline.sqlite3"
    journal = Journal(path, emulator_instance="gone-instance")
    request_json = REQUEST.model_dump_json()
    journal.open_clip("clip-1", request_json, request_hash(request_json))
    journal.intent(clip_key="clip-1", submit_key="s-1", provider="fal", quote_usd=Decimal("0.20"))
    journal.accepted("s-1", {"provider": "fal", "job_id": "old-job"})
    journal.close()
    gw = Gateway.offline(journal=str(path))
    started = virtual_time.now()
    result = gw.generate(REQUEST, provider="fal", idempotency_key="clip-1")
    assert virtual_time.now() - started < 10.0  # not max_wait of polling a job no emulator knows
    assert result.emulated and result.job_id != "old-job"
    first = gw.journal.submits("clip-1")[0]
    assert first.state == "failed" and not first.may_be_billed and "emulator restarted" in (first.error or "")
    assert [o.outcome for o in gw.resume()] == []


def test_offline_rejects_a_non_loopback_emulator_url() -> None:
    with pytest.raises(ConfigurationError, match="loopback"):
        Gateway.offline(emulator_url="http://emulator.example.com:8765")


def test_offline_against_a_loopback_emulator(monkeypatch: pytest.MonkeyPatch, virtual_time: VirtualClock,
                                             tmp_path: Path) -> None:
    from gateway.emulator import Emulator

    emulator = Emulator(clock=virtual_time, job_time=lambda rng: 1.0)
    server = emulator.serve(0)
    try:
        url = f"http://127.0.0.1:{server.server_port}"
        monkeypatch.setenv(offline.EMULATOR_URL_ENV, url)
        gw = Gateway.offline(journal=str(tmp_path / "j.sqlite3"))
        assert gw.emulator_instance == emulator.instance_id
        result = gw.generate(REQUEST, provider="wavespeed")
        assert result.emulated and httpx.URL(result.video_url).host == "127.0.0.1"
        assert [j.job_id for j in emulator.ledger.billable()] == [result.job_id]
        assert result.download(tmp_path / "clip.mp4").stat().st_size > 0
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.slow
def test_the_readme_quick_start_runs_verbatim_in_a_fresh_process(tmp_path: Path) -> None:
    """Real time, real clock: the block exactly as a newcomer pastes it."""
    script = tmp_path / "quick_start.py"
    script.write_text(quick_start(), encoding="utf-8")
    env = {k: v for k, v in __import__("os").environ.items() if k not in KEY_VARIABLES}
    env["XDG_DATA_HOME"] = str(tmp_path / "data")
    done = subprocess.run([sys.executable, str(script)], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "knight.mp4").stat().st_size > 0
    assert " True [" in done.stdout


def test_emulator_true_points_to_offline_instead_of_minute_long_emulation() -> None:
    with pytest.raises(ConfigurationError, match=r"Gateway\.offline\(\)"):
        Gateway(emulator=True, journal=None)  # type: ignore[arg-type]
