"""The library's layer rule (docs/ARCHITECTURE.md, "Layers"), checked on its import graph.

The graph is built with ``ast`` from every ``import`` statement of
``scripts/microprop``, those inside functions included, so that a late import
cannot hide a cycle or an upward dependency.
"""
import ast
from pathlib import Path

import pytest

LIB = Path(__file__).resolve().parents[1] / "scripts" / "microprop"

#: Layers from the bottom up; a module may import its own package and any
#: package of a lower layer, nothing of its own layer's other packages and
#: nothing above. Keep in step with docs/ARCHITECTURE.md.
LAYERS = (
    ("errors",),
    ("phases", "progress", "io"),
    ("physics",),
    ("imaging", "indentation"),
    ("data",),
    ("stats", "microstructure"),
    ("learning",),
    ("plots", "virtual"),
    ("workflow",),
)
RANK = {unit: i for i, layer in enumerate(LAYERS) for unit in layer}
#: Imported by no library module outside themselves.
NOT_IMPORTED = ("plots", "virtual", "workflow")


def module_name(path):
    rel = path.relative_to(LIB.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def is_package(path):
    return path.name == "__init__.py"


def library_modules():
    return {module_name(p): p for p in sorted(LIB.rglob("*.py"))}


def resolve(current, is_pkg, node_module, level):
    """Absolute module of a ``from ... import`` (``level`` dots)."""
    if level == 0:
        return node_module
    base = current.split(".")
    if not is_pkg:
        base = base[:-1]
    base = base[:len(base) - (level - 1)] if level > 1 else base
    return ".".join(base + ([node_module] if node_module else []))


def imports_of(name, path, modules):
    """Library modules imported by one module (inside functions too)."""
    out = set()
    tree = ast.parse(path.read_text(), filename=str(path))
    for node in ast.walk(tree):
        targets = []
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = resolve(name, is_package(path), node.module, node.level)
            # `from pkg import sub` imports the submodule; `from pkg import f` the package
            targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base
                       for a in node.names]
        for t in targets:
            if t in modules and t != name:
                out.add(t)
            elif t.startswith("microprop") and t not in modules:
                # from microprop.x import name: the module is the prefix
                prefix = t.rsplit(".", 1)[0]
                if prefix in modules and prefix != name:
                    out.add(prefix)
    return out


def unit(module):
    """Layer unit of ``microprop.<unit>[.…]``."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else None


@pytest.fixture(scope="module")
def graph():
    modules = library_modules()
    return {m: imports_of(m, p, modules) for m, p in modules.items()}


def test_every_library_unit_has_a_layer(graph):
    units = {unit(m) for m in graph} - {None}
    assert units <= set(RANK), f"modules without a layer: {sorted(units - set(RANK))}"


def test_no_import_cycle(graph):
    state, stack, cycles = {}, [], []

    def visit(m):
        state[m] = 1
        stack.append(m)
        for n in sorted(graph[m]):
            if state.get(n) == 1:
                cycles.append(stack[stack.index(n):] + [n])
            elif n not in state:
                visit(n)
        stack.pop()
        state[m] = 2

    for m in sorted(graph):
        if m not in state:
            visit(m)
    assert not cycles, "import cycles: " + "; ".join(" -> ".join(c) for c in cycles)


def test_no_import_goes_up_or_sideways(graph):
    bad = []
    for m, deps in graph.items():
        um = unit(m)
        if um is None:
            continue
        for d in deps:
            ud = unit(d)
            if ud is None or ud == um:
                continue
            if RANK[ud] >= RANK[um]:
                bad.append(f"{m} imports {d} ({ud}: layer {RANK[ud]}, {um}: layer {RANK[um]})")
    assert not bad, "\n".join(sorted(bad))


@pytest.mark.parametrize("top", NOT_IMPORTED)
def test_top_units_are_imported_by_no_other_library_module(graph, top):
    bad = sorted(f"{m} imports {d}" for m, deps in graph.items() for d in deps
                 if unit(d) == top and unit(m) != top)
    assert not bad, "\n".join(bad)


def test_bottom_layer_imports_only_the_bottom_layer(graph):
    bottom = {u for layer in LAYERS[:2] for u in layer}
    bad = sorted(f"{m} imports {d}" for m, deps in graph.items() if unit(m) in bottom
                 for d in deps if unit(d) not in bottom)
    assert not bad, "\n".join(bad)


def test_the_checker_sees_an_upward_import_inside_a_function(tmp_path):
    """The rule is not vacuous: a late import of a higher layer is found."""
    pkg = tmp_path / "microprop"
    (pkg / "physics").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "physics" / "__init__.py").write_text("")
    (pkg / "learning").mkdir()
    (pkg / "learning" / "__init__.py").write_text("")
    (pkg / "physics" / "_x.py").write_text("def f():\n    from ..learning import train\n")
    modules = {"microprop": pkg / "__init__.py", "microprop.physics": pkg / "physics" / "__init__.py",
               "microprop.learning": pkg / "learning" / "__init__.py",
               "microprop.physics._x": pkg / "physics" / "_x.py"}
    deps = imports_of("microprop.physics._x", modules["microprop.physics._x"], modules)
    assert deps == {"microprop.learning"}
