"""The issues' benchmark targets, judged from one run's results: the table ``benchmarks/README.md`` shows.

Every row is computed from the JSON a run writes (``report["benchmarks"][name]``), so the verdicts in the
README come from the same run as the tables beside them. A benchmark that did not run gives no rows.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from typing import Any

Row = tuple[str, str, str, bool | None]  # target, configuration, measured, met (None: cannot be judged)


def _verdict(met: bool | None) -> str:
    return {True: "met", False: "**missed**", None: "not judged"}[met]


def _polling(r: dict[str, Any]) -> Iterator[Row]:
    for p in r["pollers"]:
        if p["poller"] == "gateway PollPolicy() default" and "met" in p:
            yield (f"polling {p['distribution']}: {p['target']}", f"default `PollPolicy`, {p['vendor']}",
                   f"{p['status_calls_per_job']:.1f} calls, median {p['delay_median_s']:.2f} s, "
                   f"p90 {p['delay_p90_s']:.2f} s", p["met"])


def _concurrency(r: dict[str, Any]) -> Iterator[Row]:
    ratio, target, n = r["ratios_at_largest"], r["target"], r["largest"]
    by = {(x["jobs"], x["variant"]): x for x in r["runs"]}
    same, raw = by.get((n, "gateway-nolearn")), by.get((n, "raw-httpx"))
    judged = n >= target["jobs"]
    where = f"{n:,} in flight, `journal=None`, learning off (the raw poller's schedule)"
    if same and raw:
        yield (f"added latency <= {target['added_latency_ratio_max']:g}x raw httpx", where,
               f"{ratio['added_latency_median']:.2f}x ({same['added_latency_s']['median']:.2f} vs "
               f"{raw['added_latency_s']['median']:.2f} s)",
               ratio["added_latency_median"] <= target["added_latency_ratio_max"] if judged else None)
        yield (f"peak RSS <= {target['rss_ratio_max']:g}x raw httpx", where,
               f"{ratio['peak_rss']:.2f}x ({same['peak_rss_mb']:.0f} vs {raw['peak_rss_mb']:.0f} MB)",
               ratio["peak_rss"] <= target["rss_ratio_max"] if judged else None)
        yield ("CPU per job <= 1.5x raw httpx", where,
               f"{ratio['cpu_per_job']:.2f}x ({same['cpu_ms_per_job']:.2f} vs {raw['cpu_ms_per_job']:.2f} ms)",
               ratio["cpu_per_job"] <= 1.5 if judged else None)
    journaled = ratio["journal_added_latency_median"]
    yield (f"default journal within {target['journal_ratio_max']:g}x of `journal=None` (added latency)",
           f"{n:,} in flight, default SQLite journal",
           "did not finish" if math.isinf(journaled) else f"{journaled:.2f}x",
           journaled <= target["journal_ratio_max"] if judged else None)


def _regret(r: dict[str, Any]) -> Iterator[Row]:
    t = r["target"]
    group = next((g for g in r["groups"] if g["name"] == "outages" and g["job_retries"] == 1), None)
    if group is None:
        return
    yield (f"cost regret < {100 * t['regret_max']:g} %, zero double-billed",
           f"{t['applies_to']}, {group['seeds']} seeds",
           f"{100 * group['regret']['median']:.2f} % median, {100 * group['regret']['worst']:.2f} % worst "
           f"({100 * group['regret_if_failed_bill']['worst']:.2f} % worst if failed jobs bill); "
           f"{group['double_billed_clips']['worst']:g} double-billed",
           t["regret_met"] and t["regret_met_worst"] and t["double_billing_met"])


def _limits(r: dict[str, Any], configuration: Callable[[str], str]) -> Iterator[Row]:
    for name, t in r["targets"].items():
        if "value_ms" in t:
            measured = f"{t['value_ms']:.3f} ms vs limit {t['limit_ms']:.3f} ms"
        else:
            measured = f"{t['value']:.3f} vs {t['limit']}"
        yield name, configuration(name), measured, t["met"]


def _peers(r: dict[str, Any]) -> Iterator[Row]:
    added = r["added_ms"]
    extra = (f" (fal-client adds {added['fal-client']:+.2f} ms, LiteLLM {added.get('LiteLLM', math.nan):+.2f} ms, "
             f"one flush {r['flush_ms']:.3f} ms)")
    for name, config, measured, met in _limits(r, lambda n: "fal over loopback HTTP, "
                                               + ("default SQLite journal" if n.startswith("default")
                                                  else "`journal=None`")):
        yield f"peers: {name}", config, measured + extra, met


def _startup(r: dict[str, Any]) -> Iterator[Row]:
    for name, t in r["targets"].items():
        yield (f"start-up `{name}` <= {t['max_ratio']:g}x `python -c \"import httpx\"`", "whole processes",
               f"{r['ratio'][name]:.2f}x ({r['seconds'][name]:.3f} s)", t["met"])


def _loopback(r: dict[str, Any]) -> Iterator[Row]:
    t = r["targets"]
    for name, c in r["configs"].items():
        p50, done = c["keep_alive"]["get"]["p50_ms"], c["burst"]["completed"]
        yield (f"loopback: {t['burst_completed']} new connections complete, keep-alive p50 < "
               f"{t['keep_alive_p50_ms']:g} ms", name, f"{done}/{t['burst_completed']}, p50 {p50:.2f} ms",
               done == t["burst_completed"] and p50 < t["keep_alive_p50_ms"])


def _storage(r: dict[str, Any]) -> Iterator[Row]:
    extra, limit = r["sqlite_ms"] - r["none_ms"], 2 * r["flush_ms"] + 0.25
    yield ("storage: SQLite - `journal=None` <= 2 x flush + 0.25 ms", "default SQLite journal, sequential jobs",
           f"{extra:+.3f} ms vs limit {limit:.3f} ms", extra <= limit)
    flat = r[f"rows_{r['big_rows']}_ms"] / r["rows_100_ms"]
    budget = r[f"rows_{r['big_rows']}_budget_ms"] / r["rows_100_budget_ms"]
    # "Flat" is read as within 1.25x: the two row counts run one after the other on a shared machine.
    yield (f"storage: flat per-job cost from 100 to {r['big_rows']:,} rows (within 1.25x)", "SQLite",
           f"{flat:.2f}x, {budget:.2f}x with a monthly budget", max(flat, budget) <= 1.25)


def _server(r: dict[str, Any]) -> Iterator[Row]:
    for name, config, measured, met in _limits(r, lambda n: "`serve --emulator`, default journal, "
                                               + ("webhooks" if n.startswith("webhooks") else "25 clients")):
        yield f"server: {name}", config, measured, met


JUDGES: dict[str, Callable[[dict[str, Any]], Iterator[Row]]] = {
    "polling": _polling, "concurrency": _concurrency, "regret": _regret, "peers": _peers, "startup": _startup,
    "loopback": _loopback, "storage": _storage, "server": _server}


def judge(report: dict[str, Any]) -> list[Row]:
    """Every target row that the benchmarks in ``report`` can judge, in the order they ran."""
    out: list[Row] = []
    for name, result in report["benchmarks"].items():
        if name in JUDGES:
            out.extend(JUDGES[name](result))
    return out


def markdown(rows: list[Row]) -> str:
    """The targets as a Markdown table (target, configuration, measured, verdict)."""
    lines = ["| target | configuration | measured | verdict |", "|---|---|---|---|"]
    lines += [f"| {t} | {c} | {m} | {_verdict(met)} |" for t, c, m, met in rows]
    return "\n".join(lines)
