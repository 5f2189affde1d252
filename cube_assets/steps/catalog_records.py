"""Catalog records of one tile and period: the cube's products and bands, its composites, merges and scenes."""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, time
from typing import Any

import numpy as np
import rasterio
from pyproj import CRS
from shapely.geometry import mapping

from cube_assets.catalog.repository import BandRecord, ImageFileRecord, ImageRecord, ProductRecord
from cube_assets.cube_config import CubeConfig
from cube_assets.grids import Tile
from cube_assets.manifests import PeriodBlendManifest, SceneCog
from cube_assets.raster.composite_rules import IDENTITY
from cube_assets.raster.datasource import DATASOURCE
from cube_assets.raster.quicklook import REFLECTANCE_DISPLAY_RANGE
from cube_assets.steps.blend import information_bands
from cube_assets.storage.raster_store import RasterStore
from cube_assets.temporal import Period

_DTYPE_NAMES = {"uint8": "UInt8", "int16": "Int16", "uint16": "UInt16", "int32": "Int32", "float32": "Float32"}
SCL_LABELS = {
    0: "no data",
    1: "saturated or defective",
    2: "dark area",
    3: "cloud shadow",
    4: "vegetation",
    5: "not vegetated",
    6: "water",
    7: "unclassified",
    8: "cloud medium probability",
    9: "cloud high probability",
    10: "thin cirrus",
    11: "snow",
}


@dataclass(frozen=True)
class CatalogBatch:
    """Everything one ``catalog_item`` partition upserts."""

    products: tuple[ProductRecord, ...]
    bands: Mapping[str, tuple[BandRecord, ...]]
    images: tuple[ImageRecord, ...]


def composite_product_id(cube: CubeConfig, function: str) -> str:
    """Catalog id of the product holding ``cube``'s ``function`` composites, e.g. ``s2_demo-LCF``."""
    return f"{cube.name}-{function}"


def merge_product_id(cube: CubeConfig) -> str:
    """Catalog id of the product holding ``cube``'s per-date merges."""
    return f"{cube.name}-merge"


def catalog_batch(
    cube: CubeConfig,
    tile: Tile,
    period: Period,
    blend: PeriodBlendManifest,
    scenes: Sequence[SceneCog],
    store: RasterStore,
) -> CatalogBatch:
    """Build the records for one partition from the ``period_blend`` and ``scene_cog`` manifests.

    Composite images span the period; their cloud fraction is the share of observed pixels
    without any clear observation (CLEAROB = 0 where TOTALOB > 0). Merge images carry their
    cloud ratio; scene images their product's cloud cover. Images are keyed by item name, so
    re-running a partition updates the same rows.

    Returns:
        A ``CatalogBatch``.

    Raises:
        CatalogError: when a record is invalid (it names the image and the field).
    """
    products = _products(cube, tile)
    bands = {p.id: tuple(_bands(cube, p.id, tile)) for p in products}
    images = [
        *_composite_images(cube, tile, period, blend, store),
        *_merge_images(cube, tile, period, blend, store),
        *_scene_images(cube, scenes, store),
    ]
    return CatalogBatch(tuple(products), bands, tuple(images))


def _products(cube: CubeConfig, tile: Tile) -> list[ProductRecord]:
    """The cube's products: one per composite function, the merges, and the source collection."""
    start = datetime.combine(cube.start_date, time(), tzinfo=UTC)
    end = datetime.combine(cube.end_date, time(23, 59, 59), tzinfo=UTC)
    products = [
        ProductRecord(
            id=composite_product_id(cube, function),
            name=f"{cube.title or cube.name} {function}",
            description=cube.description,
            start_datetime=start,
            end_datetime=end,
            tags=("cube", function),
            properties={
                "collection": cube.collection,
                "temporal_schema": cube.temporal.step,
                "grid": tile.grid_name,
                **_sources_property(cube),
            },
        )
        for function in cube.composites
    ]
    products.append(
        ProductRecord(
            id=merge_product_id(cube),
            name=f"{cube.title or cube.name} merges",
            description=f"Per-date merges of {cube.name}",
            start_datetime=start,
            end_datetime=end,
            tags=("cube", "merge"),
            properties={"collection": cube.collection, "grid": tile.grid_name, **_sources_property(cube)},
        )
    )
    products += [ProductRecord(id=c, name=c, tags=("source",)) for c in _source_collections(cube)]
    return products


def _sources_property(cube: CubeConfig) -> dict[str, Any]:
    """``{"sources": [{name, collection, bit}, ...]}`` for a cube with sources, else nothing."""
    if not cube.sources:
        return {}
    return {
        "sources": [{"name": s.name, "collection": s.collection, "bit": 1 << i} for i, s in enumerate(cube.sources)]
    }


