"""Emulator fault scripts and the billing ledger (gateway/emulator/base.py)."""

from __future__ import annotations

from decimal import Decimal

import pytest

from gateway.emulator.base import (
    FAULT_KINDS,
    JOB_FAULTS,
    OPERATIONS,
    TRANSPORT_FAULTS,
    FaultScript,
    Ledger,
    LedgerEntry,
    clip_fingerprint,
    parse_faults,
)


def test_fault_tables_consistent() -> None:
    assert TRANSPORT_FAULTS | JOB_FAULTS == set(FAULT_KINDS)
    assert set(OPERATIONS) == {"submit", "status", "result", "upload", "cancel", "job"}


def test_empty_script_is_ok() -> None:
    s = FaultScript()
    assert [s.next(op) for op in OPERATIONS] == ["ok"] * len(OPERATIONS)


def test_sequence_consumed_then_ok() -> None:
    s = FaultScript(sequence={"submit": ["429", "500", "ok", "timeout"]})
    assert [s.next("submit") for _ in range(6)] == ["429", "500", "ok", "timeout", "ok", "ok"]
    assert s.next("status") == "ok"


def test_sequence_then_probability() -> None:
    s = FaultScript(sequence={"status": ["503", "503"]}, chance={"status": {"500": 1.0}})
    assert [s.next("status") for _ in range(4)] == ["503", "503", "500", "500"]


def test_probability_zero_and_one() -> None:
    s = FaultScript(chance={"submit": {"429": 0.0}, "result": {"bad_json": 1.0}})
    assert {s.next("submit") for _ in range(50)} == {"ok"}
    assert {s.next("result") for _ in range(50)} == {"bad_json"}


def test_probability_table_cumulative() -> None:
    s = FaultScript(chance={"status": {"503": 0.25, "500": 0.25}}, seed=1)
    draws = [s.next("status") for _ in range(2000)]
    assert set(draws) == {"503", "500", "ok"}
    assert 400 < draws.count("503") < 600
    assert 400 < draws.count("500") < 600
    assert 900 < draws.count("ok") < 1100


def test_seeded_draws_repeat() -> None:
    def draws(seed: int) -> list[str]:
        s = FaultScript(chance={"status": {"503": 0.3, "timeout": 0.2}}, seed=seed)
        return [s.next("status") for _ in range(200)]

    assert draws(42) == draws(42)
    assert draws(42) != draws(43)


