"""Property expressions: the small trees that search filters are made of, and how they compile to SQL.

Write filters with the :data:`properties` object (usually imported as ``p``) and give them to a
search (:mod:`cube_assets.catalog.search`; the client's ``Image.search()`` builds one)::

    from cube_assets.catalog.expressions import properties as p

    (p.product_id == "s2_16d-LCF") & (p.acquired >= "2024-01-01") & (p.acquired < "2024-04-01")
    (p.cloud_fraction < 0.2) | (p.cloud_fraction == None)  # noqa: E711 - builds an expression, no comparison

An expression is a small tree (:class:`Comparison`, :class:`And`, :class:`Or`, :class:`Not`, ...)
that :meth:`Expression.compile` turns into a SQLAlchemy ``WHERE`` clause for the searched class's
table; nothing is evaluated in Python. Values are checked and converted where the expression is
compiled, against the property's kind:

* datetimes (``acquired``, ``acquired_end``, ``created``, ...): aware ``datetime``, ``date``
  (midnight UTC) or ISO text (``"2024"``, ``"2024-03"``, ``"2024-03-01"``,
  ``"2024-03-01T10:00:00+02:00"``; text without a zone is UTC). A naive ``datetime`` is refused,
  as everywhere in the catalog;
* numbers, text, dates (``period_start``) as themselves;
* ``tags``: ``p.tags == "x"`` means "the tags contain x" (``!=``: do not), ``p.tags.in_([...])``
  any of them;
* ``properties``: ``p.properties.efficacy > 50`` (or ``p.properties["key with spaces"]``, nested
  ``p.properties.a.b``) compares the stored JSON value when it has the same JSON type as the
  given value (number, text or boolean), and is false otherwise.

``p.x == None`` is ``IS NULL``, ``!=`` ``IS NOT NULL``. Comparisons are combined with ``&``, ``|``
and ``~`` (Python's ``and``/``or``/``not`` and chained comparisons such as ``a < p.x < b``
cannot be overloaded, so an expression refuses to be used as a truth value).

Limits, checked when an expression or argument is built (values that need the property's kind,
such as dates given as text, when the filter is added): property names are identifiers and JSON
keys a strict rule (:data:`PROPERTY_NAME`, :data:`JSON_KEY`, at most :data:`MAX_JSON_PATH` keys
deep); numbers are finite and integers fit 64 bits; text is at most :data:`MAX_TEXT_LENGTH`
characters of encodable UTF-8 without NUL; datetimes lie in years 1 to 9999 once in UTC; ``&``
and ``|`` chains are flattened into one node, nesting is at most :data:`MAX_EXPRESSION_DEPTH`
deep and a search holds at most :data:`MAX_SEARCH_TERMS` comparisons (each ``in_`` value counts
as one); ``limit`` is at most :data:`MAX_LIMIT`. Every value reaches SQL as a bound parameter.
Each refusal is a ``CatalogError`` naming the argument and quoting at most 200 characters of it.
"""

from __future__ import annotations

import contextlib
import contextvars
import datetime as dt
import itertools
import math
import re
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from numbers import Integral, Real
from typing import Any

import shapely.geometry
from shapely.geometry.base import BaseGeometry
from sqlalchemy import (
    BigInteger,
    Boolean,
    ColumnElement,
    Float,
    Integer,
    Text,
    and_,
    bindparam,
    case,
    cast,
    exists,
    false,
    func,
    literal,
    not_,
    or_,
    true,
    type_coerce,
)
from sqlalchemy.dialects.postgresql import ARRAY, JSONB, TSTZRANGE
from sqlalchemy.orm import InstrumentedAttribute

from cube_assets.errors import CatalogError

#: Kinds of searchable fields; each decides which values and operators a comparison accepts.
FIELD_KINDS = ("string", "number", "datetime", "date", "tags", "json")

#: Deepest nesting of ``&``, ``|`` and ``~`` in one expression (a flat chain ``a & b & c`` is one level).
MAX_EXPRESSION_DEPTH = 64
#: Most comparisons a search holds over all its filters; each value of an ``in_`` counts as one.
#: SQL engines parse a chain of n ``AND``s n levels deep (SQLite refuses 1000 levels).
MAX_SEARCH_TERMS = 256
#: Longest text value of a comparison, in characters.
MAX_TEXT_LENGTH = 4096
#: Most keys in a JSON property path (``p.properties.a.b`` has two).
MAX_JSON_PATH = 8
#: Largest ``limit`` (the largest 64-bit integer, what the databases accept).
MAX_LIMIT = 2**63 - 1
#: Range of integers a comparison may hold (64-bit, the widest integer column of every backend).
INT64_RANGE = (-(2**63), 2**63 - 1)
#: A searchable property name: an ASCII identifier of at most 64 characters.
PROPERTY_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,63}")
#: A JSON property key: 1 to 64 ASCII letters, digits and ``_ - : .`` (STAC-style ``eo:cloud_cover``),
#: with inner spaces; no quote, backslash, bracket, ``$`` or control character can reach a JSON path.
JSON_KEY = re.compile(r"[A-Za-z0-9_:.\-](?:[A-Za-z0-9_:. \-]{0,62}[A-Za-z0-9_:.\-])?")
#: Characters of an offending input quoted in error messages.
_QUOTED_CHARACTERS = 200


