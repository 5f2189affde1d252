"""What the maps read from the catalog: an image's files and bands, the images of a mosaic, the cubes' layout.

One ``MapCatalog`` per service, over one engine. Every answer is a small frozen record, loaded
in one session and usable after it closes. Bands and images rarely change while the service
runs, so the records of one image are kept for a short while (``CACHE_SECONDS``).
"""

from __future__ import annotations

import datetime as dt
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Engine, select
from sqlalchemy.orm import selectinload

from cube_assets.catalog.database import create_catalog_engine, session_factory
from cube_assets.catalog.models import Band, Image, Product
from cube_assets.errors import CatalogError

#: How long the records of one image are reused, in seconds.
CACHE_SECONDS = 30.0
#: Most images one mosaic tile or one time series reads.
MAX_IMAGES = 1000


@dataclass(frozen=True)
class MapBand:
    """What rendering and time series need of one band of a product."""

    name: str
    type: str
    data_type: str
    nodata: float | None
    data_range: tuple[float, float] | None
    display_range: tuple[float, float] | None
    physical_range: tuple[float, float] | None
    unit: str | None
    description: str
    colormap: Mapping[str, list[int]] | None


@dataclass(frozen=True)
class MapImage:
    """One catalogued image as the maps see it: its product, time span, footprint, files and bands."""

    id: str
    product_id: str
    acquired: dt.datetime
    acquired_end: dt.datetime | None
    bbox: tuple[float, float, float, float]
    geometry: Mapping[str, Any]
    tile: str | None
    period_start: dt.date | None
    files: Mapping[str, str]
    bands: Mapping[str, MapBand]
    crs: str | None = None
    geotransform: tuple[float, ...] | None = None


