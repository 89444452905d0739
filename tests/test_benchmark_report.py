"""The benchmark command's report: targets judged from a run's JSON, and the README blocks it rewrites.

No benchmark runs here; the reports are built by hand so that each verdict's boundary is exercised.
"""

from __future__ import annotations

from typing import Any

import pytest

from benchmarks import run, targets


def _storage(sqlite_ms: float) -> dict[str, Any]:
    return {"none_ms": 2.0, "sqlite_ms": sqlite_ms, "flush_ms": 0.2, "big_rows": 100_000, "rows_100_ms": 5.0,
            "rows_100_budget_ms": 5.0, "rows_100000_ms": 5.5, "rows_100000_budget_ms": 5.2}


def _startup(ratio: float) -> dict[str, Any]:
    return {"seconds": {"quote": 0.2}, "ratio": {"quote": ratio},
            "targets": {"quote": {"max_ratio": 2.0, "met": ratio <= 2.0}}}


@pytest.mark.parametrize(("sqlite_ms", "met"), [(2.64, True), (2.66, False)])
def test_storage_target_is_two_flushes_plus_a_quarter_ms(sqlite_ms: float, met: bool) -> None:
    rows = targets.judge({"benchmarks": {"storage": _storage(sqlite_ms)}})
    overhead = [r for r in rows if r[0].startswith("storage: SQLite")]
    assert [r[3] for r in overhead] == [met]  # limit: 2 x 0.2 + 0.25 = 0.65 ms over journal=None


def test_ten_thousand_in_flight_is_not_judged_at_a_smaller_size() -> None:
    row = {"added_latency_s": {"median": 0.4}, "peak_rss_mb": 100.0, "cpu_ms_per_job": 0.5}
    report = {"concurrency": {
        "largest": 1000, "runs": [{**row, "jobs": 1000, "variant": "gateway-nolearn"},
                                  {**row, "jobs": 1000, "variant": "raw-httpx"}],
        "ratios_at_largest": {"added_latency_median": 1.0, "peak_rss": 1.0, "cpu_per_job": 1.0,
                              "journal_added_latency_median": 1.0},
        "target": {"jobs": 10_000, "added_latency_ratio_max": 1.5, "rss_ratio_max": 1.3, "journal_ratio_max": 1.5}}}
    verdicts = [r[3] for r in targets.judge({"benchmarks": report})]
    assert verdicts == [None, None, None, None]
    assert "not judged" in targets.markdown(targets.judge({"benchmarks": report}))


def test_write_results_replaces_only_the_generated_blocks() -> None:
    readme = ("# Benchmarks\nhand-written\n<!-- results -->\nold tables\n<!-- /results -->\nmiddle\n"
              "<!-- targets -->\nold verdicts\n<!-- /targets -->\nWhy the misses (hand-written)\n")
    report = {"command": "python -m benchmarks.run", "commit": "abc1234",
              "benchmarks": {"storage": _storage(3.0), "startup": _startup(2.5)}}
    out = run.write_results(readme, report, ["TABLE ONE", "TABLE TWO"], "2 cores; load average [0.5]")
    assert "old tables" not in out and "old verdicts" not in out
    assert out.startswith("# Benchmarks\nhand-written\n") and out.endswith("Why the misses (hand-written)\n")
    assert "TABLE ONE\n\nTABLE TWO" in out and "at commit abc1234" in out and "load average [0.5]" in out
    assert "| start-up `quote` <= 2x" in out and out.count("**missed**") == 2


def test_write_results_refuses_a_readme_without_markers() -> None:
    with pytest.raises(SystemExit, match="<!-- results -->"):
        run.write_results("# Benchmarks\n", {"command": "c", "commit": "x", "benchmarks": {}}, [], "facts")
