"""The package's architecture, checked from its imports: no cycles, and imports only go down the layers
(the README's module map). Function-level imports count too: a lazy import is still a dependency."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "lpdgen"

# Layers, lowest first; a module may import from its own layer or lower ones only.
LAYERS = {
    "helpers": {"io", "utils", "rng", "images", "classes", "animation", "data", "distributed", "embedded"},
    "core": {
        "masks",
        "sampling",
        "orders",
        "settings",
        "quantize",
        "model",
        "engine",
        "generation",
        "adaptive",
        "editing",
        "tokenizer",
        "runs",
        "pretrained",
        "pipeline",
    },
    "built": {"training", "evaluation", "demo", "serving"},
    "cli": {"commands", "cli"},
}
RANK = {top: i for i, names in enumerate(LAYERS.values()) for top in names}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(path: Path) -> set[str]:
    """lpdgen modules imported anywhere in ``path`` (resolved to module names, not attributes)."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target.split(".")[0] != "lpdgen":
                continue
            for alias in node.names:  # `from . import rng` imports a module; `from .x import f` imports x
                sub = f"{target}.{alias.name}"
                found.add(sub if _exists(sub) else target)
        elif isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.split(".")[0] == "lpdgen"}
    found.discard(name)
    return {m for m in found if _exists(m)}


def _exists(module: str) -> bool:
    rel = Path(*module.split(".")[1:]) if "." in module else Path()
    return (PACKAGE / rel).with_suffix(".py").is_file() or (PACKAGE / rel / "__init__.py").is_file()


def graph() -> dict[str, set[str]]:
    return {module_name(p): imports_of(p) for p in PACKAGE.rglob("*.py")}


def top(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def test_every_module_has_a_layer():
    missing = {top(m) for m in graph()} - set(RANK) - {"__init__"}
    assert not missing, f"modules with no layer in the map: {sorted(missing)}"


def find_cycles(g: dict[str, set[str]]) -> list[list[str]]:
    """Import cycles of ``g`` (module -> modules it imports), inside a subpackage or across layers alike.
    The package root ``lpdgen`` is left out: its lazy public names re-export from every layer."""
    state: dict[str, int] = {}
    cycles: list[list[str]] = []

    def visit(m: str, stack: list[str]) -> None:
        state[m] = 1
        for d in sorted(g.get(m, ())):
            if d == "lpdgen":
                continue
            if state.get(d) == 1:
                cycles.append(stack[stack.index(d) :] + [d])
            elif d not in state:
                visit(d, stack + [d])
        state[m] = 2

    for m in sorted(g):
        if m not in state:
            visit(m, [m])
    return cycles


def test_no_import_cycles():
    cycles = find_cycles(graph())
    assert not cycles, "import cycles between modules: " + "; ".join(" -> ".join(c) for c in cycles)


def test_the_cycle_check_sees_cycles_inside_one_subpackage_and_through_a_package():
    inside = {"lpdgen.orders.build": {"lpdgen.orders.simple"}, "lpdgen.orders.simple": {"lpdgen.orders.build"}}
    assert find_cycles(inside) == [["lpdgen.orders.build", "lpdgen.orders.simple", "lpdgen.orders.build"]]
    through = {"lpdgen.orders": {"lpdgen.orders.simple"}, "lpdgen.orders.simple": {"lpdgen.orders"}}
    assert find_cycles(through)
    assert not find_cycles({"lpdgen.a": {"lpdgen.b"}, "lpdgen.b": {"lpdgen"}, "lpdgen": {"lpdgen.a"}})


def test_imports_only_go_down_the_layers():
    upward = []
    for m, deps in graph().items():
        if top(m) == "__init__":
            continue  # the package's public names re-export from every layer
        for d in deps:
            if d == "lpdgen" or top(d) == "__init__":
                continue
            if RANK[top(d)] > RANK[top(m)]:
                upward.append(f"{m} -> {d}")
    assert not upward, "imports from a higher layer: " + ", ".join(sorted(upward))


def test_the_checker_resolves_relative_and_function_level_imports():
    assert "lpdgen.model" in imports_of(PACKAGE / "generation.py")  # `from .model import LPD`
    assert "lpdgen.rng" in imports_of(PACKAGE / "pipeline.py")  # `from . import rng`
    assert "lpdgen.evaluation.protocol" in imports_of(PACKAGE / "commands" / "eval.py")  # inside functions


def test_the_decoding_core_is_a_chain():
    """quantize <- model <- engine <- generation <- pipeline: each imports only the ones before it, so
    the network can be read (and reused) without the decoding loop or the engine."""
    g = graph()
    chain = ["lpdgen.quantize", "lpdgen.model", "lpdgen.engine", "lpdgen.generation", "lpdgen.pipeline"]
    for i, m in enumerate(chain):
        later = set(chain[i + 1 :]) & g[m]
        assert not later, f"{m} imports {sorted(later)}, which build on it"
    assert "lpdgen.quantize" in g["lpdgen.model"] and "lpdgen.generation" in g["lpdgen.pipeline"]
