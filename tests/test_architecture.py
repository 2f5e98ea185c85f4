"""The package's layers, checked on a static import graph of ``ptycho`` (``ast``; an import inside a
function counts like one at the top of a module: it hides a cycle from Python, not from a reader).

Layers, lowest first. A module may import modules of its own part (e.g. ``ptycho.data.source``
imports ``ptycho.data.dataset``) and of any lower layer; parts of one layer are independent of
each other (training and reconstruction share what they both need through ``models`` and
``data``, not through each other). A module belongs to the part with the longest matching name.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "ptycho"

LAYERS: tuple[tuple[str, ...], ...] = (
    # the package root (versions), the error types, progress-line formatting (no ptycho import)
    ("ptycho", "ptycho.errors", "ptycho.progress"),
    # seeded streams; a backbone as plain data (no Keras); an arm's identity (id, kind, gridsize);
    # a package function called in a child process
    ("ptycho.rng", "ptycho.models.spec", "ptycho.arms.spec", "ptycho.child"),
    ("ptycho.config",),  # the study: schema, validation, defaults
    ("ptycho.physics",),  # pure-NumPy physics
    ("ptycho.data",),  # dataset files, the split contract, grouping, batches
    ("ptycho.models",),  # Keras builders, the model bundle's I/O, the TensorFlow runtime
    ("ptycho.training", "ptycho.reconstruct"),  # fitting and adaptation; inference, pty-chi
    ("ptycho.evaluation", "ptycho.interop"),  # metrics records; other programs' formats
    ("ptycho.arms",),  # the arm interface, built-in arms, plugins, the external-command arm
    ("ptycho.reporting",),  # records -> statistics -> sections -> summary / verification
    # entry points: the Python API, the workflow's job runner and study guard, the docs generator
    ("ptycho.api", "ptycho.runner", "ptycho.study_guard", "ptycho.docs_reference"),
)


def modules() -> dict[str, Path]:
    out = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.with_suffix("").relative_to(PACKAGE.parent).parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        out[name] = path
    return out


def imports(mods: dict[str, Path]) -> list[tuple[str, str, int]]:
    """(importer, imported module of the package, line) for every import statement."""

    def resolve(name: str) -> str | None:
        while name and name not in mods:
            name = name.rpartition(".")[0]
        return name or None

    edges = []
    for mod, path in mods.items():
        package = mod if path.name == "__init__.py" else mod.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join(parts + ([base] if base else []))
                # ``from a.b import c``: the module a.b.c when there is one, else a.b
                targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in mods else base
                           for a in node.names]
            else:
                continue
            for t in targets:
                if t == "ptycho" or t.startswith("ptycho."):
                    target = resolve(t)
                    if target and target != mod and (mod, target, node.lineno) not in edges:
                        edges.append((mod, target, node.lineno))
    return edges


def part_of(mod: str) -> tuple[str, int] | None:
    """(part, layer index) of a module: the longest part name that is the module or its package."""
    best = None
    for i, layer in enumerate(LAYERS):
        for part in layer:
            if (mod == part or (part != "ptycho" and mod.startswith(part + "."))) and (
                    best is None or len(part) > len(best[0])):
                best = (part, i)
    return best


def strongly_connected(nodes, edges) -> list[list[str]]:
    """Tarjan's strongly connected components with more than one module (the import cycles)."""
    graph = {n: sorted({b for a, b, _ in edges if a == n}) for n in nodes}
    index, low, stack, on, out, counter = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in graph:
        if v not in index:
            visit(v)
    return out


def _where(mods, mod: str, line: int) -> str:
    return f"{mods[mod].relative_to(PACKAGE.parent)}:{line}"


def test_every_module_is_in_a_layer():
    missing = [m for m in modules() if part_of(m) is None]
    assert not missing, (f"modules in no layer: {missing}; declare each in LAYERS "
                         "(tests/test_architecture.py), in the lowest layer its imports allow")


def test_no_import_cycles():
    mods = modules()
    edges = imports(mods)
    cycles = strongly_connected(mods, edges)
    described = []
    for comp in cycles:
        inside = [f"{_where(mods, a, n)} imports {b}" for a, b, n in edges
                  if a in comp and b in comp]
        described.append(" <-> ".join(comp) + " (" + "; ".join(inside) + ")")
    assert not cycles, f"{len(cycles)} import cycle(s): " + " | ".join(described)


def test_no_import_runs_up_or_across_the_layers():
    mods = modules()
    bad = []
    for a, b, line in imports(mods):
        (pa, la), (pb, lb) = part_of(a) or ("?", -1), part_of(b) or ("?", -1)
        if pa == pb or lb < la:
            continue
        how = "up the layers" if lb > la else "across one layer"
        bad.append(f"{_where(mods, a, line)}: {a} ({pa}, layer {la}) imports {b} ({pb}, "
                   f"layer {lb}): {how}")
    assert not bad, f"{len(bad)} import(s) against the layer order:\n" + "\n".join(bad)


def test_the_checks_see_an_import_inside_a_function(tmp_path, monkeypatch):
    """A lower module reaching up from inside a function is found, and so is the cycle it closes."""
    pkg = tmp_path / "ptycho"
    (pkg / "data").mkdir(parents=True)
    (pkg / "training").mkdir()
    for p in (pkg / "__init__.py", pkg / "data" / "__init__.py", pkg / "training" / "__init__.py"):
        p.write_text("")
    (pkg / "data" / "low.py").write_text("def f():\n    from ptycho.training.high import g\n")
    (pkg / "training" / "high.py").write_text("from ptycho.data.low import f\n\ng = f\n")
    monkeypatch.setattr(sys.modules[__name__], "PACKAGE", pkg)
    mods = modules()
    edges = imports(mods)
    assert ("ptycho.data.low", "ptycho.training.high", 2) in edges
    assert strongly_connected(mods, edges) == [["ptycho.data.low", "ptycho.training.high"]]