def quote(value: object) -> str:
    """Return ``repr(value)`` for an error message, cut to its first 200 characters.

    Huge integers are described by their size instead (their ``repr`` may itself be refused).
    """
    if isinstance(value, int) and not isinstance(value, bool) and value.bit_length() > 256:
        return f"<an integer of {value.bit_length()} bits>"
    try:
        text = repr(value)
    except Exception:  # only used to word a message
        return f"<a {type(value).__name__}>"
    if len(text) <= _QUOTED_CHARACTERS:
        return text
    return text[:_QUOTED_CHARACTERS] + f"... ({len(text)} characters)"


@dataclass(frozen=True)
class SearchField:
    """A searchable property of an object class: its name, ORM column and kind (:data:`FIELD_KINDS`)."""

    name: str
    column: InstrumentedAttribute[Any]
    kind: str
    nullable: bool = True


FieldResolver = Callable[[str], SearchField]
"""Returns the :class:`SearchField` of a property name; raises ``CatalogError`` for unknown names."""


# ----------------------------------------------------------------------------------- values


def parse_datetime(what: str, value: object) -> dt.datetime:
    """Return ``value`` as an aware UTC datetime.

    Accepts a ``datetime`` (naive means UTC), a ``date`` (midnight UTC) or ISO 8601 text:
    ``YYYY``, ``YYYY-MM``, ``YYYY-MM-DD`` or a full timestamp (``Z`` or an offset; none means UTC).

    Returns:
        The aware UTC datetime.

    Raises:
        CatalogError: naming ``what``, for unparseable text or another type.
    """
    if isinstance(value, dt.datetime):
        if value.tzinfo is None or value.utcoffset() is None:
            value = value.replace(tzinfo=dt.UTC)  # a timestamp without a time zone is in UTC
        return _in_utc(what, value)
    if isinstance(value, dt.date):
        return dt.datetime.combine(value, dt.time(), tzinfo=dt.UTC)
    if isinstance(value, str):
        _check_text(what, value)
        text_value = value.strip()
        if re.fullmatch(r"\d{4}", text_value):
            text_value += "-01-01"
        elif re.fullmatch(r"\d{4}-\d{2}", text_value):
            text_value += "-01"
        try:
            parsed = dt.datetime.fromisoformat(text_value)
        except ValueError:
            raise CatalogError(f"{what}: {quote(value)} is not an ISO 8601 date or datetime") from None
        if parsed.tzinfo is None:
            parsed = parsed.replace(tzinfo=dt.UTC)
        return _in_utc(what, parsed)
    raise CatalogError(f"{what}: expected a datetime, date or ISO 8601 text, got {quote(value)}")


def _in_utc(what: str, moment: dt.datetime) -> dt.datetime:
    """``moment`` (aware) in UTC; refused when its offset moves it out of years 1 to 9999."""
    try:
        return moment.astimezone(dt.UTC)
    except OverflowError as exc:
        raise CatalogError(
            f"{what}: {moment.isoformat()} is outside the supported range (years 1 to 9999 in UTC)"
        ) from exc


def parse_date(what: str, value: object) -> dt.date:
    """Return ``value`` (a ``date`` or ``YYYY-MM-DD`` text) as a ``date``.

    Raises:
        CatalogError: naming ``what``, for a ``datetime``, unparseable text or another type.
    """
    if isinstance(value, dt.datetime):
        raise CatalogError(f"{what}: expected a date, not a datetime, got {value!r}")
    if isinstance(value, dt.date):
        return value
    if isinstance(value, str):
        _check_text(what, value)
        try:
            return dt.date.fromisoformat(value.strip())
        except ValueError:
            raise CatalogError(f"{what}: {quote(value)} is not an ISO date (YYYY-MM-DD)") from None
    raise CatalogError(f"{what}: expected a date or YYYY-MM-DD text, got {quote(value)}")


def _number(what: str, value: object) -> float | int:
    """``value`` as a Python int within 64 bits or a finite float; refused otherwise."""
    if isinstance(value, bool) or not isinstance(value, Real):
        raise CatalogError(f"{what}: expected a finite number, got {quote(value)}")
    if isinstance(value, Integral):
        number = int(value)
        if not INT64_RANGE[0] <= number <= INT64_RANGE[1]:
            raise CatalogError(f"{what}: expected a finite number within 64-bit integers, got {quote(number)}")
        return number
    try:
        real = float(value)
    except (OverflowError, ValueError) as exc:
        raise CatalogError(f"{what}: expected a finite number, got {quote(value)}") from exc
    if not math.isfinite(real):
        raise CatalogError(f"{what}: expected a finite number, got {quote(value)}")
    return real


