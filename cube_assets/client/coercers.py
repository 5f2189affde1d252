"""The coercers of catalog object attributes: each checks and normalizes one assigned value.

A coercer is ``coerce(what, value) -> value``: it returns the value in its stored form or raises
``CatalogError`` naming ``what`` (the object and attribute). :class:`~cube_assets.client.attributes.Attribute`
declarations name them; rules across attributes are checked when an object is saved, by the
catalog's records (:mod:`cube_assets.catalog.repository`).
"""

from __future__ import annotations

import datetime as dt
import json
import math
from collections.abc import Iterable, Mapping, Sequence
from numbers import Real
from typing import Any

import shapely.validation
from shapely.geometry.base import BaseGeometry

from cube_assets.catalog.expressions import geometry_4326, parse_date, parse_datetime
from cube_assets.catalog.models import BAND_DATA_TYPES, MAX_PROPERTIES, MAX_TAGS
from cube_assets.client.attributes import Coerce, File
from cube_assets.errors import CatalogError


def optional(coerce: Coerce) -> Coerce:
    """Return a coercer that passes None through and applies ``coerce`` to anything else."""
    def coerce_optional(what: str, value: Any) -> Any:
        return None if value is None else coerce(what, value)

    return coerce_optional


def text(what: str, value: Any) -> str:
    """Return ``value`` if it is text.

    Raises:
        CatalogError: naming ``what``, for anything else.
    """
    if not isinstance(value, str):
        raise CatalogError(f"{what} must be text, got {value!r}")
    return value


def identifier(what: str, value: Any) -> str:
    """Return ``value`` if it is a non-empty (not only blank) string.

    Raises:
        CatalogError: naming ``what``, for anything else.
    """
    if not isinstance(value, str) or not value.strip():
        raise CatalogError(f"{what} must be a non-empty string, got {value!r}")
    return value


def number(minimum: float | None = None, maximum: float | None = None, positive: bool = False) -> Coerce:
    """Return a coercer to a finite float, > 0 with ``positive``, within ``[minimum, maximum]`` when given.

    The coercer raises CatalogError naming ``what`` for booleans, non-numbers, infinities, NaN
    and values out of range.
    """
    def coerce_number(what: str, value: Any) -> float:
        if isinstance(value, bool) or not isinstance(value, Real) or not math.isfinite(float(value)):
            raise CatalogError(f"{what} must be a finite number, got {value!r}")
        number = float(value)
        if positive and number <= 0:
            raise CatalogError(f"{what} must be > 0, got {value!r}")
        if (minimum is not None and number < minimum) or (maximum is not None and number > maximum):
            raise CatalogError(f"{what} must be in [{minimum}, {maximum}], got {value!r}")
        return number

    return coerce_number


def integer(minimum: int) -> Coerce:
    """Return a coercer of integers (not booleans) of at least ``minimum``; it raises CatalogError naming ``what`` otherwise."""
    def coerce_integer(what: str, value: Any) -> int:
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            raise CatalogError(f"{what} must be an integer >= {minimum}, got {value!r}")
        return value

    return coerce_integer


def boolean(what: str, value: Any) -> bool:
    """Return ``value`` if it is True or False.

    Raises:
        CatalogError: naming ``what``, for anything else.
    """
    if not isinstance(value, bool):
        raise CatalogError(f"{what} must be True or False, got {value!r}")
    return value


def aware_datetime(what: str, value: Any) -> dt.datetime:
    """Return ``value`` as an aware UTC datetime (see :func:`cube_assets.catalog.expressions.parse_datetime`).

    Raises:
        CatalogError: naming ``what``, for a naive datetime, unparseable text or another type.
    """
    return parse_datetime(what, value)


def date(what: str, value: Any) -> dt.date:
    """Return ``value`` as a date (see :func:`cube_assets.catalog.expressions.parse_date`).

    Raises:
        CatalogError: naming ``what``, for unparseable text or another type.
    """
    return parse_date(what, value)


def value_range(what: str, value: Any) -> tuple[float, float]:
    """Return ``(min, max)`` as two finite floats with ``min <= max``.

    Raises:
        CatalogError: naming ``what``, for anything else.
    """
    if isinstance(value, str | bytes) or not isinstance(value, Sequence) or len(value) != 2:
        raise CatalogError(f"{what} must be (min, max), got {value!r}")
    low, high = (number()(what, v) for v in value)
    if low > high:
        raise CatalogError(f"{what}: minimum {low} is above maximum {high}")
    return (low, high)


def tags(what: str, value: Any) -> list[str]:
    """Return ``value`` as a list of at most ``MAX_TAGS`` distinct non-empty strings.

    Raises:
        CatalogError: naming ``what``, for anything else.
    """
    if isinstance(value, str | bytes) or not isinstance(value, Iterable):
        raise CatalogError(f"{what} must be a list of strings, got {value!r}")
    tags = list(value)
    if len(tags) > MAX_TAGS:
        raise CatalogError(f"{what} has {len(tags)} entries, at most {MAX_TAGS} allowed")
    for tag in tags:
        if not isinstance(tag, str) or not tag.strip():
            raise CatalogError(f"{what} must hold non-empty strings, got {tag!r}")
    duplicates = sorted({tag for tag in tags if tags.count(tag) > 1})
    if duplicates:
        raise CatalogError(f"{what} has duplicates: {duplicates}")
    return tags


