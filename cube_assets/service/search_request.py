"""One STAC item search, parsed once from GET or POST parameters, and the catalog search it becomes.

:func:`parse_search` checks every parameter where it is first seen and raises
:class:`InvalidParameter` naming it; :func:`catalog_search` turns the parsed
:class:`SearchParameters` into the client's ``Image.search()`` with the same filters, geometry
and order a Python user would write, so the API and ``Catalog(...).images`` give the same images
in the same order.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import shapely.geometry
from shapely.geometry.base import BaseGeometry

from cube_assets.catalog.expressions import Expression, p
from cube_assets.client.connection import Catalog
from cube_assets.client.image import Image
from cube_assets.client.search import ObjectSearch
from cube_assets.errors import CatalogError
from cube_assets.service.cql2_filter import ParsedFilter, parse_filter, parse_query, time_overlap
from cube_assets.service.paging import SortKey, after_key, decode_token
from cube_assets.service.queryables import InvalidParameter, queryable

#: Most ids or collections one search may name.
MAX_LISTED = 1000


@dataclass(frozen=True)
class FieldsSelection:
    """The fields extension's ``include`` and ``exclude`` (dotted paths such as ``properties.datetime``)."""

    include: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()


@dataclass(frozen=True)
class SearchParameters:
    """A parsed item search: every value checked, in the catalog's terms."""

    limit: int
    collections: tuple[str, ...] | None = None
    ids: tuple[str, ...] | None = None
    geometry: BaseGeometry | None = None
    interval: tuple[dt.datetime | None, dt.datetime | None] | None = None
    order: SortKey = field(default_factory=lambda: SortKey("acquired", True, False))
    sorted_by_request: bool = False
    conditions: tuple[Expression, ...] = ()
    fields: FieldsSelection = field(default_factory=FieldsSelection)
    token: str | None = None


# ------------------------------------------------------------------------------ single parameters


def parse_limit(value: Any, default: int, maximum: int) -> int:
    """Return the page size: ``value`` (default ``default``), a positive whole number, at most ``maximum``.

    A larger value gives ``maximum``, as STAC API Item Search requires ("the server must return
    the maximum possible number of items, rather than responding with an error").

    Raises:
        InvalidParameter: naming ``limit`` for anything but a positive whole number of at most 64 bits.
    """
    if value is None or value == "":
        return default
    try:
        number = int(value) if not isinstance(value, bool) and float(value) == int(float(value)) else None
    except (TypeError, ValueError, OverflowError):
        number = None
    if number is None or not 0 < number < 2**63:
        raise InvalidParameter(
            "limit", f"must be a positive whole number (at most {maximum} are returned), got {str(value)[:50]!r}"
        )
    return min(number, maximum)


def parse_bbox(value: Any) -> BaseGeometry | None:
    """Return the ``bbox`` (4 or 6 numbers, as a list or comma-separated text) as a lon/lat box.

    Raises:
        InvalidParameter: naming ``bbox``.
    """
    if value is None or value == "" or value == []:
        return None
    try:
        numbers = [float(v) for v in (value.split(",") if isinstance(value, str) else value)]
    except (TypeError, ValueError):
        raise InvalidParameter("bbox", f"expected 4 or 6 numbers, got {str(value)[:100]!r}") from None
    if len(numbers) == 6:
        numbers = [numbers[0], numbers[1], numbers[3], numbers[4]]
    if len(numbers) != 4 or not all(math.isfinite(v) for v in numbers):
        raise InvalidParameter("bbox", f"expected 4 or 6 finite numbers, got {str(value)[:100]!r}")
    west, south, east, north = numbers
    if not (-90 <= south <= north <= 90) or not (-180 <= west <= 180 and -180 <= east <= 180):
        raise InvalidParameter("bbox", "expected west,south,east,north in degrees with south ≤ north")
    if west > east:
        raise InvalidParameter("bbox", "boxes crossing the antimeridian (west > east) are not supported")
    return shapely.geometry.box(west, south, east, north)


