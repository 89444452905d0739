"""6. Start-up: whole processes, side by side, against ``python -c "import httpx"``.

Each command runs as a fresh process (alternating, ``rounds`` times each, after one warm-up round that
fills the OS page cache and Python's bytecode caches); the figure is the median wall time. The commands:

- ``python -c "import httpx"`` (the baseline: the HTTP stack every client here needs);
- ``ovi-gateway --help``;
- ``ovi-gateway quote --image URL --prompt …`` (no keys set: quoted on the built-in emulator);
- ``python -c "from gateway import Gateway, OviRequest, Route; Gateway(journal=None)"``.

Every process gets private XDG directories, so nothing touches the user's journal, and the environment
minus ``PYTHONDONTWRITEBYTECODE`` (a shell that sets it would make every round compile the gateway's
sources again, while httpx's bytecode was written at install: not what a user's second run does).
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks.common import IMAGE, median

CLI = str(Path(sys.executable).with_name("ovi-gateway"))
COMMANDS: dict[str, list[str]] = {
    'python -c "import httpx" (baseline)': [sys.executable, "-c", "import httpx"],
    "ovi-gateway --help": [CLI, "--help"],
    "ovi-gateway quote ...": [CLI, "quote", "--image", IMAGE, "--prompt", "A knight. <S>Hold the line.<E>"],
    "import + Gateway(journal=None)": [sys.executable, "-c",
                                       "from gateway import Gateway, OviRequest, Route; Gateway(journal=None)"],
}
TARGETS = {"ovi-gateway --help": 1.5, "ovi-gateway quote ...": 2.0, "import + Gateway(journal=None)": 2.0}
"""Most times the baseline's wall time each command may take."""


def run(quick: bool = False) -> dict[str, Any]:
    rounds = 5 if quick else 15
    with tempfile.TemporaryDirectory() as home:
        env = {**os.environ, **{name: os.path.join(home, name.lower()) for name in
                                ("XDG_DATA_HOME", "XDG_CONFIG_HOME", "XDG_STATE_HOME", "XDG_CACHE_HOME")}}
        for name in ("RUNWARE_API_KEY", "FAL_KEY", "WAVESPEED_API_KEY", "PYTHONDONTWRITEBYTECODE"):
            env.pop(name, None)
        times: dict[str, list[float]] = {name: [] for name in COMMANDS}
        for round_ in range(rounds + 1):
            for name, command in COMMANDS.items():
                began = time.perf_counter()
                done = subprocess.run(command, capture_output=True, env=env, timeout=120)
                took = time.perf_counter() - began
                if done.returncode != 0:
                    raise RuntimeError(f"{name} exited {done.returncode}: {done.stderr.decode()[-500:]}")
                if round_:  # round 0 warms the caches
                    times[name].append(took)
    seconds = {name: median(values) for name, values in times.items()}
    base = seconds['python -c "import httpx" (baseline)']
    return {"rounds": rounds, "seconds": seconds, "load_average_at_end": [round(x, 2) for x in os.getloadavg()],
            "ratio": {name: value / base for name, value in seconds.items()},
            "targets": {name: {"max_ratio": limit, "met": seconds[name] / base <= limit}
                        for name, limit in TARGETS.items()}}


def rows(result: dict[str, Any]) -> tuple[list[str], list[list[Any]], list[str]]:
    headers = ["process", "median s", "x baseline", "target", "met"]
    body = []
    for name, value in result["seconds"].items():
        target = result["targets"].get(name)
        body.append([name, value, result["ratio"][name], f"<= {target['max_ratio']:g}x" if target else "",
                     ("yes" if target["met"] else "NO") if target else ""])
    notes = [f"Whole processes, alternating, {result['rounds']} rounds after one warm-up round; median wall time; "
             f"load average {result.get('load_average_at_end')} at the end."]
    return headers, body, notes
