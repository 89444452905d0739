"""Strict plugin loading: real entry points, an out-of-tree distribution, broken plugins."""

from __future__ import annotations

import importlib
import textwrap
from pathlib import Path

import pytest

from gateway import ConfigurationError, Gateway
from gateway.contract import Capabilities
from gateway.registry import Registry

PLUGIN = '''
from gateway.contract import CONTRACT_VERSION, Capabilities, Limit, ModeCapabilities
from gateway.request import Mode


class AcmeProvider:
    """A provider shipped by another distribution."""

    name = "acme"
    contract_version = CONTRACT_VERSION
    env_key = "ACME_API_KEY"
    reconcilable = False
    capabilities = Capabilities({Mode.IMAGE_TO_VIDEO: ModeCapabilities("acme/ovi", {"seed": Limit(0, 99)})})

    def __init__(self, ctx):
        self.ctx = ctx

    def translate(self, request, ctx): return {"prompt": request.prompt}
    def parse(self, final, handle): raise NotImplementedError
    def classify(self, error): raise NotImplementedError
    async def submit(self, request, ctx): raise NotImplementedError
    async def status(self, handle): raise NotImplementedError
    async def result(self, handle, last): raise NotImplementedError
    async def cancel(self, handle): return None
    async def find(self, ctx): return None


class WrongName(AcmeProvider):
    name = "not-what-the-entry-point-says"
'''


def _install_out_of_tree(root: Path, entry_points: str) -> None:
    (root / "acme_ovi").mkdir()
    (root / "acme_ovi" / "__init__.py").write_text(PLUGIN)
    info = root / "acme_ovi-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: acme-ovi\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(textwrap.dedent(entry_points))


@pytest.fixture
def out_of_tree(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setenv("ACME_API_KEY", "acme-test-key")
    return tmp_path


def test_the_three_vendors_load_from_entry_points() -> None:
    registry = Registry.load()
    assert {"runware", "fal", "wavespeed"} <= set(registry.classes)
    assert not {"runware", "fal", "wavespeed"} & set(registry.failures)
    for name in ("runware", "fal", "wavespeed"):
        assert registry.classes[name].name == name
        assert isinstance(registry.classes[name].capabilities, Capabilities)


def test_emulator_is_never_a_provider() -> None:
    assert not any("emulat" in name for name in Registry.load().classes)


def test_out_of_tree_distribution_is_found_with_no_change_to_gateway(out_of_tree: Path) -> None:
    _install_out_of_tree(out_of_tree, """
        [ovi_gateway.providers]
        acme = acme_ovi:AcmeProvider
    """)
    importlib.invalidate_caches()
    gateway = Gateway(journal=None)
    assert "acme" in gateway.classes
    assert gateway.configured()["acme"] is True
    quotes = {q.provider: q for q in gateway.quote(_request())}
    assert quotes["acme"].price_usd is None and "no price known" in quotes["acme"].reasons


def test_broken_plugins_are_reported_by_name_and_the_rest_still_load(out_of_tree: Path) -> None:
    _install_out_of_tree(out_of_tree, """
        [ovi_gateway.providers]
        acme = acme_ovi:AcmeProvider
        ghost = acme_ovi_missing_module:Ghost
        misnamed = acme_ovi:WrongName
    """)
    importlib.invalidate_caches()
    registry = Registry.load()
    assert "ModuleNotFoundError" in registry.failures["ghost"]
    assert "entry point says 'misnamed'" in registry.failures["misnamed"]
    assert {"runware", "fal", "wavespeed", "acme"} <= set(registry.classes)
    with pytest.raises(ConfigurationError, match=r"ghost.*failed to load.*ModuleNotFoundError"):
        registry.get("ghost")
    with pytest.raises(ConfigurationError, match="no provider named 'nope'"):
        registry.get("nope")


def test_from_classes_is_the_test_seam() -> None:
    real = Registry.load().classes["fal"]
    registry = Registry.from_classes({"fal": real, "odd": object})
    assert registry.classes == {"fal": real}
    assert "entry point says 'odd'" in registry.failures["odd"]


def _request():
    from gateway import OviRequest

    return OviRequest(prompt="A knight. <S>Hold the line.<E>", image="https://example.com/k.png")
