"""Strict loading of provider plugins from the ``ovi_gateway.providers`` entry-point group.

stevedore's default on a broken plugin is to log and drop it, so a typo makes a vendor quietly vanish
from routing. Here every failure is kept by name with its error: the other providers still load, and
asking for the broken one raises ``ConfigurationError`` with the reason.
"""

from __future__ import annotations

import importlib.util
import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

from stevedore import ExtensionManager
from stevedore.extension import Extension

from gateway.contract import CONTRACT_VERSION, Capabilities, Provider
from gateway.errors import ConfigurationError

__all__ = ["GROUP", "Registry", "shadowed_package"]

GROUP = "ovi_gateway.providers"
_log = logging.getLogger(__name__)
_REQUIRED = ("translate", "parse", "classify", "submit", "status", "result", "cancel", "find")


@dataclass
class Registry:
    """Provider classes by name, and the plugins that failed to load with their errors."""

    classes: dict[str, type[Provider]] = field(default_factory=dict)
    failures: dict[str, str] = field(default_factory=dict)

    @classmethod
    def load(cls, group: str = GROUP) -> Registry:
        """Scan the entry-point group (a fresh scan each call)."""
        failures: dict[str, str] = {}

        def on_failure(manager: ExtensionManager[Any], entry_point: Any, error: BaseException) -> None:
            reason = f"{type(error).__name__}: {error}"
            package = str(getattr(entry_point, "value", "")).split(".", 1)[0].split(":", 1)[0]
            hidden = shadowed_package(package) if package == "providers" else None
            if hidden is not None:
                reason = f"{hidden} ({reason})"
            failures[entry_point.name] = reason

        ExtensionManager.ENTRY_POINT_CACHE.pop(group, None)  # stevedore caches per process; rescan
        manager: ExtensionManager[Any] = ExtensionManager(namespace=group, invoke_on_load=False,
                                                          on_load_failure_callback=on_failure)
        hidden = shadowed_package("providers")
        if hidden is not None:  # said even when the adapters still loaded (an editable install's finder)
            _log.warning("%s", hidden)
        return cls._checked(((ext.name, ext.plugin) for ext in manager.extensions), failures)

    @classmethod
    def from_classes(cls, classes: Mapping[str, type]) -> Registry:
        """A registry of the given classes, through stevedore's own test seam (no entry points)."""
        # stevedore's test seam takes no entry point (its docs pass None; its stub says EntryPoint)
        no_entry_point = cast(Any, None)
        manager: ExtensionManager[Any] = ExtensionManager.make_test_instance(
            [Extension(name, no_entry_point, plugin, None) for name, plugin in classes.items()], namespace=GROUP)
        return cls._checked(((ext.name, ext.plugin) for ext in manager.extensions), {})

    @classmethod
    def _checked(cls, plugins: Iterable[tuple[str, Any]], failures: dict[str, str]) -> Registry:
        classes: dict[str, type[Provider]] = {}
        for name, plugin in plugins:
            problem = _problem(name, plugin)
            if problem:
                failures[name] = problem
            else:
                classes[name] = plugin
        return cls(classes, failures)

    def get(self, name: str) -> type[Provider]:
        """The provider class named ``name``; ``ConfigurationError`` says why when there is none."""
        if name in self.classes:
            return self.classes[name]
        if name in self.failures:
            raise ConfigurationError(f"provider {name!r} failed to load: {self.failures[name]}")
        known = ", ".join(sorted(self.classes)) or "none"
        raise ConfigurationError(f"no provider named {name!r}; installed: {known}")


def shadowed_package(name: str) -> str | None:
    """Why the ``name`` package Python imports is not ovi-gateway's own (a folder of that name earlier on
    ``sys.path``, often the current directory, hides it), or ``None`` when it is ours.

    ovi-gateway installs ``gateway`` and ``providers`` side by side, so ours is the folder beside this
    package. A folder without ``__init__.py`` cannot hide it (a regular package wins over namespace parts).
    """
    expected = Path(__file__).resolve().parent.parent / name
    try:
        spec = importlib.util.find_spec(name)
    except (ImportError, ValueError):
        return None
    if spec is None or not expected.is_dir():
        return None
    found = [Path(p).resolve() for p in spec.submodule_search_locations or []]
    if expected in found:
        return None
    where = found[0] if found else spec.origin
    return (f"the '{name}' package Python imports is {where}, not ovi-gateway's own ({expected}): a folder "
            f"named '{name}' earlier on sys.path hides it; rename that folder or run from another directory")


def _problem(name: str, plugin: Any) -> str | None:
    """Why ``plugin`` cannot serve as provider ``name``, or ``None`` when it can."""
    if not isinstance(plugin, type):
        return f"entry point must name a class, got {type(plugin).__name__}"
    if getattr(plugin, "name", None) != name:
        return f"class {plugin.__name__} has name {getattr(plugin, 'name', None)!r}, entry point says {name!r}"
    version = getattr(plugin, "contract_version", None)
    if version != CONTRACT_VERSION:
        return f"contract version {version!r}, this gateway speaks {CONTRACT_VERSION}"
    if not isinstance(getattr(plugin, "capabilities", None), Capabilities):
        return "no capabilities declared"
    missing = [attr for attr in (*_REQUIRED, "env_key", "reconcilable") if not hasattr(plugin, attr)]
    return f"missing {', '.join(missing)}" if missing else None
