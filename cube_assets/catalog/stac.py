"""The catalog as STAC 1.1: products as Collections, images as Items, a static catalogue on disk.

* :func:`product_to_collection` and :func:`image_to_item` build ``pystac`` objects with the
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
* :func:`export_static_catalog` writes every product and image as a self-contained static
  catalogue (relative links; asset hrefs are the catalogued files) that ``pystac``,
  ``pystac-client`` and ``odc-stac`` read: ``catalog.json``, ``{product}/collection.json``,
  ``{product}/{image}/{image}.json``. It is built in a temporary folder and moved into place.
"""

from __future__ import annotations

import datetime as dt
import functools
import json
import os
import re
import shutil
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pystac
import pystac.utils
from jsonschema import Draft7Validator
from jsonschema.exceptions import best_match
from jsonschema.validators import validator_for
from pyproj import CRS
from pystac.extensions.eo import Band as EOBand
from pystac.extensions.eo import EOExtension
from pystac.extensions.projection import ProjectionExtension
from pystac.extensions.raster import DataType, RasterBand, RasterExtension
from pystac.validation.local_validator import get_local_schema_cache
from pystac.validation.schema_uri_map import DefaultSchemaUriMap
from referencing import Registry, Resource
from sqlalchemy import func, select

from cube_assets.catalog import models
from cube_assets.errors import CatalogError

if TYPE_CHECKING:
    from cube_assets.client.objects import Band, Catalog, Image, Product

EO_SCHEMA = "https://stac-extensions.github.io/eo/v1.1.0/schema.json"
RASTER_SCHEMA = "https://stac-extensions.github.io/raster/v1.1.0/schema.json"
PROJECTION_SCHEMA = "https://stac-extensions.github.io/projection/v2.0.0/schema.json"
FILE_SCHEMA = "https://stac-extensions.github.io/file/v2.1.0/schema.json"
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

_MEDIA_TYPES = {
    ".tif": pystac.MediaType.COG,
    ".tiff": pystac.MediaType.COG,
    ".png": pystac.MediaType.PNG,
    ".jpg": pystac.MediaType.JPEG,
    ".jpeg": pystac.MediaType.JPEG,
    ".jp2": pystac.MediaType.JPEG2000,
    ".json": pystac.MediaType.JSON,
    ".xml": pystac.MediaType.XML,
}

_NUMBER_OR_SPECIAL = {"oneOf": [{"type": "number"}, {"enum": ["nan", "inf", "-inf"]}]}

#: JSON Schemas of the extension fields this module writes, after the extensions' specifications:
#: eo v1.1.0, raster v1.1.0, projection v2.0.0 (and file v2.1.0 for ``file:size``). Each is applied to item properties, to every
#: asset and to every ``item_assets`` entry of a collection.
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
}
_FIELD_PREFIXES = {EO_SCHEMA: "eo:", RASTER_SCHEMA: "raster:", PROJECTION_SCHEMA: "proj:", FILE_SCHEMA: "file:"}


class StacValidationError(CatalogError):
    """A STAC object does not satisfy the core STAC schema or an extension's field rules."""


# ------------------------------------------------------------------------------ building


def _iso(value: dt.datetime | None) -> str | None:
    return None if value is None else pystac.utils.datetime_to_str(value.astimezone(dt.UTC))


def _media_type(href: str) -> str | None:
    suffix = os.path.splitext(href.split("?", 1)[0])[1].lower()
    media = _MEDIA_TYPES.get(suffix)
    return None if media is None else str(media)


def _common_name(band: Band) -> str | None:
    text = (band.description or "").strip().lower()
    if text in EO_COMMON_NAMES:
        return text
    name = band.name.lower()
    return name if name in EO_COMMON_NAMES else None


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
    raster = RasterBand.create(
        nodata=band.nodata,
        data_type=_RASTER_DATA_TYPES.get(band.data_type),
        spatial_resolution=band.resolution,
        unit=getattr(band, "unit", None),
    )
    RasterExtension.ext(asset, add_if_missing=False).bands = [raster]


