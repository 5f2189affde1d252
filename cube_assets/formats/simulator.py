"""Deterministic simulator of Sentinel-2 Level-2A ``.SAFE`` products for demos and tests.

A simulated product looks like a real one to everything downstream: the folder and file
names, the lossless JPEG 2000 bands with their georeferencing (10 m bands in ``R10m``, 20 m
bands such as B8A and B11 in ``R20m`` only, 60 m bands in ``R60m``), the 20 m scene
classification ``SCL``, a ``PVI`` preview, and ``MTD_MSIL2A.xml`` and ``MTD_TL.xml`` with
the elements :mod:`cube_assets.formats.sentinel2_safe` reads. The ``simulator`` provider driver
(:mod:`cube_assets.providers.simulated`) writes these products into its archive and serves them.

What is simulated:

* **The ground** — a smooth land-cover map (water, forest, cropland, bare soil, urban) with
  typical surface-reflectance spectra, crop parcels whose greenness follows the season.
  The ground is a function of *world coordinates* (in the tile CRS) and the date only, so
  every scene over the same place shows the same landscape, as a time series must.
* **The atmosphere** — driven by ``seed``: clouds (SCL 8 medium probability, 9 high
  probability, 10 thin cirrus) covering ``cloud_fraction`` of the valid pixels, bright in
  every band; cloud shadows (SCL 3) displaced from the clouds away from the sun; sensor noise.
* **The swath edge** — with ``swath_edge=True`` a diagonal band of the tile is outside the
  swath: DN 0 in every band and SCL 0 there, as at real orbit edges.

Digital numbers follow processing baseline 05.10: ``DN = reflectance * 10000 + 1000``
(``BOA_ADD_OFFSET = -1000``). ``Cloud_Coverage_Assessment`` is the percentage of valid SCL
pixels in classes 8, 9 and 10, counted from the SCL that was written, and
``NODATA_PIXEL_PERCENTAGE`` the percentage of all SCL pixels that are 0, as in real products.
The same arguments give the same bytes on every run.
"""

from __future__ import annotations

import functools
import math
import os
import shutil
import uuid
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import rasterio
import shapely
from affine import Affine
from pyproj import CRS, Transformer
from shapely.geometry import Polygon, box

from cube_assets.atomic import atomic_path, atomic_write_text
from cube_assets.formats.sentinel2_safe import BAND_NAMES, NATIVE_RESOLUTION_M
from cube_assets.thread_map import map_in_threads

DEFAULT_BANDS: tuple[str, ...] = ("B02", "B03", "B04", "B08", "B8A", "B11")
#: Bands an L2A product can hold (L2A has no cirrus band B10).
L2A_BANDS: tuple[str, ...] = tuple(b for b in BAND_NAMES if b != "B10")
PROCESSING_BASELINE = "05.10"
QUANTIFICATION_VALUE = 10000
ADD_OFFSET = -1000
# Lossless (reversible 5/3 wavelet). BYPASS (JPEG 2000's selective arithmetic-coding bypass) is
# still lossless and measured 35 % less CPU to encode and 44 % less to decode a 1400² band here.
JP2_OPTIONS = {"QUALITY": "100", "REVERSIBLE": "YES", "YCC": "NO", "CODEBLOCK_STYLE": "BYPASS"}
#: The preview (PVI) keeps every 32nd pixel: 320 m for 10 m bands, like real previews.
PVI_STEP = 32

# SCL classes written by the simulator.
SCL_NODATA, SCL_CLOUD_SHADOW, SCL_VEGETATION, SCL_NOT_VEGETATED, SCL_WATER = 0, 3, 4, 5, 6
SCL_CLOUD_MEDIUM, SCL_CLOUD_HIGH, SCL_THIN_CIRRUS = 8, 9, 10
CLOUD_CLASSES = (SCL_CLOUD_MEDIUM, SCL_CLOUD_HIGH, SCL_THIN_CIRRUS)
_SCL_NAMES = {
    0: "NODATA", 1: "SATURATED_DEFECTIVE", 2: "DARK_FEATURE_SHADOW", 3: "CLOUD_SHADOW",
    4: "VEGETATION", 5: "NOT_VEGETATED", 6: "WATER", 7: "UNCLASSIFIED", 8: "CLOUD_MEDIUM_PROBA",
    9: "CLOUD_HIGH_PROBA", 10: "THIN_CIRRUS", 11: "SNOW_ICE",
}  # fmt: skip

# Land-cover classes of the simulated ground and their typical surface reflectance
# (B01 B02 B03 B04 B05 B06 B07 B08 B8A B09 B10 B11 B12).
WATER, FOREST, CROPLAND, BARE_SOIL, URBAN = 0, 1, 2, 3, 4
_SPECTRA = np.array(
    [
        [0.060, 0.050, 0.045, 0.030, 0.025, 0.020, 0.018, 0.015, 0.012, 0.010, 0.002, 0.008, 0.005],  # water
        [0.030, 0.028, 0.050, 0.028, 0.080, 0.220, 0.270, 0.300, 0.310, 0.300, 0.004, 0.150, 0.070],  # forest
        [0.040, 0.040, 0.080, 0.045, 0.120, 0.300, 0.360, 0.400, 0.410, 0.380, 0.005, 0.220, 0.110],  # green crop
        [0.090, 0.100, 0.140, 0.190, 0.220, 0.240, 0.260, 0.270, 0.280, 0.260, 0.006, 0.330, 0.280],  # bare soil
        [0.100, 0.100, 0.110, 0.120, 0.130, 0.150, 0.160, 0.170, 0.180, 0.160, 0.006, 0.200, 0.180],  # urban
    ],
    dtype=np.float32,
)
_CLOUD_SPECTRUM = np.array(
    [0.80, 0.78, 0.76, 0.75, 0.74, 0.73, 0.72, 0.72, 0.71, 0.50, 0.30, 0.45, 0.30], dtype=np.float32
)
_BAND_INDEX = {name: i for i, name in enumerate(BAND_NAMES)}