def json_copy(what: str, value: Any) -> Any:
    """Return a copy of ``value`` made through JSON, so that it holds only JSON types.

    Raises:
        CatalogError: naming ``what``, if it is not JSON-serializable (NaN and infinities included).
    """
    try:
        return json.loads(json.dumps(value, allow_nan=False))
    except (TypeError, ValueError) as exc:
        raise CatalogError(f"{what} is not JSON-serializable: {exc}") from exc


def properties(what: str, value: Any) -> dict[str, Any]:
    """Return a JSON copy of the mapping ``value``, of at most ``MAX_PROPERTIES`` non-empty string keys.

    Raises:
        CatalogError: naming ``what``, for anything else.
    """
    if not isinstance(value, Mapping):
        raise CatalogError(f"{what} must be a mapping, got {type(value).__name__}")
    if len(value) > MAX_PROPERTIES:
        raise CatalogError(f"{what} has {len(value)} keys, at most {MAX_PROPERTIES} allowed")
    for key in value:
        if not isinstance(key, str) or not key:
            raise CatalogError(f"{what} keys must be non-empty strings, got {key!r}")
    return json_copy(what, dict(value))


def geometry(what: str, value: Any) -> BaseGeometry:
    """Return ``value`` (GeoJSON, shapely, a tile or a GeoContext) as a valid lon/lat Polygon or MultiPolygon.

    Raises:
        CatalogError: naming ``what``, for another geometry type or an invalid polygon.
    """
    try:
        shape = geometry_4326(value)
    except CatalogError as exc:
        raise CatalogError(f"{what}: {exc}") from None
    if shape.geom_type not in ("Polygon", "MultiPolygon"):
        raise CatalogError(f"{what} must be a Polygon or MultiPolygon, got {shape.geom_type}")
    if not shape.is_valid:
        raise CatalogError(f"{what} is not a valid polygon: {shapely.validation.explain_validity(shape)}")
    return shape


def geotransform(what: str, value: Any) -> tuple[float, ...]:
    """Return ``value`` as the 6 finite floats of a GDAL geotransform.

    Raises:
        CatalogError: naming ``what``, for anything else.
    """
    if isinstance(value, str | bytes) or not isinstance(value, Sequence) or len(value) != 6:
        raise CatalogError(f"{what} must be the 6 numbers of a GDAL geotransform, got {value!r}")
    return tuple(number()(what, v) for v in value)


def data_type(what: str, value: Any) -> str:
    """Return ``value`` if it is one of the catalog's band data types (``BAND_DATA_TYPES``).

    Raises:
        CatalogError: naming ``what``, for anything else.
    """
    if value not in BAND_DATA_TYPES:
        raise CatalogError(f"{what} must be one of {BAND_DATA_TYPES}, got {value!r}")
    return value


def class_labels(what: str, value: Any) -> dict[str, str]:
    """Return ``value`` as a mapping of pixel values (as text) to label strings.

    Raises:
        CatalogError: naming ``what``, for anything else.
    """
    if not isinstance(value, Mapping) or not all(isinstance(label, str) for label in value.values()):
        raise CatalogError(f"{what} must map pixel values to label strings, got {value!r}")
    return {str(key): label for key, label in value.items()}


def colormap(what: str, value: Any) -> dict[str, list[int]]:
    """Return ``value`` as a mapping of pixel values (as text) to 3 or 4 integers in [0, 255].

    Raises:
        CatalogError: naming ``what`` and the entry, for anything else.
    """
    if not isinstance(value, Mapping):
        raise CatalogError(f"{what} must map pixel values to [r, g, b(, a)], got {value!r}")
    colors = {}
    for key, color in value.items():
        if (
            isinstance(color, str | bytes)
            or not isinstance(color, Sequence)
            or len(color) not in (3, 4)
            or not all(isinstance(c, int) and not isinstance(c, bool) and 0 <= c <= 255 for c in color)
        ):
            raise CatalogError(f"{what} entry {key!r} must be 3 or 4 integers in [0, 255], got {color!r}")
        colors[str(key)] = list(color)
    return colors


def files(what: str, value: Any) -> dict[str, File]:
    """Return ``value`` as ``{band: File}``; an href or ``{'href', 'size_bytes'}`` becomes a File.

    Raises:
        CatalogError: naming ``what`` and the band, for a bad band name, href or size.
    """
    if not isinstance(value, Mapping):
        raise CatalogError(f"{what} must map band names to files, got {type(value).__name__}")
    files: dict[str, File] = {}
    for band, file in value.items():
        if not isinstance(band, str) or not band.strip():
            raise CatalogError(f"{what}: band names must be non-empty strings, got {band!r}")
        if isinstance(file, str):
            file = File(file)
        elif isinstance(file, Mapping):
            file = File(file.get("href"), file.get("size_bytes"))  # type: ignore[arg-type]
        if not isinstance(file, File):
            raise CatalogError(f"{what}: band {band!r} must be a File, an href or {{'href', 'size_bytes'}}, got {file!r}")
        if not isinstance(file.href, str) or not file.href.strip():
            raise CatalogError(f"{what}: band {band!r} href must be a non-empty string, got {file.href!r}")
        size = file.size_bytes
        if size is not None and (isinstance(size, bool) or not isinstance(size, int) or size < 0):
            raise CatalogError(f"{what}: band {band!r} size_bytes must be an integer >= 0, got {size!r}")
        files[band] = file
    return files


__all__ = [
    "aware_datetime",
    "boolean",
    "class_labels",
    "colormap",
    "data_type",
    "date",
    "files",
    "geometry",
    "geotransform",
    "identifier",
    "integer",
    "json_copy",
    "number",
    "optional",
    "properties",
    "tags",
    "text",
    "value_range",
]