def _asset(href: str, band: Band | None, name: str) -> pystac.Asset:
    roles = ["data"] if band is not None else (["thumbnail", "overview"] if name == "quicklook" else ["data"])
    if band is not None and band.type == "mask":
        roles = ["data", "data-mask"]
    asset = pystac.Asset(href=href, title=name, media_type=_media_type(href), roles=roles)
    _band_assets_fields(band, asset)
    return asset


def _crs_fields(code: str) -> dict[str, Any]:
    """``proj:code`` (and ``proj:wkt2`` when the CRS has no authority code) of a catalog CRS string."""
    try:
        crs = CRS.from_user_input(code)
    except Exception:  # noqa: BLE001 - pyproj raises CRSError and others for unparseable input
        return {"proj:code": code if re.fullmatch(r"[A-Z]+:[0-9A-Za-z.:-]+", code) else None}
    authority = crs.to_authority(min_confidence=100)
    if authority is not None:
        return {"proj:code": f"{authority[0]}:{authority[1]}"}
    return {"proj:code": None, "proj:wkt2": crs.to_wkt()}


def image_to_item(
    image: Image, bands: Mapping[str, Band] | None = None, *, collection_href: str | None = None
) -> pystac.Item:
    """Return the image as a STAC Item, one asset per file.

    ``bands`` maps band name to the product's :class:`~cube_assets.client.objects.Band` and
    provides each asset's ``eo:bands``/``raster:bands``; files of bands not in it get plain assets.
    With ``collection_href`` (where the product's collection is), the item names its collection
    (the product id) and links to it; STAC requires the link whenever the name is given.

    Returns:
        The ``pystac.Item`` (no other links).

    Raises:
        CatalogError: if the image has no footprint or acquisition time.
    """
    bands = bands or {}
    if image.geometry is None or image.acquired is None:
        raise CatalogError(f"image {image.id!r} needs a footprint and an acquisition time to become a STAC item")
    geometry = json.loads(json.dumps(image.geometry.__geo_interface__))
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
        "fill_fraction": image.fill_fraction,
        "provider": image.provider,
        "provider_id": image.provider_id,
        "properties": image.properties or None,
        "tags": list(image.tags) or None,
    }
    properties.update({f"{PREFIX}:{key}": value for key, value in own.items() if value is not None})
    item = pystac.Item(
        id=image.id,
        geometry=geometry,
        bbox=list(image.geometry.bounds),
        datetime=image.acquired,
        properties=properties,
    )
    if collection_href is not None:
        item.collection_id = image.product_id
        item.add_link(pystac.Link(pystac.RelType.COLLECTION, collection_href, media_type=pystac.MediaType.JSON))
    if image.name and image.name != image.id:
        item.common_metadata.title = image.name
    for name, file in image.files.items():
        asset = _asset(file.href, bands.get(name), name)
        if file.size_bytes is not None:
            asset.extra_fields["file:size"] = file.size_bytes
        item.add_asset(name, asset)
    if image.cloud_fraction is not None:
        EOExtension.ext(item, add_if_missing=True).cloud_cover = round(image.cloud_fraction * 100, 6)
    elif bands and any(b.type == "spectral" for b in bands.values()):
        EOExtension.ext(item, add_if_missing=True)
    _projection(item, image)
    _ensure_extensions(item)
    return item


def _projection(item: pystac.Item, image: Image) -> None:
    if image.crs is None:
        return
    projection = ProjectionExtension.ext(item, add_if_missing=True)
    for key, value in _crs_fields(image.crs).items():
        item.properties[key] = value
    if image.geotransform is not None:
        c, a, b, f, d, e = image.geotransform
        projection.transform = [a, b, c, d, e, f]
        if image.width is not None and image.height is not None:
            projection.shape = [image.height, image.width]
            xs = [c, c + a * image.width + b * image.height, c + a * image.width, c + b * image.height]
            ys = [f, f + d * image.width + e * image.height, f + d * image.width, f + e * image.height]
            projection.bbox = [min(xs), min(ys), max(xs), max(ys)]


