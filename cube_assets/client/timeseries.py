"""Pixel time series of merges and composites: one point's values per date, or a polygon's mean and median.

Pure code over files (local paths, ``s3://`` URIs read through ``/vsis3/``, or GDAL paths): the
catalog, the HTTP route and :meth:`ImageCollection.timeseries` build the :class:`Observation`
records and the band scales, and these functions read the pixels.

For a point, the one pixel of each COG under it is read through a 1 × 1 window, so GDAL fetches
just the block that holds it (one range request over ``/vsis3/``); the files are read in parallel
threads (GDAL releases the GIL). A polygon reads the window of its bounding box. The files stay
open in a :class:`~cube_assets.raster.dataset_pool.DatasetPool` (by default one shared by the
process), so the next series over the same images opens nothing and a block read once is not
decoded again.

Each observation comes back with its raw values (as stored), its physical values (reflectance
for spectral bands stored as reflectance × 10000; the linear map from ``data_range`` to
``physical_range`` when a band declares one) and its quality flags: for a merge the quality
band's value and class (clear, not clear, saturated, nodata); for a composite its clear and total
observation counts and, for LCF, the day of year and date the value was taken from (PROVENANCE).
"""

from __future__ import annotations

import datetime as dt
import math
import os
from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from functools import lru_cache
from typing import Any

import numpy as np
import rasterio
from affine import Affine
from pyproj import Transformer
from rasterio.features import geometry_mask
from rasterio.windows import Window, from_bounds
from shapely.geometry import Point, mapping, shape
from shapely.geometry.base import BaseGeometry
from shapely.ops import transform as transform_geometry

from cube_assets.errors import CatalogError, InvalidRaster
from cube_assets.raster.dataset_pool import DatasetPool
from cube_assets.raster.masks import SCL_RULES, QualityClass, QualityRules, classify_quality

#: Band names read as quality flags, besides the quality band itself.
FLAG_BANDS = ("CLEAROB", "TOTALOB", "PROVENANCE")
#: Spectral bands store reflectance × this factor (the cube's surface reflectance convention).
REFLECTANCE_SCALE = 10000.0
#: Files read at once: one thread per core, at most 4 (more threads than cores only contend).
DEFAULT_WORKERS = max(1, min(4, os.cpu_count() or 1))
#: Largest polygon window read per file, in pixels (a bound on memory and time per request).
MAX_POLYGON_PIXELS = 4096 * 4096

#: The pool of open datasets used when a caller gives none.
SHARED_POOL = DatasetPool()

_CLASS_NAMES = {
    QualityClass.NODATA: "nodata",
    QualityClass.CLEAR: "clear",
    QualityClass.NOT_CLEAR: "not_clear",
    QualityClass.SATURATED: "saturated",
}


@dataclass(frozen=True)
class BandScale:
    """How one band's stored values become physical values: ``physical = raw * scale + offset``."""

    name: str
    nodata: float | None = None
    scale: float = 1.0
    offset: float = 0.0
    unit: str | None = None

    def physical(self, raw: float | None) -> float | None:
        """The physical value of ``raw`` (None stays None)."""
        return None if raw is None else raw * self.scale + self.offset


def band_scale(band: Any) -> BandScale:
    """The scale of a catalog band (an ORM row, a client band or any object with its attributes).

    Spectral bands without a ``physical_range`` hold reflectance × 10000; a band with both
    ``data_range`` and ``physical_range`` maps one onto the other linearly; any other band is
    taken as it is stored.

    Returns:
        The band's ``BandScale``.
    """
    name = str(band.name)
    nodata = getattr(band, "nodata", None)
    data_range = getattr(band, "data_range", None)
    physical_range = getattr(band, "physical_range", None)
    unit = getattr(band, "unit", None)
    if data_range is not None and physical_range is not None and data_range[1] != data_range[0]:
        scale = (physical_range[1] - physical_range[0]) / (data_range[1] - data_range[0])
        return BandScale(name, nodata, scale, physical_range[0] - data_range[0] * scale, unit)
    if getattr(band, "type", None) == "spectral":
        return BandScale(name, nodata, 1.0 / REFLECTANCE_SCALE, 0.0, unit or "reflectance")
    return BandScale(name, nodata, 1.0, 0.0, unit)


