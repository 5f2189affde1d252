"""The catalog as STAC 1.1: products as Collections, images as Items, validated offline.

* :func:`product_to_collection` builds a ``pystac`` Collection, :func:`image_item_dict` an Item
  dict as pystac would write it (:func:`image_to_item` reads it as a ``pystac.Item``), with the
  ``eo`` (v1.1.0), ``raster`` (v1.1.0) and ``projection`` (v2.0.0) extensions: per band asset,
  ``eo:bands`` for spectral bands (name, common name, centre wavelength and width in µm) and
  ``raster:bands`` for every band (nodata, data type, resolution, unit); on items
  ``eo:cloud_cover`` (percent) and ``proj:code``/``proj:wkt2``, ``proj:transform``,
  ``proj:shape`` and ``proj:bbox`` of the raster grid. Catalog fields without a STAC home go to
  ``cube_assets:*`` properties (tile, period start, fill fraction, provider and provider id,
  extra properties, tags).
* :func:`validate_stac` checks a STAC dict offline: the core STAC 1.1.0 JSON schemas that pystac
  ships (through pystac's own validator), and the fields of the three extensions against the
  schemas in :data:`EXTENSION_FIELD_SCHEMAS`, written here from the extensions' specifications
  (pystac does not ship extension schemas and would download them).
* :func:`product_extent` is the bbox, time span and CRS codes of a product's images, from SQL
  aggregates.

The builders read attributes of the objects they are given (:class:`Image`, :class:`Product`,
:class:`Band` describe which): the client's objects are such objects. The static catalogue on
disk is written by :func:`cube_assets.client.stac_export.export_static_catalog`.
"""

from __future__ import annotations

import datetime as dt
import functools
import json
import os
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Protocol, cast

import pystac
import pystac.utils
import shapely
from jsonschema import Draft7Validator
from jsonschema.exceptions import best_match
from jsonschema.validators import validator_for
from pyproj import CRS
from pystac.extensions.eo import Band as EOBand
from pystac.extensions.eo import EOExtension
from pystac.extensions.raster import DataType, RasterBand, RasterExtension
from pystac.validation.local_validator import get_local_schema_cache
from pystac.validation.schema_uri_map import DefaultSchemaUriMap
from referencing import Registry, Resource
from shapely.geometry.base import BaseGeometry
from sqlalchemy import func, select

from cube_assets.catalog import models
from cube_assets.catalog.search import SearchCatalog
from cube_assets.errors import CatalogError


class Band(Protocol):
    """What STAC reads of a band: a client band object, or anything with these attributes (``unit`` optional)."""

    name: str
    type: str
    description: str | None
    data_type: str | None
    nodata: float | None
    resolution: float | None
    wavelength_min: float | None
    wavelength_max: float | None
    wavelength_center: float | None


class File(Protocol):
    """A catalogued file: where it is and its size in bytes, if known."""

    href: str
    size_bytes: int | None


class Image(Protocol):
    """What STAC reads of an image: a client ``Image``, or anything with these attributes.

    An image may also have ``footprint_geojson()`` (a search's views do), returning its footprint
    as the catalog stores it; the Item's geometry and bbox are then read from that GeoJSON.
    """

    id: str
    product_id: str
    name: str | None
    acquired: dt.datetime | None
    acquired_end: dt.datetime | None
    created: dt.datetime | None
    modified: dt.datetime | None
    geometry: Any
    crs: str | None
    geotransform: Sequence[float] | None
    width: int | None
    height: int | None
    cloud_fraction: float | None
    fill_fraction: float | None
    provider: str | None
    provider_id: str | None
    tile: str | None
    period_start: dt.date | None
    properties: Mapping[str, Any]
    tags: Sequence[str]
    files: Mapping[str, File]


class Product(Protocol):
    """What STAC reads of a product: a client ``Product``, or anything with these attributes."""

    id: str
    name: str | None
    description: str | None
    start_datetime: dt.datetime | None
    end_datetime: dt.datetime | None
    created: dt.datetime | None
    modified: dt.datetime | None
    properties: Mapping[str, Any]
    tags: Sequence[str]


EO_SCHEMA = "https://stac-extensions.github.io/eo/v1.1.0/schema.json"
RASTER_SCHEMA = "https://stac-extensions.github.io/raster/v1.1.0/schema.json"
PROJECTION_SCHEMA = "https://stac-extensions.github.io/projection/v2.0.0/schema.json"
FILE_SCHEMA = "https://stac-extensions.github.io/file/v2.1.0/schema.json"
DATACUBE_SCHEMA = "https://stac-extensions.github.io/datacube/v2.2.0/schema.json"
STAC_VERSION = "1.1.0"
#: Prefix of the catalog's own fields in STAC properties.
PREFIX = "cube_assets"

