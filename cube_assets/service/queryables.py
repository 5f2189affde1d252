"""The STAC properties a search may filter and sort on, each mapped to the catalog property that holds it.

``eo:cloud_cover`` is a percentage in STAC and a fraction in the catalog; every other queryable
holds the catalog's value as it is. Only columns the catalog indexes or stores as such are
queryable: a filter names one of :data:`QUERYABLES` or is refused (400, naming the property).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from cube_assets.catalog.expressions import Property, p
from cube_assets.catalog.stac import PREFIX


class InvalidParameter(ValueError):
    """A request parameter is malformed; ``parameter`` names it (``bbox``, ``datetime``, ``filter``...)."""

    def __init__(self, parameter: str, message: str) -> None:
        super().__init__(f"{parameter}: {message}")
        self.parameter = parameter


def _same(value: Any) -> Any:
    return value


def _percent_to_fraction(value: Any) -> Any:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return value  # the catalog's comparison refuses it, naming the property
    return value / 100.0


@dataclass(frozen=True)
class Queryable:
    """One STAC property: the catalog property behind it, how a STAC value becomes a catalog value, its schema."""

    name: str
    property_name: str
    schema: dict[str, Any]
    to_catalog: Callable[[Any], Any] = _same

    @property
    def property(self) -> Property:
        """The catalog property (``p.cloud_fraction``...)."""
        return p[self.property_name]


_DATETIME = {"type": "string", "format": "date-time"}
_TEXT = {"type": "string"}

#: STAC property name → queryable. ``datetime`` and ``start_datetime`` are the start of acquisition.
QUERYABLES: dict[str, Queryable] = {
    q.name: q
    for q in (
        Queryable("id", "id", {"title": "Item id", **_TEXT}),
        Queryable("collection", "product_id", {"title": "Collection id", **_TEXT}),
        Queryable("datetime", "acquired", {"title": "Acquisition start", **_DATETIME}),
        Queryable("start_datetime", "acquired", {"title": "Start of the time covered", **_DATETIME}),
        Queryable("end_datetime", "acquired_end", {"title": "End of the time covered", **_DATETIME}),
        Queryable("created", "created", {"title": "First catalogued", **_DATETIME}),
        Queryable("updated", "modified", {"title": "Last changed", **_DATETIME}),
        Queryable(
            "eo:cloud_cover",
            "cloud_fraction",
            {"title": "Cloud cover (percent)", "type": "number", "minimum": 0, "maximum": 100},
            _percent_to_fraction,
        ),
        Queryable(f"{PREFIX}:tile", "tile", {"title": "Grid tile", **_TEXT}),
        Queryable(f"{PREFIX}:period_start", "period_start", {"title": "Cube period start", "type": "string"}),
        Queryable(f"{PREFIX}:fill_fraction", "fill_fraction", {"title": "Share of pixels with data", "type": "number"}),
        Queryable(f"{PREFIX}:provider", "provider", {"title": "Provider of the scene", **_TEXT}),
        Queryable(f"{PREFIX}:provider_id", "provider_id", {"title": "Scene id at its provider", **_TEXT}),
    )
}

#: Properties that may appear in ``sortby`` (every queryable holds one value per item).
SORTABLE = frozenset(QUERYABLES)


def queryable(name: str, parameter: str) -> Queryable:
    """Return the queryable named ``name`` (``properties.`` prefix allowed).

    Returns:
        The :class:`Queryable`.

    Raises:
        InvalidParameter: naming ``parameter`` and the unknown property.
    """
    key = name.removeprefix("properties.")
    found = QUERYABLES.get(key)
    if found is None:
        raise InvalidParameter(
            parameter, f"unknown or unsearchable property {key[:100]!r}; queryables: {', '.join(QUERYABLES)}"
        )
    return found


def queryables_schema(base_url: str, collection_id: str | None = None) -> dict[str, Any]:
    """Return the JSON Schema of the queryables (the same for every collection).

    Returns:
        The document served at ``/queryables`` and ``/collections/{id}/queryables``.
    """
    where = f"collections/{collection_id}/queryables" if collection_id else "queryables"
    properties: dict[str, Any] = {name: dict(q.schema) for name, q in QUERYABLES.items()}
    properties["geometry"] = {"title": "Footprint", "$ref": "https://geojson.org/schema/Geometry.json"}
    return {
        "$schema": "https://json-schema.org/draft/2019-09/schema",
        "$id": f"{base_url.rstrip('/')}/{where}",
        "type": "object",
        "title": "Queryables of the cube-assets catalog",
        "properties": properties,
        "additionalProperties": False,
    }


__all__ = ["QUERYABLES", "SORTABLE", "InvalidParameter", "Queryable", "queryable", "queryables_schema"]