@dataclass(frozen=True)
class Observation:
    """One image of a time series: a merge (one date) or a composite (a period), and its files."""

    image_id: str
    product_id: str
    acquired: dt.datetime
    files: Mapping[str, str]
    acquired_end: dt.datetime | None = None
    #: The image's grid as the catalog records it (CRS and GDAL geotransform), when known: the pixel
    #: under a point is then found once per grid, and each file is only checked to be on it.
    crs: str | None = None
    geotransform: tuple[float, ...] | None = None


@dataclass(frozen=True)
class PointValue:
    """One observation at the point: raw and physical values per band, and its quality flags.

    ``flags`` holds ``valid`` (every band has data), ``clear`` (True, False or None when unknown)
    and, when the image has them, ``quality`` and ``quality_class`` (merges), ``clear_observations``
    and ``total_observations`` (composites), ``provenance_doy`` and ``provenance_date`` (LCF).
    """

    image_id: str
    product_id: str
    acquired: dt.datetime
    acquired_end: dt.datetime | None
    raw: dict[str, float | None]
    physical: dict[str, float | None]
    flags: dict[str, Any] = field(default_factory=dict)

    def as_json(self) -> dict[str, Any]:
        """The value as a JSON-ready dict (datetimes in ISO 8601)."""
        record = asdict(self)
        record["acquired"] = self.acquired.isoformat()
        record["acquired_end"] = self.acquired_end.isoformat() if self.acquired_end else None
        return record


@dataclass(frozen=True)
class AreaValue:
    """One observation over a polygon: per band the mean and median of its clear pixels, and the counts.

    ``raw`` and ``physical`` map band → ``{"mean": ..., "median": ...}`` (None when no pixel
    counts). ``pixels`` is the number of pixels inside the polygon, ``valid_pixels`` those with
    data in every band, ``clear_pixels`` those of them that are clear (the ones averaged).
    """

    image_id: str
    product_id: str
    acquired: dt.datetime
    acquired_end: dt.datetime | None
    raw: dict[str, dict[str, float | None]]
    physical: dict[str, dict[str, float | None]]
    pixels: int
    valid_pixels: int
    clear_pixels: int

    def as_json(self) -> dict[str, Any]:
        """The value as a JSON-ready dict (datetimes in ISO 8601)."""
        record = asdict(self)
        record["acquired"] = self.acquired.isoformat()
        record["acquired_end"] = self.acquired_end.isoformat() if self.acquired_end else None
        return record


def gdal_href(href: str) -> str:
    """The path GDAL opens for a catalog href: ``s3://bucket/key`` becomes ``/vsis3/bucket/key``.

    Returns:
        The GDAL path; local paths and ``/vsi`` paths unchanged.
    """
    if href.startswith("s3://"):
        return "/vsis3/" + href[len("s3://") :]
    return href


def point_lonlat(point_or_geometry: Any) -> BaseGeometry:
    """Parse where a series is taken: ``(lon, lat)``, a shapely geometry or a GeoJSON mapping, in EPSG:4326.

    Returns:
        A shapely ``Point`` or (multi)polygon.

    Raises:
        CatalogError: when it is none of those, is empty, or lies outside lon/lat bounds.
    """
    geometry: BaseGeometry
    if isinstance(point_or_geometry, BaseGeometry):
        geometry = point_or_geometry
    elif isinstance(point_or_geometry, Mapping):
        try:
            geometry = shape(point_or_geometry.get("geometry", point_or_geometry))
        except (AttributeError, KeyError, TypeError, ValueError) as error:
            raise CatalogError(f"time series geometry: not a GeoJSON geometry ({error})") from error
    elif (
        isinstance(point_or_geometry, Sequence)
        and not isinstance(point_or_geometry, str | bytes)
        and len(point_or_geometry) == 2
    ):
        try:
            geometry = Point(float(point_or_geometry[0]), float(point_or_geometry[1]))
        except (TypeError, ValueError) as error:
            raise CatalogError(f"time series point: (lon, lat) must be numbers, got {point_or_geometry!r}") from error
    else:
        raise CatalogError(
            f"time series: expected (lon, lat), a shapely geometry or GeoJSON, got {type(point_or_geometry).__name__}"
        )
    if geometry.is_empty or geometry.geom_type not in ("Point", "Polygon", "MultiPolygon"):
        raise CatalogError(f"time series geometry: expected a Point or a (Multi)Polygon, got {geometry.geom_type}")
    min_lon, min_lat, max_lon, max_lat = geometry.bounds
    if not all(math.isfinite(v) for v in geometry.bounds) or min_lon < -180 or max_lon > 180:
        raise CatalogError(f"time series geometry: longitudes must be within [-180, 180], got {geometry.bounds}")
    if min_lat < -90 or max_lat > 90:
        raise CatalogError(f"time series geometry: latitudes must be within [-90, 90], got {geometry.bounds}")
    return geometry