#: EO common band names (eo v1.1.0).
EO_COMMON_NAMES = (
    "coastal", "blue", "green", "red", "rededge", "yellow", "pan", "nir", "nir08", "nir09",
    "cirrus", "swir16", "swir22", "lwir", "lwir11", "lwir12",
)  # fmt: skip

_RASTER_DATA_TYPES = {
    "Int8": DataType.INT8, "UInt8": DataType.UINT8, "Int16": DataType.INT16, "UInt16": DataType.UINT16,
    "Int32": DataType.INT32, "UInt32": DataType.UINT32, "Int64": DataType.INT64, "UInt64": DataType.UINT64,
    "Float32": DataType.FLOAT32, "Float64": DataType.FLOAT64,
}  # fmt: skip

_MEDIA_TYPES: dict[str, str] = {
    ".tif": str(pystac.MediaType.COG),
    ".tiff": str(pystac.MediaType.COG),
    ".png": str(pystac.MediaType.PNG),
    ".jpg": str(pystac.MediaType.JPEG),
    ".jpeg": str(pystac.MediaType.JPEG),
    ".jp2": str(pystac.MediaType.JPEG2000),
    ".json": str(pystac.MediaType.JSON),
    ".xml": str(pystac.MediaType.XML),
}

_NUMBER_OR_SPECIAL = {"oneOf": [{"type": "number"}, {"enum": ["nan", "inf", "-inf"]}]}

#: JSON Schemas of the extension fields this module writes, after the extensions' specifications:
#: eo v1.1.0, raster v1.1.0, projection v2.0.0 (and file v2.1.0 for ``file:size``). Each is
#: applied to item properties, to every asset and to every ``item_assets`` entry of a collection.
EXTENSION_FIELD_SCHEMAS: dict[str, dict[str, Any]] = {
    EO_SCHEMA: {
        "type": "object",
        "properties": {
            "eo:bands": {
                "type": "array",
                "items": {
                    "type": "object",
                    "properties": {
                        "name": {"type": "string", "minLength": 1},
                        "common_name": {"enum": list(EO_COMMON_NAMES)},
                        "description": {"type": "string"},
                        "center_wavelength": {"type": "number"},
                        "full_width_half_max": {"type": "number"},
                        "solar_illumination": {"type": "number", "minimum": 0},
                    },
                },
            },
            "eo:cloud_cover": {"type": "number", "minimum": 0, "maximum": 100},
            "eo:snow_cover": {"type": "number", "minimum": 0, "maximum": 100},
        },
        "patternProperties": {"^(?!eo:)": {}},
        "additionalProperties": False,
    },
    RASTER_SCHEMA: {
        "type": "object",
        "properties": {
            "raster:bands": {
                "type": "array",
                "items": {
                    "type": "object",
                    "properties": {
                        "nodata": _NUMBER_OR_SPECIAL,
                        "sampling": {"enum": ["area", "point"]},
                        "data_type": {"enum": [t.value for t in DataType]},
                        "bits_per_sample": {"type": "integer", "minimum": 1},
                        "spatial_resolution": {"type": "number", "minimum": 0},
                        "statistics": {"type": "object"},
                        "unit": {"type": "string"},
                        "scale": {"type": "number"},
                        "offset": {"type": "number"},
                        "histogram": {"type": "object"},
                    },
                },
            },
        },
        "patternProperties": {"^(?!raster:)": {}},
        "additionalProperties": False,
    },
    PROJECTION_SCHEMA: {
        "type": "object",
        "properties": {
            "proj:code": {"type": ["string", "null"], "pattern": "^[A-Z]+:[0-9A-Za-z.:-]+$"},
            "proj:wkt2": {"type": ["string", "null"]},
            "proj:projjson": {"type": ["object", "null"]},
            "proj:geometry": {"type": "object", "required": ["type", "coordinates"]},
            "proj:bbox": {
                "type": "array",
                "items": {"type": "number"},
                "oneOf": [{"minItems": 4, "maxItems": 4}, {"minItems": 6, "maxItems": 6}],
            },
            "proj:centroid": {
                "type": "object",
                "required": ["lat", "lon"],
                "properties": {
                    "lat": {"type": "number", "minimum": -90, "maximum": 90},
                    "lon": {"type": "number", "minimum": -180, "maximum": 180},
                },
            },
            "proj:shape": {"type": "array", "minItems": 2, "maxItems": 2, "items": {"type": "integer", "minimum": 0}},
            "proj:transform": {
                "type": "array",
                "items": {"type": "number"},
                "oneOf": [{"minItems": 6, "maxItems": 6}, {"minItems": 9, "maxItems": 9}],
            },
        },
        "patternProperties": {"^(?!proj:)": {}},
        "additionalProperties": False,
    },
    FILE_SCHEMA: {
        "type": "object",
        "properties": {"file:size": {"type": "integer", "minimum": 0}},
        "patternProperties": {"^(?!file:)": {}},
        "additionalProperties": False,
    },
    DATACUBE_SCHEMA: {
        "type": "object",
        "properties": {
            "cube:dimensions": {
                "type": "object",
                "additionalProperties": {
                    "type": "object",
                    "required": ["type"],
                    "properties": {
                        "type": {"type": "string"},
                        "axis": {"enum": ["x", "y", "z"]},
                        "extent": {"type": "array", "minItems": 2, "maxItems": 2},
                        "values": {"type": "array", "minItems": 1},
                        "step": {"type": ["number", "string", "null"]},
                        "reference_system": {"type": ["string", "number", "object"]},
                    },
                    "anyOf": [{"required": ["extent"]}, {"required": ["values"]}],
                },
            },
        },
        "patternProperties": {"^(?!cube:)": {}},
        "additionalProperties": False,
    },
}
_FIELD_PREFIXES = {
    EO_SCHEMA: "eo:",
    RASTER_SCHEMA: "raster:",
    PROJECTION_SCHEMA: "proj:",
    FILE_SCHEMA: "file:",
    DATACUBE_SCHEMA: "cube:",
}


