"""Evaluate a catalog search expression (``p.cloud_fraction < 0.2``) against one object in memory.

``ImageCollection.filter(p.cloud_fraction < 0.2)`` keeps the images for which :func:`matches` is
true. The rules follow the SQL the catalog runs for the same expression: a comparison with a
missing (None) value is false, also under ``~``; datetimes compare with text parsed as the catalog
parses it (no time zone means UTC); ``p.properties.key`` reads a key of a mapping attribute;
``in_`` on a list (tags) means "contains any of".
"""

from __future__ import annotations

import datetime as dt
import operator
from collections.abc import Callable, Mapping
from typing import Any

from cube_assets.catalog.expressions import And, Comparison, Expression, In, Not, Or, Prefix, Property, parse_datetime
from cube_assets.errors import CatalogError

_MISSING = object()
_OPERATORS: dict[str, Callable[[Any, Any], bool]] = {
    "==": operator.eq,
    "!=": operator.ne,
    "<": operator.lt,
    "<=": operator.le,
    ">": operator.gt,
    ">=": operator.ge,
}


def matches(item: Any, expression: Expression) -> bool:
    """Return whether ``item`` satisfies ``expression`` (None where the catalog would find no match).

    Raises:
        CatalogError: if the expression names an attribute the item does not have, or compares
            values that cannot be compared.
    """
    return _truth(item, expression) is True


def _truth(item: Any, expression: Expression) -> bool | None:
    """True, False, or None for unknown (a comparison with a missing value), as SQL's three values."""
    if isinstance(expression, And):
        parts = [_truth(item, part) for part in expression.parts]
        return False if False in parts else (None if None in parts else True)
    if isinstance(expression, Or):
        parts = [_truth(item, part) for part in expression.parts]
        return True if True in parts else (None if None in parts else False)
    if isinstance(expression, Not):
        inner = _truth(item, expression.part)
        return None if inner is None else not inner
    if isinstance(expression, Comparison):
        return _compare(item, expression.property, expression.operator, expression.value)
    if isinstance(expression, In):
        return _any_of(item, expression.property, expression.values)
    if isinstance(expression, Prefix):
        value = _value(item, expression.property)
        return None if value is None else isinstance(value, str) and value.startswith(expression.prefix)
    raise CatalogError(f"cannot evaluate {expression!r} on {item!r}")


def _value(item: Any, prop: Property) -> Any:
    name = prop._name
    if not hasattr(item, name):
        raise CatalogError(f"{item!r} has no attribute {name!r} (in {prop!r})")
    value = getattr(item, name)
    for key in prop._path:
        if not isinstance(value, Mapping):
            return None
        value = value.get(key)
    return value


def _comparable(value: Any, other: Any, prop: Property) -> Any:
    """``other`` in the type of ``value``: text or a date parsed when ``value`` is a datetime."""
    if isinstance(value, dt.datetime):
        return parse_datetime(f"property {prop._label()!r}", other)
    return other


def _compare(item: Any, prop: Property, op: str, other: Any) -> bool | None:
    value = _value(item, prop)
    if other is None:
        return (value is None) if op == "==" else (value is not None) if op == "!=" else None
    if value is None:
        return None
    other = _comparable(value, other, prop)
    try:
        return bool(_OPERATORS[op](value, other))
    except TypeError:
        raise CatalogError(f"{prop!r} {op} {other!r}: {value!r} cannot be compared with it") from None


def _any_of(item: Any, prop: Property, values: tuple[Any, ...]) -> bool | None:
    value = _value(item, prop)
    if value is None:
        return None
    if isinstance(value, list | tuple):
        return any(candidate in value for candidate in values)
    return any(_compare(item, prop, "==", candidate) for candidate in values)


__all__ = ["matches"]