def point_timeseries(
    observations: Iterable[Observation],
    bands: Sequence[str],
    lon: float,
    lat: float,
    scales: Mapping[str, BandScale],
    *,
    quality_band: str | None = "SCL",
    quality_rules: QualityRules | None = SCL_RULES,
    max_workers: int = DEFAULT_WORKERS,
    pool: DatasetPool | None = None,
) -> list[PointValue]:
    """The values of ``bands`` at ``(lon, lat)`` in every observation, in time order.

    Each band file and flag file (``quality_band``, CLEAROB, TOTALOB, PROVENANCE, when the
    observation has them) is read at the one pixel under the point, all files in parallel,
    through ``pool`` (``SHARED_POOL`` when None). An observation whose raster does not cover
    the point is left out.

    Returns:
        One ``PointValue`` per observation covering the point, ordered by ``acquired`` then id.

    Raises:
        CatalogError: when an observation lacks a file of one of ``bands``, or a band has no scale.
        InvalidRaster: when a file cannot be read.
    """
    chosen = _checked(observations, bands, scales)
    pixels = _grid_pixels(chosen, lon, lat)
    reads = [
        (index, name, href)
        for index, observation in enumerate(chosen)
        for name, href in _files_to_read(observation, bands, quality_band)
    ]
    datasets = SHARED_POOL if pool is None else pool

    def read_share(share: Sequence[tuple[int, str, str]]) -> list[tuple[tuple[int, str], float | None | _Outside]]:
        # One task per thread, not per file: a pixel of an open dataset whose block is cached reads
        # in tens of microseconds, less than handing a task to a thread costs.
        return [((index, name), _read_pixel(datasets, href, lon, lat, pixels[index])) for index, name, href in share]

    workers = max(1, min(max_workers, len(reads)))
    shares = [reads[start::workers] for start in range(workers)]
    values: dict[tuple[int, str], float | None | _Outside] = {}
    with rasterio.Env(**_READ_OPTIONS):
        if workers == 1:
            values.update(read_share(reads))
        else:
            with ThreadPoolExecutor(max_workers=workers) as executor:
                for share_values in executor.map(read_share, shares):
                    values.update(share_values)
    quality_classes = _quality_classes(values, quality_band, quality_rules)
    series = []
    for index, observation in enumerate(chosen):
        if any(isinstance(values.get((index, name)), _Outside) for name in bands):
            continue
        raw = {name: _as_float(values[(index, name)]) for name in bands}
        raw = {name: None if _is_nodata(value, scales[name].nodata) else value for name, value in raw.items()}
        physical = {name: scales[name].physical(raw[name]) for name in bands}
        read_here = {
            name: _as_float(values[(index, name)]) for name, _ in _files_to_read(observation, bands, quality_band)
        }
        flags = _flags(observation, read_here, raw)
        flags.update(_quality_flags(observation, values, index, quality_band, quality_rules, quality_classes))
        series.append(
            PointValue(observation.image_id, observation.product_id, observation.acquired,
                       observation.acquired_end, raw, physical, flags)
        )  # fmt: skip
    return series


