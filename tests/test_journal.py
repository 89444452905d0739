"""The job journal: round trips, idempotency, transitions, spend, schema versions, WAL, two processes."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import textwrap
import threading
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import pytest

import gateway.store.journal as journal_module
from gateway.contract import JobHandle
from gateway.errors import InvalidRequest
from gateway.store.journal import ClipRecord, Journal, SpendRow, request_hash

REQ = json.dumps({"prompt": "a cat <S>hello<E>", "seed": 0, "image": None})
HANDLE = JobHandle(provider="fal", job_id="job-1", data={"status_url": "https://queue.fal.run/x"}).to_json()


@pytest.fixture
def j():
    journal = Journal(":memory:")
    yield journal
    journal.close()


def clip(j: Journal, key: str = "clip-1", req: str = REQ) -> ClipRecord:
    return j.open_clip(key, req, request_hash(req))


def at(monkeypatch: pytest.MonkeyPatch, moment: str) -> None:
    monkeypatch.setattr(journal_module, "_utcnow", lambda: datetime.fromisoformat(moment))


def test_request_hash_is_sha256_of_canonical_json():
    a = request_hash('{"b": 1, "a": [1, 2], "c": "é"}')
    assert a == request_hash('{"a":[1,2],"c":"é","b":1}')
    assert a == hashlib.sha256('{"a":[1,2],"b":1,"c":"é"}'.encode()).hexdigest()
    assert a != request_hash('{"a":[2,1],"b":1,"c":"é"}')
    with pytest.raises(InvalidRequest):
        request_hash("{not json")


def test_open_clip_is_idempotent_and_refuses_a_different_request(j):
    first = clip(j)
    assert (first.key, first.request_json, first.state, first.result_json, first.error) == \
        ("clip-1", REQ, "open", None, None)
    assert first.request_hash == request_hash(REQ)
    assert datetime.fromisoformat(first.created_at).tzinfo is not None
    same = j.open_clip("clip-1", json.dumps(json.loads(REQ), indent=2), request_hash(REQ))
    assert same == first  # the stored request is kept, not replaced
    other = json.dumps({"prompt": "a dog", "seed": 0})
    with pytest.raises(InvalidRequest, match="idempotency key 'clip-1' was used for a different request"):
        j.open_clip("clip-1", other, request_hash(other))
    assert j.get_clip("clip-1") == first
    assert j.get_clip("nope") is None


def test_clip_finish_and_fail_round_trip(j):
    clip(j, "a")
    clip(j, "b")
    j.finish_clip("a", '{"video_url": "https://v/1.mp4"}')
    j.fail_clip("b", "AllProvidersFailed: all gone")
    assert j.get_clip("a").state == "succeeded"
    assert j.get_clip("a").result_json == '{"video_url": "https://v/1.mp4"}'
    assert (j.get_clip("b").state, j.get_clip("b").error) == ("failed", "AllProvidersFailed: all gone")
    j.finish_clip("b", '{"video_url": "https://v/2.mp4"}')  # a reconciled job delivered after all
    assert (j.get_clip("b").state, j.get_clip("b").error) == ("succeeded", None)
    for act in (lambda: j.fail_clip("a", "late"), lambda: j.finish_clip("a", "{}")):
        with pytest.raises(ValueError, match="already succeeded"):
            act()
    with pytest.raises(KeyError):
        j.finish_clip("missing", "{}")


def test_submit_lifecycle_round_trip(j):
    clip(j)
    j.intent(clip_key="clip-1", submit_key="s1", provider="runware", quote_usd=Decimal("0.1171"),
             deadline=123.5, steps=30)
    (rec,) = j.submits("clip-1")
    assert (rec.state, rec.job_id, rec.handle, rec.quote_usd, rec.deadline, rec.steps, rec.request_json) == \
        ("intent", None, None, Decimal("0.1171"), 123.5, 30, REQ)
    j.reserve("s1", Decimal("0.15"))
    j.accepted("s1", HANDLE)
    rec = j.submits("clip-1")[0]
    assert (rec.state, rec.job_id, rec.handle) == ("accepted", "job-1", HANDLE)
    assert JobHandle.from_json(rec.handle).data["status_url"] == "https://queue.fal.run/x"
    for state in ("queued", "running"):
        j.state("s1", state)
        assert j.submits("clip-1")[0].state == state
    j.finished("s1", cost_usd=Decimal("0.1171"), cost_source="reported")
    rec = j.submits("clip-1")[0]
    assert (rec.state, rec.cost_usd, rec.cost_source, rec.may_be_billed, rec.error) == \
        ("succeeded", Decimal("0.1171"), "reported", False, None)
    assert rec.updated_at >= rec.created_at
    with pytest.raises(ValueError, match="unknown submit state"):
        j.state("s1", "bogus")


def test_failed_unknown_expired_round_trip(j):
    clip(j)
    for key in ("f", "u", "e"):
        j.intent(clip_key="clip-1", submit_key=key, provider="fal", quote_usd=None)
    j.failed("f", error="GenerationFailed: boom", may_be_billed=True)
    j.unknown("u", error="SubmitOutcomeUnknown: read timeout")
    j.accepted("e", HANDLE)
    j.expired("e", "ResultExpired: gone")
    recs = {r.submit_key: r for r in j.submits("clip-1")}
    assert [r.submit_key for r in j.submits("clip-1")] == ["f", "u", "e"]
    assert (recs["f"].state, recs["f"].error, recs["f"].may_be_billed) == ("failed", "GenerationFailed: boom", True)
    assert (recs["u"].state, recs["u"].error, recs["u"].may_be_billed) == (
        "unknown", "SubmitOutcomeUnknown: read timeout", True)
    assert (recs["e"].state, recs["e"].error, recs["e"].quote_usd) == ("expired", "ResultExpired: gone", None)


def test_bad_submit_calls_are_refused(j):
    clip(j)
    with pytest.raises(KeyError):
        j.intent(clip_key="no-clip", submit_key="s", provider="fal", quote_usd=None)
    j.intent(clip_key="clip-1", submit_key="s", provider="fal", quote_usd=None)
    with pytest.raises(ValueError, match="already in the journal"):
        j.intent(clip_key="clip-1", submit_key="s", provider="fal", quote_usd=None)
    with pytest.raises(TypeError, match="Decimal"):
        j.reserve("s", 0.2)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        j.intent(clip_key="clip-1", submit_key="t", provider="fal", quote_usd=0.2)  # type: ignore[arg-type]
    for act in (lambda: j.state("nope", "queued"), lambda: j.reserve("nope", Decimal(1))):
        with pytest.raises(KeyError):
            act()
    assert [r.submit_key for r in j.submits("clip-1")] == ["s"]


FINALIZERS = {
    "succeeded": lambda j, k: j.finished(k, cost_usd=None, cost_source="unknown"),
    "failed": lambda j, k: j.failed(k, error="x", may_be_billed=False),
    "expired": lambda j, k: j.expired(k, "x"),
}
MOVES = [lambda j, k: j.accepted(k, HANDLE), lambda j, k: j.state(k, "running"),
         lambda j, k: j.unknown(k, error="y"), *FINALIZERS.values()]


@pytest.mark.parametrize("final", sorted(FINALIZERS))
def test_transitions_out_of_a_final_state_are_refused(j, final):
    clip(j)
    j.intent(clip_key="clip-1", submit_key="s", provider="wavespeed", quote_usd=Decimal("0.15"))
    FINALIZERS[final](j, "s")
    for move in MOVES:
        with pytest.raises(ValueError, match=f"already {final}"):
            move(j, "s")
    assert j.submits("clip-1")[0].state == final


def test_unknown_can_become_accepted_when_reconciled(j):
    clip(j)
    j.intent(clip_key="clip-1", submit_key="s", provider="runware", quote_usd=Decimal("0.1171"))
    j.unknown("s", error="read timeout")
    j.accepted("s", HANDLE)
    assert (j.submits("clip-1")[0].state, j.submits("clip-1")[0].job_id) == ("accepted", "job-1")


def test_unfinished_lists_open_submits_of_unsucceeded_clips(j):
    clip(j, "live")
    clip(j, "done")
    clip(j, "dead")
    for i, state in enumerate(["intent", "accepted", "queued", "running", "unknown", "succeeded", "failed", "expired"]):
        key = f"live-{state}"
        j.intent(clip_key="live", submit_key=key, provider="fal", quote_usd=Decimal("0.2"), deadline=float(i))
        if state != "intent":
            j.accepted(key, HANDLE)
        if state in ("queued", "running"):
            j.state(key, state)
        if state == "unknown":
            j.unknown(key, error="?")
        elif state == "expired":
            j.expired(key, "gone")
        elif state == "succeeded":
            j.finished(key, cost_usd=None, cost_source="unknown")
        elif state == "failed":
            j.failed(key, error="x", may_be_billed=True)
    j.intent(clip_key="done", submit_key="done-running", provider="fal", quote_usd=None)
    j.finish_clip("done", "{}")
    j.intent(clip_key="dead", submit_key="dead-unknown", provider="fal", quote_usd=None)
    j.unknown("dead-unknown", error="?")
    j.fail_clip("dead", "gave up")
    rows = j.unfinished()
    assert [r.submit_key for r in rows] == ["live-intent", "live-accepted", "live-queued", "live-running",
                                            "live-unknown", "dead-unknown"]
    assert [r.state for r in rows[:5]] == ["intent", "accepted", "queued", "running", "unknown"]
    assert all(r.request_json == REQ for r in rows) and rows[3].deadline == 3.0


def test_spend_aggregates_per_provider_and_day_exactly(j, monkeypatch):
    at(monkeypatch, "2025-03-01T23:59:59+00:00")
    clip(j, "c1")
    steps = [("a", "runware", "0.1", "0.1171", "reported"), ("b", "runware", "0.2", None, None),
             ("c", "fal", "0.20", None, "failed-billed"), ("d", "fal", "0.20", None, "failed-unbilled"),
             ("e", "fal", "0.20", None, "unknown")]
    for key, provider, quote, cost, how in steps:
        j.intent(clip_key="c1", submit_key=key, provider=provider, quote_usd=Decimal(quote))
        if how == "reported" or how is None:
            j.finished(key, cost_usd=None if cost is None else Decimal(cost), cost_source=how or "estimated")
        elif how.startswith("failed"):
            j.failed(key, error="x", may_be_billed=how == "failed-billed")
        else:
            j.unknown(key, error="?")
    at(monkeypatch, "2025-03-02T00:00:01+00:00")
    for key, quote in (("f", "0.1"), ("g", "0.2")):
        j.intent(clip_key="c1", submit_key=key, provider="runware", quote_usd=Decimal(quote))
        j.finished(key, cost_usd=None, cost_source="estimated")
    rows = j.spend()
    assert rows == [
        SpendRow("fal", "2025-03-01", 0, Decimal(0), Decimal(0), 2),
        SpendRow("runware", "2025-03-01", 2, Decimal("0.2"), Decimal("0.1171"), 0),
        SpendRow("runware", "2025-03-02", 2, Decimal("0.3"), Decimal(0), 0),
    ]
    assert str(rows[2].estimated_usd) == "0.3"  # 0.1 + 0.2, not 0.30000000000000004
    assert j.spend(since=datetime(2025, 3, 2)) == rows[2:]  # naive since = UTC


def test_reserved_and_spent(j, monkeypatch):
    at(monkeypatch, "2025-01-01T00:00:00+00:00")
    clip(j)
    j.intent(clip_key="clip-1", submit_key="old", provider="fal", quote_usd=Decimal("9"))
    at(monkeypatch, "2025-02-01T00:00:00+00:00")
    cases = [("rep", "0.1171", "0.15"), ("res", "0.2", "0.25"), ("quote", "0.3", None),
             ("unbilled", "0.4", "0.4"), ("billed", "0.5", None), ("unk", "0.6", None), ("exp", "0.7", None)]
    for key, quote, reserved in cases:
        j.intent(clip_key="clip-1", submit_key=key, provider="runware", quote_usd=Decimal(quote))
        if reserved:
            j.reserve(key, Decimal(reserved))
    j.finished("rep", cost_usd=Decimal("0.1003"), cost_source="reported")
    j.finished("res", cost_usd=None, cost_source="estimated")
    j.failed("unbilled", error="x", may_be_billed=False)
    j.failed("billed", error="x", may_be_billed=True)
    j.unknown("unk", error="?")
    j.expired("exp", "gone")
    expected = Decimal("0.1003") + Decimal("0.25") + Decimal("0.3") + Decimal("0.5") + Decimal("0.6") + Decimal("0.7")
    assert j.reserved_and_spent(since=datetime(2025, 1, 15, tzinfo=UTC)) == expected == Decimal("2.4503")
    assert j.reserved_and_spent() == expected + 9


def test_reported_costs_newest_first(j, monkeypatch):
    clip(j)
    for i, (cost, quote, steps) in enumerate([("0.1171", "0.1171", 30), ("0.1466", "0.14", 40), ("0.09", None, None)]):
        at(monkeypatch, f"2025-01-01T00:00:0{i}+00:00")
        j.intent(clip_key="clip-1", submit_key=f"s{i}", provider="runware",
                 quote_usd=None if quote is None else Decimal(quote), steps=steps)
        j.finished(f"s{i}", cost_usd=Decimal(cost), cost_source="reported")
    j.intent(clip_key="clip-1", submit_key="est", provider="runware", quote_usd=Decimal("1"))
    j.finished("est", cost_usd=Decimal("1"), cost_source="estimated")
    j.intent(clip_key="clip-1", submit_key="other", provider="fal", quote_usd=Decimal("0.2"))
    j.finished("other", cost_usd=Decimal("0.2"), cost_source="reported")
    assert j.reported_costs("runware") == [(Decimal("0.09"), None, None), (Decimal("0.1466"), Decimal("0.14"), 40),
                                           (Decimal("0.1171"), Decimal("0.1171"), 30)]
    assert j.reported_costs("runware", limit=1) == [(Decimal("0.09"), None, None)]


def test_file_journal_uses_wal_and_reopens_with_everything(tmp_path):
    path = tmp_path / "sub" / "j.sqlite3"  # parent directories are created on first use
    j = Journal(path)
    assert j.path == str(path) and path.exists()
    assert j._db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert j._db.execute("PRAGMA busy_timeout").fetchone()[0] >= 5000
    clip(j)
    j.intent(clip_key="clip-1", submit_key="s", provider="runware", quote_usd=Decimal("0.1171"), steps=30)
    j.reserve("s", Decimal("0.13"))
    j.accepted("s", HANDLE)
    before = (j.get_clip("clip-1"), j.submits("clip-1"), j.unfinished(), j.spend(), j.reserved_and_spent())
    j.close()
    with Journal(str(path)) as again:
        assert (again.get_clip("clip-1"), again.submits("clip-1"), again.unfinished(), again.spend(),
                again.reserved_and_spent()) == before
        assert before[1][0].handle == HANDLE and before[4] == Decimal("0.13")


def test_memory_journal_and_default_path(tmp_path, monkeypatch):
    j = Journal(":memory:")
    assert j.path == ":memory:"
    clip(j)
    assert j.get_clip("clip-1") is not None
    j.close()
    monkeypatch.setattr(journal_module.platformdirs, "user_data_path", lambda app: tmp_path / "data" / app)
    with Journal() as default:
        assert default.path == str(tmp_path / "data" / "ovi-gateway" / "journal.sqlite3")
        assert Path(default.path).exists()


def test_threads_share_one_journal(tmp_path):
    j = Journal(tmp_path / "j.sqlite3")
    clip(j)

    def work(t: int) -> None:
        for i in range(50):
            j.intent(clip_key="clip-1", submit_key=f"{t}-{i}", provider="fal", quote_usd=Decimal("0.2"))
            j.finished(f"{t}-{i}", cost_usd=Decimal("0.2"), cost_source="reported")

    threads = [threading.Thread(target=work, args=(t,)) for t in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(j.submits("clip-1")) == 200
    assert j.spend()[0].reported_usd == Decimal("40.0")
    j.close()


WRITER = textwrap.dedent("""
    import sys
    from decimal import Decimal
    from gateway.store.journal import Journal, request_hash
    path, tag, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
    j = Journal(path)
    req = '{"prompt": "p"}'
    for i in range(n):
        key = f"{tag}-{i}"
        j.open_clip(key, req, request_hash(req))
        j.intent(clip_key=key, submit_key=key + "-s", provider=tag, quote_usd=Decimal("0.01"))
        j.finished(key + "-s", cost_usd=Decimal("0.01"), cost_source="reported")
    j.close()