def _source_collections(cube: CubeConfig) -> list[str]:
    """The collections the cube's scenes come from: each source's (once), or the cube's own."""
    return list(dict.fromkeys(s.collection for s in cube.sources)) if cube.sources else [cube.collection]


def datasource_description(cube: CubeConfig) -> str:
    """What a composite's DATASOURCE band means in ``cube``: which bit is which source.

    Returns:
        E.g. ``"bit i (value 1 << i) is source i: 1 = s2 (sentinel-2-l2a), 2 = landsat (landsat-c2-l2);
        0 = no observation"``.
    """
    bits = ", ".join(f"{1 << i} = {s.name} ({s.collection})" for i, s in enumerate(cube.sources or []))
    return (
        f"sources of each pixel, bit i (value 1 << i) is source i: {bits}; the chosen observation's source for "
        "LCF, MAXNDVI and BAP, the OR of the clear observations' sources for the other functions; 0 = none"
    )


def _image_grid(
    cube: CubeConfig, tile: Tile, store: RasterStore, uri: str | None
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The footprint and grid fields of an image: the tile's, or (``native_grid`` cubes) those of its file ``uri``."""
    if not cube.native_grid or uri is None:
        return mapping(tile.geometry_4326), _tile_image_fields(tile)
    with rasterio.open(store.gdal_path(uri)) as src:
        grid = Tile(
            tile.grid_name, tile.name, tile.col, tile.row, src.crs.to_wkt(), src.transform, src.width, src.height
        )
    return mapping(grid.geometry_4326), _tile_image_fields(grid)


@functools.lru_cache(maxsize=64)
def _crs_text(crs_wkt: str) -> str:
    """The catalog's text of a CRS: ``pyproj``'s ``to_string`` (an authority code like ``EPSG:32723`` when one matches).

    Cached by WKT: matching a custom CRS against the authorities' database takes about half a second.
    """
    return CRS.from_wkt(crs_wkt).to_string()


def _tile_image_fields(tile: Tile) -> dict[str, Any]:
    """The fields every image on the tile's grid shares: CRS, geotransform, size, pixel size and tile name."""
    return {
        "crs": _crs_text(tile.crs_wkt),
        "geotransform": tile.transform.to_gdal(),
        "width": tile.width,
        "height": tile.height,
        "pixel_size_x": tile.resolution,
        "pixel_size_y": tile.resolution_y,
        "tile": tile.name,
    }


def _composite_images(
    cube: CubeConfig,
    tile: Tile,
    period: Period,
    blend: PeriodBlendManifest,
    store: RasterStore,
) -> list[ImageRecord]:
    """Return one image per composite of the blend, spanning the period.

    Each has its cloud and fill fractions read from its bands.
    """
    period_start = datetime.combine(period.start, time(), tzinfo=UTC)
    period_end = datetime.combine(period.end, time(), tzinfo=UTC)
    images = []
    for function, composite in blend.composites.items():
        cloud, fill = _composite_fractions(store, composite.bands)
        geometry, common = _image_grid(cube, tile, store, composite.bands.get("CLEAROB"))
        images.append(
            ImageRecord(
                id=composite.item,
                product_id=composite_product_id(cube, function),
                name=composite.item,
                acquired=period_start,
                acquired_end=period_end,
                geometry=geometry,
                cloud_fraction=cloud,
                fill_fraction=fill,
                period_start=period.start,
                files=_files(store, composite.bands, composite.quicklook),
                properties={"observations": blend.observations, "dates": [day.isoformat() for day in blend.dates]},
                **common,
            )
        )
    return images


def _merge_images(
    cube: CubeConfig,
    tile: Tile,
    period: Period,
    blend: PeriodBlendManifest,
    store: RasterStore,
) -> list[ImageRecord]:
    """One image per merge the blend used, on its date, with the cloud ratio and valid pixels the merge recorded."""
    images = []
    for merge in blend.merges:
        files = {**merge.bands, cube.quality.band: merge.quality, "DATASOURCE": merge.datasource}
        geometry, common = _image_grid(cube, tile, store, merge.quality)
        images.append(
            ImageRecord(
                id=merge.item,
                product_id=merge_product_id(cube),
                name=merge.item,
                acquired=datetime.combine(merge.date, time(), tzinfo=UTC),
                geometry=geometry,
                cloud_fraction=merge.cloud_ratio / 100.0,
                fill_fraction=merge.valid_pixels / merge.total_pixels,
                period_start=period.start,
                files=_files(store, files),
                properties={"efficacy": merge.efficacy, "scenes": list(merge.scenes)},
                **common,
            )
        )
    return images


def _scene_images(cube: CubeConfig, scenes: Sequence[SceneCog], store: RasterStore) -> list[ImageRecord]:
    """One image per scene, in the source collection, with its own footprint, CRS and the product's cloud cover."""
    images = []
    for scene in scenes:
        files = {**scene.bands, cube.quality.band: scene.quality, **scene.indexes}
        images.append(
            ImageRecord(
                id=scene.scene_id,
                product_id=scene.collection if cube.sources else cube.collection,
                name=scene.scene_id,
                acquired=scene.datetime,
                geometry=scene.footprint,
                crs=_crs_of(store, scene.quality),
                cloud_fraction=_fraction(scene.cloud_cover),
                provider=scene.provider,
                provider_id=scene.scene_id,
                files=_files(store, files, scene.quicklook),
                properties={"radiometry": scene.radiometry},
            )
        )
    return images


def _bands(cube: CubeConfig, product_id: str, tile: Tile) -> list[BandRecord]:
    if product_id in _source_collections(cube):
        return []
    dtype = _DTYPE_NAMES[cube.dtype]
    records = [
        BandRecord(
            name=b.name,
            type="spectral",
            data_type=dtype,
            resolution=tile.resolution,
            band_index=i,
            data_range=b.valid_range or (0, 10000),
            display_range=REFLECTANCE_DISPLAY_RANGE,
            nodata=cube.nodata,
            description=b.common_name or "",
        )
        for i, b in enumerate(cube.bands)
    ]
    extra = [(cube.quality.band, "class", "UInt8", float(cube.quality.nodata))]
    if product_id == merge_product_id(cube):
        extra.append(("DATASOURCE", "generic", "UInt8", 255.0))
    else:
        extra += [("CLEAROB", "generic", "UInt8", None), ("TOTALOB", "generic", "UInt8", None)]
        function = product_id.rsplit("-", 1)[-1]
        extra += [
            (name, "generic", _DTYPE_NAMES[dtype_name], None if nodata is None or np.isnan(nodata) else nodata)
            for name, dtype_name, nodata in information_bands(cube, function)
        ]
        if function != IDENTITY:
            extra += [(name, "generic", "Int16", cube.index_nodata) for name in cube.indexes]
    merges = merge_product_id(cube)
    for name, kind, dtype_name, nodata in extra:
        labels = SCL_LABELS if kind == "class" and cube.quality.band == "SCL" else None
        if kind == "class" and product_id != merge_product_id(cube) and not product_id.endswith(("-LCF", "-IDT")):
            continue  # only LCF, IDT and merges carry the quality band
        records.append(
            BandRecord(
                name=name,
                type=kind,
                data_type=dtype_name,
                resolution=tile.resolution,
                band_index=len(records),
                nodata=nodata,
                class_labels=labels,
                description=datasource_description(cube) if name == DATASOURCE and product_id != merges else "",
            )
        )
    return records


def _files(store: RasterStore, uris: Mapping[str, str], quicklook: str | None = None) -> list[ImageFileRecord]:
    files = [ImageFileRecord(band=band, href=uri, size_bytes=store.size(uri)) for band, uri in uris.items()]
    if quicklook:
        files.append(ImageFileRecord(band="quicklook", href=quicklook, size_bytes=store.size(quicklook)))
    return files


def _composite_fractions(store: RasterStore, bands: Mapping[str, str]) -> tuple[float | None, float | None]:
    """(cloud fraction, fill fraction) of a composite from its CLEAROB/TOTALOB, read at ≤ 1024 px."""
    if "CLEAROB" not in bands or "TOTALOB" not in bands:
        return None, None
    clear, total = (_decimated(store.gdal_path(bands[name])) for name in ("CLEAROB", "TOTALOB"))
    observed = np.count_nonzero(total > 0)
    if observed == 0:
        return None, 0.0
    return float(np.count_nonzero((clear == 0) & (total > 0)) / observed), float(observed / total.size)


def _decimated(path: str, max_size: int = 1024) -> np.ndarray:
    with rasterio.open(path) as src:
        factor = max(1, int(np.ceil(max(src.width, src.height) / max_size)))
        return src.read(1, out_shape=(max(1, src.height // factor), max(1, src.width // factor)))


def _crs_of(store: RasterStore, uri: str) -> str:
    with rasterio.open(store.gdal_path(uri)) as src:
        return src.crs.to_string()


def _fraction(percent: float | None) -> float | None:
    return None if percent is None else min(max(percent / 100.0, 0.0), 1.0)