class MapCatalog:
    """The catalog as the tile, viewer and time-series routes read it."""

    def __init__(self, catalog_url: str | Engine) -> None:
        self._engine = create_catalog_engine(catalog_url) if isinstance(catalog_url, str) else catalog_url
        self._sessions = session_factory(self._engine)
        self._lock = threading.Lock()
        self._images: dict[str, tuple[float, MapImage]] = {}
        self._bands: dict[str, tuple[float, dict[str, MapBand]]] = {}

    def close(self) -> None:
        """Release the database connections."""
        self._engine.dispose()

    def bands(self, product_id: str) -> dict[str, MapBand]:
        """The bands of ``product_id`` by name (empty for a product without band rows).

        Returns:
            ``{name: MapBand}``.
        """
        now = time.monotonic()
        with self._lock:
            cached = self._bands.get(product_id)
            if cached and now - cached[0] < CACHE_SECONDS:
                return cached[1]
        with self._sessions() as session:
            rows = session.scalars(select(Band).where(Band.product_id == product_id).order_by(Band.band_index)).all()
            bands = {row.name: _map_band(row) for row in rows}
        with self._lock:
            self._bands[product_id] = (now, bands)
        return bands

    def image(self, image_id: str) -> MapImage:
        """The image ``image_id``.

        Returns:
            Its ``MapImage``.

        Raises:
            CatalogError: if no image has that id.
        """
        now = time.monotonic()
        with self._lock:
            cached = self._images.get(image_id)
            if cached and now - cached[0] < CACHE_SECONDS:
                return cached[1]
        with self._sessions() as session:
            row = session.scalars(select(Image).options(selectinload(Image.files)).where(Image.id == image_id)).first()
            if row is None:
                raise CatalogError(f"image {image_id[:200]!r} is not in the catalog")
            image = self._map_image(row)
        with self._lock:
            self._images[image_id] = (now, image)
        return image

    def images(
        self,
        product_id: str,
        *,
        bbox: tuple[float, float, float, float] | None = None,
        day: dt.date | None = None,
        period_start: dt.date | None = None,
        limit: int = MAX_IMAGES,
    ) -> list[MapImage]:
        """The images of ``product_id`` whose bounding box meets ``bbox``, on ``day`` or of ``period_start``.

        ``day`` matches images whose time span contains that UTC date (a merge of that date, or the
        composite of the period holding it); ``period_start`` matches the cube period.

        Returns:
            The images in time order, then by id, at most ``limit``.

        Raises:
            CatalogError: if ``product_id`` is not a product of the catalog.
        """
        with self._sessions() as session:
            if session.get(Product, product_id) is None:
                raise CatalogError(f"collection {product_id[:200]!r} is not in the catalog")
            statement = select(Image).options(selectinload(Image.files)).where(Image.product_id == product_id)
            if bbox is not None:
                min_lon, min_lat, max_lon, max_lat = bbox
                statement = statement.where(
                    Image.min_lon <= max_lon,
                    Image.max_lon >= min_lon,
                    Image.min_lat <= max_lat,
                    Image.max_lat >= min_lat,
                )
            if period_start is not None:
                statement = statement.where(Image.period_start == period_start)
            if day is not None:
                start = dt.datetime.combine(day, dt.time(), tzinfo=dt.UTC)
                end = start + dt.timedelta(days=1)
                statement = statement.where(Image.acquired < end)
                statement = statement.where((Image.acquired_end >= start) | (Image.acquired >= start))
            statement = statement.order_by(Image.acquired, Image.id).limit(limit)
            return [self._map_image(row) for row in session.scalars(statement)]

    def products(self) -> list[dict[str, Any]]:
        """Every product: id, name, tags and the ``cube`` and ``kind`` (a function or ``merge``) of cube products.

        Returns:
            One dict per product, ordered by id.
        """
        with self._sessions() as session:
            rows = session.scalars(select(Product).order_by(Product.id)).all()
            return [
                {"id": row.id, "name": row.name, "tags": list(row.tags or []), **_cube_kind(row.id, row.tags or [])}
                for row in rows
            ]

    def layout(self, product_id: str) -> dict[str, Any]:
        """What the viewer draws of ``product_id``: tile outlines, periods and the dates of each period's images.

        Returns:
            ``{"tiles": GeoJSON FeatureCollection, "periods": [{"start", "end", "dates"}...], "bbox"}``;
            a tile's feature carries its ``tile`` name.

        Raises:
            CatalogError: if ``product_id`` is not a product of the catalog.
        """
        images = self.images(product_id, limit=MAX_IMAGES * 10)
        tiles: dict[str, MapImage] = {}
        periods: dict[str, dict[str, Any]] = {}
        for image in images:
            tiles.setdefault(image.tile or image.id, image)
            start = (image.period_start or image.acquired.date()).isoformat()
            entry = periods.setdefault(start, {"start": start, "end": None, "dates": [], "images": []})
            if image.acquired_end is not None:
                entry["end"] = image.acquired_end.date().isoformat()
            day = image.acquired.date().isoformat()
            if day not in entry["dates"]:
                entry["dates"].append(day)
            entry["images"].append({"id": image.id, "tile": image.tile})
        features = [
            {"type": "Feature", "properties": {"tile": name, "image": image.id}, "geometry": dict(image.geometry)}
            for name, image in sorted(tiles.items())
        ]
        bboxes = [image.bbox for image in tiles.values()]
        bbox = (
            [min(b[0] for b in bboxes), min(b[1] for b in bboxes), max(b[2] for b in bboxes), max(b[3] for b in bboxes)]
            if bboxes
            else None
        )
        return {
            "product": product_id,
            "tiles": {"type": "FeatureCollection", "features": features},
            "periods": [periods[key] for key in sorted(periods)],
            "bbox": bbox,
        }

    def _map_image(self, row: Image) -> MapImage:
        return MapImage(
            id=row.id,
            product_id=row.product_id,
            acquired=row.acquired,
            acquired_end=row.acquired_end,
            bbox=(row.min_lon, row.min_lat, row.max_lon, row.max_lat),
            geometry=row.geometry,
            tile=row.tile,
            period_start=row.period_start,
            files={file.band: file.href for file in row.files},
            bands=self.bands(row.product_id),
            crs=row.crs,
            geotransform=tuple(row.geotransform) if row.geotransform else None,
        )


def _map_band(row: Band) -> MapBand:
    def pair(value: list[float] | None) -> tuple[float, float] | None:
        return None if value is None else (float(value[0]), float(value[1]))

    return MapBand(
        name=row.name,
        type=row.type,
        data_type=row.data_type,
        nodata=row.nodata,
        data_range=pair(row.data_range),
        display_range=pair(row.display_range),
        physical_range=pair(row.physical_range),
        unit=row.unit,
        description=row.description or "",
        colormap=row.colormap,
    )


def _cube_kind(product_id: str, tags: list[str]) -> dict[str, Any]:
    """The cube name and kind (``LCF``, ``merge``, ...) of a cube product ``{cube}-{kind}``; empty otherwise."""
    if "cube" not in tags or "-" not in product_id:
        return {}
    cube, kind = product_id.rsplit("-", 1)
    return {"cube": cube, "kind": kind}