class StacValidationError(CatalogError):
    """A STAC object does not satisfy the core STAC schema or an extension's field rules."""


# ------------------------------------------------------------------------------ building


def _iso(value: dt.datetime | None) -> str | None:
    # pystac.utils.datetime_to_str of the UTC time: its isoformat with the "+00:00" it ends with as "Z".
    # The catalog's times are read in UTC already, where astimezone would only copy them.
    if value is None:
        return None
    return (value if value.tzinfo is dt.UTC else value.astimezone(dt.UTC)).isoformat()[:-6] + "Z"


def _media_type(href: str) -> str | None:
    suffix = os.path.splitext(href.split("?", 1)[0])[1].lower()
    return _MEDIA_TYPES.get(suffix)


def _common_name(band: Band) -> str | None:
    text = (band.description or "").strip().lower()
    if text in EO_COMMON_NAMES:
        return text
    name = band.name.lower()
    return name if name in EO_COMMON_NAMES else None


def band_scale_offset(band: Band) -> tuple[float | None, float | None]:
    """Return the ``raster:bands`` scale and offset of a band: physical = stored × scale + offset.

    They come from the band's ``data_range`` and ``physical_range`` (optional attributes) when both
    are given and the data range is not empty; otherwise ``(None, None)``.

    Returns:
        ``(scale, offset)``, or ``(None, None)``.
    """
    data_range = getattr(band, "data_range", None)
    physical_range = getattr(band, "physical_range", None)
    if not data_range or not physical_range or len(data_range) != 2 or len(physical_range) != 2:
        return None, None
    (low, high), (physical_low, physical_high) = data_range, physical_range
    if high == low:
        return None, None
    scale = (physical_high - physical_low) / (high - low)
    return scale, physical_low - low * scale


def _band_assets_fields(band: Band | None, asset: pystac.Asset) -> None:
    """Put ``eo:bands`` (spectral bands) and ``raster:bands`` on ``asset`` for ``band``."""
    if band is None:
        return
    if band.type == "spectral":
        low, high, center = band.wavelength_min, band.wavelength_max, band.wavelength_center
        if center is None and low is not None and high is not None:
            center = (low + high) / 2
        EOExtension.ext(asset, add_if_missing=False).bands = [
            EOBand.create(
                name=band.name,
                common_name=_common_name(band),
                description=band.description or None,
                center_wavelength=center,
                full_width_half_max=None if low is None or high is None else high - low,
            )
        ]
    scale, offset = band_scale_offset(band)
    raster = RasterBand.create(
        nodata=band.nodata,
        data_type=None if band.data_type is None else _RASTER_DATA_TYPES.get(band.data_type),
        spatial_resolution=band.resolution,
        unit=getattr(band, "unit", None),
        scale=scale,
        offset=offset,
    )
    RasterExtension.ext(asset, add_if_missing=False).bands = [raster]