def _check_text(what: str, value: str) -> str:
    """``value`` if it is at most :data:`MAX_TEXT_LENGTH` characters of encodable UTF-8 without NUL."""
    if len(value) > MAX_TEXT_LENGTH:
        raise CatalogError(
            f"{what}: text of {len(value)} characters, at most {MAX_TEXT_LENGTH} allowed: {quote(value)}"
        )
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise CatalogError(
            f"{what}: text is not encodable as UTF-8 (lone surrogate at position {exc.start}): {quote(value)}"
        ) from exc
    if "\x00" in value:
        raise CatalogError(f"{what}: text contains a NUL character: {quote(value)}")
    return value


def _check_value(what: str, value: object) -> None:
    """Refuse, at build time, a value no property kind can hold: what each kind checks regardless of it."""
    if value is None or isinstance(value, bool):
        return
    if isinstance(value, Real):
        _number(what, value)
    elif isinstance(value, str):
        _check_text(what, value)
    elif isinstance(value, dt.datetime) and value.tzinfo is not None and value.utcoffset() is not None:
        _in_utc(what, value)


def _coerce(field: SearchField, value: object) -> Any:
    what = f"property {field.name!r}"
    if field.kind == "datetime":
        return parse_datetime(what, value)
    if field.kind == "date":
        return parse_date(what, value)
    if field.kind == "number":
        return _number(what, value)
    if field.kind in ("string", "tags"):
        if not isinstance(value, str):
            raise CatalogError(f"{what}: expected text, got {quote(value)}")
        return _check_text(what, value)
    raise CatalogError(f"{what}: cannot be compared with a single value")  # json handled elsewhere


def _bound(field: SearchField, value: Any) -> Any:
    """``value`` ready to compare with ``field``'s column.

    A number compared with an integer column is bound as ``BIGINT`` (or ``FLOAT``), not as the
    column's own type: PostgreSQL would cast ``width < 3000000000`` to a 32-bit ``INTEGER`` and
    fail, and ``width <= 1.5`` to ``width <= 2``.
    """
    if field.kind == "number" and isinstance(field.column.type, Integer):
        kind = BigInteger() if isinstance(value, int) else Float()
        return literal(value, kind) if _RECORDED.get() is None else parameter(value, kind)
    return parameter(value, field.column.type)


#: While a search compiles its statement template: the values bound so far, in order (else None).
_RECORDED: contextvars.ContextVar[list[Any] | None] = contextvars.ContextVar("recorded_parameters", default=None)


@contextlib.contextmanager
def recorded_parameters() -> Iterator[list[Any]]:
    """Within the block, :func:`parameter` binds values as named parameters ``v0``, ``v1``...

    Returns:
        A context manager yielding the list of the values bound, in the order of their names.
    """
    recorded: list[Any] = []
    token = _RECORDED.set(recorded)
    try:
        yield recorded
    finally:
        _RECORDED.reset(token)


def parameter(value: Any, type_: Any = None) -> Any:
    """Return ``value`` as a search's SQL binds it: itself, or within :func:`recorded_parameters` a named parameter.

    The named parameter ``v{n}`` (``n`` counts the values recorded) holds ``value`` with
    ``type_`` (None: the type SQLAlchemy infers from the value, as for a plain value).
    """
    recorded = _RECORDED.get()
    if recorded is None:
        return value
    recorded.append(value)
    return bindparam(f"v{len(recorded) - 1}", value, type_=type_)


def template_parameters(expression: Expression, resolve: FieldResolver, dialect: str) -> tuple[Any, list[Any]] | None:
    """Return the shape of ``expression`` and the values its compiled SQL binds, in order, without compiling it.

    Two expressions of the same shape compile to the same SQL but for the values of their
    parameters: what :meth:`Expression.compile` binds through :func:`parameter`, in the same
    order. Values are checked and converted as compiling them would (so bad values raise the
    same errors). Expressions whose SQL holds values bound another way (JSON keys, tags,
    prefixes) and comparisons compiling would refuse give None: they are compiled each time.

    Returns:
        ``(shape, values)`` (the shape is hashable), or None.

    Raises:
        CatalogError: for an unknown property or a value of the wrong type.
    """
    values: list[Any] = []
    try:
        shape = _template(expression, resolve, dialect, values)
    except _NotTemplated:
        return None
    return shape, values


class _NotTemplated(Exception):
    """An expression whose SQL binds values outside :func:`parameter` (or that compiling refuses)."""


