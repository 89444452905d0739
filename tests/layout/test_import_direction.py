"""The one-way flow, guarded: every import in ``gateway/`` and ``providers/`` must run down the layers
below, no two modules may import each other in a cycle, and the core names no vendor in its code."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

# Lowest first. A module may import its own layer or any layer before it, never one after it.
LAYERS: list[tuple[str, ...]] = [
    ("gateway.lazy",),
    ("gateway.secrets", "gateway.attempts", "gateway.errors", "gateway.clock", "gateway._moved", "gateway.addresses",
     "gateway.prompt", "gateway.result", "gateway.media"),
    ("gateway.images", "gateway.request", "gateway.http", "gateway.transports", "gateway.telemetry"),
    ("gateway.contract", "gateway.registry", "gateway.store", "gateway.routing"),
    ("gateway.jobs",),
    ("gateway.emulator",),  # below the client: Gateway.offline() builds one (it imports only the clock)
    ("gateway.offline", "gateway.client_setup", "gateway.client_media"),
    ("gateway.client",),
    ("gateway.server", "gateway.webhooks"),
    ("gateway.cli", "gateway.__main__", "gateway"),
    ("providers",),
]
# The deprecated shims forward to their new homes (and sit at the old, shallow paths).
SHIMS = {"gateway.journal", "gateway.polling", "gateway.runner", "gateway.recovery", "gateway.pricing",
         "gateway.health", "gateway.cli_render"}
VENDORS = ("runware", "fal", "wavespeed")


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def modules() -> dict[str, ast.Module]:
    found = {}
    for top in ("gateway", "providers"):
        for path in sorted((ROOT / top).rglob("*.py")):
            found[module_name(path)] = ast.parse(path.read_text(encoding="utf-8"))
    return found


def _type_only(tree: ast.Module) -> set[int]:
    """Nodes inside ``if TYPE_CHECKING:`` blocks: imports for annotations only, never run."""
    inside: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING":
            inside.update(id(child) for statement in node.body for child in ast.walk(statement))
    return inside


def imports(tree: ast.Module, *, runtime_only: bool = False) -> set[str]:
    """Every ``gateway``/``providers`` module named by an import anywhere in the file (lazy ones too;
    with ``runtime_only``, not those under ``if TYPE_CHECKING:``)."""
    out: set[str] = set()
    skip = _type_only(tree) if runtime_only else set()
    for node in ast.walk(tree):
        if id(node) in skip:
            continue
        if isinstance(node, ast.Import):
            out.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out.add(node.module)
            out.update(f"{node.module}.{alias.name}" for alias in node.names)
    return {name for name in out if name.split(".")[0] in ("gateway", "providers")}


def layer_of(name: str) -> int:
    best, depth = -1, -1
    for index, layer in enumerate(LAYERS):
        for prefix in layer:
            if (name == prefix or name.startswith(prefix + ".")) and len(prefix) > depth:
                best, depth = index, len(prefix)
    return best


def known(name: str, mods: dict[str, ast.Module]) -> str | None:
    """The module an import refers to (``gateway.errors.X`` -> ``gateway.errors``), if it is ours."""
    while name and name not in mods:
        name = name.rpartition(".")[0]
    return name or None


def test_every_import_runs_down_the_layers():
    mods = modules()
    wrong = []
    for name, tree in mods.items():
        if name in SHIMS:
            continue
        assert layer_of(name) >= 0, f"{name} is in no layer: add it to LAYERS"
        for target in imports(tree):
            target = known(target, mods)
            if target is None or target == name or (target in SHIMS and name == "gateway"):
                continue
            if layer_of(target) > layer_of(name):
                wrong.append(f"{name} imports {target}")
    assert wrong == []


def test_no_module_import_cycles():
    mods = modules()
    # Type-only imports run never, so they make no cycle (errors.py names result.Attempt that way).
    graph = {name: {t for t in (known(i, mods) for i in imports(tree, runtime_only=True)) if t and t != name}
             for name, tree in mods.items()}
    # A package importing its own submodules (``__init__`` re-exports) is not a cycle of modules.
    for name, targets in graph.items():
        graph[name] = {t for t in targets if not (t.startswith(name + ".") or name.startswith(t + "."))}
    state: dict[str, int] = {}
    cycle: list[str] = []

    def visit(node: str, path: list[str]) -> bool:
        state[node] = 1
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                cycle.extend([*path[path.index(nxt):], nxt] if nxt in path else [node, nxt])
                return True
            if state.get(nxt) is None and visit(nxt, [*path, nxt]):
                return True
        state[node] = 2
        return False

    for start in sorted(graph):
        if state.get(start) is None and visit(start, [start]):
            break
    assert cycle == []


def vendor_literals(tree: ast.Module) -> list[str]:
    """Vendor names in string constants and identifiers; docstrings (any bare string statement) left out."""
    docstrings = {id(node.value) for node in ast.walk(tree)
                  if isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant)}
    found = []
    for node in ast.walk(tree):
        text = None
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings:
            text = node.value
        elif isinstance(node, ast.Name):
            text = node.id
        elif isinstance(node, ast.Attribute):
            text = node.attr
        if (text and any(v in text.lower().replace("-", "") for v in VENDORS if v != "fal")) or (
                text and "fal" in text.lower().split(".") + text.lower().replace("-", "_").split("_")):
            found.append(f"line {getattr(node, 'lineno', '?')}: {text!r}")
    return found


@pytest.mark.parametrize("name", sorted(n for n in modules() if n.startswith("gateway")
                                        and not n.startswith("gateway.emulator") and n not in SHIMS))
def test_the_core_names_no_vendor(name):
    assert vendor_literals(modules()[name]) == [], f"{name} names a vendor; move it to providers/ or the emulator"


def test_the_checks_can_fail():
    bad = ast.parse('import providers.fal\nWAIT = {"wavespeed": 5.0}\n')
    assert imports(bad) == {"providers.fal"} and layer_of("providers.fal") > layer_of("gateway.jobs.runner")
    assert vendor_literals(bad) == ["line 2: 'wavespeed'"]
