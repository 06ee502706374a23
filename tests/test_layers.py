"""The import structure of ``cluster``: no import cycles, and the layering rules below.

This table is the documented source of the rules; ``docs/architecture.md`` refers to it. A layer is
a top-level name under ``cluster`` (a package such as ``store`` or a module such as ``objectstore``).
Every import counts, at module level or inside a function: a lazy import hides a dependency from
the reader, it does not remove it. A package's ``__init__`` that imports its own submodules (the
``Store`` facade over the sub-stores) is not a cycle: a submodule's own imports are what count.

=================================================  ==================================================
layer                                              never imports
=================================================  ==================================================
``models``, ``store``, ``jobs``, ``annotations``,  ``dashboard``, ``cli``, ``services``, ``local``,
``objectstore``                                    ``demo``, ``zoo``
``workers``, ``dashboard``                         ``local``, ``demo``, ``cli``
``services``                                       ``dashboard``, ``cli``
``demo``                                           ``cli`` (the CLI calls the demo and hands it its
                                                   terminal helpers)
``zoo``                                            ``cli``, ``dashboard``, ``local``
=================================================  ==================================================

Why: the data model (``models``, ``store``, ``jobs``, ``annotations``) and the S3 wrapper are used by
every process; the use cases (``services``) are called by the API, the pages and the CLI; the
production processes (``workers``, ``dashboard``) must not depend on the development servers of
``local`` (``prelabel up``, tests) or on the command line.
"""

from __future__ import annotations

import ast
from pathlib import Path

import cluster

PACKAGE = Path(cluster.__file__).resolve().parent

LOW = ("models", "store", "jobs", "annotations", "objectstore")
RULES: dict[str, frozenset[str]] = {
    **{layer: frozenset({"dashboard", "cli", "services", "local", "demo", "zoo"}) for layer in LOW},
    "workers": frozenset({"local", "demo", "cli"}),
    "dashboard": frozenset({"local", "demo", "cli"}),
    "services": frozenset({"dashboard", "cli"}),
    "demo": frozenset({"cli"}),
    "zoo": frozenset({"cli", "dashboard", "local"}),
}


def _modules() -> dict[str, Path]:
    found = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = ("cluster", *path.relative_to(PACKAGE).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        found[".".join(parts)] = path
    return found


MODULES = _modules()


def _owner(name: str) -> str | None:
    """The module of ``cluster`` that importing ``name`` loads last (``a.b.C`` -> ``a.b``)."""
    while name and name not in MODULES:
        name = name.rpartition(".")[0]
    return name or None


def imports_of(module: str) -> set[str]:
    """Every ``cluster`` module ``module`` imports, at any depth of its code."""
    path = MODULES[module]
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            # ``from a import b``: the module a.b when it is one, else a name defined in a.
            targets = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in MODULES else base for alias in node.names]
        else:
            continue
        for target in targets:
            if target == "cluster" or target.startswith("cluster."):
                owner = _owner(target)
                if owner is not None and owner != module:
                    found.add(owner)
    return found


GRAPH = {module: imports_of(module) for module in MODULES}



def _layer(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else None


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []
    counter = 0
    for root in sorted(graph):
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph[child]))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    components.append(sorted(component))
    return components


def test_the_walk_sees_the_imports_it_must_see():
    assert "cluster.store.base" in GRAPH["cluster.store.users"]
    assert "cluster.store.datasets" in GRAPH["cluster.store"]
    assert "cluster.models.formats" in GRAPH["cluster.models.reading"]  # a function-level import
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_no_import_cycle_among_cluster_modules():
    assert list(_cycles(GRAPH)) == []


def test_every_layer_keeps_to_its_rules():
    broken = []
    for module, imported in sorted(GRAPH.items()):
        forbidden = RULES.get(_layer(module) or "", frozenset())
        broken += [f"{module} imports {target}" for target in sorted(imported) if _layer(target) in forbidden]
    assert broken == []


def test_the_rule_table_names_only_layers_that_exist_or_are_planned():
    layers = {_layer(module) for module in MODULES} - {None}
    named = set(RULES) | {name for forbidden in RULES.values() for name in forbidden}
    assert named - layers <= {"annotations"}