def parse_intersects(value: Any) -> BaseGeometry | None:
    """Return the ``intersects`` GeoJSON geometry (a dict or its JSON text) as shapely.

    Raises:
        InvalidParameter: naming ``intersects``.
    """
    if value is None or value == "":
        return None
    try:
        document = json.loads(value) if isinstance(value, str) else value
        if isinstance(document, Mapping) and document.get("type") == "Feature":
            document = document.get("geometry")
        shape = shapely.geometry.shape(document)
    except Exception:  # json and shapely raise several types for malformed input
        raise InvalidParameter("intersects", "expected a GeoJSON geometry") from None
    if shape.is_empty or not shape.is_valid:
        raise InvalidParameter("intersects", "the geometry is empty or invalid")
    min_lon, min_lat, max_lon, max_lat = shape.bounds
    if min_lon < -180 or max_lon > 180 or min_lat < -90 or max_lat > 90:
        raise InvalidParameter("intersects", "coordinates must be longitude and latitude in degrees")
    return shape


#: An RFC 3339 date-time: date, ``T``, time with optional fraction, ``Z`` or a ``±hh:mm`` offset.
RFC3339 = re.compile(r"(\d{4})-(\d{2})-(\d{2})[Tt ](\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,9}))?([Zz]|[+-]\d{2}:\d{2})")


def _instant(text: str) -> dt.datetime:
    """An RFC 3339 date-time as an aware UTC datetime (fractions beyond microseconds are cut)."""
    match = RFC3339.fullmatch(text)
    if match is None:
        raise ValueError("not RFC 3339")
    year, month, day, hour, minute, second = (int(match[i]) for i in range(1, 7))
    micro = int((match[7] or "0").ljust(6, "0")[:6])
    zone = dt.UTC if match[8] in ("Z", "z") else dt.datetime.strptime(match[8].replace(":", ""), "%z").tzinfo
    leap = second == 60
    value = dt.datetime(year, month, day, hour, minute, 59 if leap else second, micro, tzinfo=zone)
    return (value + dt.timedelta(seconds=1 if leap else 0)).astimezone(dt.UTC)


def parse_datetime(value: Any) -> tuple[dt.datetime | None, dt.datetime | None] | None:
    """Return the ``datetime`` parameter (an RFC 3339 instant or a closed or open interval ``a/b``, ``../b``).

    Returns:
        ``(start, end)`` with None for an open end (an instant is ``(t, t)``), or None when absent.

    Raises:
        InvalidParameter: naming ``datetime``.
    """
    if value is None or value == "":
        return None
    if not isinstance(value, str) or len(value) > 100:
        raise InvalidParameter("datetime", "expected an RFC 3339 date-time or interval")
    parts = value.split("/")
    try:
        if len(parts) == 1:
            instant = _instant(parts[0])
            return instant, instant
        if len(parts) != 2:
            raise ValueError("more than one '/'")
        start, end = (None if part in ("", "..") else _instant(part) for part in parts)
    except ValueError:
        raise InvalidParameter(
            "datetime", f"expected an RFC 3339 date-time with a zone, or an interval a/b, ../b, a/..; got {value!r}"
        ) from None
    if start is None and end is None:
        raise InvalidParameter("datetime", "an interval needs at least one bound")
    if start is not None and end is not None and start > end:
        raise InvalidParameter("datetime", f"the interval starts after it ends: {value!r}")
    return start, end


def parse_sortby(value: Any) -> SortKey | None:
    """Return the ``sortby`` (``["-datetime"]``, ``"+eo:cloud_cover"`` or ``[{"field": ..., "direction": ...}]``).

    One property at most (ties are broken by id).

    Raises:
        InvalidParameter: naming ``sortby``.
    """
    if not value:
        return None
    entries = value.split(",") if isinstance(value, str) else list(value)
    if len(entries) > 1:
        raise InvalidParameter("sortby", "one sort property at most (ties are ordered by id)")
    entry = entries[0]
    if isinstance(entry, str):
        text = entry.strip()
        ascending = not text.startswith("-")
        name = text.lstrip("+-")
    else:
        name = str(getattr(entry, "field", None) or (entry.get("field") if isinstance(entry, Mapping) else ""))
        direction = getattr(entry, "direction", None) or (entry.get("direction") if isinstance(entry, Mapping) else "")
        ascending = str(getattr(direction, "value", direction) or "asc").lower() != "desc"
    target = queryable(name, "sortby")
    nullable = Image._search_field(target.property_name).nullable
    return SortKey(target.property_name, ascending, nullable)


def _listed(value: Any, parameter: str) -> tuple[str, ...] | None:
    if value is None or value == "" or value == []:
        return None
    entries = value.split(",") if isinstance(value, str) else list(value)
    if len(entries) > MAX_LISTED or not all(isinstance(e, str) and e for e in entries):
        raise InvalidParameter(parameter, f"expected at most {MAX_LISTED} non-empty ids")
    return tuple(entries)