def _crs_fields(code: str) -> dict[str, Any]:
    """``proj:code`` (and ``proj:wkt2`` when the CRS has no authority code) of a catalog CRS string."""
    return dict(_parsed_crs_fields(code))


@functools.lru_cache(maxsize=256)
def _parsed_crs_fields(code: str) -> tuple[tuple[str, Any], ...]:
    """:func:`_crs_fields` as a tuple, parsed once per CRS string (pyproj takes about a millisecond)."""
    return tuple(_crs_fields_uncached(code).items())


def _crs_fields_uncached(code: str) -> dict[str, Any]:
    try:
        crs = CRS.from_user_input(code)
    except Exception:  # pyproj raises CRSError and others for unparseable input
        return {"proj:code": code if re.fullmatch(r"[A-Z]+:[0-9A-Za-z.:-]+", code) else None}
    authority = crs.to_authority(min_confidence=100)
    if authority is not None:
        return {"proj:code": f"{authority[0]}:{authority[1]}"}
    return {"proj:code": None, "proj:wkt2": crs.to_wkt()}


def band_asset_fields(band: Band | None) -> dict[str, Any]:
    """Return the ``eo:bands`` (spectral bands) and ``raster:bands`` fields of the asset of ``band``.

    Returns:
        The fields as a dict (empty for None).
    """
    if band is None:  # a file without a band of its product: asked for each such asset of each item
        return {}
    scratch = pystac.Asset(href="scratch")
    _band_assets_fields(band, scratch)
    return dict(scratch.extra_fields)


def _copied(fields: Mapping[str, Any]) -> dict[str, Any]:
    # Band fields are lists of flat dicts shared by every item of a product: each asset gets its own.
    return {
        key: [dict(entry) for entry in value] if isinstance(value, list) else value for key, value in fields.items()
    }


def _asset_dict(href: str, band: Band | None, name: str, fields: Mapping[str, Any], size: int | None) -> dict[str, Any]:
    """The asset of one file as ``pystac.Asset.to_dict`` gives it: href, type, title, fields, roles."""
    if band is None:
        roles = ["thumbnail", "overview"] if name == "quicklook" else ["data"]
    else:
        roles = ["data", "data-mask"] if band.type == "mask" else ["data"]
    asset: dict[str, Any] = {"href": href}
    media_type = _media_type(href)
    if media_type is not None:
        asset["type"] = media_type
    asset["title"] = name
    asset.update(_copied(fields))
    if size is not None:
        asset["file:size"] = size
    asset["roles"] = roles
    return asset


def image_item_dict(
    image: Image,
    bands: Mapping[str, Band] | None = None,
    *,
    composite_function: str | None = None,
    asset_fields: Mapping[str, Mapping[str, Any]] | None = None,
    stac_version: str | None = None,
) -> dict[str, Any]:
    """Return the image as a STAC Item dict, one asset per file, without links or collection.

    ``composite_function`` (``LCF``, ``MED``...: see :func:`composite_function_of`) becomes the
    ``cube_assets:composite_function`` property of a composite; a cube image's period is
    ``cube_assets:period_start`` and, when it spans time, ``cube_assets:period_end`` (the date
    of ``acquired_end``).

    ``bands`` maps band name to the product's band (:class:`Band`) and
    provides each asset's ``eo:bands``/``raster:bands``; files of bands not in it get plain assets.
    ``asset_fields`` (band name to :func:`band_asset_fields`) saves computing them per image, and
    ``stac_version`` (default: ``pystac.get_stac_version()``) reading pystac's setting per image.
    The dict is built directly, as ``pystac.Item.to_dict`` would give it (same keys, values
    and order): the API builds a page of Items this way without a pystac object per Item.

    Returns:
        The Item dict (asset hrefs are the catalogued file locations; ``links`` is empty).

    Raises:
        CatalogError: if the image has no footprint or acquisition time.
    """
    bands = bands or {}
    footprint = _footprint(image)
    if footprint is None or image.acquired is None:
        raise CatalogError(f"image {image.id!r} needs a footprint and an acquisition time to become a STAC item")
    geometry, bbox = footprint
    properties: dict[str, Any] = {}
    if image.acquired_end is not None:
        properties["start_datetime"] = _iso(image.acquired)
        properties["end_datetime"] = _iso(image.acquired_end)
    if image.created is not None:
        properties["created"] = _iso(image.created)
    if image.modified is not None:
        properties["updated"] = _iso(image.modified)
    own = {
        "tile": image.tile,
        "period_start": None if image.period_start is None else image.period_start.isoformat(),
        "period_end": (
            None
            if image.period_start is None or image.acquired_end is None
            else image.acquired_end.astimezone(dt.UTC).date().isoformat()
        ),
        "composite_function": composite_function,
        "fill_fraction": image.fill_fraction,
        "provider": image.provider,
        "provider_id": image.provider_id,
        "properties": image.properties or None,
        "tags": list(image.tags) or None,
    }
    properties.update({f"{PREFIX}:{key}": value for key, value in own.items() if value is not None})
    if image.name and image.name != image.id:
        properties["title"] = image.name
    assets: dict[str, Any] = {}
    for name, file in image.files.items():
        band = bands.get(name)
        fields = asset_fields[name] if asset_fields is not None and name in asset_fields else band_asset_fields(band)
        assets[name] = _asset_dict(file.href, band, name, fields, file.size_bytes)
    if image.cloud_fraction is not None:
        properties["eo:cloud_cover"] = round(image.cloud_fraction * 100, 6)
    properties.update(_projection(image))
    properties["datetime"] = pystac.utils.datetime_to_str(image.acquired)
    item: dict[str, Any] = {
        "type": "Feature",
        "stac_version": stac_version or pystac.get_stac_version(),
        "stac_extensions": [],
        "id": image.id,
        "geometry": geometry,
        "bbox": bbox,
        "properties": properties,
        "links": [],
        "assets": assets,
    }
    item["stac_extensions"] = _item_extensions(properties, assets)
    return item


