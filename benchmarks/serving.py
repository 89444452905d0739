"""Processes of the server benchmark (``benchmarks/server.py``), each a real process on loopback.

``ovi-gateway emulate`` (the vendors), ``ovi-gateway serve --emulator`` (with webhooks: a fixed port and
``--public-url``; polling: port 0, found through /proc), and LiteLLM's proxy (``litellm --config``) for fal
from its own virtual environment; their peak RSS (``VmHWM``).
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

JOB_S = 1.0
"""Seconds each emulated job runs (every side)."""
POLL_S = 0.25
"""Seconds between a client's retrieves (the server's ``openai-poll-after-ms`` says the same)."""
API_KEY = "sk-bench-server"
LITELLM_KEY = "sk-bench-litellm"
EMULATOR_KEY = "emulator-key"
APP = "fal-ai/ovi/image-to-video"

def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def _listening_port(pid: int, timeout: float = 60.0) -> int:
    """The TCP port process ``pid`` listens on (Linux /proc: its socket inodes in ``net/tcp`` LISTEN rows)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        inodes = set()
        for fd in os.listdir(f"/proc/{pid}/fd"):
            try:
                link = os.readlink(f"/proc/{pid}/fd/{fd}")
            except OSError:
                continue
            if link.startswith("socket:["):
                inodes.add(link[len("socket:["):-1])
        for table in ("tcp", "tcp6"):
            with open(f"/proc/{pid}/net/{table}") as rows:
                for line in rows.readlines()[1:]:
                    parts = line.split()
                    if parts[3] == "0A" and parts[9] in inodes:
                        return int(parts[1].rsplit(":", 1)[1], 16)
        time.sleep(0.1)
    raise RuntimeError(f"process {pid} listens on no port after {timeout:.0f} s")


def peak_rss_mb(pid: int) -> float | None:
    """``VmHWM`` of process ``pid`` in MiB (its peak resident set), ``None`` without /proc."""
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def _wait_ready(url: str, child: subprocess.Popen[Any], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if child.poll() is not None:
            raise RuntimeError(f"the process for {url} exited with {child.returncode}")
        try:
            if httpx.get(url, timeout=2.0).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"{url} not ready after {timeout:.0f} s")


def _stop(child: subprocess.Popen[Any], sig: int = signal.SIGTERM, timeout: float = 40.0) -> None:
    if child.poll() is None:
        child.send_signal(sig)
        try:
            child.wait(timeout)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait(10)


@contextmanager
def emulator_process() -> Iterator[str]:
    """``ovi-gateway emulate --port 0 --job-seconds JOB_S``; yields its base URL."""
    child = subprocess.Popen([sys.executable, "-m", "gateway", "emulate", "--port", "0", "--job-seconds", str(JOB_S)],
                             stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        assert child.stdout is not None
        banner = child.stdout.readline()
        found = re.search(r"http://127\.0\.0\.1:\d+", banner)
        if found is None:
            raise RuntimeError(f"ovi-gateway emulate did not start: {banner!r}")
        yield found.group(0)
    finally:
        _stop(child, signal.SIGINT, 10)


@dataclass
class Served:
    base: str
    pid: int
    journal: Path


@contextmanager
def gateway_server(webhooks: bool, journal: Path) -> Iterator[Served]:
    """``ovi-gateway serve --emulator`` in its own process, its default (SQLite) journal at ``journal``."""
    port = _free_port() if webhooks else 0
    command = [sys.executable, "-m", "gateway", "serve", "--emulator", "--host", "127.0.0.1", "--port", str(port),
               "--api-key", API_KEY, "--journal", str(journal), "--emulator-job-seconds", str(JOB_S),
               "--poll-after-ms", str(int(POLL_S * 1000))]
    if webhooks:
        command += ["--public-url", f"http://127.0.0.1:{port}"]
    child = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                             env={k: v for k, v in os.environ.items() if not k.startswith("OVI_GATEWAY_")})
    try:
        if not webhooks:
            port = _listening_port(child.pid)
        base = f"http://127.0.0.1:{port}"
        _wait_ready(f"{base}/healthz", child, 60)
        yield Served(base, child.pid, journal)
    finally:
        _stop(child)


@contextmanager
def litellm_proxy(python: Path, emulator: str) -> Iterator[tuple[str, int]]:
    """LiteLLM's proxy (``litellm --config``) for fal on ``emulator``; yields (base URL, pid)."""
    scratch = tempfile.TemporaryDirectory(prefix="ovi-bench-litellm-")
    config = Path(scratch.name) / "config.yaml"
    config.write_text(textwrap.dedent(f"""\
        model_list:
          - model_name: ovi
            litellm_params:
              model: fal_ai/{APP}
              api_base: {emulator}
              api_key: {EMULATOR_KEY}
        general_settings:
          master_key: {LITELLM_KEY}
        """))
    port = _free_port()
    child = subprocess.Popen([str(python.parent / "litellm"), "--config", str(config), "--host", "127.0.0.1",
                              "--port", str(port)], cwd=scratch.name, stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL,
                             env={**os.environ, "LITELLM_LOCAL_MODEL_COST_MAP": "True"})
    try:
        base = f"http://127.0.0.1:{port}"
        _wait_ready(f"{base}/health/liveliness", child, 240)
        yield base, child.pid
    finally:
        _stop(child)
        scratch.cleanup()