def parse_fields(value: Any) -> FieldsSelection:
    """Return the fields extension's selection: GET ``"a,-b"`` / a list, or POST ``{include, exclude}``.

    Raises:
        InvalidParameter: naming ``fields``.
    """
    if not value:
        return FieldsSelection()
    include = getattr(value, "include", None)
    exclude = getattr(value, "exclude", None)
    if isinstance(value, Mapping):
        include, exclude = value.get("include"), value.get("exclude")
    if include is not None or exclude is not None:
        return FieldsSelection(tuple(sorted(include or ())), tuple(sorted(exclude or ())))
    entries = value.split(",") if isinstance(value, str) else list(value)
    if not all(isinstance(e, str) for e in entries):
        raise InvalidParameter("fields", "expected field names")
    included = tuple(e.lstrip("+") for e in entries if e and not e.startswith("-"))
    excluded = tuple(e[1:] for e in entries if e.startswith("-"))
    return FieldsSelection(included, excluded)


# ------------------------------------------------------------------------------ the whole search


def parse_search(
    values: Mapping[str, Any], *, default_limit: int, max_limit: int, collection_id: str | None = None
) -> SearchParameters:
    """Return the parsed search of ``values`` (GET query or POST body fields, by STAC name).

    ``collection_id`` (``/collections/{id}/items``) restricts it to one collection.

    Raises:
        InvalidParameter: naming the first malformed parameter.
    """
    bbox = parse_bbox(values.get("bbox"))
    intersects = parse_intersects(values.get("intersects"))
    if bbox is not None and intersects is not None:
        raise InvalidParameter("intersects", "bbox and intersects are mutually exclusive")
    parsed_filter: ParsedFilter = parse_filter(values.get("filter"), values.get("filter-lang"))
    geometry = bbox if bbox is not None else intersects
    if parsed_filter.geometry is not None:
        if geometry is not None:
            raise InvalidParameter("filter", "s_intersects cannot be combined with bbox or intersects")
        geometry = parsed_filter.geometry
    conditions = [c for c in (parse_query(values.get("query")), parsed_filter.expression) if c is not None]
    collections = (collection_id,) if collection_id is not None else _listed(values.get("collections"), "collections")
    order = parse_sortby(values.get("sortby"))
    return SearchParameters(
        limit=parse_limit(values.get("limit"), default_limit, max_limit),
        collections=collections,
        ids=_listed(values.get("ids"), "ids"),
        geometry=geometry,
        interval=parse_datetime(values.get("datetime")),
        order=order or SortKey("acquired", True, False),
        sorted_by_request=order is not None,
        conditions=tuple(conditions),
        fields=parse_fields(values.get("fields")),
        token=values.get("token") or None,
    )


def catalog_search(catalog: Catalog, search: SearchParameters) -> ObjectSearch[Image]:
    """Return the catalog search of ``search`` (the page after its token, without the limit).

    Returns:
        The client's image search, ordered by the search's sort key, then id.

    Raises:
        InvalidParameter: naming ``filter`` or ``query`` when the catalog refuses a condition, or ``token``.
    """
    images: ObjectSearch[Image] = catalog.images.search()
    if search.geometry is not None:  # first: the filters then compile once, in the mode a geometry asks for
        try:
            images = images.intersects(search.geometry)
        except CatalogError as exc:
            raise InvalidParameter("intersects", str(exc)) from None
    try:
        if search.collections is not None:
            images = images.filter(p.product_id.in_(search.collections))
        if search.ids is not None:
            images = images.filter(p.id.in_(search.ids))
        if search.interval is not None:
            images = images.filter(time_overlap(*search.interval))
    except CatalogError as exc:
        raise InvalidParameter("datetime" if search.interval else "ids", str(exc)) from None
    for condition in search.conditions:
        try:
            images = images.filter(condition)
        except CatalogError as exc:
            raise InvalidParameter("filter", str(exc)) from None
    if search.token is not None:
        images = images.filter(after_key(search.order, decode_token(search.token, search.order)))
    return images.sort(search.order.property_name, ascending=search.order.ascending)


__all__ = [
    "MAX_LISTED",
    "FieldsSelection",
    "SearchParameters",
    "catalog_search",
    "parse_bbox",
    "parse_datetime",
    "parse_fields",
    "parse_intersects",
    "parse_limit",
    "parse_search",
    "parse_sortby",
]
