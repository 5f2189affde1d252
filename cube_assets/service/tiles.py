"""Map tiles of the catalog's images: band combinations by name, index and count colormaps, default stretch.

Two ways in, one rendering:

* ``/maps/images/{image_id}/tiles/{z}/{x}/{y}.png`` one image, and
  ``/maps/mosaic/{collection}/tiles/{z}/{x}/{y}.png?period=|date=`` every image of one product
  and period (or date) over the tiles the map tile meets — what the viewer draws. A request
  names a band combination (``combination=true-colour``, ``false-colour``, ``swir``), any one
  or three bands (``bands=B08,B04,B03``; ``bands=NDVI``), and optionally ``rescale=low,high``
  (one for all bands, or one per band) and ``colormap`` (single bands).
* ``/maps/titiler/images/{image_id}/...``: titiler.core's ``MultiBaseTilerFactory`` over the
  same image (its bands are the factory's assets): tilejson, tiles in any TileMatrixSet,
  ``info``, ``statistics``, ``point``, previews, with titiler's own parameters.

Reading goes through rio-tiler: each band's COG is read only in the blocks of the overview level
the tile needs (locally or over ``/vsis3/``, with GDAL's usual ``AWS_*`` settings). The default
stretch is :func:`cube_assets.raster.quicklook.default_stretch` over the image — the bands'
display range, else the 2nd to 98th percentile of the valid pixels read at quicklook size —
so a map and its image's quicklook look the same. ``CLEAROB`` and ``TOTALOB`` are drawn with a
sequential colormap from 0 to the most observations in the image, ``PROVENANCE`` with ``turbo``
over the days of the period, index bands with ``rdylgn``.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Annotated, Any

import attr
import numpy as np
import rasterio
from fastapi import APIRouter, FastAPI, HTTPException, Path, Query, Response
from morecantile import TileMatrixSet
from rasterio.enums import Resampling
from rio_tiler.colormap import cmap
from rio_tiler.constants import WEB_MERCATOR_TMS, WGS84_CRS
from rio_tiler.errors import EmptyMosaicError, TileOutsideBounds
from rio_tiler.io import MultiBaseReader, Reader
from rio_tiler.models import ImageData
from rio_tiler.mosaic import mosaic_reader
from rio_tiler.types import AssetInfo
from titiler.core.factory import MultiBaseTilerFactory

from cube_assets.client.timeseries import gdal_href
from cube_assets.errors import CatalogError
from cube_assets.raster.quicklook import default_stretch, quicklook_shape
from cube_assets.service.map_catalog import MapBand, MapCatalog, MapImage

TILE_SIZE = 256
#: Band combinations by name: the common names of their red, green and blue bands.
BAND_COMBINATIONS: dict[str, tuple[str, str, str]] = {
    "true-colour": ("red", "green", "blue"),
    "false-colour": ("nir", "red", "green"),
    "swir": ("swir22", "nir", "red"),
}
#: The band of each common name in Sentinel-2 products, for bands without a description.
SENTINEL2_COMMON_NAMES = {"blue": "B02", "green": "B03", "red": "B04", "nir": "B08", "swir16": "B11", "swir22": "B12"}
#: Colormaps of the quality outputs and of index bands (rio-tiler names).
COUNT_BANDS = {"CLEAROB": "ylgn", "TOTALOB": "blues"}
PROVENANCE_COLORMAP = "turbo"
INDEX_COLORMAP = "rdylgn"
#: Side, in pixels, of the overview the default stretch is computed from (as the quicklooks).
STRETCH_SAMPLE_SIZE = 768


@dataclass(frozen=True)
class TileStyle:
    """How one request's bands are drawn: which bands, their stretch, and a colormap for a single band."""

    bands: tuple[str, ...]
    stretch: tuple[tuple[float, float], ...]
    colormap: str | None


def resolve_bands(image: MapImage, combination: str | None, bands: str | None) -> tuple[str, ...]:
    """The bands a request names: a combination by name, or one or three band names (comma separated).

    Returns:
        The band names, in drawing order.

    Raises:
        CatalogError: naming the combination or band that the image does not have.
    """
    if bands:
        names = tuple(name.strip() for name in bands.split(",") if name.strip())
        if len(names) not in (1, 3):
            raise CatalogError(f"bands: give one band or three (red, green, blue), got {len(names)}: {bands[:200]!r}")
    else:
        key = combination or "true-colour"
        if key not in BAND_COMBINATIONS:
            raise CatalogError(f"combination {key[:100]!r} is unknown; use one of {', '.join(BAND_COMBINATIONS)}")
        by_common = {band.description: name for name, band in image.bands.items() if band.description}
        names = tuple(
            by_common.get(common, SENTINEL2_COMMON_NAMES.get(common, common)) for common in BAND_COMBINATIONS[key]
        )
    missing = [name for name in names if name not in image.files]
    if missing:
        raise CatalogError(
            f"image {image.id!r} has no band {', '.join(missing)}; it has {', '.join(sorted(image.files))}"
        )
    return names


