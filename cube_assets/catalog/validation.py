"""The checks of catalog fields, shared by the records and the client's attributes.

The records are :mod:`cube_assets.catalog.repository`'s. Each check takes ``what``, the object
and the field (``"band 'B04': resolution"``), and the value; it returns the value in its stored
form or raises ``CatalogError`` whose message starts with ``what``. Checks of one value only live
here; rules across fields (an end after its start, a wavelength inside its range) belong to the
record of the entity.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from numbers import Real
from typing import Any

from cube_assets.catalog.models import BAND_DATA_TYPES, MAX_PROPERTIES, MAX_TAGS
from cube_assets.errors import CatalogError


def check_identifier(what: str, value: object) -> str:
    """Return ``value`` if it is a string that is not empty or blank.

    Raises:
        CatalogError: naming ``what``, for anything else.
    """
    if not isinstance(value, str) or not value.strip():
        raise CatalogError(f"{what} must be a non-empty string, got {value!r}")
    return value


def check_text(what: str, value: object) -> str:
    """Return ``value`` if it is a string (empty allowed).

    Raises:
        CatalogError: naming ``what``, for anything else.
    """
    if not isinstance(value, str):
        raise CatalogError(f"{what} must be text, got {value!r}")
    return value


def check_number(
    what: str, value: object, *, minimum: float | None = None, maximum: float | None = None, positive: bool = False
) -> float:
    """Return ``value`` as a finite float, > 0 with ``positive``, within ``[minimum, maximum]`` when given.

    Raises:
        CatalogError: naming ``what``, for booleans, non-numbers, infinities, NaN and values out of range.
    """
    if isinstance(value, bool) or not isinstance(value, Real) or not math.isfinite(float(value)):
        raise CatalogError(f"{what} must be a finite number, got {value!r}")
    number = float(value)
    if positive and number <= 0:
        raise CatalogError(f"{what} must be > 0, got {value!r}")
    if (minimum is not None and number < minimum) or (maximum is not None and number > maximum):
        raise CatalogError(f"{what} must be in [{minimum}, {maximum}], got {value!r}")
    return number


def check_integer(what: str, value: object, minimum: int) -> int:
    """Return ``value`` if it is an integer (not a boolean) of at least ``minimum``.

    Raises:
        CatalogError: naming ``what``, for anything else.
    """
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise CatalogError(f"{what} must be an integer >= {minimum}, got {value!r}")
    return value


def check_range(what: str, value: object) -> tuple[float, float]:
    """Return ``(min, max)`` as two finite floats with ``min <= max``.

    Raises:
        CatalogError: naming ``what``, for anything but a pair of finite numbers in order.
    """
    if isinstance(value, str | bytes) or not isinstance(value, Sequence) or len(value) != 2:
        raise CatalogError(f"{what} must be (min, max), got {value!r}")
    low, high = (check_number(what, v) for v in value)
    if low > high:
        raise CatalogError(f"{what}: minimum {low} is above maximum {high}")
    return (low, high)


def check_tag_list(what: str, tags: list[str]) -> list[str]:
    """Return ``tags`` if it holds at most :data:`~cube_assets.catalog.models.MAX_TAGS` distinct non-empty strings.

    Raises:
        CatalogError: naming ``what``, for too many entries, another entry or duplicates.
    """
    if len(tags) > MAX_TAGS:
        raise CatalogError(f"{what} has {len(tags)} entries, at most {MAX_TAGS} allowed")
    for tag in tags:
        if not isinstance(tag, str) or not tag.strip():
            raise CatalogError(f"{what} must hold non-empty strings, got {tag!r}")
    duplicates = sorted({tag for tag in tags if tags.count(tag) > 1})
    if duplicates:
        raise CatalogError(f"{what} has duplicates: {duplicates}")
    return tags


def json_copy(what: str, value: object) -> Any:
    """Return a JSON round-trip copy of ``value`` (tuples become lists, detached from the caller).

    Raises:
        CatalogError: naming ``what``, if it is not JSON-serializable (NaN and infinities included).
    """
    try:
        return json.loads(json.dumps(value, allow_nan=False))
    except (TypeError, ValueError) as exc:
        raise CatalogError(f"{what} is not JSON-serializable: {exc}") from exc


def check_properties(what: str, value: object) -> dict[str, Any]:
    """Return a JSON copy of the mapping ``value``, of at most ``MAX_PROPERTIES`` non-empty string keys.

    The limit is :data:`~cube_assets.catalog.models.MAX_PROPERTIES`.

    Raises:
        CatalogError: naming ``what``, for another type, too many keys, another key or a value JSON cannot hold.
    """
    if not isinstance(value, Mapping):
        raise CatalogError(f"{what} must be a mapping, got {type(value).__name__}")
    if len(value) > MAX_PROPERTIES:
        raise CatalogError(f"{what} has {len(value)} keys, at most {MAX_PROPERTIES} allowed")
    for key in value:
        if not isinstance(key, str) or not key:
            raise CatalogError(f"{what} keys must be non-empty strings, got {key!r}")
    properties: dict[str, Any] = json_copy(what, dict(value))
    return properties


def check_data_type(what: str, value: object) -> str:
    """Return ``value`` if it is one of :data:`~cube_assets.catalog.models.BAND_DATA_TYPES`.

    Raises:
        CatalogError: naming ``what``, for anything else.
    """
    if value not in BAND_DATA_TYPES:
        raise CatalogError(f"{what} must be one of {BAND_DATA_TYPES}, got {value!r}")
    return value


def check_class_labels(what: str, value: object) -> dict[str, str]:
    """Return ``value`` as ``{pixel value as text: label}``.

    Raises:
        CatalogError: naming ``what``, if it is not a mapping to strings.
    """
    if not isinstance(value, Mapping) or not all(isinstance(label, str) for label in value.values()):
        raise CatalogError(f"{what} must map pixel values to label strings, got {value!r}")
    return {str(key): label for key, label in value.items()}


def check_colormap(what: str, value: object) -> dict[str, list[int]]:
    """Return ``value`` as ``{pixel value as text: [r, g, b(, a)]}``, each component an integer in [0, 255].

    Raises:
        CatalogError: naming ``what`` (and the entry), if it is not such a mapping.
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


__all__ = [
    "check_class_labels",
    "check_colormap",
    "check_data_type",
    "check_identifier",
    "check_integer",
    "check_number",
    "check_properties",
    "check_range",
    "check_tag_list",
    "check_text",
    "json_copy",
]