def _ensure_extensions(obj: pystac.STACObject) -> None:
    """Declare every extension whose fields appear anywhere in ``obj``; drop ones that do not."""
    text = json.dumps(obj.to_dict(include_self_link=False, transform_hrefs=False))
    declared = [uri for uri in obj.stac_extensions if uri not in _FIELD_PREFIXES]
    for uri, prefix in _FIELD_PREFIXES.items():
        if f'"{prefix}' in text:
            declared.append(uri)
    obj.stac_extensions = declared


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
    product's ``start_datetime``..``end_datetime``; :func:`export_static_catalog` passes the
    extent of the product's images. ``crs_codes`` become the ``proj:code`` summary.

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
    item_assets = {}
    for band in bands:
        definition = pystac.ItemAssetDefinition.create(
            title=band.name,
            description=band.description or None,
            media_type=str(pystac.MediaType.COG),
            roles=["data", "data-mask"] if band.type == "mask" else ["data"],
        )
        scratch = pystac.Asset(href="scratch")
        _band_assets_fields(band, scratch)
        definition.properties.update({k: v for k, v in scratch.extra_fields.items() if ":" in k})
        item_assets[band.name] = definition
    if item_assets:
        collection.item_assets = item_assets
    _ensure_extensions(collection)
    return collection


# ------------------------------------------------------------------------------ validation


_FIELD_VALIDATORS = {uri: Draft7Validator(schema) for uri, schema in EXTENSION_FIELD_SCHEMAS.items()}


@functools.lru_cache(maxsize=None)
def _core_validator(kind: pystac.STACObjectType) -> Any:
    """A JSON-schema validator of the core STAC 1.1.0 schema of ``kind``, built once.

    Built from the schemas pystac ships (its local schema cache) in a registry that cannot
    retrieve anything else, so validation never goes to the network. (pystac's own validator
    rebuilds the validator and its registry on every call, which costs tens of milliseconds.)
    """
    cache = get_local_schema_cache()
    uri = DefaultSchemaUriMap().get_object_schema_uri(kind, STAC_VERSION)
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


# ------------------------------------------------------------------------------ export


@dataclass(frozen=True)
class ExportResult:
    """What :func:`export_static_catalog` wrote: the catalogue root and how many collections and items."""

    catalog_path: Path
    collections: int
    items: int


def _safe(name: str) -> str:
    """A file-name-safe form of an id (ids may hold ':' or '/')."""
    return re.sub(r"[^A-Za-z0-9._-]", "_", name).strip(".") or "_"