def _template(expression: Expression, resolve: FieldResolver, dialect: str, values: list[Any]) -> Any:
    """The shape of ``expression``; its values are appended to ``values`` in the order compiling binds them."""
    if isinstance(expression, (And, Or)):
        return (
            type(expression).__name__,
            tuple(_template(part, resolve, dialect, values) for part in expression.parts),
        )
    if isinstance(expression, Not):
        return ("Not", _template(expression.part, resolve, dialect, values))
    if isinstance(expression, Comparison):
        field = _plain_field(expression.property, resolve)
        if expression.value is None:
            if expression.operator not in ("==", "!="):
                raise _NotTemplated
            return ("Comparison", field.name, expression.operator, None)
        value = _coerce(field, expression.value)
        values.append(value)
        if dialect == "postgresql" and field.name == "acquired" and expression.operator != "!=":  # its tstzrange
            values.extend([value, value] if expression.operator == "==" else [value])
        return ("Comparison", field.name, expression.operator, type(value))
    if isinstance(expression, In):
        field = _plain_field(expression.property, resolve)
        if any(v is None for v in expression.values):
            raise _NotTemplated
        coerced = [_coerce(field, v) for v in expression.values]
        values.extend(coerced)
        return ("In", field.name, tuple(map(type, coerced)))
    raise _NotTemplated


def _plain_field(prop: Property, resolve: FieldResolver) -> SearchField:
    field = resolve(prop._name)
    if prop._path or field.kind in ("json", "tags"):
        raise _NotTemplated
    return field


def geometry_4326(value: object) -> BaseGeometry:
    """Return ``value`` as a shapely geometry in EPSG:4326 lon/lat.

    Accepts a shapely geometry, a GeoJSON geometry or Feature mapping, any object with
    ``__geo_interface__``, a grid tile (anything with ``geometry_4326``, e.g.
    :class:`cube_assets.grids.Tile`) or a GeoContext (anything with ``bbox_4326``). Shapely and
    GeoJSON inputs must already be lon/lat.

    Returns:
        The non-empty shapely geometry.

    Raises:
        CatalogError: if the value is none of these, is empty, or lies outside lon/lat range.
    """
    geometry: Any
    if isinstance(value, BaseGeometry):
        geometry = value
    elif hasattr(value, "geometry_4326"):
        geometry = value.geometry_4326
    elif hasattr(value, "bbox_4326"):
        geometry = shapely.geometry.box(*value.bbox_4326)
    else:
        if hasattr(value, "__geo_interface__") and not isinstance(value, Mapping):
            value = value.__geo_interface__
        if not isinstance(value, Mapping):
            raise CatalogError(
                f"geometry must be GeoJSON, shapely, a grid tile or a GeoContext, got {type(value).__name__}"
            )
        if value.get("type") == "Feature":
            value = value.get("geometry") or {}
        try:
            geometry = shapely.geometry.shape(value)
        except Exception as exc:  # shapely raises several types for malformed GeoJSON
            raise CatalogError(f"geometry is not valid GeoJSON: {exc}") from exc
    if geometry.is_empty:
        raise CatalogError("geometry is empty")
    min_lon, min_lat, max_lon, max_lat = geometry.bounds
    if not all(math.isfinite(v) for v in geometry.bounds):
        raise CatalogError(f"geometry has non-finite bounds {geometry.bounds}")
    if min_lon < -180 or max_lon > 180 or min_lat < -90 or max_lat > 90:
        raise CatalogError(f"geometry must be lon/lat (EPSG:4326); its bounds {geometry.bounds} are out of range")
    return geometry


# ------------------------------------------------------------------------------ expressions


class Expression:
    """A boolean filter over catalog properties; combine with ``&``, ``|`` and ``~``.

    Every expression knows, from its parts, how deep it nests (``_depth``) and how many
    comparisons it holds (``_terms``), so the bounds are checked without walking the tree.
    """

    _depth: int = 1
    _terms: int = 1

    def compile(self, resolve: FieldResolver, dialect: str) -> ColumnElement[bool]:
        """Return the SQLAlchemy clause of this expression.

        ``resolve`` maps property names to :class:`SearchField`; ``dialect`` is ``"sqlite"`` or
        ``"postgresql"``.

        Returns:
            A boolean SQL expression.

        Raises:
            CatalogError: for an unknown property, an operator the property's kind does not
                support, or a value of the wrong type.
        """
        raise NotImplementedError

    def compile_negated(self, resolve: FieldResolver, dialect: str) -> ColumnElement[bool]:
        """Return the SQLAlchemy clause of ``~self``: true where this expression is not true (false or unknown).

        :class:`And`, :class:`Or` and :class:`Not` push the negation down to the comparisons
        (De Morgan), so ``~`` adds no nesting to the SQL, whose parsers bound it (SQLite's to a
        few dozen levels). Which rows match is unchanged: every node's truth depends only on
        which of its parts are true, and an unknown part is never true.

        Returns:
            A boolean SQL expression.

        Raises:
            CatalogError: as :meth:`compile`.
        """
        # SQL's NOT NULL is NULL; coalesce keeps "~(p.x > 1)" false where x is unknown, both ways.
        return not_(func.coalesce(self.compile(resolve, dialect), false()))

    def __and__(self, other: object) -> And:
        return And((self, _expression(other, "&")))

    def __rand__(self, other: object) -> And:
        return And((_expression(other, "&"), self))

    def __or__(self, other: object) -> Or:
        return Or((self, _expression(other, "|")))

    def __ror__(self, other: object) -> Or:
        return Or((_expression(other, "|"), self))

    def __invert__(self) -> Not:
        return Not(self)

    def __bool__(self) -> bool:
        raise CatalogError(
            f"{quote(self)} has no truth value: combine expressions with & | ~ (not and/or/not), and write"
            " a range as (p.x > a) & (p.x < b)"
        )