def _footprint(image: Image) -> tuple[dict[str, Any], list[float]] | None:
    """The Item geometry and bbox of an image's footprint, or None if it has none.

    A search's views hold the footprint as the catalog stores it (GeoJSON, rings closed); its
    positions give the same values as the shapely geometry, without GEOS calls per Item.
    """
    stored = getattr(image, "footprint_geojson", None)
    document = stored() if stored is not None else None
    if document is not None:
        read = _polygonal(document)
        if read is not None:
            return read
    if image.geometry is None:
        return None
    return _geojson(image.geometry), list(image.geometry.bounds)


def _polygonal(document: Mapping[str, Any]) -> tuple[dict[str, Any], list[float]] | None:
    """A stored Polygon/MultiPolygon as ``_geojson`` gives it (float positions) and its bounds; else None."""
    kind, coordinates = document.get("type"), document.get("coordinates")
    if kind not in ("Polygon", "MultiPolygon") or not isinstance(coordinates, list):
        return None
    polygons: list[Any] = [coordinates] if kind == "Polygon" else coordinates
    try:
        read = [[[[float(value) for value in point] for point in ring] for ring in polygon] for polygon in polygons]
    except (TypeError, ValueError):
        return None
    positions = [position for polygon in read for ring in polygon for position in ring]
    if not positions or len({len(position) for position in positions}) != 1 or len(positions[0]) not in (2, 3):
        return None
    xs, ys = [position[0] for position in positions], [position[1] for position in positions]
    return {"type": kind, "coordinates": read[0] if kind == "Polygon" else read}, [min(xs), min(ys), max(xs), max(ys)]


def _geojson(shape: BaseGeometry) -> dict[str, Any]:
    """A Polygon or MultiPolygon as its GeoJSON mapping with lists, as ``json.loads(json.dumps(mapping(shape)))``.

    Shapely's ``__geo_interface__`` builds an empty ring per polygon to compare with; reading the
    rings' coordinates as arrays is several times faster.
    """
    if shape.geom_type == "Polygon":
        return {"type": "Polygon", "coordinates": _rings(shape)}
    if shape.geom_type == "MultiPolygon":
        return {"type": "MultiPolygon", "coordinates": [_rings(part) for part in shape.geoms]}
    return cast(dict[str, Any], json.loads(json.dumps(shape.__geo_interface__)))


def _rings(polygon: Any) -> list[Any]:
    if polygon.is_empty:
        return []
    with_z = bool(shapely.has_z(polygon))  # the rings' coordinates as ``ring.coords`` holds them
    return [shapely.get_coordinates(ring, include_z=with_z).tolist() for ring in (polygon.exterior, *polygon.interiors)]