def parse_rescale(rescale: Sequence[str] | None, count: int) -> tuple[tuple[float, float], ...] | None:
    """``rescale`` parameters (``"low,high"``, once for every band or once per band) as ranges.

    Returns:
        One ``(low, high)`` per band, or None when no ``rescale`` is given.

    Raises:
        CatalogError: when a value is not two increasing numbers or their count fits neither rule.
    """
    if not rescale:
        return None
    ranges = []
    for text in rescale:
        try:
            low, high = (float(v) for v in text.split(","))
        except ValueError as error:
            raise CatalogError(f"rescale {text[:100]!r}: expected two numbers 'low,high'") from error
        if not high > low:
            raise CatalogError(f"rescale {text[:100]!r}: high must be above low")
        ranges.append((low, high))
    if len(ranges) == 1:
        return tuple(ranges * count)
    if len(ranges) != count:
        raise CatalogError(f"rescale: give one range or {count} (one per band), got {len(ranges)}")
    return tuple(ranges)


class StretchCache:
    """Default stretches per image and bands, computed once from each band's overview."""

    def __init__(self, max_entries: int = 4096) -> None:
        self._lock = threading.Lock()
        self._entries: dict[tuple[str, tuple[str, ...]], tuple[tuple[float, float], ...]] = {}
        self._max_entries = max_entries

    def style(
        self, image: MapImage, names: tuple[str, ...], rescale: Sequence[str] | None, colormap: str | None
    ) -> TileStyle:
        """The style of ``names`` of ``image``: ``rescale`` when given, else the default stretch and colormap.

        Returns:
            The ``TileStyle``.

        Raises:
            CatalogError: on a bad ``rescale`` or an unknown ``colormap``, or a colormap for three bands.
        """
        if colormap is not None:
            if len(names) != 1:
                raise CatalogError("colormap: only a single band can be drawn with a colormap")
            if colormap not in cmap.list():
                raise CatalogError(f"colormap {colormap[:100]!r} is unknown (see rio-tiler's colormaps)")
        stretch = parse_rescale(rescale, len(names)) or self.default(image, names)
        return TileStyle(
            names,
            stretch,
            colormap or (default_colormap(image.bands.get(names[0]), names[0]) if len(names) == 1 else None),
        )

    def default(self, image: MapImage, names: tuple[str, ...]) -> tuple[tuple[float, float], ...]:
        """The default stretch of ``names`` of ``image``, one range per band.

        Returns:
            Count bands: 0 to the most observations; PROVENANCE: the days of year of the period;
            any other: :func:`~cube_assets.raster.quicklook.default_stretch` (one range for all).
        """
        key = (image.id, names)
        with self._lock:
            if key in self._entries:
                return self._entries[key]
        stretch = _default_stretch(image, names)
        with self._lock:
            if len(self._entries) >= self._max_entries:
                self._entries.clear()
            self._entries[key] = stretch
        return stretch


def default_colormap(band: MapBand | None, name: str) -> str | None:
    """The colormap a single band is drawn with by default (None: grey).

    Returns:
        A rio-tiler colormap name for count bands, PROVENANCE and index (generic) bands.
    """
    if name in COUNT_BANDS:
        return COUNT_BANDS[name]
    if name == "PROVENANCE":
        return PROVENANCE_COLORMAP
    if band is not None and band.type == "generic":
        return INDEX_COLORMAP
    return None


def _default_stretch(image: MapImage, names: tuple[str, ...]) -> tuple[tuple[float, float], ...]:
    if len(names) == 1 and names[0] in COUNT_BANDS:
        top = _band_maximum(image.files.get("TOTALOB") or image.files[names[0]])
        return ((0.0, max(1.0, top)),)
    if len(names) == 1 and names[0] == "PROVENANCE" and image.acquired_end is not None:
        first = float(image.acquired.timetuple().tm_yday)
        last = float(image.acquired_end.timetuple().tm_yday)
        return ((first, last if last > first else first + 1),)
    arrays, masks = [], []
    for name in names:
        with rasterio.open(gdal_href(image.files[name])) as src:
            shape = quicklook_shape(src.shape, STRETCH_SAMPLE_SIZE)
            arrays.append(src.read(1, out_shape=shape, resampling=Resampling.nearest))
            masks.append(src.read_masks(1, out_shape=shape, resampling=Resampling.nearest) > 0)
    ranges = [image.bands[name].display_range if name in image.bands else None for name in names]
    stretch = default_stretch(ranges, arrays, np.logical_and.reduce(masks))
    return tuple([stretch] * len(names))