def polygon_timeseries(
    observations: Iterable[Observation],
    bands: Sequence[str],
    geometry: BaseGeometry,
    scales: Mapping[str, BandScale],
    *,
    quality_band: str | None = "SCL",
    quality_rules: QualityRules | None = SCL_RULES,
    max_workers: int = DEFAULT_WORKERS,
    pool: DatasetPool | None = None,
) -> list[AreaValue]:
    """Per observation, the mean and median of ``bands`` over the clear pixels inside ``geometry`` (EPSG:4326).

    A pixel counts when its centre is inside the polygon, every band has data there and it is
    clear: its quality class is clear (merges) or it has a clear observation, CLEAROB > 0
    (composites); an observation without either flag counts every valid pixel. Observations whose
    raster does not reach the polygon are left out. Files are read through ``pool``
    (``SHARED_POOL`` when None).

    Returns:
        One ``AreaValue`` per observation, ordered by ``acquired`` then id.

    Raises:
        CatalogError: when an observation lacks a file of one of ``bands``, a band has no scale,
            or the polygon's window is larger than ``MAX_POLYGON_PIXELS``.
        InvalidRaster: when a file cannot be read.
    """
    chosen = _checked(observations, bands, scales)
    datasets = SHARED_POOL if pool is None else pool

    def one(observation: Observation) -> AreaValue | None:
        return _area_value(datasets, observation, bands, geometry, scales, quality_band, quality_rules)

    with (
        rasterio.Env(**_READ_OPTIONS),
        ThreadPoolExecutor(max_workers=max(1, min(max_workers, len(chosen) or 1))) as pool,
    ):
        results = list(pool.map(one, chosen))
    return [value for value in results if value is not None]


# ----------------------------------------------------------------------------- reading


class _Outside:
    """Marker: the point is outside the raster."""


_OUTSIDE = _Outside()


@lru_cache(maxsize=64)
def _from_lonlat(crs: str) -> Transformer:
    return Transformer.from_crs("EPSG:4326", crs, always_xy=True)


#: GDAL settings of the reads: no directory listing per file (no sidecars are looked for).
_READ_OPTIONS = {"GDAL_DISABLE_READDIR_ON_OPEN": "EMPTY_DIR"}


def _grid_pixels(
    observations: Sequence[Observation], lon: float, lat: float
) -> dict[int, tuple[tuple[float, ...], int, int] | None]:
    """Per observation index, ``(geotransform, row, col)`` of the point on its recorded grid (None when unknown).

    The point is located once per distinct grid: the images of one tile share theirs.
    """
    located: dict[tuple[str, tuple[float, ...]], tuple[tuple[float, ...], int, int]] = {}
    pixels: dict[int, tuple[tuple[float, ...], int, int] | None] = {}
    for index, observation in enumerate(observations):
        if observation.crs is None or observation.geotransform is None:
            pixels[index] = None
            continue
        key = (observation.crs, tuple(observation.geotransform))
        if key not in located:
            x, y = _from_lonlat(observation.crs).transform(lon, lat)
            col_f, row_f = ~Affine.from_gdal(*observation.geotransform) @ (x, y)
            located[key] = (key[1], math.floor(row_f), math.floor(col_f))
        pixels[index] = located[key]
    return pixels


def _read_pixel(
    pool: DatasetPool,
    href: str,
    lon: float,
    lat: float,
    grid_pixel: tuple[tuple[float, ...], int, int] | None = None,
) -> float | None | _Outside:
    """The value of band 1 of ``href`` under ``(lon, lat)``; None at nodata; ``_OUTSIDE`` off the raster.

    With ``grid_pixel`` (the point's row and column on the image's recorded grid) a file on that
    grid is read there without looking at its CRS; any other file is located from its own header.
    """
    path = gdal_href(href)
    try:
        with pool.dataset(path) as src:
            if grid_pixel is not None and _same_geotransform(src.get_transform(), grid_pixel[0]):
                row, col = grid_pixel[1], grid_pixel[2]
            else:
                x, y = _from_lonlat(src.crs.to_string()).transform(lon, lat)
                col_f, row_f = ~src.transform @ (x, y)
                row, col = math.floor(row_f), math.floor(col_f)
            if not (0 <= row < src.height and 0 <= col < src.width):
                return _OUTSIDE
            value = src.read(1, window=Window(col, row, 1, 1))[0, 0]
            nodata = src.nodata
            if nodata is not None and (value == nodata or (math.isnan(nodata) and math.isnan(value))):
                return None
            return float(value)
    except rasterio.errors.RasterioIOError as error:
        raise InvalidRaster(f"{path}: cannot be read ({error})") from error


def _same_geotransform(found: Sequence[float], recorded: Sequence[float]) -> bool:
    return all(abs(a - b) <= 1e-9 * max(1.0, abs(b)) for a, b in zip(found, recorded, strict=True))