def _item_extensions(properties: Mapping[str, Any], assets: Mapping[str, Mapping[str, Any]]) -> list[str]:
    """The extensions whose fields an Item built here holds: as property names or asset field names."""
    names = {name.split(":", 1)[0] + ":" for name in properties if ":" in name}
    for asset in assets.values():
        names.update(name.split(":", 1)[0] + ":" for name in asset if ":" in name)
    return [uri for uri, prefix in _FIELD_PREFIXES.items() if prefix in names]


def image_to_item(
    image: Image,
    bands: Mapping[str, Band] | None = None,
    *,
    collection_href: str | None = None,
    composite_function: str | None = None,
) -> pystac.Item:
    """Return the image as a ``pystac.Item``: :func:`image_item_dict` read by pystac.

    With ``collection_href`` (where the product's collection is), the item names its collection
    (the product id) and links to it; STAC requires the link whenever the name is given.

    Returns:
        The ``pystac.Item`` (no other links).

    Raises:
        CatalogError: if the image has no footprint or acquisition time.
    """
    item = pystac.Item.from_dict(image_item_dict(image, bands, composite_function=composite_function))
    if collection_href is not None:
        item.collection_id = image.product_id
        item.add_link(pystac.Link(pystac.RelType.COLLECTION, collection_href, media_type=pystac.MediaType.JSON))
        _ensure_extensions(item)
    return item


def _projection(image: Image) -> dict[str, Any]:
    """The ``proj:*`` properties of an image: CRS code (or WKT2), and the grid's transform, shape and bbox."""
    if image.crs is None:
        return {}
    fields = _crs_fields(image.crs)
    if image.geotransform is not None:
        c, a, b, f, d, e = image.geotransform
        fields["proj:transform"] = [a, b, c, d, e, f]
        if image.width is not None and image.height is not None:
            fields["proj:shape"] = [image.height, image.width]
            xs = [c, c + a * image.width + b * image.height, c + a * image.width, c + b * image.height]
            ys = [f, f + d * image.width + e * image.height, f + d * image.width, f + e * image.height]
            fields["proj:bbox"] = [min(xs), min(ys), max(xs), max(ys)]
    return fields


def _used_extensions(document: Mapping[str, Any], declared: Iterable[str] = ()) -> list[str]:
    """``declared`` without this module's extensions, then each of them whose fields appear anywhere in ``document``."""
    text = json.dumps(document)
    kept = [uri for uri in declared if uri not in _FIELD_PREFIXES]
    return kept + [uri for uri, prefix in _FIELD_PREFIXES.items() if f'"{prefix}' in text]


def _ensure_extensions(obj: pystac.STACObject) -> None:
    """Declare every extension whose fields appear anywhere in ``obj``; drop ones that do not."""
    obj.stac_extensions = _used_extensions(
        obj.to_dict(include_self_link=False, transform_hrefs=False), obj.stac_extensions
    )


def composite_function_of(product: Product) -> str | None:
    """Return the composite function (``LCF``, ``MED``...) of a cube's composite product, else None.

    A composite product is tagged ``cube`` and its function, and its id ends with ``-{function}``
    (``s2_16d-LCF``); the merges (tagged ``merge``) and source collections have none.

    Returns:
        The function's name, or None.
    """
    tags = list(product.tags)
    if "cube" not in tags:
        return None
    for tag in tags:
        if tag not in ("cube", "merge") and product.id.endswith(f"-{tag}"):
            return tag
    return None


def _iso_duration(step: object) -> str | None:
    """``16D`` / ``P16D`` / ``1M`` as an ISO 8601 duration, else None."""
    match = re.fullmatch(r"P?(\d+)([DWMY])", str(step or "").strip().upper())
    return None if match is None else f"P{match.group(1)}{match.group(2)}"


def cube_dimensions(
    bands: Sequence[Band],
    bbox: Sequence[float],
    interval: tuple[dt.datetime | None, dt.datetime | None],
    temporal_step: object = None,
) -> dict[str, Any]:
    """Return the ``cube:dimensions`` (datacube extension) of a cube product.

    ``x`` and ``y`` span ``bbox`` in EPSG:4326 (a cube's tiles may lie in several projections;
    the ``proj:code`` summary lists them), ``t`` the time ``interval`` with ``temporal_step``
    (``16D`` or an ISO 8601 duration) as its step, ``bands`` the band names in order.

    Returns:
        The dimensions mapping.
    """
    start, end = interval
    dimensions: dict[str, Any] = {
        "x": {"type": "spatial", "axis": "x", "extent": [bbox[0], bbox[2]], "reference_system": 4326},
        "y": {"type": "spatial", "axis": "y", "extent": [bbox[1], bbox[3]], "reference_system": 4326},
        "t": {"type": "temporal", "extent": [_iso(start), _iso(end)], "step": _iso_duration(temporal_step)},
    }
    if bands:
        dimensions["bands"] = {"type": "bands", "values": [band.name for band in bands]}
    return dimensions