@dataclass(frozen=True)
class SimulatedScene:
    """Everything that defines one simulated L2A product (see :func:`simulate_l2a_product`)."""

    tile_id: str
    epsg: int
    ulx: float
    uly: float
    size_px: int
    sensing_time: datetime
    seed: int
    cloud_fraction: float
    swath_edge: bool
    resolution: int = 10
    bands: tuple[str, ...] = DEFAULT_BANDS
    spacecraft: str = "S2B"
    relative_orbit: int = 81
    landscape_seed: int = 0

    def __post_init__(self) -> None:
        tile = self.tile_id.upper()
        object.__setattr__(self, "tile_id", tile if tile.startswith("T") else f"T{tile}")
        if len(self.tile_id) != 6:
            raise ValueError(f"tile_id {self.tile_id!r}: expected an MGRS tile like 'T23LLF'")
        if self.sensing_time.tzinfo is None:
            raise ValueError(f"{self.tile_id}: sensing_time {self.sensing_time} must be timezone-aware")
        object.__setattr__(self, "sensing_time", self.sensing_time.astimezone(UTC).replace(microsecond=0))
        bands = tuple(dict.fromkeys(b.upper() for b in self.bands))
        unknown = [b for b in bands if b not in L2A_BANDS]
        if unknown:
            raise ValueError(f"{self.tile_id}: cannot simulate bands {unknown}; L2A bands are {L2A_BANDS}")
        object.__setattr__(self, "bands", bands)
        if not 0.0 <= self.cloud_fraction <= 1.0:
            raise ValueError(f"{self.tile_id}: cloud_fraction {self.cloud_fraction} not in [0, 1]")
        if self.resolution <= 0 or self.size_px <= 0:
            raise ValueError(f"{self.tile_id}: resolution and size_px must be positive")
        if self.size_px % 2:
            raise ValueError(f"{self.tile_id}: size_px {self.size_px} must be even (SCL is at 2x the pixel size)")
        if any(NATIVE_RESOLUTION_M[b] == 60 for b in bands) and self.size_px % 6:
            raise ValueError(f"{self.tile_id}: size_px {self.size_px} must be a multiple of 6 for 60 m bands")
        if self.spacecraft not in ("S2A", "S2B", "S2C"):
            raise ValueError(f"{self.tile_id}: spacecraft {self.spacecraft!r} is not S2A, S2B or S2C")

    @property
    def generation_time(self) -> datetime:
        """The (simulated) processing time: 2 h 30 min after sensing, floored to the hour."""
        return (self.sensing_time + timedelta(hours=2, minutes=30)).replace(minute=0, second=0)

    @property
    def product_id(self) -> str:
        """E.g. ``S2B_MSIL2A_20240105T133229_N0510_R081_T23LLF_20240105T160000``."""
        baseline = PROCESSING_BASELINE.replace(".", "")
        return (
            f"{self.spacecraft}_MSIL2A_{self.sensing_time:%Y%m%dT%H%M%S}_N{baseline}"
            f"_R{self.relative_orbit:03d}_{self.tile_id}_{self.generation_time:%Y%m%dT%H%M%S}"
        )

    @property
    def product_name(self) -> str:
        """The ``.SAFE`` folder name."""
        return f"{self.product_id}.SAFE"

    @property
    def absolute_orbit(self) -> int:
        """A plausible absolute orbit number (143 orbits per 10-day cycle since 2015-06-23)."""
        days = (self.sensing_time - datetime(2015, 6, 23, tzinfo=UTC)).total_seconds() / 86400.0
        return max(1, int(days * 14.3))

    @property
    def granule_name(self) -> str:
        """E.g. ``L2A_T23LLF_A035541_20240105T133229``."""
        return f"L2A_{self.tile_id}_A{self.absolute_orbit:06d}_{self.sensing_time:%Y%m%dT%H%M%S}"

    def band_resolution(self, band: str) -> int:
        """Pixel size (m) at which ``band`` is written: ``resolution`` times 1, 2 or 6."""
        return self.resolution * NATIVE_RESOLUTION_M[band] // 10