def _area_value(
    pool: DatasetPool,
    observation: Observation,
    bands: Sequence[str],
    geometry: BaseGeometry,
    scales: Mapping[str, BandScale],
    quality_band: str | None,
    quality_rules: QualityRules | None,
) -> AreaValue | None:
    """Read the window of ``geometry`` in every file of ``observation`` and summarise its clear pixels."""
    first = gdal_href(observation.files[bands[0]])
    with pool.dataset(first) as src:
        crs, transform, width, height = src.crs.to_string(), src.transform, src.width, src.height
    local = transform_geometry(_from_lonlat(crs).transform, geometry)
    exact = from_bounds(*local.bounds, transform=transform)
    col0, row0 = max(0, math.floor(exact.col_off)), max(0, math.floor(exact.row_off))
    col1 = min(width, math.ceil(exact.col_off + exact.width))
    row1 = min(height, math.ceil(exact.row_off + exact.height))
    if col1 <= col0 or row1 <= row0:
        return None
    window = Window(col0, row0, col1 - col0, row1 - row0)
    if window.width * window.height > MAX_POLYGON_PIXELS:
        raise CatalogError(
            f"time series polygon: {int(window.width)} x {int(window.height)} pixels of {observation.image_id} "
            f"is more than {MAX_POLYGON_PIXELS} pixels; use a smaller polygon"
        )
    inside = ~geometry_mask(
        [mapping(local)],
        out_shape=(int(window.height), int(window.width)),
        transform=rasterio.windows.transform(window, transform),
    )
    arrays = {}
    for name, href in _files_to_read(observation, bands, quality_band):
        path = gdal_href(href)
        try:
            with pool.dataset(path) as src:
                arrays[name] = src.read(1, window=window)
        except rasterio.errors.RasterioIOError as error:
            raise InvalidRaster(f"{path}: cannot be read ({error})") from error
    valid = inside.copy()
    for name in bands:
        nodata = scales[name].nodata
        if nodata is not None:
            valid &= ~((arrays[name] == nodata) | (np.isnan(nodata) & np.isnan(arrays[name].astype(float))))
    clear = valid.copy()
    if quality_band and quality_band in arrays and quality_rules is not None:
        clear &= classify_quality(arrays[quality_band], quality_rules) == QualityClass.CLEAR
    elif "CLEAROB" in arrays:
        clear &= arrays["CLEAROB"] > 0
    raw: dict[str, dict[str, float | None]] = {}
    physical: dict[str, dict[str, float | None]] = {}
    for name in bands:
        values = arrays[name][clear].astype(np.float64)
        stats = {"mean": None, "median": None} if values.size == 0 else {
            "mean": float(values.mean()), "median": float(np.median(values))
        }  # fmt: skip
        raw[name] = stats
        physical[name] = {key: scales[name].physical(value) for key, value in stats.items()}
    return AreaValue(
        observation.image_id,
        observation.product_id,
        observation.acquired,
        observation.acquired_end,
        raw,
        physical,
        pixels=int(inside.sum()),
        valid_pixels=int(valid.sum()),
        clear_pixels=int(clear.sum()),
    )


# ----------------------------------------------------------------------------- flags


def _checked(
    observations: Iterable[Observation], bands: Sequence[str], scales: Mapping[str, BandScale]
) -> list[Observation]:
    bands = list(bands)
    if not bands:
        raise CatalogError("time series: no bands given")
    unscaled = [name for name in bands if name not in scales]
    if unscaled:
        raise CatalogError(f"time series: no band description for {unscaled}")
    chosen = sorted(observations, key=lambda o: (o.acquired, o.image_id))
    for observation in chosen:
        missing = [name for name in bands if name not in observation.files]
        if missing:
            raise CatalogError(
                f"image {observation.image_id!r} has no file for band(s) {missing}; it has {sorted(observation.files)}"
            )
    return chosen


def _files_to_read(observation: Observation, bands: Sequence[str], quality_band: str | None) -> list[tuple[str, str]]:
    flag_names = [name for name in (quality_band, *FLAG_BANDS) if name and name not in bands]
    names = [*bands, *(name for name in flag_names if name in observation.files)]
    return [(name, observation.files[name]) for name in names]