def product_to_collection(
    product: Product,
    bands: Sequence[Band] = (),
    *,
    spatial_extent: Sequence[float] | None = None,
    temporal_extent: tuple[dt.datetime | None, dt.datetime | None] | None = None,
    crs_codes: Iterable[str] = (),
) -> pystac.Collection:
    """Return the product as a STAC Collection with ``item_assets`` describing each band's asset.

    ``spatial_extent`` (lon/lat bbox) and ``temporal_extent`` default to the whole world and the
    product's ``start_datetime``..``end_datetime``;
    :func:`~cube_assets.client.stac_export.export_static_catalog` passes the extent of the
    product's images. ``crs_codes`` become the ``proj:code`` summary. A cube product (tagged
    ``cube``) gets ``cube:dimensions`` (:func:`cube_dimensions`), its composite function (if any)
    as ``cube_assets:composite_function``; ``item_assets`` also describe the quicklook.

    Returns:
        The ``pystac.Collection`` (no links).

    Raises:
        Nothing.
    """
    bbox = list(spatial_extent) if spatial_extent is not None else [-180.0, -90.0, 180.0, 90.0]
    start, end = temporal_extent if temporal_extent is not None else (product.start_datetime, product.end_datetime)
    license_name = (product.properties or {}).get("license", "other")
    extra: dict[str, Any] = {}
    if product.properties:
        extra[f"{PREFIX}:properties"] = product.properties
    if product.created is not None:
        extra["created"] = _iso(product.created)
    if product.modified is not None:
        extra["updated"] = _iso(product.modified)
    summaries = pystac.Summaries({})
    codes = sorted({code for code in (_crs_fields(c).get("proj:code") for c in crs_codes) if code})
    if codes:
        summaries.add("proj:code", codes)
    collection = pystac.Collection(
        id=product.id,
        description=product.description or product.name or product.id,
        title=product.name,
        extent=pystac.Extent(pystac.SpatialExtent([bbox]), pystac.TemporalExtent([[start, end]])),
        license=str(license_name),
        keywords=list(product.tags) or None,
        extra_fields=extra,
        summaries=summaries,
    )
    item_assets: dict[str, pystac.ItemAssetDefinition | dict[str, Any]] = {}
    for band in bands:
        definition = pystac.ItemAssetDefinition.create(
            title=band.name,
            description=band.description or None,
            media_type=str(pystac.MediaType.COG),
            roles=["data", "data-mask"] if band.type == "mask" else ["data"],
        )
        definition.properties.update({k: v for k, v in band_asset_fields(band).items() if ":" in k})
        item_assets[band.name] = definition
    if item_assets:
        item_assets["quicklook"] = pystac.ItemAssetDefinition.create(
            title="quicklook", description=None, media_type=str(pystac.MediaType.PNG), roles=["thumbnail", "overview"]
        )
        collection.item_assets = item_assets
    if "cube" in product.tags:
        properties = product.properties or {}
        collection.extra_fields["cube:dimensions"] = cube_dimensions(
            bands, bbox, (start, end), properties.get("temporal_schema")
        )
        function = composite_function_of(product)
        if function is not None:
            collection.extra_fields[f"{PREFIX}:composite_function"] = function
    _ensure_extensions(collection)
    return collection


# ------------------------------------------------------------------------------ validation


_FIELD_VALIDATORS = {uri: Draft7Validator(schema) for uri, schema in EXTENSION_FIELD_SCHEMAS.items()}


@functools.cache
def _core_validator(kind: pystac.STACObjectType) -> Any:
    """A JSON-schema validator of the core STAC 1.1.0 schema of ``kind``, built once.

    Built from the schemas pystac ships (its local schema cache) in a registry that cannot
    retrieve anything else, so validation never goes to the network. (pystac's own validator
    rebuilds the validator and its registry on every call, which costs tens of milliseconds.)
    """
    cache = get_local_schema_cache()
    uri = DefaultSchemaUriMap().get_object_schema_uri(kind, STAC_VERSION)
    if uri is None:  # pystac knows the schema of every core object type
        raise KeyError(f"no core STAC {STAC_VERSION} schema for {kind}")
    registry: Registry[Any] = Registry().with_resources(
        [(key, Resource.from_contents(schema)) for key, schema in cache.items()]
    )
    schema = cache[uri]
    return validator_for(schema)(schema, registry=registry)


