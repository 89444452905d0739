"""Run the ovi-gateway benchmarks against the emulator; print their tables, write JSON and the README's results.

    .venv/bin/python -m benchmarks.run              # full run (about 2-3 minutes on 2 cores)
    .venv/bin/python -m benchmarks.run --quick      # smaller sizes, a smoke run
    .venv/bin/python -m benchmarks.run --only polling --only regret

Full runs write ``benchmarks/results.json``; ``--quick`` and ``--only`` runs write
``benchmarks/results.partial.json`` instead (so they never overwrite the full results), unless
``--out`` says otherwise. ``--only concurrency --jobs N [--jobs M]`` picks the in-flight sizes.
A full run also rewrites the generated parts of ``benchmarks/README.md`` (between the ``<!-- results -->``
and ``<!-- targets -->`` markers): the printed tables, the commit and the machine's load, and the targets
table judged from the same results (``benchmarks/targets.py``); ``--no-readme`` leaves the README alone.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from benchmarks import common

NAMES = ("overhead", "polling", "concurrency", "regret", "peers", "startup", "loopback", "sdk", "storage", "server")
TITLES = {
    "overhead": "1. Overhead: Gateway.agenerate vs minimal raw httpx (same emulator, zero job time)",
    "polling": "2. Polling efficiency: three vendors x three job-time distributions, status calls and detection delay",
    "concurrency": "3. Concurrency: jobs in flight at once in one process",
    "regret": "4. Cost regret vs the cheapest feasible route, with injected outages",
    "peers": "5. Peers over loopback HTTP (fal): raw httpx, fal-client, the gateway, LiteLLM",
    "startup": "6. Start-up: whole processes vs python -c 'import httpx'",
    "loopback": "7. Loopback emulator server: keep-alive latency and 200 simultaneous new connections",
    "sdk": "8. The vendors' SDKs (their own code) on the loopback emulator: status calls per job, detection delay",
    "storage": "9. Storage: per-job cost of journal=None / SQLite / PostgreSQL, the flush cost, 100 vs 100,000 rows",
    "server": "10. Server over loopback: ovi-gateway serve --emulator under concurrent clients, beside LiteLLM's proxy",
}
HERE = Path(__file__).resolve().parent


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.run", description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="smaller sizes, for a smoke run")
    parser.add_argument("--only", action="append", choices=NAMES, metavar="NAME",
                        help=f"run only this benchmark (repeatable): {', '.join(NAMES)}")
    parser.add_argument("--jobs", action="append", type=int, metavar="N",
                        help="concurrency: jobs in flight per size (repeatable; default 1000 and 10000)")
    parser.add_argument("--out", type=Path, help="where to write the JSON results")
    parser.add_argument("--readme-from", type=Path, metavar="JSON",
                        help="rewrite benchmarks/README.md's results from a full run's JSON, running nothing")
    parser.add_argument("--no-readme", action="store_true",
                        help="do not rewrite benchmarks/README.md's results (full runs rewrite it)")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)  # one concurrency size, in-process
    parser.add_argument("--idle", choices=("imported", "built"), help=argparse.SUPPRESS)
    parser.add_argument("--variant", default="gateway", help=argparse.SUPPRESS)  # concurrency child: what runs
    return parser


def _run_one(name: str, quick: bool, jobs: list[int] | None) -> dict[str, Any]:
    if name == "overhead":
        from benchmarks import overhead
        return overhead.run(quick)
    if name == "polling":
        from benchmarks import polling
        return polling.run(quick)
    if name == "concurrency":
        from benchmarks import concurrency
        return concurrency.run(quick, jobs)
    module = __import__(f"benchmarks.{name}", fromlist=["run"])
    result: dict[str, Any] = module.run(quick)
    return result


def _rows(name: str, result: dict[str, Any]) -> tuple[list[str], list[list[Any]], list[str]]:
    module = __import__(f"benchmarks.{name}", fromlist=["rows"])
    return module.rows(result)


def _shown(path: Path) -> str:
    """``path`` relative to the working directory when it is inside it (no machine paths in output)."""
    try:
        return str(path.resolve().relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.child:
        from benchmarks import concurrency
        concurrency.child(args.jobs[0] if args.jobs else None, args.idle, args.variant)
        return 0
    names = [n for n in NAMES if n in (args.only or NAMES)]
    partial = args.quick or bool(args.only) or bool(args.jobs)
    out = args.out or HERE / ("results.partial.json" if partial else "results.json")
    command = " ".join(["python -m benchmarks.run", *(argv if argv is not None else sys.argv[1:])])
    report: dict[str, Any] = {"machine": common.machine(), "command": command,
                              "quick": args.quick, "benchmarks": {}, "seconds": {}}
    began = time.perf_counter()
    printed: list[str] = []
    if args.readme_from:
        return _readme_from(args.readme_from)
    for name in names:
        print(f"running {name} ...", file=sys.stderr, flush=True)
        started = time.perf_counter()
        result = _run_one(name, args.quick, args.jobs)
        report["seconds"][name] = round(time.perf_counter() - started, 1)
        report["benchmarks"][name] = result
        shown = _shown_table(report, name)
        printed.append(shown)
        print()
        print(shown, flush=True)
    report["seconds"]["total"] = round(time.perf_counter() - began, 1)
    report["load_average_at_end"] = [round(x, 2) for x in os.getloadavg()] if hasattr(os, "getloadavg") else None
    report["commit"] = _commit()
    facts = _facts(report)
    print(f"\n{facts}; results in {_shown(out)}")
    out.write_text(json.dumps(report, indent=2, default=str) + "\n", encoding="utf-8")
    if not partial and not args.no_readme:
        _write_readme(report, printed, facts, "")
    return 0


def _shown_table(report: dict[str, Any], name: str) -> str:
    """One benchmark's printed table, rebuilt from the report (so the README can be rebuilt from the JSON)."""
    return common.table(TITLES[name], *_rows(name, report["benchmarks"][name])) + \
        f"\n  ({report['seconds'][name]:.0f} s)"