def simulate_l2a_product(
    archive_dir: str | os.PathLike[str],
    *,
    tile_id: str,
    epsg: int,
    ulx: float,
    uly: float,
    size_px: int,
    sensing_time: datetime,
    seed: int,
    resolution: int = 10,
    bands: Sequence[str] = DEFAULT_BANDS,
    cloud_fraction: float,
    swath_edge: bool,
    spacecraft: str = "S2B",
    relative_orbit: int = 81,
    landscape_seed: int = 0,
) -> Path:
    """Write one simulated Sentinel-2 L2A ``.SAFE`` product into ``archive_dir``.

    Args:
        tile_id: MGRS tile, ``"T23LLF"`` or ``"23LLF"``.
        epsg: EPSG code of the tile's UTM zone.
        ulx, uly: upper-left corner of the 10 m grid in that CRS.
        size_px: width and height of the grid of the 10 m bands (even; a multiple of 6 if a
            60 m band is asked for). 20 m bands and SCL have ``size_px // 2`` pixels.
        sensing_time: timezone-aware acquisition time (microseconds are dropped).
        seed: drives clouds, shadows, noise and the swath-edge position.
        resolution: pixel size in metres of the "10 m" bands; the 20 m and 60 m groups use
            2x and 6x that. Folder and file names use the actual pixel sizes.
        bands: spectral bands to write, each at its native resolution group only.
        cloud_fraction: fraction of valid pixels to cover with clouds (SCL 8, 9, 10).
        swath_edge: leave a diagonal part of the tile outside the swath (nodata).
        spacecraft, relative_orbit: used in the product name and metadata.
        landscape_seed: selects the simulated world; scenes sharing it share their ground.

    Returns:
        The path of the written ``.SAFE`` folder. An existing product of the same name is
        replaced (the new one is built beside it and swapped in).

    Raises:
        ValueError: if an argument is out of range (see :class:`SimulatedScene`).
        OSError: if the files cannot be written.
    """
    scene = SimulatedScene(
        tile_id=tile_id, epsg=epsg, ulx=ulx, uly=uly, size_px=size_px, sensing_time=sensing_time,
        seed=seed, cloud_fraction=cloud_fraction, swath_edge=swath_edge, resolution=resolution,
        bands=tuple(bands), spacecraft=spacecraft, relative_orbit=relative_orbit,
        landscape_seed=landscape_seed,
    )  # fmt: skip
    return write_simulated_product(archive_dir, scene)


def is_complete_product(product_dir: Path) -> bool:
    """Whether ``product_dir`` is a finished product: it exists and holds ``MTD_MSIL2A.xml``.

    Products are written in a hidden temporary folder and renamed into place after the
    metadata file, the last file written, so the metadata file marks a complete product.
    """
    return (product_dir / "MTD_MSIL2A.xml").is_file()


def simulate_archive(archive_dir: str | os.PathLike[str], scenes: Sequence[SimulatedScene]) -> list[Path]:
    """Simulate every scene not already present in ``archive_dir``.

    A product counts as present when its folder holds ``MTD_MSIL2A.xml``; a folder of the
    same name without it (an interrupted copy) is replaced. Repeated demo runs therefore
    reuse the products written before.

    Returns:
        The product paths, in the order of ``scenes``.

    Raises:
        ValueError: if two scenes would write the same product name.
        OSError: if the files cannot be written.
    """
    archive_dir = Path(archive_dir)
    names = [scene.product_name for scene in scenes]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise ValueError(f"{archive_dir}: several scenes would write {duplicates}")

    def simulate(scene: SimulatedScene) -> Path:
        target = archive_dir / scene.product_name
        if not is_complete_product(target):
            write_simulated_product(archive_dir, scene)
        return target

    return map_in_threads(simulate, scenes)


def write_simulated_product(archive_dir: str | os.PathLike[str], scene: SimulatedScene) -> Path:
    """Write ``scene`` as ``archive_dir/<product_name>``, replacing a product of that name.

    The product is built in a hidden folder beside the destination (``.<name>.<random>.tmp``)
    and renamed into place, so readers never see a partial product.

    Returns:
        The path of the ``.SAFE`` folder.

    Raises:
        OSError: if the files cannot be written or moved.
    """
    archive_dir = Path(archive_dir)
    archive_dir.mkdir(parents=True, exist_ok=True)
    target = archive_dir / scene.product_name
    staging = archive_dir / f".{scene.product_name}.{uuid.uuid4().hex[:12]}.tmp"
    try:
        _write_product_files(staging, scene)
        if target.exists():
            retired = archive_dir / f".{scene.product_name}.{uuid.uuid4().hex[:12]}.old"
            os.rename(target, retired)
            os.rename(staging, target)
            shutil.rmtree(retired, ignore_errors=True)
        else:
            os.rename(staging, target)
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
    return target


# --------------------------------------------------------------------------------------------
# Noise fields anchored in world coordinates


