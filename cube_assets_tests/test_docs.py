"""The README and the docs site say what the repository holds: files, layout, imports, commands.

Each test reads the Markdown as text and compares it with the tree, the Makefile, the command
line's parser or the imports found by reading the modules' syntax trees, so a change to any of
them that the docs do not follow fails here. ``make docs`` (``mkdocs build --strict``) checks
what only MkDocs can: the pages render, and the API reference builds from the docstrings.
"""

from __future__ import annotations

import argparse
import ast
import re
from pathlib import Path

import pytest
import yaml
from markdown.extensions.toc import slugify

from cube_assets.assets import STAGES
from cube_assets.cli import build_parser

REPO = Path(__file__).resolve().parents[1]
PACKAGE = REPO / "cube_assets"
DOCS = REPO / "docs"
README = REPO / "README.md"
ARCHITECTURE = DOCS / "architecture.md"
PAGES = [README, *sorted(DOCS.glob("*.md"))]
README_MAX_LINES = 200

FENCE = re.compile(r"^```([\w-]*)[^\n]*\n(.*?)^```", re.MULTILINE | re.DOTALL)
INLINE_CODE = re.compile(r"`([^`\n]+)`")
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")
HEADING = re.compile(r"^(#{1,6})\s+(.+?)\s*#*\s*$", re.MULTILINE)
MAKE_COMMAND = re.compile(r"(?<![\w./-])make ([a-z][\w-]*)")
CLI_COMMAND = re.compile(r"(?<![\w-])cube-assets((?: [a-z][\w-]*){1,2})")
# Issue references a newcomer cannot look up: "issue N", "issue #N", "gh-N", a bare "#N".
ISSUE_NUMBER = re.compile(r"(?i)\bissues?\s*#?\s*\d+|\bgh-\d+\b|(?<![\w&/#])#\d{1,6}\b")
SKIPPED_DIRS = {"__pycache__"}


# ---- reading Markdown -------------------------------------------------------------------------


def _without_fences(text: str) -> str:
    return FENCE.sub("", text)


def _code(text: str) -> list[str]:
    """Return every fenced block's body and every inline code span of ``text``."""
    blocks = [body for _, body in FENCE.findall(text)]
    return blocks + INLINE_CODE.findall(_without_fences(text))


def _section(text: str, heading: str) -> str:
    """Return the body of the section under the heading ``heading`` (up to the next heading of its level or above)."""
    for match in HEADING.finditer(_mask_fences(text)):
        if match.group(2) == heading:
            level = len(match.group(1))
            rest = text[match.end() :]
            end = re.search(rf"^#{{1,{level}}}\s", _mask_fences(rest), re.MULTILINE)
            return rest[: end.start()] if end else rest
    raise AssertionError(f"{heading!r}: no such heading")


def _mask_fences(text: str) -> str:
    """Blank fenced blocks out (keeping offsets) so that a ``#`` comment in one is not a heading."""
    return FENCE.sub(lambda m: re.sub(r"[^\n]", " ", m.group(0)), text)


def _anchors(page: Path) -> set[str]:
    return {slugify(title, "-") for _, title in HEADING.findall(_mask_fences(page.read_text()))}


def _relative_links_of(text: str) -> list[str]:
    """Return the link targets of ``text`` without their anchors."""
    return [target.split("#")[0] for target in LINK.findall(text)]


def _relative_links(page: Path) -> list[str]:
    targets = LINK.findall(_without_fences(page.read_text()))
    return [t for t in targets if not re.match(r"[a-z][a-z0-9+.-]*:", t)]


# ---- reading the tree and its imports ---------------------------------------------------------


def _children(folder: Path) -> set[str]:
    """Return the modules (``x.py``, not ``__init__.py``) and folders (``x/``) directly in ``folder``."""
    names = set()
    for child in folder.iterdir():
        if child.is_dir() and child.name not in SKIPPED_DIRS:
            names.add(child.name + "/")
        elif child.suffix == ".py" and child.name != "__init__.py":
            names.add(child.name)
    return names