def _expression(value: object, operator: str) -> Expression:
    if not isinstance(value, Expression):
        raise CatalogError(f"{operator} combines property expressions, got {quote(value)}")
    return value


def _check_bounds(expression: Expression, operator: str) -> None:
    """Refuse ``expression`` if it nests deeper than allowed or holds too many comparisons."""
    if expression._depth > MAX_EXPRESSION_DEPTH:
        raise CatalogError(f"expression: {operator} nests expressions more than {MAX_EXPRESSION_DEPTH} deep")
    if expression._terms > MAX_SEARCH_TERMS:
        raise CatalogError(
            f"expression: {operator} combines {expression._terms} comparisons, at most {MAX_SEARCH_TERMS} allowed"
        )


def _flatten(kind: type[Expression], parts: Iterable[object], operator: str) -> tuple[Expression, ...]:
    """``parts`` with every part of the same ``kind`` replaced by its own parts (one level: those are flat already)."""
    flat: list[Expression] = []
    for part in parts:
        if isinstance(part, kind):
            flat.extend(part.parts)  # type: ignore[attr-defined]  # a part of the same kind as an And/Or node is one, and has parts
        else:
            flat.append(_expression(part, operator))
    return tuple(flat)


def _combine(expression: Expression, operator: str) -> None:
    """Flatten an ``And``/``Or`` node's parts, record its depth and terms, check the bounds."""
    parts = _flatten(type(expression), expression.parts, operator)  # type: ignore[attr-defined]  # only And and Or nodes are combined, and both have parts
    object.__setattr__(expression, "parts", parts)
    object.__setattr__(expression, "_depth", 1 + max((part._depth for part in parts), default=0))
    object.__setattr__(expression, "_terms", sum(part._terms for part in parts))
    _check_bounds(expression, operator)


@dataclass(frozen=True, eq=False)
class And(Expression):
    """All of ``parts`` (nested ``And`` parts are merged into this one)."""

    parts: tuple[Expression, ...]

    def __post_init__(self) -> None:
        _combine(self, "&")

    def compile(self, resolve: FieldResolver, dialect: str) -> ColumnElement[bool]:
        return and_(true(), *(part.compile(resolve, dialect) for part in self.parts))

    def compile_negated(self, resolve: FieldResolver, dialect: str) -> ColumnElement[bool]:
        return or_(false(), *(part.compile_negated(resolve, dialect) for part in self.parts))

    def __repr__(self) -> str:
        return "(" + " & ".join(map(repr, self.parts)) + ")"


@dataclass(frozen=True, eq=False)
class Or(Expression):
    """Any of ``parts`` (nested ``Or`` parts are merged into this one)."""

    parts: tuple[Expression, ...]

    def __post_init__(self) -> None:
        _combine(self, "|")

    def compile(self, resolve: FieldResolver, dialect: str) -> ColumnElement[bool]:
        return or_(false(), *(part.compile(resolve, dialect) for part in self.parts))

    def compile_negated(self, resolve: FieldResolver, dialect: str) -> ColumnElement[bool]:
        return and_(true(), *(part.compile_negated(resolve, dialect) for part in self.parts))

    def __repr__(self) -> str:
        return "(" + " | ".join(map(repr, self.parts)) + ")"


@dataclass(frozen=True, eq=False)
class Not(Expression):
    """Not ``part``; a comparison with an unknown (NULL) value stays false under ``~`` too."""

    part: Expression

    def __post_init__(self) -> None:
        part = _expression(self.part, "~")
        object.__setattr__(self, "_depth", part._depth + 1)
        object.__setattr__(self, "_terms", part._terms)
        _check_bounds(self, "~")

    def compile(self, resolve: FieldResolver, dialect: str) -> ColumnElement[bool]:
        return self.part.compile_negated(resolve, dialect)

    def compile_negated(self, resolve: FieldResolver, dialect: str) -> ColumnElement[bool]:
        # "not (not x)" is true exactly where x is; an unknown x matches neither way.
        return self.part.compile(resolve, dialect)

    def __repr__(self) -> str:
        return f"~{self.part!r}"


_OPERATORS: dict[str, Callable[[Any, Any], Any]] = {
    "==": lambda a, b: a == b,
    "!=": lambda a, b: a != b,
    "<": lambda a, b: a < b,
    "<=": lambda a, b: a <= b,
    ">": lambda a, b: a > b,
    ">=": lambda a, b: a >= b,
}

