"""The import graph of ``cube_assets``: no module imports one that imports it back, and the catalog stays the core.

The graph is read from the source with ``ast``, so it counts every import: at module level,
inside functions and under ``TYPE_CHECKING``. Alembic's migration scripts (``catalog/migrations``)
are left out: Alembic loads them by path, nothing imports them.
"""

from __future__ import annotations

import ast
from collections.abc import Iterable, Mapping
from pathlib import Path

import cube_assets

PACKAGE = "cube_assets"
ROOT = Path(cube_assets.__file__).resolve().parent


#: What the catalog (the metadata core) must never import, in any of its modules.
ABOVE_THE_CATALOG = (
    "cube_assets.client",
    "cube_assets.storage",
    "cube_assets.providers",
    "cube_assets.assets",
    "dagster",
)


def module_files(root: Path = ROOT, package: str = PACKAGE) -> dict[str, Path]:
    """Return every module of the package by dotted name (a package by its own name), migrations left out."""
    modules = {}
    for path in sorted(root.rglob("*.py")):
        relative = path.relative_to(root)
        if relative.parts[:2] == ("catalog", "migrations"):
            continue
        parts = [package, *relative.with_suffix("").parts]
        if parts[-1] == "__init__":
            parts.pop()
        modules[".".join(parts)] = path
    return modules


def imported_names(module: str, path: Path) -> set[str]:
    """Return the dotted names every ``import`` and ``from ... import`` of the module names, wherever it stands."""
    names: set[str] = set()
    is_package = path.name == "__init__.py"
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = module.split(".") if is_package else module.split(".")[:-1]
                base = base[: len(base) - (node.level - 1)]
                source = ".".join(base + ([node.module] if node.module else []))
            else:
                source = node.module or ""
            names.add(source)
            names.update(f"{source}.{alias.name}" for alias in node.names)
    return names


def module_graph(modules: Mapping[str, Path]) -> dict[str, set[str]]:
    """Return, for each module, the package's modules it imports (an imported name resolves to its module)."""
    graph: dict[str, set[str]] = {}
    for module, path in modules.items():
        targets = set()
        for name in imported_names(module, path):
            while name and name not in modules:
                name = name.rpartition(".")[0]
            # A module's own package (and the top package) runs before it anyway: not an edge.
            if name and name != module and not module.startswith(name + ".") and name != PACKAGE:
                targets.add(name)
        graph[module] = targets
    return graph


def subpackage_graph(graph: Mapping[str, set[str]]) -> dict[str, set[str]]:
    """Return the graph between sub-packages (``cube_assets.X``).

    An edge goes where a module of one imports one of another.
    """

    def group(module: str) -> str:
        return ".".join(module.split(".")[:2])

    packages: dict[str, set[str]] = {}
    for module, targets in graph.items():
        packages.setdefault(group(module), set())
        for target in targets:
            packages.setdefault(group(target), set())
            if group(target) != group(module):
                packages[group(module)].add(group(target))
    return packages


def cycles(graph: Mapping[str, Iterable[str]]) -> list[list[str]]:
    """Return the strongly connected components of more than one node, each sorted (Tarjan's algorithm, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    for start in graph:
        if start in index:
            continue
        work = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph.get(child, ())))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
    return sorted(found)


def test_cycles_finds_a_loop_through_three_modules_and_ignores_a_chain() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}, "e": set()}

    assert cycles(graph) == [["a", "b", "c"]]


def test_imports_inside_functions_count(tmp_path: Path) -> None:
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "__init__.py").write_text("")
    (tmp_path / "pkg" / "low.py").write_text("def f():\n    from pkg.high import g\n")
    (tmp_path / "pkg" / "high.py").write_text(
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from . import low\n"
    )
    modules = {
        name: tmp_path / "pkg" / file
        for name, file in (("pkg", "__init__.py"), ("pkg.low", "low.py"), ("pkg.high", "high.py"))
    }

    assert imported_names("pkg.low", modules["pkg.low"]) >= {"pkg.high", "pkg.high.g"}
    assert imported_names("pkg.high", modules["pkg.high"]) >= {"pkg", "pkg.low"}


def test_no_module_imports_one_that_imports_it_back() -> None:
    found = cycles(module_graph(module_files()))

    assert not found, "module import cycles:\n" + "\n".join(", ".join(cycle) for cycle in found)


def test_sub_packages_import_each_other_one_way_only() -> None:
    found = sorted(sorted(cycle) for cycle in cycles(subpackage_graph(module_graph(module_files()))))

    assert not found, "sub-package import cycles:\n" + "\n".join(", ".join(cycle) for cycle in found)


def test_the_catalog_imports_nothing_of_the_client_storage_providers_assets_or_dagster() -> None:
    modules = module_files()
    offending = sorted(
        f"{module} imports {name}"
        for module, path in modules.items()
        if module == "cube_assets.catalog" or module.startswith("cube_assets.catalog.")
        for name in imported_names(module, path)
        if any(name == above or name.startswith(above + ".") for above in ABOVE_THE_CATALOG)
    )

    assert not offending, "\n".join(offending)