def _tree() -> set[str]:
    """Return the package's top-level entries, and the entries of each top-level package (``catalog/models.py``)."""
    entries = set()
    for name in _children(PACKAGE):
        entries.add(name)
        if name.endswith("/") and (PACKAGE / name / "__init__.py").exists():
            entries |= {name + child for child in _children(PACKAGE / name)}
    return entries


def _layout_listed() -> set[str]:
    """Return the entries the architecture page's layout block lists under ``cube_assets/``.

    They are named as :func:`_tree` names them.
    """
    block = FENCE.findall(_section(ARCHITECTURE.read_text(), "Layout"))[0][1]
    listed, parent, inside = set(), "", False
    for line in block.splitlines():
        if line.startswith("cube_assets/"):
            inside = True
            continue
        if not line.strip():
            continue
        indent = len(line) - len(line.lstrip(" "))
        if indent == 0:
            inside = False
        if not inside:
            continue
        name = line.split()[0]
        if indent == 2:
            parent = name if name.endswith("/") else ""
            listed.add(name)
        elif indent == 4 and parent:
            listed.add(parent + name)
        else:
            raise AssertionError(
                f"docs/architecture.md, Layout: {line.strip()[:80]!r} is indented {indent}, not 2 or 4"
            )
    return listed


def _modules() -> dict[str, Path]:
    modules = {}
    for path in PACKAGE.rglob("*.py"):
        if "migrations" in path.parts:
            continue
        name = ".".join(path.relative_to(REPO).with_suffix("").parts)
        modules[name.removesuffix(".__init__")] = path
    return modules


def _import_graph() -> dict[str, set[str]]:
    """Return module → the package's modules it imports (at any depth of its code, type-checking imports included)."""
    modules = _modules()
    graph: dict[str, set[str]] = {name: set() for name in modules}
    for name, path in modules.items():
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = _resolve(name, path, node)
                targets = [base] + [f"{base}.{alias.name}" for alias in node.names]
            else:
                continue
            for target in targets:
                while target and target not in modules:
                    target = target.rpartition(".")[0]
                if target and target != name and not name.startswith(target + ".") and target != "cube_assets":
                    graph[name].add(target)
    return graph


def _resolve(name: str, path: Path, node: ast.ImportFrom) -> str:
    if node.level == 0:
        return node.module or ""
    parts = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
    parts = parts[: len(parts) - (node.level - 1)]
    return ".".join(parts + ([node.module] if node.module else []))


def _top(module: str) -> str:
    return module.split(".")[1]


def _package_graph() -> dict[str, set[str]]:
    """Return top-level package or module → the other top-level ones it imports."""
    graph: dict[str, set[str]] = {}
    for module, targets in _import_graph().items():
        if module == "cube_assets":
            continue
        graph.setdefault(_top(module), set()).update(_top(t) for t in targets if _top(t) != _top(module))
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[set[str]]:
    """Return the strongly connected components of ``graph`` with more than one node (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    components: list[set[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for other in graph.get(node, ()):
            if other not in index:
                visit(other)
                low[node] = min(low[node], low[other])
            elif other in stack:
                low[node] = min(low[node], index[other])
        if low[node] == index[node]:
            component = set()
            while True:
                member = stack.pop()
                component.add(member)
                if member == node:
                    break
            if len(component) > 1:
                components.append(component)

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return components


def _mermaid(section: str) -> str:
    blocks = [body for lang, body in FENCE.findall(_section(ARCHITECTURE.read_text(), section)) if lang == "mermaid"]
    assert len(blocks) == 1, f"docs/architecture.md, {section}: {len(blocks)} mermaid blocks, expected 1"
    return blocks[0]


def _diagram() -> tuple[set[tuple[str, str]], set[str], set[str]]:
    """Return the package diagram's edges, the nodes of its ``leaves`` subgraph and the nodes classed ``cycle``."""
    text = _mermaid("Which package imports which")
    edges = set(re.findall(r"^\s*(\w+)(?:\[[^\]]*\])? --> (\w+)", text, re.MULTILINE))
    leaves_block = re.search(r"subgraph leaves\b[^\n]*\n(.*?)^\s*end\s*$", text, re.MULTILINE | re.DOTALL)
    assert leaves_block, "docs/architecture.md: the package diagram has no `subgraph leaves`"
    leaves = set(re.findall(r"^\s*(\w+)\[", leaves_block.group(1), re.MULTILINE))
    classed = re.search(r"^\s*class ([\w,]+) cycle\s*$", text, re.MULTILINE)
    return edges, leaves, set(classed.group(1).split(",")) if classed else set()


