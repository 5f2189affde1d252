"""A small cube written straight to COGs and a catalog: merges and composites with known pixel values.

The maps tests (tiles, viewer, time series) and ``benchmarks/tiles.py`` need many periods and
merges over more than one tile; the real graph (``cube_assets_tests/test_graph.py``) takes tens of
seconds per partition, so this module writes what the graph publishes — COGs of the same bands,
dtypes and nodata on the same kind of grid, and the catalog rows ``catalog_item`` upserts — with
values chosen so a test can compute what any pixel must read:

* merge ``m`` of period ``p``, band ``b`` at column ``c``: ``BASE[b] + 100 * p + 10 * m + c // 64``;
  its SCL is clear (4) except a cloudy square (9) in the middle of odd merges, and nodata (0) in
  the first 8 rows of merge 0;
* the LCF composite takes the last clear merge of each pixel (PROVENANCE: its day of year), MED
  and AVG the median and mean of the clear merges; CLEAROB and TOTALOB count them.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import rasterio
from affine import Affine
from rasterio.warp import transform_geom
from shapely.geometry import box, mapping

from cube_assets.catalog.database import create_catalog_engine, session_factory, upgrade_schema
from cube_assets.catalog.repository import (
    BandRecord,
    ImageFileRecord,
    ImageRecord,
    ProductRecord,
    upsert_bands,
    upsert_image,
    upsert_product,
)

CUBE = "synth"
EPSG = 32723
ORIGIN = (200_500.0, 8_249_500.0)
RESOLUTION = 10.0
BANDS = ("B02", "B03", "B04", "B08")
BASE = {"B02": 400, "B03": 700, "B04": 1000, "B08": 3000}
NODATA = -9999
CLEAR_SCL, CLOUD_SCL = 4, 9
FUNCTIONS = ("LCF", "MED", "AVG")


@dataclass
class SyntheticCube:
    """What :func:`build_synthetic_cube` wrote: where, and the grid and dates of its images."""

    root: Path
    catalog_url: str
    tiles: tuple[str, ...]
    tile_size: int
    period_starts: tuple[dt.date, ...]
    merge_dates: dict[dt.date, tuple[dt.date, ...]] = field(default_factory=dict)

    def tile_transform(self, tile_index: int) -> Affine:
        """The geotransform of tile ``tile_index`` (tiles side by side, west to east)."""
        return Affine(RESOLUTION, 0, ORIGIN[0] + tile_index * self.tile_size * RESOLUTION, 0, -RESOLUTION, ORIGIN[1])

    def lonlat(self, tile_index: int, row: int, col: int) -> tuple[float, float]:
        """The lon/lat of the centre of pixel ``(row, col)`` of tile ``tile_index``."""
        x, y = self.tile_transform(tile_index) * (col + 0.5, row + 0.5)
        geometry = transform_geom(f"EPSG:{EPSG}", "EPSG:4326", {"type": "Point", "coordinates": (x, y)})
        return float(geometry["coordinates"][0]), float(geometry["coordinates"][1])

    def merge_value(self, band: str, period_index: int, merge_index: int, col: int) -> int:
        """The value band ``band`` of merge ``merge_index`` of period ``period_index`` holds at column ``col``."""
        return BASE[band] + 100 * period_index + 10 * merge_index + col // 64


def merge_scl(size: int, merge_index: int) -> np.ndarray:
    """The SCL of merge ``merge_index``: clear, a cloudy middle square on odd merges, nodata rows on merge 0."""
    scl = np.full((size, size), CLEAR_SCL, dtype=np.uint8)
    if merge_index % 2 == 1:
        quarter = size // 4
        scl[quarter : 3 * quarter, quarter : 3 * quarter] = CLOUD_SCL
    if merge_index == 0:
        scl[:8, :] = 0
    return scl


def build_synthetic_cube(
    root: Path,
    *,
    tiles: int = 2,
    periods: int = 3,
    merges_per_period: int = 2,
    tile_size: int = 256,
    start: dt.date = dt.date(2024, 1, 1),
    catalog_url: str | None = None,
) -> SyntheticCube:
    """Write the COGs of ``tiles`` × ``periods`` × (``merges_per_period`` merges + 3 composites) and catalog them.

    Returns:
        The ``SyntheticCube``: its catalog URL (SQLite under ``root`` unless given), tiles and dates.
    """
    root.mkdir(parents=True, exist_ok=True)
    url = catalog_url or f"sqlite:///{root}/catalog.sqlite"
    cube = SyntheticCube(
        root,
        url,
        tuple(f"{i:06d}" for i in range(tiles)),
        tile_size,
        tuple(start + dt.timedelta(days=16 * p) for p in range(periods)),
    )
    for period_start in cube.period_starts:
        cube.merge_dates[period_start] = tuple(
            period_start + dt.timedelta(days=k * 16 // merges_per_period) for k in range(merges_per_period)
        )
    engine = create_catalog_engine(url)
    upgrade_schema(engine)
    try:
        with session_factory(engine)() as session:
            for product, bands in _products():
                upsert_product(session, product)
                upsert_bands(session, product.id, bands)
            for tile_index, tile in enumerate(cube.tiles):
                for period_index, period_start in enumerate(cube.period_starts):
                    for record in _tile_period_images(cube, tile_index, tile, period_index, period_start):
                        upsert_image(session, record)
            session.commit()
    finally:
        engine.dispose()
    return cube


def _products() -> list[tuple[ProductRecord, list[BandRecord]]]:
    spectral = [
        BandRecord(
            name=b,
            type="spectral",
            data_type="Int16",
            resolution=RESOLUTION,
            band_index=i,
            data_range=(0, 10000),
            display_range=(0, 4000),
            nodata=NODATA,
        )
        for i, b in enumerate(BANDS)
    ]

    def extra(names: Sequence[tuple[str, str, str, float | None]]) -> list[BandRecord]:
        return [
            BandRecord(name=n, type=t, data_type=d, resolution=RESOLUTION, band_index=len(spectral) + i, nodata=nd)
            for i, (n, t, d, nd) in enumerate(names)
        ]

    products = [
        (
            ProductRecord(id=f"{CUBE}-merge", name=f"{CUBE} merges", tags=("cube", "merge")),
            spectral + extra([("SCL", "class", "UInt8", 0.0), ("DATASOURCE", "generic", "UInt8", 255.0)]),
        )
    ]
    for function in FUNCTIONS:
        flags = [("CLEAROB", "generic", "UInt8", None), ("TOTALOB", "generic", "UInt8", None)]
        if function == "LCF":
            flags += [("SCL", "class", "UInt8", 0.0), ("PROVENANCE", "generic", "Int16", -1.0)]
        products.append(
            (
                ProductRecord(id=f"{CUBE}-{function}", name=f"{CUBE} {function}", tags=("cube", function)),
                spectral + extra(flags),
            )
        )
    return products


def _tile_period_images(
    cube: SyntheticCube, tile_index: int, tile: str, period_index: int, period_start: dt.date
) -> list[ImageRecord]:
    size = cube.tile_size
    transform = cube.tile_transform(tile_index)
    footprint = transform_geom(
        f"EPSG:{EPSG}", "EPSG:4326", mapping(box(*rasterio.transform.array_bounds(size, size, transform)[::1]))
    )
    cols = np.arange(size)[np.newaxis, :].repeat(size, axis=0)
    common = {
        "geometry": footprint,
        "crs": f"EPSG:{EPSG}",
        "geotransform": transform.to_gdal(),
        "width": size,
        "height": size,
        "pixel_size_x": RESOLUTION,
        "pixel_size_y": RESOLUTION,
        "tile": tile,
        "period_start": period_start,
    }
    folder_period = cube.root / CUBE / tile / period_start.isoformat()
    records = []
    stacks: dict[str, list[np.ndarray]] = {b: [] for b in BANDS}
    clears: list[np.ndarray] = []
    dates = cube.merge_dates[period_start]
    for merge_index, day in enumerate(dates):
        folder = cube.root / CUBE / tile / day.isoformat()
        item = f"{CUBE}_{tile}_{day:%Y%m%d}"
        scl = merge_scl(size, merge_index)
        files = {}
        for band in BANDS:
            values = (BASE[band] + 100 * period_index + 10 * merge_index + cols // 64).astype(np.int16)
            values[scl == 0] = NODATA
            stacks[band].append(values)
            files[band] = _write_cog(folder / f"{item}_{band}.tif", values, transform, NODATA)
        files["SCL"] = _write_cog(folder / f"{item}_SCL.tif", scl, transform, 0)
        files["DATASOURCE"] = _write_cog(folder / f"{item}_DATASOURCE.tif", np.zeros_like(scl), transform, 255)
        clears.append(scl == CLEAR_SCL)
        acquired = dt.datetime.combine(day, dt.time(13, 0), tzinfo=dt.UTC)
        records.append(
            ImageRecord(
                id=item,
                product_id=f"{CUBE}-merge",
                name=item,
                acquired=acquired,
                cloud_fraction=float((scl == CLOUD_SCL).mean()),
                files=[ImageFileRecord(band=b, href=str(p)) for b, p in files.items()],
                **common,
            )
        )
    clear = np.stack(clears)
    clear_count = clear.sum(axis=0).astype(np.uint8)
    total = (np.stack([s != NODATA for s in stacks[BANDS[0]]])).sum(axis=0).astype(np.uint8)
    last_clear = np.where(clear.any(axis=0), len(dates) - 1 - np.argmax(clear[::-1], axis=0), -1)
    doys = np.array([d.timetuple().tm_yday for d in dates])
    provenance = np.where(last_clear >= 0, doys[np.maximum(last_clear, 0)], -1).astype(np.int16)
    for function in FUNCTIONS:
        item = f"{CUBE}_{tile}_{period_start:%Y%m%d}_{function}"
        files = {}
        for band in BANDS:
            stack = np.stack(stacks[band]).astype(np.float64)
            masked = np.where(clear, stack, np.nan)
            if function == "LCF":
                chosen = np.take_along_axis(stack, np.maximum(last_clear, 0)[np.newaxis], axis=0)[0]
            elif function == "MED":
                chosen = np.nanmedian(np.where(clear.any(axis=0), masked, 0), axis=0)
            else:
                chosen = np.nanmean(np.where(clear.any(axis=0), masked, 0), axis=0)
            values = np.where(clear_count > 0, np.floor(chosen + 0.5), NODATA).astype(np.int16)
            files[band] = _write_cog(folder_period / f"{item}_{band}.tif", values, transform, NODATA)
        files["CLEAROB"] = _write_cog(folder_period / f"{item}_CLEAROB.tif", clear_count, transform, None)
        files["TOTALOB"] = _write_cog(folder_period / f"{item}_TOTALOB.tif", total, transform, None)
        if function == "LCF":
            files["PROVENANCE"] = _write_cog(folder_period / f"{item}_PROVENANCE.tif", provenance, transform, -1)
        records.append(
            ImageRecord(
                id=item,
                product_id=f"{CUBE}-{function}",
                name=item,
                acquired=dt.datetime.combine(period_start, dt.time(), tzinfo=dt.UTC),
                acquired_end=dt.datetime.combine(
                    period_start + dt.timedelta(days=15), dt.time(23, 59, 59), tzinfo=dt.UTC
                ),
                cloud_fraction=float(((clear_count == 0) & (total > 0)).mean()),
                files=[ImageFileRecord(band=b, href=str(p)) for b, p in files.items()],
                **common,
            )
        )
    return records


def _write_cog(path: Path, values: np.ndarray, transform: Affine, nodata: float | None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with rasterio.open(
        path,
        "w",
        driver="COG",
        width=values.shape[1],
        height=values.shape[0],
        count=1,
        dtype=values.dtype,
        crs=f"EPSG:{EPSG}",
        transform=transform,
        nodata=nodata,
        blocksize=min(512, max(16, 1 << (values.shape[0].bit_length() - 1))),
        compress="deflate",
        overview_resampling="nearest",
    ) as dst:
        dst.write(values, 1)
    return path
