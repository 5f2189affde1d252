"""Reading a cube YAML file into plain data, within bounds, before any model sees it.

The rules, each refused with ``InvalidCubeConfig`` naming the file:

* the path is a regular file (not a folder, FIFO or device) of at most ``MAX_FILE_BYTES``;
* it is one YAML document, read with PyYAML's safe loader (no Python tags), in which no
  mapping repeats a key;
* its values, with every alias expanded, number at most ``MAX_VALUES`` and nest at most
  ``MAX_DEPTH`` deep. A YAML bomb (aliases of aliases, "billion laughs") loads as a small graph
  of shared objects, but everything that walks it afterwards pays the expanded size, so the
  walk here counts that size and stops at the limit;
* the top level is a mapping.

A timestamp PyYAML cannot build (``0000-01-01``) stays a string, so the model reports it at
its field.
"""

from __future__ import annotations

import stat
from pathlib import Path
from typing import Any

import yaml

from cube_assets.errors import InvalidCubeConfig
from cube_assets.quoting import quoted, shortened

MAX_FILE_BYTES = 1 << 20
MAX_VALUES = 200_000
MAX_DEPTH = 32


class _CubeFileLoader(yaml.SafeLoader):
    """The safe loader, refusing repeated keys and keeping unbuildable timestamps as text."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            if not isinstance(key_node, yaml.ScalarNode) or key_node.tag == "tag:yaml.org,2002:merge":
                continue
            key = self.construct_object(key_node)
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    "while reading a mapping",
                    node.start_mark,
                    f"key {quoted(key)} repeats",
                    key_node.start_mark,
                )
            seen.add(key)
        return super().construct_mapping(node, deep)


def _timestamp_or_text(loader: _CubeFileLoader, node: yaml.ScalarNode) -> Any:
    try:
        return yaml.constructor.SafeConstructor.construct_yaml_timestamp(loader, node)
    except ValueError:
        return loader.construct_scalar(node)


_CubeFileLoader.add_constructor("tag:yaml.org,2002:timestamp", _timestamp_or_text)


def read_cube_file(path: Path) -> dict[str, Any]:
    """Return the top-level mapping of the YAML file at ``path``, checked against the module's rules.

    Returns:
        The loaded mapping (plain dicts, lists and scalars).

    Raises:
        InvalidCubeConfig: naming ``path`` and what was wrong (missing, not a regular file,
            too large, not YAML, a repeated key, too many values or too deep, not a mapping).
    """
    data = _read_bytes(path)
    try:
        loaded = yaml.load(data, Loader=_CubeFileLoader)  # a SafeLoader subclass
    except yaml.YAMLError as exc:
        raise InvalidCubeConfig(f"{path}: not valid YAML: {_yaml_problem(exc)}") from exc
    except RecursionError as exc:
        raise InvalidCubeConfig(f"{path}: not valid YAML: nested too deeply") from exc
    _check_expanded_size(path, loaded)
    if not isinstance(loaded, dict):
        what = "nothing" if loaded is None else f"a {type(loaded).__name__}"
        raise InvalidCubeConfig(f"{path}: the top level must be a mapping with 'cubes' (and 'providers'), got {what}")
    return loaded


def _yaml_problem(exc: yaml.YAMLError) -> str:
    """One line saying where and what: PyYAML's own text spans several lines with source snippets."""
    if isinstance(exc, yaml.MarkedYAMLError) and exc.problem_mark is not None:
        mark = exc.problem_mark
        context = f" ({exc.context})" if exc.context else ""
        return shortened(f"line {mark.line + 1}, column {mark.column + 1}: {exc.problem}{context}")
    return shortened(" ".join(str(exc).split()))


def _read_bytes(path: Path) -> bytes:
    try:
        status = path.stat()
    except FileNotFoundError as exc:
        raise InvalidCubeConfig(f"{path}: cannot read cube file: no such file") from exc
    except OSError as exc:
        raise InvalidCubeConfig(f"{path}: cannot read cube file: {exc.strerror}") from exc
    if not stat.S_ISREG(status.st_mode):
        raise InvalidCubeConfig(f"{path}: cannot read cube file: not a regular file")
    too_large = f"{path}: cube file is larger than the limit of {MAX_FILE_BYTES:,} bytes"
    if status.st_size > MAX_FILE_BYTES:
        raise InvalidCubeConfig(f"{too_large} ({status.st_size:,} bytes)")
    try:
        with path.open("rb") as stream:
            data = stream.read(MAX_FILE_BYTES + 1)
    except OSError as exc:
        raise InvalidCubeConfig(f"{path}: cannot read cube file: {exc.strerror}") from exc
    if len(data) > MAX_FILE_BYTES:
        raise InvalidCubeConfig(too_large)
    return data


def _check_expanded_size(path: Path, loaded: Any) -> None:
    """Walk ``loaded`` as a tree (shared objects counted each time they appear), up to the limits."""
    remaining = MAX_VALUES
    pending: list[tuple[Any, int]] = [(loaded, 0)]
    while pending:
        value, depth = pending.pop()
        remaining -= 1
        if remaining < 0:
            raise InvalidCubeConfig(
                f"{path}: the file holds more than {MAX_VALUES:,} values once its aliases are expanded"
            )
        if depth > MAX_DEPTH:
            raise InvalidCubeConfig(f"{path}: values are nested more than {MAX_DEPTH} levels deep")
        if isinstance(value, dict):
            pending.extend((item, depth + 1) for pair in value.items() for item in pair)
        elif isinstance(value, (list, tuple, set)):
            pending.extend((item, depth + 1) for item in value)
