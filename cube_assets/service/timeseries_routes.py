"""``GET /timeseries``: a pixel's values per date (or a polygon's mean and median) over one collection.

``?lon=&lat=&collection=&bands=B04,B08`` gives, per image of the collection under the point (a
merge per date, or a composite per period), the raw and physical values and the quality flags
(see :mod:`cube_assets.client.timeseries`, which does the reading); ``geometry=`` (a GeoJSON
Polygon, instead of ``lon``/``lat``) gives each image's mean and median over the clear pixels
inside it, with their count. Every value links to its STAC Item
(``/collections/{collection}/items/{item}``).
"""

from __future__ import annotations

import datetime as dt
import json
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Query

from cube_assets.client.timeseries import (
    band_scale,
    observations_of,
    point_lonlat,
    point_timeseries,
    polygon_timeseries,
)
from cube_assets.errors import CatalogError, InvalidRaster
from cube_assets.service.map_catalog import MapCatalog

#: Most bands one request may ask for.
MAX_BANDS = 16


def timeseries_router(catalog: MapCatalog) -> APIRouter:
    """The ``/timeseries`` route over ``catalog``.

    Returns:
        The router.
    """
    router = APIRouter(tags=["Maps"])

    @router.get("/timeseries")
    def timeseries(
        collection: Annotated[str, Query(description="A product id, e.g. s2_demo-LCF or s2_demo-merge")],
        bands: Annotated[str, Query(description="Comma-separated band names")],
        lon: float | None = None,
        lat: float | None = None,
        geometry: Annotated[str | None, Query(description="A GeoJSON Polygon, instead of lon/lat")] = None,
        start: dt.date | None = None,
        end: dt.date | None = None,
    ) -> dict[str, Any]:
        """Values per date of ``bands`` at a point (or over a polygon) in every image of ``collection``."""
        try:
            return _series(catalog, collection, bands, lon, lat, geometry, start, end)
        except LookupError as error:
            raise HTTPException(status_code=404, detail=str(error.args[0])) from error
        except (CatalogError, InvalidRaster) as error:
            raise HTTPException(status_code=400, detail=str(error)) from error

    return router


def _series(
    catalog: MapCatalog,
    collection: str,
    bands_text: str,
    lon: float | None,
    lat: float | None,
    geometry_text: str | None,
    start: dt.date | None,
    end: dt.date | None,
) -> dict[str, Any]:
    names = [name.strip() for name in bands_text.split(",") if name.strip()]
    if not names or len(names) > MAX_BANDS:
        raise CatalogError(f"bands: give 1 to {MAX_BANDS} comma-separated band names, got {bands_text[:200]!r}")
    if geometry_text is not None:
        if lon is not None or lat is not None:
            raise CatalogError("give either lon and lat, or geometry, not both")
        try:
            geometry = point_lonlat(json.loads(geometry_text))
        except json.JSONDecodeError as error:
            raise CatalogError(f"geometry: not JSON ({error.msg} at character {error.pos})") from error
    elif lon is None or lat is None:
        raise CatalogError("give lon and lat (degrees, EPSG:4326), or a GeoJSON geometry")
    else:
        geometry = point_lonlat((lon, lat))
    product_bands = catalog.bands(collection)
    unknown = [name for name in names if name not in product_bands]
    try:
        images = catalog.images(collection, bbox=geometry.bounds)
    except CatalogError as error:
        raise LookupError(str(error)) from error
    if unknown:
        raise CatalogError(
            f"collection {collection!r} has no band {', '.join(unknown)}; it has {', '.join(product_bands)}"
        )
    if start is not None:
        images = [i for i in images if (i.acquired_end or i.acquired).date() >= start]
    if end is not None:
        images = [i for i in images if i.acquired.date() <= end]
    scales = {name: band_scale(band) for name, band in product_bands.items()}
    quality_band = next((name for name, band in product_bands.items() if band.type == "class"), None)
    options: dict[str, Any] = {"quality_band": quality_band}
    if quality_band != "SCL":
        options["quality_rules"] = None
    observations = observations_of(images)
    if geometry.geom_type == "Point":
        values: list[Any] = point_timeseries(observations, names, geometry.x, geometry.y, scales, **options)
    else:
        values = polygon_timeseries(observations, names, geometry, scales, **options)
    return {
        "collection": collection,
        "bands": names,
        "units": {name: scales[name].unit for name in names},
        "geometry": json.loads(json.dumps(geometry.__geo_interface__)),
        "values": [
            {**value.as_json(), "item": f"/collections/{collection}/items/{value.image_id}"} for value in values
        ],
    }
