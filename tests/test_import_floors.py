"""The packages stand on floors and import only downwards (or sideways within a floor, without a cycle).

Every import in codemix/, at module level or inside a function, is an edge between two packages (a
sub-package such as codemix.data, or a top-level module such as codemix.atomic). An upward edge or a
cycle between packages fails, naming the file and line."""
import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "codemix"

FLOORS: list[set[str]] = [
    {"errors", "paths", "atomic", "hashing", "leftovers", "_streaming"},  # plain helpers
    {"config"},  # recipes, data specs, the model config and presets
    {"model", "data", "sandbox"},  # the decoder (no Lightning), the corpus and its streams, isolation
    {"plan", "runs"},  # one plan per stage; the run store
    {"train", "eval", "synth", "export", "lm_eval_adapter"},
    {"study", "analysis", "mixture_cli"},  # the study driver; reports (a leaf reading results)
    {"cli"},
]
FLOOR = {package: level for level, packages in enumerate(FLOORS) for package in packages}


def _package(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if parts[0] == "codemix" and len(parts) > 1 else None


def _edges() -> list[tuple[str, str, str]]:
    """(importing package, imported package, 'file:line') for every import between two packages."""
    edges = []
    for path in sorted(PACKAGE.rglob("*.py")):
        relative = path.relative_to(PACKAGE)
        source = relative.parts[0].removesuffix(".py")
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                modules = [node.module] + ([f"{node.module}.{a.name}" for a in node.names]
                                           if node.module == "codemix" else [])
            elif isinstance(node, ast.Import):
                modules = [alias.name for alias in node.names]
            else:
                continue
            for module in modules:
                target = _package(module)
                if target is not None and target != source:
                    edges.append((source, target, f"codemix/{relative}:{node.lineno}"))
    return edges


def test_every_package_has_a_floor():
    packages = {p.name.removesuffix(".py") for p in PACKAGE.iterdir()
                if p.suffix == ".py" and p.name != "__init__.py" or (p / "__init__.py").is_file()}
    assert packages - set(FLOOR) == set()


def test_no_package_imports_a_floor_above_it():
    upward = [f"{where}: {source} (floor {FLOOR[source]}) imports {target} (floor {FLOOR[target]})"
              for source, target, where in _edges() if FLOOR[target] > FLOOR[source]]
    assert upward == []


def test_no_cycle_between_packages():
    graph: dict[str, set[str]] = {}
    for source, target, _ in _edges():
        graph.setdefault(source, set()).add(target)

    def reaches(start: str, goal: str, seen: set[str]) -> bool:
        return any(nxt == goal or (nxt not in seen and reaches(nxt, goal, seen | {nxt}))
                   for nxt in graph.get(start, ()))

    cycles = sorted(f"{a} <-> {b}" for a in graph for b in graph[a] if reaches(b, a, {b}))
    assert cycles == []


@pytest.mark.parametrize("package", ["model", "config", "data", "sandbox", "plan", "runs"])
def test_low_floors_do_not_import_lightning(package):
    """model is plain torch; nothing below train needs Lightning (the DataModule is data's one exception)."""
    allowed = {"data": {"datamodule.py"}}.get(package, set())
    found = []
    for path in sorted((PACKAGE / package).rglob("*.py")):
        if path.name in allowed:
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            names = ([node.module] if isinstance(node, ast.ImportFrom) and node.module else
                     [a.name for a in node.names] if isinstance(node, ast.Import) else [])
            found += [f"{path.relative_to(PACKAGE)}:{node.lineno}" for n in names if n.split(".")[0] == "lightning"]
    assert found == []