#: Whether ``acquired`` comparisons compile so that B-tree indexes on ``acquired`` can serve them
#: (PostgreSQL). :meth:`cube_assets.catalog.search.Search.where_clause` turns it off while compiling a search that has a
#: geometry: the planner, which cannot know that the time-span condition already implies the
#: comparison, would otherwise intersect 0003's GiST result (a few hundred rows) with a B-tree range
#: over every image of those months (measured: 10 ms more per search at a million images).
_BTREE_TIME_BOUNDS: contextvars.ContextVar[bool] = contextvars.ContextVar("btree_time_bounds", default=True)


@contextlib.contextmanager
def without_btree_time_bounds() -> Iterator[None]:
    """Within the block, ``acquired`` comparisons compile so that no B-tree index on ``acquired`` serves them.

    A search with a geometry compiles its filters inside this block on PostgreSQL (see
    ``_BTREE_TIME_BOUNDS``).

    Returns:
        A context manager; the previous setting is restored when the block ends.
    """
    token = _BTREE_TIME_BOUNDS.set(False)
    try:
        yield
    finally:
        _BTREE_TIME_BOUNDS.reset(token)


#: Bounds of the range that ``acquired OP value`` implies the image's time span overlaps.
_RANGE_BOUNDS = {"==": "[]", "<": "()", "<=": "(]", ">": "()", ">=": "[)"}


def _time_span(column_owner: Any) -> ColumnElement[Any]:
    """``tstzrange(acquired, greatest(acquired, acquired_end), '[]')``: the indexed expression of 0003."""
    return func.tstzrange(
        column_owner.acquired,
        func.greatest(column_owner.acquired, column_owner.acquired_end),
        literal("[]"),
        type_=TSTZRANGE,
    )


@dataclass(frozen=True, eq=False)
class Comparison(Expression):
    """``property OP value`` with OP one of ``== != < <= > >=``."""

    property: Property
    operator: str
    value: Any

    def __post_init__(self) -> None:
        if self.operator not in _OPERATORS:
            raise CatalogError(
                f"{self.property!r}: operator {quote(self.operator)} is not one of {' '.join(_OPERATORS)}"
            )
        _check_value(f"property {self.property._label()!r}", self.value)

    def compile(self, resolve: FieldResolver, dialect: str) -> ColumnElement[bool]:
        field = resolve(self.property._name)
        if self.property._path:
            if field.kind != "json":
                raise CatalogError(f"property {field.name!r} has no keys; {self.property!r} is not searchable")
            return _json_comparison(field, self.property._path, self.operator, self.value, dialect)
        if field.kind == "json":
            raise CatalogError(
                f"property {field.name!r} is a mapping: compare one of its keys, e.g. p.{field.name}.some_key > 1"
            )
        if self.value is None:
            if self.operator == "==":
                return _null_test(field, dialect, is_null=True)
            if self.operator == "!=":
                return _null_test(field, dialect, is_null=False)
            raise CatalogError(f"property {field.name!r}: {self.operator} None is meaningless; use == None or != None")
        if field.kind == "tags":
            if self.operator not in ("==", "!="):
                raise CatalogError(f"property {field.name!r} is a list of tags: use == (contains) or != (does not)")
            contained = _tags_contain(field, [_coerce(field, self.value)], dialect)
            return contained if self.operator == "==" else not_(contained)
        value = _coerce(field, self.value)
        clause: ColumnElement[bool] = _OPERATORS[self.operator](field.column, _bound(field, value))
        if dialect == "postgresql" and field.name == "acquired" and self.operator != "!=":
            model = field.column.class_
            lower, upper = {
                "==": (value, value),
                "<": (None, value),
                "<=": (None, value),
                ">": (value, None),
                ">=": (value, None),
            }[self.operator]
            wanted = func.tstzrange(
                None if lower is None else parameter(lower),
                None if upper is None else parameter(upper),
                literal(_RANGE_BOUNDS[self.operator]),
                type_=TSTZRANGE,
            )
            if not _BTREE_TIME_BOUNDS.get():
                # Searches with a geometry: the GiST index bounds space and time at once; wrapped,
                # the plain comparison cannot draw a B-tree on acquired into a costly BitmapAnd.
                clause = func.coalesce(clause, false())
            clause = and_(clause, _time_span(model).op("&&")(wanted))
        return clause

    def __repr__(self) -> str:
        return f"({self.property!r} {self.operator} {self.value!r})"


def _null_test(field: SearchField, dialect: str, *, is_null: bool) -> ColumnElement[bool]:
    if field.kind == "tags":
        raise CatalogError(f"property {field.name!r} is never null; test tags with == or !=")
    return field.column.is_(None) if is_null else field.column.is_not(None)


def _tags_contain(field: SearchField, values: Sequence[str], dialect: str) -> ColumnElement[bool]:
    """True where the JSON list in ``field`` contains any of ``values``."""
    if not values:
        return false()
    if dialect == "postgresql":
        document = type_coerce(field.column, JSONB)
        return or_(*(document.contains([value]) for value in values))
    entries = func.json_each(field.column).table_valued("value").alias("tag")
    return exists().select_from(entries).where(entries.c.value.in_(list(values)))


