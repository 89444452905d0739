"""Packaging (issue 11, item 7): SPDX license and its file, classifiers, an sdist without unrunnable tests,
``python -m gateway``, and shadowing made visible: a user's own ``providers/`` or ``gateway/`` folder that
hides ours is named when loading, and ``NoRoute`` names the providers that failed to load and why."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import tarfile
import textwrap
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text("utf-8"))["project"]


def test_license_is_an_spdx_expression_with_its_text_shipped() -> None:
    assert PYPROJECT["license"] == "Apache-2.0"
    assert PYPROJECT["license-files"] == ["LICENSE"]
    text = (ROOT / "LICENSE").read_text("utf-8")
    assert "Apache License" in text and "Version 2.0, January 2004" in text and "END OF TERMS AND CONDITIONS" in text
    # PEP 639: with a license expression, License :: classifiers are refused by the build backends.
    assert not [c for c in PYPROJECT["classifiers"] if c.startswith("License ::")]
    assert "Typing :: Typed" in PYPROJECT["classifiers"]
    assert {"3.11", "3.12"} <= {c.rsplit(" ", 1)[1] for c in PYPROJECT["classifiers"]
                                if c.startswith("Programming Language :: Python :: 3.")}


def test_the_sdist_leaves_the_tests_out() -> None:
    rules = (ROOT / "MANIFEST.in").read_text("utf-8").split()
    assert "tests" in rules[rules.index("prune") + 1:] and rules.count("prune") >= 3


def _run(code: str, cwd: Path, *path_first: Path) -> subprocess.CompletedProcess[str]:
    """``code`` in a fresh interpreter where the checkout sits on sys.path like an ordinary install
    (an editable install's import hook would otherwise serve our submodules under a foreign parent)."""
    prelude = textwrap.dedent(f"""
        import sys
        sys.meta_path[:] = [f for f in sys.meta_path if "editable" not in repr(f).lower()]
        sys.path[:0] = {[str(p) for p in (*path_first, ROOT)]!r}
    """)
    env = {k: v for k, v in os.environ.items() if not k.endswith("_API_KEY") and k != "FAL_KEY"}
    return subprocess.run([sys.executable, "-c", prelude + textwrap.dedent(code)], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=120, check=False)


@pytest.mark.slow
def test_a_users_providers_folder_is_named_when_loading_and_in_no_route(tmp_path: Path) -> None:
    (tmp_path / "providers").mkdir()
    (tmp_path / "providers" / "__init__.py").write_text("")
    done = _run("""
        import logging
        logging.basicConfig(level=logging.WARNING)
        from gateway import Gateway, NoRoute, OviRequest
        from gateway.registry import Registry
        print("FAILURES", sorted(Registry.load().failures))
        try:
            Gateway(keys={"runware": "k", "fal": "k", "wavespeed": "k"}, journal=None).generate(
                OviRequest(prompt="A knight. <S>Hi.<E>", image="https://example.com/k.png"))
        except NoRoute as error:
            print("NOROUTE", sorted(error.reasons))
            print("WHY", error.reasons["runware"][0])
    """, tmp_path, tmp_path)
    assert done.returncode == 0, done.stderr
    assert "FAILURES ['fal', 'runware', 'wavespeed']" in done.stdout
    assert "NOROUTE ['fal', 'runware', 'wavespeed']" in done.stdout
    why = next(line for line in done.stdout.splitlines() if line.startswith("WHY"))
    assert f"failed to load: the 'providers' package Python imports is {tmp_path / 'providers'}" in why
    assert "rename that folder" in why
    assert "hides it" in done.stderr  # the registry's warning, through the application's logging


@pytest.mark.slow
def test_a_users_gateway_folder_is_named_when_providers_load(tmp_path: Path) -> None:
    (tmp_path / "gateway").mkdir()
    (tmp_path / "gateway" / "__init__.py").write_text("")
    done = _run("import providers.runware", tmp_path, tmp_path)
    assert done.returncode == 1
    assert f"the 'gateway' package Python imports is {tmp_path / 'gateway'}, not ovi-gateway's own" in done.stderr


@pytest.mark.slow
def test_python_dash_m_gateway_runs_the_cli(tmp_path: Path) -> None:
    done = subprocess.run([sys.executable, "-m", "gateway", "--help"], cwd=tmp_path, capture_output=True,
                          text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("Usage: ") and "generate" in done.stdout and "--verbose" in done.stdout


@pytest.mark.slow
@pytest.mark.skipif(importlib.util.find_spec("build") is None, reason="the 'build' frontend is not installed")
def test_the_built_sdist_holds_the_library_and_license_but_no_tests(tmp_path: Path) -> None:
    done = subprocess.run([sys.executable, "-m", "build", "--sdist", "--outdir", str(tmp_path), str(ROOT)],
                          capture_output=True, text=True, timeout=600, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    (sdist,) = tmp_path.glob("*.tar.gz")
    with tarfile.open(sdist) as archive:
        names = [name.split("/", 1)[1] for name in archive.getnames() if "/" in name]
        info = archive.extractfile(next(m for m in archive.getmembers() if m.name.endswith("/PKG-INFO")))
        assert info is not None
        metadata = info.read().decode()
    assert "LICENSE" in names and "gateway/client.py" in names and "providers/runware/provider.py" in names
    assert "gateway/store/migrations/sqlite/0001_initial.sql" in names
    assert not [n for n in names if n.startswith(("tests/", "benchmarks/", "cassettes/"))]
    assert "License-Expression: Apache-2.0" in metadata and "License-File: LICENSE" in metadata
