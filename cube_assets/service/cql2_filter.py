"""CQL2 filters (text or JSON) as the catalog's property expressions, and the ``query`` extension's object too.

A filter is parsed by ``cql2`` (the reference parser) into CQL2-JSON, then walked into an
:class:`~cube_assets.catalog.expressions.Expression` over the :data:`QUERYABLES`: ``and``, ``or``,
``not``, the comparisons ``= <> < <= > >=``, ``isNull``, ``between``, ``in``, ``like`` with a
prefix pattern (``'abc%'``) and ``t_intersects`` on ``datetime``. ``s_intersects`` on
``geometry`` is accepted where it is ANDed at the top of the filter (it becomes the search's
geometry). Values never become SQL text: they go into the expressions, which bind them.
Everything else is refused with :class:`InvalidParameter` naming ``filter``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import cql2
import shapely.geometry
from shapely.geometry.base import BaseGeometry

from cube_assets.catalog.expressions import Expression, p
from cube_assets.service.queryables import InvalidParameter, queryable

#: Longest filter accepted, in characters of its text or JSON.
MAX_FILTER_LENGTH = 20_000

_COMPARISONS = {"=": "==", "<>": "!=", "<": "<", "<=": "<=", ">": ">", ">=": ">="}
_REVERSED = {"==": "==", "!=": "!=", "<": ">", "<=": ">=", ">": "<", ">=": "<="}
_QUERY_OPERATORS = {"eq": "==", "neq": "!=", "lt": "<", "lte": "<=", "gt": ">", "gte": ">="}


@dataclass(frozen=True)
class ParsedFilter:
    """A filter as a property expression (None: no condition) and the geometry of a top-level ``s_intersects``."""

    expression: Expression | None
    geometry: BaseGeometry | None


def time_overlap(start: Any, end: Any) -> Expression:
    """Return "the image's time span meets ``start``..``end``" (either bound may be None: open).

    An image spans ``acquired``..``acquired_end`` (or the instant ``acquired`` when it has no
    end); both ends of the interval are inclusive.

    Returns:
        The expression.
    """
    conditions: list[Expression] = []
    if end is not None:
        conditions.append(p.acquired <= end)
    if start is not None:
        conditions.append((p.acquired_end >= start) | ((p.acquired_end == None) & (p.acquired >= start)))  # noqa: E711 - builds IS NULL
    if not conditions:
        return p.acquired != None  # noqa: E711 - builds IS NOT NULL: every image
    expression = conditions[0]
    for condition in conditions[1:]:
        expression = expression & condition
    return expression


def parse_filter(value: str | Mapping[str, Any] | None, lang: str | None) -> ParsedFilter:
    """Parse a ``filter`` parameter in ``lang`` (``cql2-text`` or ``cql2-json``; None guesses from the value).

    Returns:
        The :class:`ParsedFilter`.

    Raises:
        InvalidParameter: naming ``filter`` or ``filter-lang`` and what is wrong.
    """
    if value is None or value == "":
        return ParsedFilter(None, None)
    if lang not in (None, "cql2-text", "cql2-json"):
        raise InvalidParameter("filter-lang", f"must be cql2-text or cql2-json, got {str(lang)[:50]!r}")
    text = value if isinstance(value, str) else json.dumps(value)
    if len(text) > MAX_FILTER_LENGTH:
        raise InvalidParameter("filter", f"at most {MAX_FILTER_LENGTH} characters, got {len(text)}")
    try:
        if isinstance(value, str) and (lang == "cql2-text" or (lang is None and not value.lstrip().startswith("{"))):
            tree = cql2.parse_text(value).to_json()
        else:
            tree = cql2.parse_json(text).to_json()
    except (cql2.ParseError, cql2.ValidationError, ValueError) as exc:
        raise InvalidParameter("filter", f"not valid CQL2: {str(exc)[:300]}") from None
    return _top_level(tree)


def _top_level(tree: Any) -> ParsedFilter:
    """Split top-level ``s_intersects`` terms (ANDed) from the rest of the filter."""
    terms = tree["args"] if isinstance(tree, dict) and tree.get("op") == "and" else [tree]
    geometry: BaseGeometry | None = None
    others: list[Expression] = []
    for term in terms:
        if isinstance(term, dict) and term.get("op") == "s_intersects":
            shape = _spatial_argument(term.get("args"))
            geometry = shape if geometry is None else geometry.intersection(shape)
        else:
            others.append(_expression(term))
    expression = None
    for other in others:
        expression = other if expression is None else expression & other
    return ParsedFilter(expression, geometry)


def _spatial_argument(args: Any) -> BaseGeometry:
    if not isinstance(args, list) or len(args) != 2:
        raise InvalidParameter("filter", "s_intersects takes two arguments")
    names = [a for a in args if isinstance(a, dict) and "property" in a]
    shapes = [a for a in args if isinstance(a, dict) and "type" in a]
    if len(names) != 1 or names[0]["property"] != "geometry" or len(shapes) != 1:
        raise InvalidParameter("filter", "s_intersects compares the property geometry with one GeoJSON geometry")
    try:
        shape = shapely.geometry.shape(shapes[0])
    except Exception as exc:  # shapely raises several types for malformed GeoJSON
        raise InvalidParameter("filter", f"s_intersects: not a valid geometry ({str(exc)[:200]})") from None
    if shape.is_empty or not shape.is_valid:
        raise InvalidParameter("filter", "s_intersects: the geometry is empty or invalid")
    return shape


def _literal(value: Any) -> Any:
    """A CQL2-JSON literal as a Python value for the catalog (timestamps and dates as ISO text)."""
    if isinstance(value, dict):
        if "timestamp" in value:
            return value["timestamp"]
        if "date" in value:
            return value["date"]
        raise InvalidParameter("filter", f"unsupported literal {json.dumps(value)[:100]}")
    if isinstance(value, list):
        raise InvalidParameter("filter", "array literals are only allowed in IN lists")
    return value


def _property_name(argument: Any) -> str | None:
    return argument["property"] if isinstance(argument, dict) and "property" in argument else None


def _expression(node: Any) -> Expression:
    """Walk one CQL2-JSON node into an expression."""
    if not isinstance(node, dict) or "op" not in node:
        raise InvalidParameter("filter", f"expected an operation, got {json.dumps(node)[:100]}")
    op, args = str(node["op"]).lower(), node.get("args") or []
    if op in ("and", "or"):
        parts = [_expression(arg) for arg in args]
        if not parts:
            raise InvalidParameter("filter", f"{op} needs arguments")
        combined = parts[0]
        for part in parts[1:]:
            combined = combined & part if op == "and" else combined | part
        return combined
    if op == "not":
        return ~_expression(args[0])
    if op in _COMPARISONS:
        return _comparison(_COMPARISONS[op], args)
    if op == "isnull":
        name = _property_name(args[0]) if args else None
        if name is None:
            raise InvalidParameter("filter", "isNull takes a property")
        return queryable(name, "filter").property == None  # noqa: E711 - builds IS NULL
    if op == "between":
        name = _property_name(args[0]) if len(args) == 3 else None
        if name is None:
            raise InvalidParameter("filter", "between takes a property, a low and a high value")
        target = queryable(name, "filter")
        low, high = (target.to_catalog(_literal(a)) for a in args[1:])
        return target.property.between(low, high)
    if op == "in":
        name = _property_name(args[0]) if len(args) == 2 else None
        if name is None or not isinstance(args[1], list):
            raise InvalidParameter("filter", "in takes a property and a list of values")
        target = queryable(name, "filter")
        return target.property.in_([target.to_catalog(_literal(v)) for v in args[1]])
    if op == "like":
        return _like(args)
    if op in ("t_intersects", "anyinteracts"):
        return _t_intersects(args)
    if op == "s_intersects":
        raise InvalidParameter("filter", "s_intersects is supported only ANDed at the top of the filter")
    raise InvalidParameter("filter", f"unsupported operation {op[:50]!r}")


def _comparison(operator: str, args: Sequence[Any]) -> Expression:
    if len(args) != 2:
        raise InvalidParameter("filter", "a comparison takes two arguments")
    left, right = _property_name(args[0]), _property_name(args[1])
    if (left is None) == (right is None):
        raise InvalidParameter("filter", "a comparison needs one property and one value")
    if left is None:
        operator, name, value = _REVERSED[operator], right, args[0]
    else:
        name, value = left, args[1]
    assert name is not None
    target = queryable(name, "filter")
    return _compare(target.property, operator, target.to_catalog(_literal(value)))


def _compare(prop: Any, operator: str, value: Any) -> Expression:
    match operator:
        case "==":
            return prop == value  # type: ignore[no-any-return]  # a property's == builds an expression
        case "!=":
            return prop != value  # type: ignore[no-any-return]  # a property's != builds an expression
        case "<":
            return prop < value  # type: ignore[no-any-return]  # builds an expression
        case "<=":
            return prop <= value  # type: ignore[no-any-return]  # builds an expression
        case ">":
            return prop > value  # type: ignore[no-any-return]  # builds an expression
        case _:
            return prop >= value  # type: ignore[no-any-return]  # builds an expression


def _like(args: Sequence[Any]) -> Expression:
    """``like`` with a prefix pattern: text, then one final ``%`` (``\\_``, ``\\%``, ``\\\\`` are themselves)."""
    name = _property_name(args[0]) if len(args) == 2 else None
    pattern = args[1] if len(args) == 2 else None
    if name is None or not isinstance(pattern, str):
        raise InvalidParameter("filter", "like takes a property and a pattern")
    stem: list[str] = []
    escaped, index = False, 0
    while index < len(pattern):
        character = pattern[index]
        if escaped:
            stem.append(character)
            escaped = False
        elif character == "\\":
            escaped = True
        elif character in "%_":
            break
        else:
            stem.append(character)
        index += 1
    if pattern[index:] != "%" or escaped:
        raise InvalidParameter(
            "filter",
            f"like supports prefix patterns only (text, then one final %; escape _ as \\_), got {pattern[:100]!r}",
        )
    return queryable(name, "filter").property.prefix("".join(stem))


def _t_intersects(args: Sequence[Any]) -> Expression:
    name = _property_name(args[0]) if len(args) == 2 else None
    if name != "datetime":
        raise InvalidParameter("filter", "t_intersects compares the property datetime with an interval or instant")
    value = args[1]
    if isinstance(value, dict) and "interval" in value:
        start, end = (None if v == ".." else _literal(v) for v in value["interval"])
        return time_overlap(start, end)
    instant = _literal(value)
    return time_overlap(instant, instant)


def parse_query(query: Mapping[str, Any] | None) -> Expression | None:
    """Return the ``query`` extension's object (``{"eo:cloud_cover": {"lt": 10}}``) as one expression.

    Operators: ``eq neq lt lte gt gte in startsWith``.

    Returns:
        The expression, or None for an empty query.

    Raises:
        InvalidParameter: naming ``query``.
    """
    if not query:
        return None
    if not isinstance(query, Mapping):
        raise InvalidParameter("query", "must be a JSON object of property → {operator: value}")
    expression: Expression | None = None
    for name, conditions in query.items():
        target = queryable(str(name), "query")
        if not isinstance(conditions, Mapping) or not conditions:
            raise InvalidParameter("query", f"{str(name)[:100]}: expected {{operator: value}}")
        for operator, value in conditions.items():
            if operator in _QUERY_OPERATORS:
                term = _compare(target.property, _QUERY_OPERATORS[operator], target.to_catalog(value))
            elif operator == "in" and isinstance(value, list):
                term = target.property.in_([target.to_catalog(v) for v in value])
            elif operator == "startsWith" and isinstance(value, str):
                term = target.property.prefix(value)
            else:
                raise InvalidParameter("query", f"{str(name)[:100]}: unsupported operator {str(operator)[:50]!r}")
            expression = term if expression is None else expression & term
    return expression


__all__ = ["MAX_FILTER_LENGTH", "ParsedFilter", "parse_filter", "parse_query", "time_overlap"]