def _band_maximum(href: str) -> float:
    with rasterio.open(gdal_href(href)) as src:
        shape = quicklook_shape(src.shape, STRETCH_SAMPLE_SIZE)
        values = src.read(1, out_shape=shape, resampling=Resampling.nearest, masked=True)
    return float(values.max()) if values.count() else 1.0


def read_image_tile(
    image: MapImage, x: int, y: int, z: int, bands: tuple[str, ...], tilesize: int = TILE_SIZE
) -> ImageData:
    """The pixels of ``bands`` of ``image`` in Web Mercator tile ``z/x/y``, one band per file.

    Returns:
        rio-tiler's ``ImageData`` (masked where any band has no data).

    Raises:
        TileOutsideBounds: when the tile does not meet the image.
    """
    parts = []
    for name in bands:
        with Reader(gdal_href(image.files[name])) as src:
            parts.append(src.tile(x, y, z, tilesize=tilesize, indexes=1))
    return ImageData.create_from_list(parts) if len(parts) > 1 else parts[0]


def render(data: ImageData, style: TileStyle) -> bytes:
    """``data`` stretched (and coloured, for a single band with a colormap) as a PNG with transparency.

    Returns:
        The PNG bytes.
    """
    scaled = data.rescale(in_range=style.stretch)
    colormap = cmap.get(style.colormap) if style.colormap else None
    return scaled.render(img_format="PNG", colormap=colormap)


def empty_tile(tilesize: int = TILE_SIZE) -> bytes:
    """A fully transparent PNG tile (what a map gets where there is no image).

    Returns:
        The PNG bytes.
    """
    return _EMPTY_TILES.setdefault(
        tilesize,
        ImageData(np.ma.masked_all((1, tilesize, tilesize), dtype=np.uint8)).render(img_format="PNG"),
    )


_EMPTY_TILES: dict[int, bytes] = {}


def catalog_reader(catalog: MapCatalog) -> type[MultiBaseReader]:
    """A rio-tiler ``MultiBaseReader`` class over ``catalog``'s images: input an image id, assets its bands.

    Returns:
        The reader class, for titiler's ``MultiBaseTilerFactory``.
    """

    @attr.s
    class CatalogImageReader(MultiBaseReader):
        """The bands (one COG each) of one catalogued image, as the assets of a multi-asset dataset."""

        input: str = attr.ib()
        tms: TileMatrixSet = attr.ib(default=WEB_MERCATOR_TMS)
        minzoom: int = attr.ib(default=None)
        maxzoom: int = attr.ib(default=None)
        reader: type[Reader] = attr.ib(default=Reader)
        reader_options: dict = attr.ib(factory=dict)

        def __attrs_post_init__(self) -> None:
            self.image = catalog.image(self.input)
            self.assets = sorted(name for name, href in self.image.files.items() if href.endswith((".tif", ".tiff")))
            self.bounds = self.image.bbox
            self.crs = WGS84_CRS
            self.minzoom = self.minzoom if self.minzoom is not None else self.tms.minzoom
            self.maxzoom = self.maxzoom if self.maxzoom is not None else 18

        def _get_asset_info(self, asset: Any) -> AssetInfo:
            name = asset["name"] if isinstance(asset, dict) else asset
            if name not in self.assets:
                raise CatalogError(f"image {self.input!r} has no band {str(name)[:100]!r}; it has {self.assets}")
            return AssetInfo(
                url=gdal_href(self.image.files[name]), name=name, media_type=None, reader_options={}, method_options={}
            )

    return CatalogImageReader