def _json_kind(value: object) -> str:
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, Real):
        _number("JSON property", value)
        return "number"
    if isinstance(value, str):
        return "string"
    raise CatalogError(f"JSON properties compare with numbers, text or booleans, got {value!r}")


def _json_value(field: SearchField, path: tuple[str, ...], kind: str, dialect: str) -> ColumnElement[Any]:
    """The JSON value at ``path`` as SQL of ``kind``, or NULL where its JSON type differs."""
    if dialect == "postgresql":
        document = type_coerce(field.column, JSONB)
        element = document.op("#>")(_pg_path(path))
        as_text = document.op("#>>")(_pg_path(path))
        json_type = func.jsonb_typeof(element)
        if kind == "number":
            return case((json_type == "number", cast(as_text, Float)), else_=None)
        if kind == "boolean":
            return case((json_type == "boolean", cast(as_text, Boolean)), else_=None)
        return case((json_type == "string", as_text), else_=None)
    json_path = "$" + "".join('."' + key.replace('"', '""') + '"' for key in path)
    json_type = func.json_type(field.column, json_path)
    extracted = func.json_extract(field.column, json_path)
    if kind == "number":
        return case((json_type.in_(["integer", "real"]), extracted), else_=None)
    if kind == "boolean":
        return case((json_type == "true", literal(1)), (json_type == "false", literal(0)), else_=None)
    return case((json_type == "text", extracted), else_=None)


def _pg_path(path: tuple[str, ...]) -> ColumnElement[Any]:
    """The JSON path as a bound ``text[]`` parameter (no quoting of keys needed)."""
    return literal(list(path), type_=ARRAY(Text))


def _json_comparison(
    field: SearchField, path: tuple[str, ...], operator: str, value: object, dialect: str
) -> ColumnElement[bool]:
    what = f"property {field.name}.{'.'.join(path)}"
    if value is None:
        if operator not in ("==", "!="):
            raise CatalogError(f"{what}: {operator} None is meaningless; use == None or != None")
        present = _json_present(field, path, dialect)
        return not_(present) if operator == "==" else present
    kind = _json_kind(value)
    if kind == "boolean" and operator not in ("==", "!="):
        raise CatalogError(f"{what}: booleans compare with == and != only")
    stored = _json_value(field, path, kind, dialect)
    if kind == "boolean" and dialect != "postgresql":
        value = 1 if value else 0
    return func.coalesce(_OPERATORS[operator](stored, value), false())


def _json_present(field: SearchField, path: tuple[str, ...], dialect: str) -> ColumnElement[bool]:
    """True where the JSON value at ``path`` exists and is not JSON null."""
    if dialect == "postgresql":
        document = type_coerce(field.column, JSONB)
        element = document.op("#>")(_pg_path(path))
        return func.coalesce(func.jsonb_typeof(element) != "null", false())
    json_path = "$" + "".join('."' + key.replace('"', '""') + '"' for key in path)
    return func.coalesce(func.json_type(field.column, json_path).not_in(["null"]), false())


@dataclass(frozen=True, eq=False)
class In(Expression):
    """``property`` equals any of ``values`` (for tags: contains any of them)."""

    property: Property
    values: tuple[Any, ...]

    def __post_init__(self) -> None:
        what = f"property {self.property._label()!r}: in_"
        for value in self.values:
            _check_value(what, value)
        object.__setattr__(self, "_terms", max(1, len(self.values)))
        _check_bounds(self, "in_")

    def compile(self, resolve: FieldResolver, dialect: str) -> ColumnElement[bool]:
        field = resolve(self.property._name)
        if self.property._path or field.kind == "json":
            return or_(false(), *(Comparison(self.property, "==", v).compile(resolve, dialect) for v in self.values))
        if any(v is None for v in self.values):
            raise CatalogError(f"property {field.name!r}: in_ takes values, not None; use | (p.x == None)")
        values = [_coerce(field, v) for v in self.values]
        if field.kind == "tags":
            return _tags_contain(field, values, dialect)
        if not values:
            return false()
        return field.column.in_([_bound(field, value) for value in values])

    def __repr__(self) -> str:
        return f"{self.property!r}.in_({list(self.values)!r})"


@dataclass(frozen=True, eq=False)
class Prefix(Expression):
    """A text property starts with ``prefix`` (case-sensitive on every backend)."""

    property: Property
    prefix: str

    def __post_init__(self) -> None:
        if isinstance(self.prefix, str):
            _check_text(f"property {self.property._label()!r}: prefix", self.prefix)

    def compile(self, resolve: FieldResolver, dialect: str) -> ColumnElement[bool]:
        field = resolve(self.property._name)
        if self.property._path or field.kind != "string":
            raise CatalogError(f"prefix needs a text property, {self.property!r} is not one")
        if not isinstance(self.prefix, str):
            raise CatalogError(f"property {field.name!r}: prefix must be text, got {quote(self.prefix)}")
        # substr, not LIKE: SQLite's LIKE ignores ASCII case and PostgreSQL's does not.
        return func.substr(field.column, 1, len(self.prefix)) == self.prefix

    def __repr__(self) -> str:
        return f"{self.property!r}.prefix({self.prefix!r})"