""")


@pytest.mark.slow
def test_two_processes_write_one_file_concurrently(tmp_path):
    path = tmp_path / "shared.sqlite3"
    n = 300
    procs = [subprocess.Popen([sys.executable, "-c", WRITER, str(path), tag, str(n)],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for tag in ("p1", "p2")]
    outputs = [p.communicate(timeout=60) for p in procs]
    for p, (_, err) in zip(procs, outputs, strict=True):
        assert p.returncode == 0, err
        assert "locked" not in err
    with Journal(path) as j:
        spend = {row.provider: row for row in j.spend()}
        assert {name: (row.clips, row.reported_usd) for name, row in spend.items()} == \
            {"p1": (n, Decimal("3.00")), "p2": (n, Decimal("3.00"))}
        assert all(len(j.submits(f"{tag}-{i}")) == 1 for tag in ("p1", "p2") for i in range(n))
        assert j.unfinished() == []


def test_tests_never_touch_the_real_users_journal():
    from gateway.store.journal import default_path

    assert not default_path().is_relative_to(Path.home()), default_path()


def test_resumes_count_only_when_spaced_and_reset_on_an_answer(j: Journal, monkeypatch: pytest.MonkeyPatch) -> None:
    """Review finding 10: back-to-back resumes are one; a vendor answer starts the count again."""
    at(monkeypatch, "2026-12-01T10:00:00+00:00")
    clip(j)
    j.intent(clip_key="clip-1", submit_key="s", provider="fal", quote_usd=None)
    assert [j.note_resume("s", spacing_s=600) for _ in range(3)] == [0, 0, 0]
    at(monkeypatch, "2026-12-01T10:10:01+00:00")
    assert [j.note_resume("s", spacing_s=600) for _ in range(3)] == [1, 1, 1]
    at(monkeypatch, "2026-12-01T10:20:02+00:00")
    assert j.note_resume("s", spacing_s=600) == 2
    assert j.note_resume("s", reset=True) == 0
    with pytest.raises(KeyError):
        j.note_resume("missing", spacing_s=600)
