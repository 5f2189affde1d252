"""The coercers of catalog object attributes: each checks and normalizes one assigned value.

A coercer is ``coerce(what, value) -> value``: it returns the value in its stored form or raises
``CatalogError`` naming ``what`` (the object and attribute). :class:`~cube_assets.client.attributes.Attribute`
declarations name them. The checks of values the catalog's records also hold are the catalog's own
(:mod:`cube_assets.catalog.validation`), so an attribute and its record field refuse the same
values with the same message; rules across attributes are checked when an object is saved, by
the records (:mod:`cube_assets.catalog.repository`).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import shapely.validation
from shapely.geometry.base import BaseGeometry

from cube_assets.catalog.expressions import geometry_4326, parse_date, parse_datetime
from cube_assets.catalog.validation import (
    check_class_labels,
    check_colormap,
    check_data_type,
    check_identifier,
    check_integer,
    check_number,
    check_properties,
    check_range,
    check_tag_list,
    check_text,
)
from cube_assets.client.attributes import Coerce, File
from cube_assets.client.enums import Resolution, catalog_data_type
from cube_assets.errors import CatalogError


def optional(coerce: Coerce) -> Coerce:
    """Return a coercer that passes None through and applies ``coerce`` to anything else."""

    def coerce_optional(what: str, value: Any) -> Any:
        return None if value is None else coerce(what, value)

    return coerce_optional


def text(what: str, value: Any) -> str:
    """Return ``value`` if it is text (see :func:`cube_assets.catalog.validation.check_text`).

    Raises:
        CatalogError: naming ``what``, for anything else.
    """
    return check_text(what, value)


def identifier(what: str, value: Any) -> str:
    """Return ``value`` if it is a non-empty (not only blank) string.

    See :func:`~cube_assets.catalog.validation.check_identifier`.

    Raises:
        CatalogError: naming ``what``, for anything else.
    """
    return check_identifier(what, value)


def number(minimum: float | None = None, maximum: float | None = None, positive: bool = False) -> Coerce:
    """Return a coercer to a finite float, > 0 with ``positive``, within ``[minimum, maximum]`` when given.

    The coercer raises CatalogError naming ``what`` for booleans, non-numbers, infinities, NaN
    and values out of range (:func:`cube_assets.catalog.validation.check_number`).
    """

    def coerce_number(what: str, value: Any) -> float:
        return check_number(what, value, minimum=minimum, maximum=maximum, positive=positive)

    return coerce_number


def integer(minimum: int) -> Coerce:
    """Return a coercer of integers (not booleans) of at least ``minimum``.

    The coercer raises CatalogError naming ``what`` otherwise.
    """

    def coerce_integer(what: str, value: Any) -> int:
        return check_integer(what, value, minimum)

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

    See :func:`~cube_assets.catalog.validation.check_range`.

    Raises:
        CatalogError: naming ``what``, for anything else.
    """
    return check_range(what, value)


def tags(what: str, value: Any) -> list[str]:
    """Return the iterable ``value`` as a list of at most ``MAX_TAGS`` distinct non-empty strings.

    Raises:
        CatalogError: naming ``what``, for text or a non-iterable, and as
            :func:`cube_assets.catalog.validation.check_tag_list`.
    """
    if isinstance(value, str | bytes) or not isinstance(value, Iterable):
        raise CatalogError(f"{what} must be a list of strings, got {value!r}")
    return check_tag_list(what, list(value))


def properties(what: str, value: Any) -> dict[str, Any]:
    """Return a JSON copy of the mapping ``value`` (:func:`~cube_assets.catalog.validation.check_properties`).

    Raises:
        CatalogError: naming ``what``, for another type, too many or bad keys, or a value JSON cannot hold.
    """
    return check_properties(what, value)


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
    """Return ``value`` if it is one of the catalog's band data types.

    See :func:`~cube_assets.catalog.validation.check_data_type`.

    Raises:
        CatalogError: naming ``what``, for anything else.
    """
    return check_data_type(what, catalog_data_type(value))


def class_labels(what: str, value: Any) -> dict[str, str]:
    """Return ``value`` as a mapping of pixel values (as text) to labels.

    See :func:`~cube_assets.catalog.validation.check_class_labels`.

    Raises:
        CatalogError: naming ``what``, for anything else.
    """
    return check_class_labels(what, value)


def colormap(what: str, value: Any) -> dict[str, list[int]]:
    """Return ``value`` as a mapping of pixel values (as text) to colours.

    See :func:`~cube_assets.catalog.validation.check_colormap`.

    Raises:
        CatalogError: naming ``what`` and the entry, for anything else.
    """
    return check_colormap(what, value)


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
            file = File(file.get("href"), file.get("size_bytes"))  # type: ignore[arg-type]  # File checks the href and size itself and names them
        if not isinstance(file, File):
            raise CatalogError(
                f"{what}: band {band!r} must be a File, an href or {{'href', 'size_bytes'}}, got {file!r}"
            )
        if not isinstance(file.href, str) or not file.href.strip():
            raise CatalogError(f"{what}: band {band!r} href must be a non-empty string, got {file.href!r}")
        size = file.size_bytes
        if size is not None and (isinstance(size, bool) or not isinstance(size, int) or size < 0):
            raise CatalogError(f"{what}: band {band!r} size_bytes must be an integer >= 0, got {size!r}")
        files[band] = file
    return files


def resolution(what: str, value: Any) -> Resolution:
    """Return ``value`` as a :class:`~cube_assets.client.enums.Resolution` (a plain number is in metres).

    Raises:
        CatalogError: naming ``what``, for a value that is not a positive number.
    """
    if isinstance(value, Resolution):
        return value
    return Resolution(check_number(what, value, positive=True))


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
    "number",
    "optional",
    "properties",
    "resolution",
    "tags",
    "text",
    "value_range",
]