class Property:
    """A property of catalog objects, named by attribute access on :data:`properties`.

    Comparisons (``==``, ``!=``, ``<``, ``<=``, ``>``, ``>=``) build :class:`Expression` objects.
    Attribute or item access on a JSON property (``p.properties.efficacy``,
    ``p.properties["a key"]``) names a key inside it.
    """

    __slots__ = ("_name", "_path")
    __hash__ = None  # type: ignore[assignment]  # == builds an expression

    def __init__(self, name: str, path: tuple[str, ...] = ()) -> None:
        if not isinstance(name, str) or not PROPERTY_NAME.fullmatch(name):
            raise CatalogError(f"property name must be an ASCII identifier of at most 64 characters, got {quote(name)}")
        if len(path) > MAX_JSON_PATH:
            raise CatalogError(f"property {name!r}: a JSON path of at most {MAX_JSON_PATH} keys, got {len(path)}")
        for key in path:
            if not isinstance(key, str) or not JSON_KEY.fullmatch(key):
                raise CatalogError(
                    f"property {name!r}: JSON key must be 1 to 64 ASCII letters, digits, spaces or _ - : ."
                    f" (not starting or ending with a space), got {quote(key)}"
                )
        self._name = name
        self._path = path

    def __getattr__(self, key: str) -> Property:
        if key.startswith("_"):
            raise AttributeError(key)
        return Property(self._name, (*self._path, key))

    def __getitem__(self, key: str) -> Property:
        if not isinstance(key, str) or not key:
            raise CatalogError(f"JSON property keys are non-empty text, got {quote(key)}")
        return Property(self._name, (*self._path, key))

    def __eq__(self, value: object) -> Comparison:  # type: ignore[override]  # a property's == and != build a Comparison, as SQLAlchemy columns do
        return Comparison(self, "==", value)

    def __ne__(self, value: object) -> Comparison:  # type: ignore[override]  # a property's == and != build a Comparison, as SQLAlchemy columns do
        return Comparison(self, "!=", value)

    def __lt__(self, value: object) -> Comparison:
        return Comparison(self, "<", value)

    def __le__(self, value: object) -> Comparison:
        return Comparison(self, "<=", value)

    def __gt__(self, value: object) -> Comparison:
        return Comparison(self, ">", value)

    def __ge__(self, value: object) -> Comparison:
        return Comparison(self, ">=", value)

    def in_(self, values: Iterable[Any]) -> In:
        """Return the expression "equals any of ``values``" (for tags: contains any)."""
        if isinstance(values, str | bytes) or not isinstance(values, Iterable):
            raise CatalogError(f"{self!r}.in_ takes a list of values, got {quote(values)}")
        chosen = tuple(itertools.islice(values, MAX_SEARCH_TERMS + 1))
        if len(chosen) > MAX_SEARCH_TERMS:
            raise CatalogError(f"{self!r}.in_ takes at most {MAX_SEARCH_TERMS} values")
        return In(self, chosen)

    any_of = in_

    def prefix(self, prefix: str) -> Prefix:
        """Return the expression "this text property starts with ``prefix``"."""
        return Prefix(self, prefix)

    def between(self, low: object, high: object) -> And:
        """Return ``(self >= low) & (self <= high)``."""
        return And((Comparison(self, ">=", low), Comparison(self, "<=", high)))

    def _label(self) -> str:
        return ".".join((self._name, *self._path))

    def __repr__(self) -> str:
        return "p." + self._label()


class Properties:
    """Factory of :class:`Property` objects: ``properties.acquired``, ``properties.cloud_fraction``."""

    __slots__ = ()

    def __getattr__(self, name: str) -> Property:
        if name.startswith("_"):
            raise AttributeError(name)
        return Property(name)

    def __getitem__(self, name: str) -> Property:
        return Property(name)


#: The property factory; by convention imported as ``p``.
properties = Properties()
p = properties

__all__ = [
    "INT64_RANGE",
    "JSON_KEY",
    "MAX_EXPRESSION_DEPTH",
    "MAX_JSON_PATH",
    "MAX_LIMIT",
    "MAX_SEARCH_TERMS",
    "MAX_TEXT_LENGTH",
    "PROPERTY_NAME",
    "And",
    "Comparison",
    "Expression",
    "In",
    "Not",
    "Or",
    "Prefix",
    "Properties",
    "Property",
    "SearchField",
    "geometry_4326",
    "p",
    "parameter",
    "parse_date",
    "parse_datetime",
    "properties",
    "quote",
    "recorded_parameters",
    "template_parameters",
    "without_btree_time_bounds",
]