def _lattice_values(seed: int, octave: int, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """Uniform [0, 1) values at integer lattice points, a pure function of their indices."""
    r = rows.astype(np.int64)[:, None].astype(np.uint64)
    c = cols.astype(np.int64)[None, :].astype(np.uint64)
    key = np.uint64((seed * 0x9E3779B97F4A7C15 + octave * 0xD1B54A32D192ED03) & 0xFFFFFFFFFFFFFFFF)
    with np.errstate(over="ignore"):
        h = r * np.uint64(0xBF58476D1CE4E5B9) ^ c * np.uint64(0x94D049BB133111EB) ^ key
        h ^= h >> np.uint64(31)
        h *= np.uint64(0xBF58476D1CE4E5B9)
        h ^= h >> np.uint64(27)
        h *= np.uint64(0x94D049BB133111EB)
        h ^= h >> np.uint64(31)
    return ((h >> np.uint64(11)).astype(np.float64) / float(1 << 53)).astype(np.float32)


def _axis_weights(coords: np.ndarray, cell: float) -> tuple[np.ndarray, np.ndarray, int, int]:
    pos = coords / cell
    base = np.floor(pos).astype(np.int64)
    frac = (pos - base).astype(np.float32)
    weight = frac * frac * (3.0 - 2.0 * frac)  # smoothstep: no creases at lattice lines
    lo = int(base.min())
    return base - lo, weight, lo, int(base.max()) + 1


def _value_noise(
    xs: np.ndarray, ys: np.ndarray, *, seed: int, cell_m: float, octaves: int = 3, offset: int = 0
) -> np.ndarray:
    """Smooth noise in [0, 1) at the grid ``ys × xs`` (pixel centres, map units).

    Sums ``octaves`` layers of value noise whose lattice cells are ``cell_m``, ``cell_m/2``…
    metres; values depend only on the map coordinates, so overlapping grids agree.
    """
    total = np.zeros((ys.size, xs.size), dtype=np.float32)
    amplitude, norm = 1.0, 0.0
    for octave in range(octaves):
        cell = cell_m / (2**octave)
        ri, rw, r_lo, r_hi = _axis_weights(-ys, cell)  # rows grow southwards
        ci, cw, c_lo, c_hi = _axis_weights(xs, cell)
        lattice = _lattice_values(seed, octave + offset, np.arange(r_lo, r_hi + 1), np.arange(c_lo, c_hi + 1))
        along_rows = lattice[ri] * (1.0 - rw)[:, None] + lattice[ri + 1] * rw[:, None]
        layer = along_rows[:, ci] * (1.0 - cw)[None, :] + along_rows[:, ci + 1] * cw[None, :]
        total += np.float32(amplitude) * layer
        norm += amplitude
        amplitude *= 0.5
    return total / np.float32(norm)


def _block_mean(array: np.ndarray, factor: int) -> np.ndarray:
    if factor == 1:
        return array
    rows, cols = array.shape
    return array.reshape(rows // factor, factor, cols // factor, factor).mean(axis=(1, 3), dtype=np.float32)


def _upsample(array: np.ndarray, factor: int) -> np.ndarray:
    if factor == 1:
        return array
    return np.repeat(np.repeat(array, factor, axis=0), factor, axis=1)


def _shifted(mask: np.ndarray, d_row: int, d_col: int) -> np.ndarray:
    """``mask`` moved by (d_row, d_col) pixels, filling with False (no wrap-around)."""
    out = np.zeros_like(mask)
    rows, cols = mask.shape
    if abs(d_row) >= rows or abs(d_col) >= cols:
        return out
    src_r = slice(max(0, -d_row), min(rows, rows - d_row))
    dst_r = slice(max(0, d_row), min(rows, rows + d_row))
    src_c = slice(max(0, -d_col), min(cols, cols - d_col))
    dst_c = slice(max(0, d_col), min(cols, cols + d_col))
    out[dst_r, dst_c] = mask[src_r, src_c]
    return out


# --------------------------------------------------------------------------------------------
# The simulated scene


@dataclass
class _Rendered:
    """Arrays of one simulated scene, before encoding."""

    reflectance: dict[str, np.ndarray]  # band → float32 reflectance on the band's own grid
    valid: dict[int, np.ndarray] = field(default_factory=dict)  # grid factor → valid-data mask
    scl: np.ndarray | None = None  # uint8 at 2× the base pixel size
    valid_polygon: Polygon | None = None  # in the tile CRS


@functools.lru_cache(maxsize=8)
def _ground(seed: int, ulx: float, uly: float, size_px: int, resolution: float) -> tuple[np.ndarray, np.ndarray]:
    """Land-cover classes and surface texture of a footprint on the base grid, read-only.

    They depend on the place only, so every acquisition of a footprint shares them: computed
    once per footprint (the noise is most of a product's rendering).
    """
    xs = ulx + (np.arange(size_px) + 0.5) * resolution
    ys = uly - (np.arange(size_px) + 0.5) * resolution
    relief = _value_noise(xs, ys, seed=seed, cell_m=4000.0, octaves=4, offset=0)
    moisture = _value_noise(xs, ys, seed=seed, cell_m=2500.0, octaves=3, offset=10)
    settlement = _value_noise(xs, ys, seed=seed, cell_m=1200.0, octaves=2, offset=20)
    classes = np.full(relief.shape, CROPLAND, dtype=np.uint8)
    classes[moisture > 0.56] = FOREST
    classes[moisture < 0.36] = BARE_SOIL
    classes[settlement > 0.72] = URBAN
    classes[relief < 0.33] = WATER
    texture = 1.0 + 0.06 * (_value_noise(xs, ys, seed=seed, cell_m=80.0, octaves=2, offset=30) - 0.5)
    classes.flags.writeable = False
    texture.flags.writeable = False
    return classes, texture


def _land_cover(scene: SimulatedScene, xs: np.ndarray, ys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Land-cover classes (read-only) and crop greenness (0..1) on the base grid."""
    seed = scene.landscape_seed
    classes, _ = _ground(seed, scene.ulx, scene.uly, scene.size_px, float(scene.resolution))

    # Crop parcels of about 250 m with their own crop calendar: greenness follows a seasonal
    # curve (peak in local summer) shifted per parcel, so harvested fields look like soil.
    parcel = 250.0
    p_rows = np.floor(-ys / parcel).astype(np.int64)
    p_cols = np.floor(xs / parcel).astype(np.int64)
    r_lo, c_lo = int(p_rows.min()), int(p_cols.min())
    phase = _lattice_values(seed, 40, np.arange(r_lo, int(p_rows.max()) + 1), np.arange(c_lo, int(p_cols.max()) + 1))
    vigour = _lattice_values(seed, 41, np.arange(r_lo, int(p_rows.max()) + 1), np.arange(c_lo, int(p_cols.max()) + 1))
    day = scene.sensing_time.timetuple().tm_yday
    southern = 32700 < scene.epsg < 32800
    peak_day = 15.0 if southern else 196.0
    season = np.cos(2.0 * np.pi * ((day - peak_day) / 365.25 + (phase - 0.5) * 0.5))
    parcel_green = np.clip((0.55 + 0.45 * season) * (0.6 + 0.4 * vigour), 0.0, 1.0).astype(np.float32)
    greenness = parcel_green[(p_rows - r_lo)[:, None], (p_cols - c_lo)[None, :]]
    return classes, greenness


def _surface_reflectance(classes: np.ndarray, greenness: np.ndarray, band: str) -> np.ndarray:
    i = _BAND_INDEX[band]
    per_class = _SPECTRA[:, i][classes]
    soil, crop = _SPECTRA[BARE_SOIL, i], _SPECTRA[CROPLAND, i]
    return np.where(classes == CROPLAND, soil + greenness * (crop - soil), per_class).astype(np.float32)


def _render(scene: SimulatedScene) -> _Rendered:
    """Render the arrays of ``scene``: ground, swath edge, clouds and their shadows, SCL, band reflectance.

    Everything that must agree between bands and SCL (nodata, clouds, shadows) is decided on a
    coarse grid and repeated onto the finer ones. The phases draw from one generator seeded
    with ``scene.seed``, in a fixed order, so the same scene gives the same arrays.

    Returns:
        The :class:`_Rendered` arrays.
    """
    rng = np.random.default_rng(scene.seed)
    n, res = scene.size_px, float(scene.resolution)
    xs = scene.ulx + (np.arange(n) + 0.5) * res
    ys = scene.uly - (np.arange(n) + 0.5) * res
    classes, greenness = _land_cover(scene, xs, ys)
    factors = sorted({NATIVE_RESOLUTION_M[b] // 10 for b in scene.bands} | {2})
    coarsest = max(factors)
    valid_c, valid_polygon = _swath(scene, rng, coarsest)

    k = 2  # the SCL grid
    valid_scl = _upsample(valid_c, coarsest // k)
    cloud, opacity, scl = _clouds(scene, valid_scl, k)
    shadow = _cloud_shadows(scene, rng, cloud, scl, valid_scl, k)
    scl[shadow] = SCL_CLOUD_SHADOW
    _classify_clear_pixels(scl, classes, greenness, valid_scl & ~cloud & ~shadow, k)
    reflectance = _band_reflectance(scene, rng, classes, greenness, xs, ys, _upsample(shadow, k), _upsample(opacity, k))

    valid = {f: _upsample(valid_c, coarsest // f) for f in [1, *factors]}
    scl[~valid_scl] = SCL_NODATA
    return _Rendered(reflectance=reflectance, valid=valid, scl=scl, valid_polygon=valid_polygon)


def _swath(scene: SimulatedScene, rng: np.random.Generator, coarsest: int) -> tuple[np.ndarray, Polygon]:
    """The valid-data mask on the grid of factor ``coarsest`` and the valid polygon (tile CRS).

    Without ``swath_edge`` the whole tile is valid and nothing is drawn from ``rng``.
    """
    n, res = scene.size_px, float(scene.resolution)
    m = n // coarsest
    valid_c = np.ones((m, m), dtype=bool)
    valid_polygon: Polygon = box(scene.ulx, scene.uly - n * res, scene.ulx + n * res, scene.uly)
    if scene.swath_edge:
        # Outside the swath to the right of a slanted line col = a + slope * row.
        start = rng.uniform(0.55, 0.8) * n
        slope = rng.uniform(0.08, 0.25) * rng.choice((-1.0, 1.0))
        centre_cols = (np.arange(m) + 0.5) * coarsest
        centre_rows = (np.arange(m) + 0.5) * coarsest
        valid_c = centre_cols[None, :] < (start + slope * centre_rows)[:, None]
        far = 4.0 * n
        inside = Polygon(
            [
                (scene.ulx - far * res, scene.uly + far * res),
                (scene.ulx + (start - slope * far) * res, scene.uly + far * res),
                (scene.ulx + (start + slope * far) * res, scene.uly - far * res),
                (scene.ulx - far * res, scene.uly - far * res),
            ]
        )
        valid_polygon = valid_polygon.intersection(inside)
    return valid_c, valid_polygon


def _clouds(scene: SimulatedScene, valid_scl: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Clouds covering ``cloud_fraction`` of the valid pixels of the SCL grid (factor ``k``).

    Returns:
        The cloud mask, each pixel's cloud opacity (0 outside clouds) and the SCL with the
        cloud classes set (0 elsewhere).
    """
    n, res = scene.size_px, float(scene.resolution)
    scl_n = n // k
    xs_s = scene.ulx + (np.arange(scl_n) + 0.5) * res * k
    ys_s = scene.uly - (np.arange(scl_n) + 0.5) * res * k
    density = 0.7 * _value_noise(xs_s, ys_s, seed=scene.seed, cell_m=2400.0, octaves=4, offset=100)
    density += 0.3 * _value_noise(xs_s, ys_s, seed=scene.seed, cell_m=500.0, octaves=2, offset=110)
    cloud = np.zeros((scl_n, scl_n), dtype=bool)
    opacity = np.zeros((scl_n, scl_n), dtype=np.float32)
    scl = np.zeros((scl_n, scl_n), dtype=np.uint8)
    n_valid = int(valid_scl.sum())
    if scene.cloud_fraction > 0 and n_valid:
        n_cloud = int(round(scene.cloud_fraction * n_valid))
        if n_cloud:
            ordered = np.sort(density[valid_scl])
            threshold = ordered[n_valid - n_cloud]
            cloud = valid_scl & (density >= threshold)
            # Depth = rank of the density within the cloud (0 at the rim, 1 at the core): the
            # outer quarter is thin cirrus, the core 30 % high-probability cloud.
            depth = np.zeros((scl_n, scl_n), dtype=np.float32)
            depth[cloud] = np.searchsorted(ordered[n_valid - n_cloud :], density[cloud]) / n_cloud
            opacity = np.where(cloud, 0.15 + 0.85 * depth**0.8, 0.0).astype(np.float32)
            scl[cloud & (depth < 0.25)] = SCL_THIN_CIRRUS
            scl[cloud & (depth >= 0.25) & (depth < 0.7)] = SCL_CLOUD_MEDIUM
            scl[cloud & (depth >= 0.7)] = SCL_CLOUD_HIGH
    return cloud, opacity, scl


def _cloud_shadows(
    scene: SimulatedScene,
    rng: np.random.Generator,
    cloud: np.ndarray,
    scl: np.ndarray,
    valid_scl: np.ndarray,
    k: int,
) -> np.ndarray:
    """The shadows of the opaque clouds (not cirrus) on the SCL grid, displaced away from the sun.

    The sun is to the south in the northern hemisphere at the 10:30 overpass, to the north in
    the southern one; its azimuth and the shadow distance are drawn from ``rng``.
    """
    res = float(scene.resolution)
    southern = 32700 < scene.epsg < 32800
    sun_azimuth = math.radians((30.0 if southern else 150.0) + rng.uniform(-15.0, 15.0))
    distance_px = rng.uniform(400.0, 1000.0) / (res * k)
    d_col = int(round(-math.sin(sun_azimuth) * distance_px)) or 1
    d_row = int(round(math.cos(sun_azimuth) * distance_px)) or 1
    casting = cloud & (scl != SCL_THIN_CIRRUS)
    return _shifted(casting, d_row, d_col) & ~cloud & valid_scl


def _classify_clear_pixels(
    scl: np.ndarray,
    classes: np.ndarray,
    greenness: np.ndarray,
    clear: np.ndarray,
    k: int,
) -> None:
    """Set the ``clear`` pixels of ``scl`` to water, vegetation or not vegetated, from the surface at SCL resolution."""
    classes_s = classes[::k, ::k]
    red = _block_mean(_surface_reflectance(classes, greenness, "B04"), k)
    nir = _block_mean(_surface_reflectance(classes, greenness, "B08"), k)
    ndvi = (nir - red) / np.maximum(nir + red, 1e-6)
    scl[clear] = np.where(
        classes_s[clear] == WATER, SCL_WATER, np.where(ndvi[clear] > 0.4, SCL_VEGETATION, SCL_NOT_VEGETATED)
    )


def _band_reflectance(
    scene: SimulatedScene,
    rng: np.random.Generator,
    classes: np.ndarray,
    greenness: np.ndarray,
    xs: np.ndarray,
    ys: np.ndarray,
    shadow_base: np.ndarray,
    opacity_base: np.ndarray,
) -> dict[str, np.ndarray]:
    """Each band's reflectance: the textured surface, darkened in shadows, seen through the clouds, with sensor noise.

    It is computed on the base grid, then averaged onto the band's own grid; the noise is
    drawn from ``rng`` band by band, in ``scene.bands`` order.

    Returns:
        Band → float32 reflectance on the band's grid.
    """
    _, texture = _ground(scene.landscape_seed, scene.ulx, scene.uly, scene.size_px, float(scene.resolution))
    reflectance: dict[str, np.ndarray] = {}
    for band in scene.bands:
        i = _BAND_INDEX[band]
        surface = _surface_reflectance(classes, greenness, band) * texture
        surface = np.where(shadow_base, surface * np.float32(0.3), surface)
        seen = surface + opacity_base * (_CLOUD_SPECTRUM[i] - surface)
        factor = NATIVE_RESOLUTION_M[band] // 10
        band_grid = _block_mean(seen, factor)
        band_grid = band_grid + rng.normal(0.0, 0.004, band_grid.shape).astype(np.float32)
        reflectance[band] = band_grid
    return reflectance


def _to_dn(reflectance: np.ndarray, valid: np.ndarray) -> np.ndarray:
    dn = np.rint(reflectance * QUANTIFICATION_VALUE - ADD_OFFSET)
    dn = np.clip(dn, 1, 65534).astype(np.uint16)
    dn[~valid] = 0
    return dn


def _write_jp2(path: Path, array: np.ndarray, *, epsg: int, ulx: float, uly: float, pixel: float) -> None:
    count = 1 if array.ndim == 2 else array.shape[0]
    rows, cols = array.shape[-2:]
    with (
        atomic_path(path) as tmp,
        rasterio.open(
            tmp,
            "w",
            driver="JP2OpenJPEG",
            width=cols,
            height=rows,
            count=count,
            dtype=array.dtype,
            crs=CRS.from_epsg(epsg).to_wkt(),
            transform=Affine(pixel, 0.0, ulx, 0.0, -pixel, uly),
            **JP2_OPTIONS,
        ) as dst,
    ):
        dst.write(array if array.ndim == 3 else array[None])


def _write_product_files(root: Path, scene: SimulatedScene) -> None:
    rendered = _render(scene)
    granule = root / "GRANULE" / scene.granule_name
    img = granule / "IMG_DATA"
    stamp = f"{scene.tile_id}_{scene.sensing_time:%Y%m%dT%H%M%S}"
    jobs: list[tuple[Path, np.ndarray, float]] = []
    image_files: list[str] = []
    for band in scene.bands:
        pixel = scene.band_resolution(band)
        factor = NATIVE_RESOLUTION_M[band] // 10
        path = img / f"R{pixel}m" / f"{stamp}_{band}_{pixel}m.jp2"
        jobs.append((path, _to_dn(rendered.reflectance[band], rendered.valid[factor]), pixel))
    scl_pixel = scene.resolution * 2
    scl_path = img / f"R{scl_pixel}m" / f"{stamp}_SCL_{scl_pixel}m.jp2"
    assert rendered.scl is not None
    jobs.append((scl_path, rendered.scl, scl_pixel))
    if {"B02", "B03", "B04"} <= set(scene.bands):
        step = PVI_STEP
        rgb = np.stack([rendered.reflectance[b][::step, ::step] for b in ("B04", "B03", "B02")])
        pvi = np.clip(rgb / 0.25 * 255.0, 1, 255).astype(np.uint8)
        pvi[:, ~rendered.valid[1][::step, ::step]] = 0
        jobs.append((granule / "QI_DATA" / f"{stamp}_PVI.jp2", pvi, scene.resolution * step))
    for path, _, _ in jobs:
        path.parent.mkdir(parents=True, exist_ok=True)
        if "IMG_DATA" in path.parts:
            image_files.append(path.relative_to(root).with_suffix("").as_posix())

    with ThreadPoolExecutor(max_workers=min(4, os.cpu_count() or 1)) as pool:
        futures = [
            pool.submit(_write_jp2, path, array, epsg=scene.epsg, ulx=scene.ulx, uly=scene.uly, pixel=pixel)
            for path, array, pixel in jobs
        ]
        for future in futures:
            future.result()

    atomic_write_text(granule / "MTD_TL.xml", _tile_metadata_xml(scene))
    for folder in ("AUX_DATA",):
        (granule / folder).mkdir(exist_ok=True)
    (root / "DATASTRIP").mkdir(exist_ok=True)
    # The product metadata is written last: its presence marks a complete product.
    atomic_write_text(root / "MTD_MSIL2A.xml", _product_metadata_xml(scene, rendered, sorted(image_files)))


# --------------------------------------------------------------------------------------------
# Metadata XML


def _sub(parent: ET.Element, tag: str, text: str | None = None, **attributes: str) -> ET.Element:
    element = ET.SubElement(parent, tag, attributes)
    if text is not None:
        element.text = text
    return element


def _xml_text(root: ET.Element) -> str:
    ET.indent(root, space="  ")
    return '<?xml version="1.0" encoding="UTF-8" standalone="no"?>\n' + ET.tostring(root, encoding="unicode") + "\n"


def _scl_percentages(scl: np.ndarray) -> tuple[dict[int, float], float]:
    counts = np.bincount(scl.ravel(), minlength=12)
    total = scl.size
    valid = total - int(counts[0])
    per_class = {c: (100.0 * int(counts[c]) / valid if valid else 0.0) for c in range(1, 12)}
    return per_class, 100.0 * int(counts[0]) / total


def _footprint_lat_lon(scene: SimulatedScene, polygon: Polygon) -> str:
    to_wgs84 = Transformer.from_crs(scene.epsg, 4326, always_xy=True)
    ring = shapely.segmentize(polygon, max_segment_length=scene.size_px * scene.resolution / 4.0)
    xs, ys = np.asarray(ring.exterior.coords).T
    lons, lats = to_wgs84.transform(xs, ys)
    return " ".join(f"{lat:.10f} {lon:.10f}" for lon, lat in zip(lons, lats, strict=True))


def _product_metadata_xml(scene: SimulatedScene, rendered: _Rendered, image_files: list[str]) -> str:
    assert rendered.scl is not None and rendered.valid_polygon is not None
    per_class, nodata_pct = _scl_percentages(rendered.scl)
    cloud_pct = sum(per_class[c] for c in CLOUD_CLASSES)
    sensing = f"{scene.sensing_time:%Y-%m-%dT%H:%M:%S}.000Z"
    ns = "https://psd-14.sentinel2.eo.esa.int/PSD/User_Product_Level-2A.xsd"
    root = ET.Element("n1:Level-2A_User_Product", {"xmlns:n1": ns})
    general = _sub(root, "n1:General_Info")
    info = _sub(general, "Product_Info")
    _sub(info, "PRODUCT_START_TIME", sensing)
    _sub(info, "PRODUCT_STOP_TIME", sensing)
    _sub(info, "PRODUCT_URI", scene.product_name)
    _sub(info, "PROCESSING_LEVEL", "Level-2A")
    _sub(info, "PRODUCT_TYPE", "S2MSI2A")
    _sub(info, "PROCESSING_BASELINE", PROCESSING_BASELINE)
    _sub(info, "GENERATION_TIME", f"{scene.generation_time:%Y-%m-%dT%H:%M:%S}.000000Z")
    datatake = _sub(info, "Datatake", datatakeIdentifier=f"G{scene.spacecraft}_{scene.sensing_time:%Y%m%dT%H%M%S}")
    _sub(datatake, "SPACECRAFT_NAME", f"Sentinel-{scene.spacecraft[1:]}")
    _sub(datatake, "DATATAKE_TYPE", "INS-NOBS")
    _sub(datatake, "DATATAKE_SENSING_START", sensing)
    _sub(datatake, "SENSING_ORBIT_NUMBER", str(scene.relative_orbit))
    _sub(datatake, "SENSING_ORBIT_DIRECTION", "DESCENDING")
    organisation = _sub(info, "Product_Organisation")
    granule = _sub(_sub(organisation, "Granule_List"), "Granule", imageFormat="JPEG2000")
    granule.set(
        "granuleIdentifier", f"{scene.spacecraft}_OPER_MSI_L2A_TL_SIMU_{scene.granule_name}_N{PROCESSING_BASELINE}"
    )
    for name in image_files:
        _sub(granule, "IMAGE_FILE", name)

    characteristics = _sub(general, "Product_Image_Characteristics")
    for text, index in (("NODATA", "0"), ("SATURATED", "65535")):
        special = _sub(characteristics, "Special_Values")
        _sub(special, "SPECIAL_VALUE_TEXT", text)
        _sub(special, "SPECIAL_VALUE_INDEX", index)
    quantification = _sub(characteristics, "QUANTIFICATION_VALUES_LIST")
    _sub(quantification, "BOA_QUANTIFICATION_VALUE", str(QUANTIFICATION_VALUE), unit="none")
    _sub(quantification, "AOT_QUANTIFICATION_VALUE", "1000.0", unit="none")
    _sub(quantification, "WVP_QUANTIFICATION_VALUE", "1000.0", unit="cm")
    offsets = _sub(characteristics, "BOA_ADD_OFFSET_VALUES_LIST")
    for band_id in range(len(BAND_NAMES)):
        _sub(offsets, "BOA_ADD_OFFSET", str(ADD_OFFSET), band_id=str(band_id))
    spectral = _sub(characteristics, "Spectral_Information_List")
    for band_id, name in enumerate(BAND_NAMES):
        physical = name if name in ("B8A", "B10", "B11", "B12") else f"B{int(name[1:])}"
        band_info = _sub(spectral, "Spectral_Information", bandId=str(band_id), physicalBand=physical)
        _sub(band_info, "RESOLUTION", str(NATIVE_RESOLUTION_M[name]))
    classification = _sub(characteristics, "Scene_Classification_List")
    for index, text in _SCL_NAMES.items():
        entry = _sub(classification, "Scene_Classification_ID")
        _sub(entry, "SCENE_CLASSIFICATION_TEXT", f"SC_{text}")
        _sub(entry, "SCENE_CLASSIFICATION_INDEX", str(index))

    geometric = _sub(root, "n1:Geometric_Info")
    footprint = _sub(_sub(_sub(geometric, "Product_Footprint"), "Product_Footprint"), "Global_Footprint")
    _sub(footprint, "EXT_POS_LIST", _footprint_lat_lon(scene, rendered.valid_polygon))
    crs = _sub(geometric, "Coordinate_Reference_System")
    _sub(crs, "GEO_TABLES", "EPSG", version="1")
    _sub(crs, "HORIZONTAL_CS_TYPE", "GEOGRAPHIC")

    quality = _sub(root, "n1:Quality_Indicators_Info")
    _sub(quality, "Cloud_Coverage_Assessment", f"{cloud_pct:.6f}")
    content = _sub(quality, "Image_Content_QI")
    _sub(content, "NODATA_PIXEL_PERCENTAGE", f"{nodata_pct:.6f}")
    for tag, classes in (
        ("CLOUD_SHADOW_PERCENTAGE", (3,)),
        ("VEGETATION_PERCENTAGE", (4,)),
        ("NOT_VEGETATED_PERCENTAGE", (5,)),
        ("WATER_PERCENTAGE", (6,)),
        ("MEDIUM_PROBA_CLOUDS_PERCENTAGE", (8,)),
        ("HIGH_PROBA_CLOUDS_PERCENTAGE", (9,)),
        ("THIN_CIRRUS_PERCENTAGE", (10,)),
    ):
        _sub(content, tag, f"{sum(per_class[c] for c in classes):.6f}")
    return _xml_text(root)


def _number(value: float) -> str:
    """``8800000`` for whole numbers, the shortest exact repr otherwise (never exponents)."""
    value = float(value)
    return str(int(value)) if value.is_integer() else repr(value)


def _tile_metadata_xml(scene: SimulatedScene) -> str:
    ns = "https://psd-14.sentinel2.eo.esa.int/PSD/S2_PDI_Level-2A_Tile_Metadata.xsd"
    root = ET.Element("n1:Level-2A_Tile_ID", {"xmlns:n1": ns})
    general = _sub(root, "n1:General_Info")
    baseline = f"N{PROCESSING_BASELINE}"
    _sub(general, "TILE_ID", f"{scene.spacecraft}_OPER_MSI_L2A_TL_SIMU_{scene.generation_time:%Y%m%dT%H%M%S}"
         f"_A{scene.absolute_orbit:06d}_{scene.tile_id}_{baseline}", metadataLevel="Brief")  # fmt: skip
    _sub(general, "SENSING_TIME", f"{scene.sensing_time:%Y-%m-%dT%H:%M:%S}.000000Z", metadataLevel="Standard")
    geocoding = _sub(_sub(root, "n1:Geometric_Info"), "Tile_Geocoding", metadataLevel="Brief")
    _sub(geocoding, "HORIZONTAL_CS_NAME", CRS.from_epsg(scene.epsg).name)
    _sub(geocoding, "HORIZONTAL_CS_CODE", f"EPSG:{scene.epsg}")
    extent = scene.size_px * scene.resolution
    grids = [scene.resolution * f for f in (1, 2, 6) if extent % (scene.resolution * f) == 0]
    for pixel in grids:
        size = _sub(geocoding, "Size", resolution=str(pixel))
        _sub(size, "NROWS", str(extent // pixel))
        _sub(size, "NCOLS", str(extent // pixel))
    for pixel in grids:
        position = _sub(geocoding, "Geoposition", resolution=str(pixel))
        _sub(position, "ULX", _number(scene.ulx))
        _sub(position, "ULY", _number(scene.uly))
        _sub(position, "XDIM", str(pixel))
        _sub(position, "YDIM", str(-pixel))
    return _xml_text(root)