def validate_stac(stac: Mapping[str, Any]) -> None:
    """Check a STAC Item, Collection or Catalog dict offline.

    The core STAC 1.1.0 schema is checked with pystac's validator and the schemas pystac ships;
    the ``eo``, ``raster`` and ``projection`` fields with :data:`EXTENSION_FIELD_SCHEMAS`
    (properties, assets and item_assets); every extension whose fields are used must be listed
    in ``stac_extensions``. Nothing is downloaded.

    Returns:
        None when the object is valid.

    Raises:
        StacValidationError: naming the object and the first problem found.
    """
    kind = {"Feature": pystac.STACObjectType.ITEM, "Collection": pystac.STACObjectType.COLLECTION}.get(
        str(stac.get("type")), pystac.STACObjectType.CATALOG
    )
    name = f"STAC {kind.value} {stac.get('id')!r}"
    if stac.get("stac_version") != STAC_VERSION:
        raise StacValidationError(f"{name}: stac_version must be {STAC_VERSION}, got {stac.get('stac_version')!r}")
    error = best_match(_core_validator(kind).iter_errors(dict(stac)))
    if error is not None:
        where = "/".join(str(part) for part in error.absolute_path) or "(object)"
        raise StacValidationError(f"{name}: not valid STAC {STAC_VERSION}: {where}: {error.message}")
    objects: list[tuple[str, Mapping[str, Any]]] = []
    if kind == pystac.STACObjectType.ITEM:
        objects.append(("properties", stac.get("properties", {})))
    objects += [(f"asset {key!r}", asset) for key, asset in (stac.get("assets") or {}).items()]
    objects += [(f"item_assets {key!r}", asset) for key, asset in (stac.get("item_assets") or {}).items()]
    declared = set(stac.get("stac_extensions") or [])
    for uri, validator in _FIELD_VALIDATORS.items():
        prefix = _FIELD_PREFIXES[uri]
        for where, fields in objects:
            used = [key for key in fields if key.startswith(prefix)]
            if not used:
                continue
            if uri not in declared:
                raise StacValidationError(f"{name}: {where} uses {used} but stac_extensions lacks {uri}")
            error = next(iter(sorted(validator.iter_errors(dict(fields)), key=lambda e: list(e.path))), None)
            if error is not None:
                path = "/".join(str(p) for p in error.path)
                raise StacValidationError(f"{name}: {where} field {path or '(object)'}: {error.message}")


# ------------------------------------------------------------------------------ extent


def product_extent(
    catalog: SearchCatalog, product_id: str
) -> tuple[int, list[float] | None, tuple[dt.datetime | None, dt.datetime | None], list[str]]:
    """Return the count, lon/lat bbox, time span and CRS codes of the product's catalogued images, from SQL aggregates.

    Returns:
        ``(count, [min_lon, min_lat, max_lon, max_lat] or None, (first, last) or (None, None), crs codes)``;
        the span runs from the earliest ``acquired`` to the latest ``acquired`` or ``acquired_end``.
    """
    image = models.Image
    with catalog.session() as session:
        count, min_lon, min_lat, max_lon, max_lat, first, last_start, last_end = session.execute(
            select(
                func.count(),
                func.min(image.min_lon),
                func.min(image.min_lat),
                func.max(image.max_lon),
                func.max(image.max_lat),
                func.min(image.acquired),
                func.max(image.acquired),
                func.max(image.acquired_end),
            ).where(image.product_id == product_id)
        ).one()
        codes = list(session.scalars(select(image.crs).where(image.product_id == product_id).distinct()))
    if not count:
        return 0, None, (None, None), []
    last = max(v for v in (last_start, last_end) if v is not None)  # aggregates keep UTCDateTime: aware
    return count, [min_lon, min_lat, max_lon, max_lat], (first, last), codes


__all__ = [
    "EO_SCHEMA",
    "EXTENSION_FIELD_SCHEMAS",
    "FILE_SCHEMA",
    "PROJECTION_SCHEMA",
    "RASTER_SCHEMA",
    "DATACUBE_SCHEMA",
    "StacValidationError",
    "Band",
    "band_scale_offset",
    "composite_function_of",
    "cube_dimensions",
    "File",
    "Image",
    "Product",
    "band_asset_fields",
    "image_item_dict",
    "image_to_item",
    "product_extent",
    "product_to_collection",
    "validate_stac",
]