def _expected_diagram_edges(leaves: set[str]) -> set[tuple[str, str]]:
    """The real imports between top-level packages and modules, less the edges into the leaves from outside them."""
    return {
        (source, target)
        for source, targets in _package_graph().items()
        for target in targets
        if target not in leaves or source in leaves
    }


def _mermaid_edges(edges: set[tuple[str, str]]) -> str:
    return "\n".join(f"    {a} --> {b}" for a, b in sorted(edges))


# ---- reading the Makefile and the command line -------------------------------------------------


def _make_targets() -> set[str]:
    text = (REPO / "Makefile").read_text()
    return set(re.findall(r"^([A-Za-z][\w-]*)\s*:(?!=)", text, re.MULTILINE))


def _subcommands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in parser._actions:  # argparse keeps its sub-parsers only here
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def _commands_named(pattern: re.Pattern[str]) -> list[tuple[Path, str]]:
    return [(page, match) for page in PAGES for code in _code(page.read_text()) for match in pattern.findall(code)]


# ---- the README -------------------------------------------------------------------------------


def test_readme_is_at_most_200_lines() -> None:
    lines = README.read_text().splitlines()
    assert len(lines) <= README_MAX_LINES, f"README.md: {len(lines)} lines, at most {README_MAX_LINES}"


def test_readme_starts_with_the_two_setup_commands() -> None:
    first_block = FENCE.findall(README.read_text())[0][1]
    commands = [line.split("#")[0].strip() for line in first_block.splitlines() if line.strip()]
    assert commands == ["make demo", "make test"]


def test_readme_links_to_the_security_page_from_its_security_section() -> None:
    section = _section(README.read_text(), "Security")
    assert "docs/security.md" in _relative_links_of(section)
    assert 3 <= len([line for line in section.strip().splitlines()]) <= 6


# ---- links ------------------------------------------------------------------------------------


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(REPO)))
def test_every_relative_link_points_at_an_existing_file(page: Path) -> None:
    missing = []
    for target in _relative_links(page):
        path, _, anchor = target.partition("#")
        destination = (page.parent / path).resolve() if path else page
        if not destination.exists():
            missing.append(target)
        elif anchor and destination.suffix == ".md" and anchor not in _anchors(destination):
            missing.append(target)
    assert missing == [], f"{page.relative_to(REPO)}: links to no file or heading: {missing}"


@pytest.mark.parametrize("page", sorted(DOCS.glob("*.md")), ids=lambda p: p.name)
def test_docs_pages_link_only_inside_the_docs_folder(page: Path) -> None:
    outside = [
        t
        for t in _relative_links(page)
        if t.partition("#")[0] and DOCS not in (DOCS / t.partition("#")[0]).resolve().parents
    ]
    assert outside == [], f"docs/{page.name}: MkDocs cannot serve {outside}; name repository files in code spans"


class _IgnoreTags(yaml.SafeLoader):
    """A YAML loader that reads ``!!python/name:`` and ``!ENV`` tags as plain values."""


_IgnoreTags.add_multi_constructor("", lambda loader, suffix, node: None)


def test_every_docs_page_is_in_the_nav_and_every_nav_entry_exists() -> None:
    config = yaml.load((REPO / "mkdocs.yml").read_text(), Loader=_IgnoreTags)
    listed = [next(iter(entry.values())) if isinstance(entry, dict) else entry for entry in config["nav"]]
    assert sorted(listed) == sorted(p.name for p in DOCS.glob("*.md"))
    assert listed[0] == "index.md"