def _facts(report: dict[str, Any]) -> str:
    m = report["machine"]
    return (f"{m['cores']} cores, Python {m['python']}, {m['platform']}, {m['date_utc']}; load average "
            f"{m['load_average_1_5_15']} at start, {report['load_average_at_end']} at end; "
            f"total {report['seconds']['total']:.0f} s")


def _readme_from(path: Path) -> int:
    report = json.loads(path.read_text(encoding="utf-8"))
    if report.get("quick") or set(report["benchmarks"]) != set(NAMES):
        raise SystemExit(f"{_shown(path)} is not a full run (all of {', '.join(NAMES)}, without --quick)")
    report.setdefault("commit", "unknown")
    printed = [_shown_table(report, name) for name in NAMES]
    _write_readme(report, printed, _facts(report), f" from {_shown(path)}")
    return 0


def _write_readme(report: dict[str, Any], printed: list[str], facts: str, source: str) -> None:
    readme = HERE / "README.md"
    readme.write_text(write_results(readme.read_text(encoding="utf-8"), report, printed, facts), encoding="utf-8")
    print(f"tables and targets written into {_shown(readme)}{source}")


def _commit() -> str:
    """The commit benchmarked, with ``+ local changes`` when tracked files differ from it."""
    def git(*args: str) -> str:
        done = subprocess.run(["git", *args], cwd=HERE.parent, capture_output=True, text=True, check=False)
        return done.stdout.strip() if done.returncode == 0 else ""

    head = git("rev-parse", "--short", "HEAD") or "unknown"
    changed = [line for line in git("status", "--porcelain", "--untracked-files=no").splitlines()
               if not line.endswith(("results.json", "README.md"))]
    return head + (" + local changes" if changed else "")


def _between(text: str, marker: str, body: str) -> str:
    """``text`` with what lies between ``<!-- marker -->`` and ``<!-- /marker -->`` replaced by ``body``."""
    pattern = re.compile(rf"(<!-- {marker} -->\n).*?(\n<!-- /{marker} -->)", re.S)
    if not pattern.search(text):
        raise SystemExit(f"benchmarks/README.md has no <!-- {marker} --> ... <!-- /{marker} --> block")
    return pattern.sub(lambda match: match.group(1) + body + match.group(2), text, count=1)


def write_results(text: str, report: dict[str, Any], printed: list[str], facts: str) -> str:
    """The README ``text`` with its generated blocks (results, targets) rewritten from one run."""
    from benchmarks import targets

    results = (f"Written by `{report['command']}` at commit {report['commit']}. Machine and load: {facts} "
               "(1-, 5- and 15-minute load averages; on 2 cores, a load above 2 means the benchmarks shared the "
               "CPU with other work).\n\n```\n" + "\n\n".join(printed) + "\n```")
    return _between(_between(text, "results", results), "targets", targets.markdown(targets.judge(report)))


if __name__ == "__main__":
    raise SystemExit(main())