def _as_float(value: float | None | _Outside) -> float | None:
    return None if value is None or isinstance(value, _Outside) else float(value)


def _is_nodata(value: float | None, nodata: float | None) -> bool:
    if value is None:
        return True
    return nodata is not None and (value == nodata or (math.isnan(nodata) and math.isnan(value)))


def _flags(
    observation: Observation, read: Mapping[str, float | None], raw: Mapping[str, float | None]
) -> dict[str, Any]:
    """``valid``, and a composite's observation counts and provenance."""
    flags: dict[str, Any] = {"valid": all(value is not None for value in raw.values()), "clear": None}
    if "CLEAROB" in read:
        clear_count = read.get("CLEAROB")
        flags["clear_observations"] = None if clear_count is None else int(clear_count)
        flags["clear"] = bool(clear_count) if clear_count is not None else False
    if "TOTALOB" in read:
        total = read.get("TOTALOB")
        flags["total_observations"] = None if total is None else int(total)
    if "PROVENANCE" in read:
        doy = read.get("PROVENANCE")
        flags["provenance_doy"] = None if doy is None else int(doy)
        flags["provenance_date"] = None if doy is None else _doy_date(observation.acquired.date(), int(doy)).isoformat()
    return flags


def _quality_classes(
    values: Mapping[tuple[int, str], float | None | _Outside],
    quality_band: str | None,
    quality_rules: QualityRules | None,
) -> dict[int, QualityClass]:
    """The class of every quality value read, by value, classified in one call."""
    if not quality_band or quality_rules is None:
        return {}
    found = {
        int(value)
        for (_, name), value in values.items()
        if name == quality_band and value is not None and not isinstance(value, _Outside)
    }
    if not found:
        return {}
    distinct = np.array(sorted(found))
    classes = classify_quality(distinct, quality_rules)
    return {int(value): QualityClass(int(klass)) for value, klass in zip(distinct, classes, strict=True)}


def _quality_flags(
    observation: Observation,
    values: Mapping[tuple[int, str], float | None | _Outside],
    index: int,
    quality_band: str | None,
    quality_rules: QualityRules | None,
    quality_classes: Mapping[int, QualityClass],
) -> dict[str, Any]:
    """A merge's quality value and class, and whether it is clear."""
    if not quality_band or quality_band not in observation.files:
        return {}
    value = values.get((index, quality_band))
    quality = None if value is None or isinstance(value, _Outside) else int(value)
    flags: dict[str, Any] = {"quality": quality}
    if quality_rules is not None and "CLEAROB" not in observation.files:
        klass = QualityClass.NODATA if quality is None else quality_classes[quality]  # None: the band's own nodata
        flags["quality_class"] = _CLASS_NAMES[klass]
        flags["clear"] = klass == QualityClass.CLEAR
    return flags


def _doy_date(period_start: dt.date, doy: int) -> dt.date:
    """The date of day of year ``doy`` on or after ``period_start``'s year (periods restart yearly)."""
    start_doy = period_start.timetuple().tm_yday
    year = period_start.year if doy >= start_doy else period_start.year + 1
    return dt.date(year, 1, 1) + dt.timedelta(days=doy - 1)


def observations_of(images: Iterable[Any]) -> list[Observation]:
    """Observation records of catalog images (ORM rows or client images with ``files``).

    Returns:
        One ``Observation`` per image, its files as ``{band: href}``.
    """
    result = []
    for image in images:
        files = image.files
        if isinstance(files, Mapping):
            hrefs = {band: getattr(file, "href", file) for band, file in files.items()}
        else:
            hrefs = {file.band: file.href for file in files}
        geotransform = getattr(image, "geotransform", None)
        result.append(
            Observation(
                image.id,
                image.product_id,
                image.acquired,
                hrefs,
                image.acquired_end,
                crs=getattr(image, "crs", None),
                geotransform=tuple(geotransform) if geotransform is not None else None,
            )
        )
    return result


__all__ = [
    "AreaValue",
    "BandScale",
    "Observation",
    "PointValue",
    "SHARED_POOL",
    "band_scale",
    "gdal_href",
    "observations_of",
    "point_lonlat",
    "point_timeseries",
    "polygon_timeseries",
]