def _write_json(path: Path, document: Mapping[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8") as stream:
        json.dump(document, stream, indent=1, ensure_ascii=False)
        stream.write("\n")


def _link(rel: str, href: str, media_type: str = str(pystac.MediaType.JSON), title: str | None = None) -> dict[str, Any]:
    link = {"rel": rel, "href": href, "type": media_type}
    if title:
        link["title"] = title
    return link


def _product_extent(
    catalog: Catalog, product_id: str
) -> tuple[int, list[float] | None, tuple[dt.datetime | None, dt.datetime | None], list[str]]:
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


def export_static_catalog(
    catalog: Catalog,
    dest: str | os.PathLike[str],
    *,
    catalog_id: str = "cube-assets",
    title: str = "cube-assets catalog",
    description: str = "Data cubes and source collections catalogued by cube-assets.",
    product_ids: Sequence[str] | None = None,
    validate: bool = True,
) -> ExportResult:
    """Write the catalog (or the products ``product_ids``) as a static STAC catalogue in folder ``dest``.

    Layout: ``dest/catalog.json``; per product ``dest/{product}/collection.json`` with the extent
    of its images; per image ``dest/{product}/{image}/{image}.json``. Links are relative (a
    self-contained catalogue that can be moved or served as is); asset hrefs are the catalogued
    file locations. Images are streamed from the database in batches, so memory does not grow
    with their number. With ``validate`` every object is checked with :func:`validate_stac`
    before it is written.

    The catalogue is written into a temporary sibling folder and then moved to ``dest``; a
    previous export at ``dest`` (a folder holding ``catalog.json``) is replaced, an empty folder
    is reused, any other existing ``dest`` is refused.

    Returns:
        An :class:`ExportResult`.

    Raises:
        CatalogError: if ``dest`` exists and is neither empty nor an earlier export, or a product
            in ``product_ids`` is not in the catalog.
        StacValidationError: if ``validate`` and an object is not valid STAC.
        OSError: if the files cannot be written (``dest`` is then unchanged).
    """
    from cube_assets.client.objects import NotFoundError, Product

    destination = Path(dest).absolute()
    if destination.exists() and not (
        destination.is_dir() and ((destination / "catalog.json").is_file() or not any(destination.iterdir()))
    ):
        raise CatalogError(f"{destination} exists and is not an earlier STAC export or an empty folder; choose another")
    if product_ids is None:
        products = list(Product.search(catalog=catalog).sort("id"))
    else:
        try:
            products = Product.get_many(list(product_ids), catalog=catalog)
        except NotFoundError as exc:
            raise CatalogError(f"export_static_catalog: {exc}") from None
    destination.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{destination.name}.tmp-", dir=destination.parent))
    try:
        root_links = [_link("root", "./catalog.json", title=title)]
        folders: set[str] = set()
        item_total = 0
        for product in products:
            folder = _safe(product.id)
            if folder in folders:
                raise CatalogError(f"products {product.id!r} and another map to the same folder {folder!r}")
            folders.add(folder)
            item_total += _export_product(catalog, product, staging / folder, validate)
            root_links.append(_link("child", f"./{folder}/collection.json", title=product.name))
        root = {
            "type": "Catalog",
            "stac_version": STAC_VERSION,
            "id": catalog_id,
            "title": title,
            "description": description,
            "links": root_links,
        }
        if validate:
            validate_stac(root)
        _write_json(staging / "catalog.json", root)
        _swap_into_place(staging, destination)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return ExportResult(destination / "catalog.json", len(products), item_total)


def _export_product(catalog: Catalog, product: Product, folder: Path, validate: bool) -> int:
    """Write the product's collection and every image's item under ``folder``; return the item count."""
    from cube_assets.client.objects import Image
    from cube_assets.catalog.expressions import properties as p

    bands = product.bands()
    by_name = {band.name: band for band in bands}
    count, bbox, interval, codes = _product_extent(catalog, product.id)
    collection = product_to_collection(
        product,
        bands,
        spatial_extent=bbox,
        temporal_extent=interval if count else None,
        crs_codes=codes,
    )
    links = [
        _link("root", "../catalog.json"),
        _link("parent", "../catalog.json"),
    ]
    written = 0
    used: set[str] = set()
    for image in Image.search(catalog=catalog).filter(p.product_id == product.id).sort("id"):
        item = image_to_item(image, by_name)
        name = _safe(image.id)
        if name in used:
            raise CatalogError(f"images {image.id!r} and another of product {product.id!r} map to the same file name")
        used.add(name)
        document = item.to_dict(include_self_link=False, transform_hrefs=False)
        document["collection"] = product.id
        document["links"] = [
            _link("root", "../../catalog.json"),
            _link("parent", "../collection.json"),
            _link("collection", "../collection.json"),
        ]
        if validate:
            validate_stac(document)
        _write_json(folder / name / f"{name}.json", document)
        links.append(_link("item", f"./{name}/{name}.json", str(pystac.MediaType.GEOJSON)))
        written += 1
    document = collection.to_dict(include_self_link=False, transform_hrefs=False)
    document["links"] = links
    if validate:
        validate_stac(document)
    _write_json(folder / "collection.json", document)
    return written


def _swap_into_place(staging: Path, destination: Path) -> None:
    """Move the finished export onto ``destination``, replacing an earlier export."""
    if not destination.exists():
        os.replace(staging, destination)
        return
    if not any(destination.iterdir()):
        destination.rmdir()
        os.replace(staging, destination)
        return
    old = destination.with_name(f".{destination.name}.old-{os.getpid()}")
    os.replace(destination, old)
    try:
        os.replace(staging, destination)
    except OSError:
        os.replace(old, destination)
        raise
    shutil.rmtree(old, ignore_errors=True)


__all__ = [
    "EO_SCHEMA",
    "EXTENSION_FIELD_SCHEMAS",
    "FILE_SCHEMA",
    "PROJECTION_SCHEMA",
    "RASTER_SCHEMA",
    "ExportResult",
    "StacValidationError",
    "export_static_catalog",
    "image_to_item",
    "product_to_collection",
    "validate_stac",
]