def test_add_chains() -> None:
    s = FaultScript().add("submit", "refuse").add("submit", "ok", "drop").add("job", "stuck")
    assert s.sequence == {"submit": ["refuse", "ok", "drop"], "job": ["stuck"]}
    assert s.next("job") == "stuck"


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"sequence": {"submit": ["418"]}}, "fault '418' cannot apply to submit"),
    ({"sequence": {"submit": ["fail"]}}, "fault 'fail' cannot apply to submit"),
    ({"sequence": {"job": ["429"]}}, "fault '429' cannot apply to job"),
    ({"sequence": {"delete": ["ok"]}}, "unknown operation 'delete'"),
    ({"chance": {"status": {"boom": 0.5}}}, "fault 'boom' cannot apply to status"),
    ({"chance": {"nowhere": {"ok": 0.5}}}, "unknown operation 'nowhere'"),
])
def test_invalid_script_refused(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        FaultScript(**kwargs)


def test_invalid_add_refused() -> None:
    with pytest.raises(ValueError,
                       match="use one of fail, fail_completed, fail_item, noaudio, nsfw, ok, short, stuck, truncated"):
        FaultScript().add("job", "500")
    with pytest.raises(ValueError, match="unknown operation 'poll'; use one of submit, status"):
        FaultScript().add("poll", "ok")


# ---------------------------------------------------------------- parse_faults

def test_parse_faults_sequences_and_vendors() -> None:
    scripts = parse_faults("runware.submit=429,ok; fal.job=fail;  ; wavespeed.status=503*3,ok")
    assert set(scripts) == {"runware", "fal", "wavespeed"}
    assert scripts["runware"].sequence == {"submit": ["429", "ok"]}
    assert scripts["fal"].sequence == {"job": ["fail"]}
    assert scripts["wavespeed"].sequence == {"status": ["503", "503", "503", "ok"]}


def test_parse_faults_probability() -> None:
    scripts = parse_faults("wavespeed.status=503@0.5, 500@0.25; wavespeed.submit=drop", seed=9)
    ws = scripts["wavespeed"]
    assert ws.chance == {"status": {"503": 0.5, "500": 0.25}}
    assert ws.sequence == {"submit": ["drop"]}
    assert ws.seed == 9
    again = parse_faults("wavespeed.status=503@0.5, 500@0.25", seed=9)["wavespeed"]
    assert [ws.next("status") for _ in range(100)] == [again.next("status") for _ in range(100)]


def test_parse_faults_empty() -> None:
    assert parse_faults("") == {}
    assert parse_faults(" ; ") == {}


@pytest.mark.parametrize(("spec", "message"), [
    ("runware=429", "must look like vendor.operation=kind"),
    ("runware.submit", "must look like vendor.operation=kind"),
    (".submit=429", "must look like vendor.operation=kind"),
    ("runware.submit=teapot", "fault 'teapot' cannot apply to submit"),
    ("runware.job=429", "fault '429' cannot apply to job"),
    ("runware.jump=ok", "unknown operation 'jump'"),
    ("fal.status=teapot@0.5", "fault 'teapot' cannot apply to status"),
])
def test_parse_faults_invalid(spec: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_faults(spec)


# ---------------------------------------------------------------- ledger

def _entry(vendor: str, clip: str, state: str = "accepted", price: str = "0.15", n: int = 0) -> LedgerEntry:
    return LedgerEntry(vendor=vendor, job_id=f"{vendor}-{n}", clip=clip, idempotency_key=None,
                       price=Decimal(price), created_at=0.0, state=state)


def test_ledger_calls() -> None:
    ledger = Ledger()
    ledger.record_request("fal", "submit", "https://queue.fal.run/x")
    ledger.record_request("fal", "status", "https://queue.fal.run/x/status")
    ledger.record_request("fal", "status", "https://queue.fal.run/x/status")
    ledger.record_request("runware", "submit", "https://api.runware.ai/v1")
    assert ledger.calls() == 4
    assert ledger.calls("fal") == 3
    assert ledger.calls("fal", "status") == 2
    assert ledger.calls(operation="submit") == 2
    assert ledger.calls("wavespeed") == 0


def test_ledger_billing() -> None:
    ledger = Ledger()
    ledger.record_job(_entry("runware", "clipA", "succeeded", "0.1171", 1))
    ledger.record_job(_entry("fal", "clipA", "running", "0.20", 2))
    ledger.record_job(_entry("wavespeed", "clipB", "accepted", "0.15", 3))
    ledger.record_job(_entry("wavespeed", "clipC", "failed", "0.15", 4))
    ledger.record_job(_entry("fal", "clipC", "refused", "0.20", 5))
    assert [j.job_id for j in ledger.billable()] == ["runware-1", "fal-2", "wavespeed-3"]
    assert [j.job_id for j in ledger.billable("wavespeed")] == ["wavespeed-3"]
    assert ledger.billed_per_clip() == {"clipA": 2, "clipB": 1}
    assert ledger.total() == Decimal("0.4671")
    assert ledger.total("fal") == Decimal("0.20")
    assert ledger.total("nobody") == Decimal("0")
    assert isinstance(ledger.total(), Decimal)


def test_ledger_entry_billable_states() -> None:
    for state, billable in [("accepted", True), ("running", True), ("succeeded", True), ("failed", False),
                            ("cancelled", False)]:
        assert _entry("fal", "c", state).billable is billable, state


def test_clip_fingerprint() -> None:
    a = clip_fingerprint("prompt", "img")
    assert len(a) == 16 and a == clip_fingerprint("prompt", "img")
    assert a != clip_fingerprint("prompt", None)
    assert a != clip_fingerprint("prompt2", "img")
    assert clip_fingerprint("p", None) == clip_fingerprint("p", "")