# ---- the architecture page --------------------------------------------------------------------


def test_architecture_layout_lists_exactly_the_modules_and_packages_of_the_tree() -> None:
    tree, listed = _tree(), _layout_listed()
    assert "definitions.py" in listed and "catalog/models.py" in listed, "the layout block was not parsed"
    assert {"not listed": sorted(tree - listed), "listed, not in the tree": sorted(listed - tree)} == {
        "not listed": [],
        "listed, not in the tree": [],
    }


def test_asset_graph_diagram_is_the_chain_of_stages() -> None:
    text = _mermaid("The asset graph")
    chain = re.findall(r"(\w+)(?=\s*(?:-->|$))", " ".join(line.strip() for line in text.splitlines()[1:]))
    assert chain == list(STAGES)


def test_package_diagram_edges_are_the_real_imports() -> None:
    edges, leaves, _ = _diagram()
    expected = _expected_diagram_edges(leaves)
    assert edges == expected, (
        "docs/architecture.md: the package diagram's edges differ from the imports; they are now:\n"
        + _mermaid_edges(expected)
    )


def test_package_diagram_leaves_import_only_each_other() -> None:
    _, leaves, _ = _diagram()
    graph = _package_graph()
    assert leaves and leaves <= set(graph)
    assert {leaf: graph[leaf] - leaves for leaf in leaves if graph[leaf] - leaves} == {}


def test_package_diagram_marks_exactly_the_package_cycles() -> None:
    _, _, marked = _diagram()
    cycles = _cycles(_package_graph())
    assert marked == set().union(*cycles)


def test_architecture_names_every_module_cycle() -> None:
    text = _section(ARCHITECTURE.read_text(), "Cycles")
    graph = _import_graph()
    module_cycles = _cycles(graph)
    package_cycles = _cycles(_package_graph())
    named = set(INLINE_CODE.findall(text))
    unnamed = [sorted(c - named) for c in module_cycles + package_cycles if not c <= named]
    assert unnamed == [], f"docs/architecture.md, Cycles: these members of a cycle are not named: {unnamed}"
    if not module_cycles and not package_cycles:
        assert "no cycle" in text.lower()


# ---- commands ---------------------------------------------------------------------------------


def test_every_make_target_named_in_the_docs_exists() -> None:
    named = _commands_named(MAKE_COMMAND)
    targets = _make_targets()
    assert {"demo", "test", "docs"} <= {target for _, target in named}, "the make commands were not found"
    unknown = sorted({f"{page.relative_to(REPO)}: make {t}" for page, t in named if t not in targets})
    assert unknown == []


def test_every_cube_assets_subcommand_named_in_the_docs_exists() -> None:
    named = _commands_named(CLI_COMMAND)
    commands = _subcommands(build_parser())
    assert len(named) >= 5, "the cube-assets commands were not found"
    unknown = []
    for page, words in named:
        command, *rest = words.split()
        actions = _subcommands(commands[command]) if command in commands else {}
        if command not in commands or (actions and (not rest or rest[0] not in actions)):
            unknown.append(f"{page.relative_to(REPO)}: cube-assets{words}")
    assert unknown == []


# ---- issue numbers ----------------------------------------------------------------------------


def _sources() -> list[Path]:
    folders = [PACKAGE, REPO / "cube_assets_tests", REPO / "benchmarks"]
    return [p for folder in folders for p in sorted(folder.rglob("*.py")) if "__pycache__" not in p.parts]


@pytest.mark.parametrize("kind", ["python", "markdown"])
def test_no_docstring_comment_or_page_cites_an_issue_number(kind: str) -> None:
    files = _sources() if kind == "python" else PAGES
    hits = [
        f"{path.relative_to(REPO)}:{number}: {line.strip()[:100]}"
        for path in files
        for number, line in enumerate(path.read_text().splitlines(), start=1)
        if ISSUE_NUMBER.search(line)
    ]
    assert hits == []