def tile_router(catalog: MapCatalog, stretches: StretchCache) -> APIRouter:
    """The ``/maps`` tile routes over ``catalog``: one image, and a mosaic of one product and period or date.

    Returns:
        The router.
    """
    router = APIRouter(prefix="/maps", tags=["Maps"])
    png = {"content": {"image/png": {}}, "description": "A 256 px PNG tile, transparent where there is no data."}

    @router.get("/images/{image_id}/tiles/{z}/{x}/{y}.png", responses={200: png}, response_class=Response)
    def image_tile(
        image_id: str,
        z: Annotated[int, Path(ge=0, le=24)],
        x: Annotated[int, Path(ge=0)],
        y: Annotated[int, Path(ge=0)],
        combination: str | None = None,
        bands: str | None = None,
        rescale: Annotated[list[str] | None, Query()] = None,
        colormap: str | None = None,
    ) -> Response:
        image = _found(catalog.image, image_id)
        style = _checked(lambda: stretches.style(image, resolve_bands(image, combination, bands), rescale, colormap))
        try:
            data = read_image_tile(image, x, y, z, style.bands)
        except TileOutsideBounds:
            return _png(empty_tile())
        return _png(render(data, style))

    @router.get("/mosaic/{collection}/tiles/{z}/{x}/{y}.png", responses={200: png}, response_class=Response)
    def mosaic_tile(
        collection: str,
        z: Annotated[int, Path(ge=0, le=24)],
        x: Annotated[int, Path(ge=0)],
        y: Annotated[int, Path(ge=0)],
        period: str | None = None,
        date: str | None = None,
        combination: str | None = None,
        bands: str | None = None,
        rescale: Annotated[list[str] | None, Query()] = None,
        colormap: str | None = None,
    ) -> Response:
        when = _checked(lambda: _period_or_date(period, date))
        bounds = WEB_MERCATOR_TMS.bounds(x, y, z)
        bbox = (bounds.left, bounds.bottom, bounds.right, bounds.top)
        images = _found(lambda c: catalog.images(c, bbox=bbox, **when), collection)
        if not images:
            return _png(empty_tile())
        style = _checked(
            lambda: stretches.style(images[0], resolve_bands(images[0], combination, bands), rescale, colormap)
        )
        for image in images[1:]:
            _checked(lambda image=image: resolve_bands(image, None, ",".join(style.bands)))
        try:
            data, _ = mosaic_reader(
                images, lambda image, *a, **k: read_image_tile(image, x, y, z, style.bands), threads=0
            )
        except EmptyMosaicError:
            return _png(empty_tile())
        return _png(render(data, style))

    @router.get("/collections")
    def collections() -> list[dict[str, Any]]:
        """Every product, with the cube and kind of cube products."""
        return catalog.products()

    @router.get("/collections/{collection}/layout")
    def layout(collection: str) -> dict[str, Any]:
        """Tile outlines (GeoJSON), periods and dates of one product's images, its bands and band combinations."""
        result: dict[str, Any] = _found(catalog.layout, collection)
        result["bands"] = [
            {"name": b.name, "type": b.type, "description": b.description} for b in catalog.bands(collection).values()
        ]
        result["combinations"] = {}
        first = next((p["images"][0]["id"] for p in result["periods"] if p["images"]), None)
        if first is not None:
            image = catalog.image(first)
            for name in BAND_COMBINATIONS:
                try:
                    result["combinations"][name] = list(resolve_bands(image, name, None))
                except CatalogError:
                    continue  # the product lacks a band of this combination
        return result

    return router


def include_titiler(app: FastAPI, catalog: MapCatalog) -> None:
    """Mount titiler.core's multi-asset factory over the catalog's images at ``/maps/titiler/images/{image_id}``."""

    def image_path(image_id: Annotated[str, Path(description="Catalog image id")]) -> str:
        return image_id

    factory = MultiBaseTilerFactory(
        reader=catalog_reader(catalog),
        path_dependency=image_path,
        router_prefix="/maps/titiler/images/{image_id}",
        add_viewer=False,
    )
    app.include_router(factory.router, prefix="/maps/titiler/images/{image_id}", tags=["Maps (titiler)"])


def _period_or_date(period: str | None, date: str | None) -> dict[str, Any]:
    import datetime as dt

    if (period is None) == (date is None):
        raise CatalogError("give exactly one of period (its start date, YYYY-MM-DD) or date (YYYY-MM-DD)")
    text = period if period is not None else date
    try:
        day = dt.date.fromisoformat(str(text))
    except ValueError as error:
        raise CatalogError(
            f"{'period' if period is not None else 'date'} {str(text)[:40]!r}: expected YYYY-MM-DD"
        ) from error
    return {"period_start": day} if period is not None else {"day": day}


def _found(function: Any, key: str) -> Any:
    try:
        return function(key)
    except CatalogError as error:
        raise HTTPException(status_code=404, detail=str(error)) from error


def _checked(function: Any) -> Any:
    try:
        return function()
    except CatalogError as error:
        raise HTTPException(status_code=400, detail=str(error)) from error


def _png(content: bytes) -> Response:
    return Response(content, media_type="image/png", headers={"Cache-Control": "public, max-age=60"})
