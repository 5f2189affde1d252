"""Quicklooks: small RGBA PNG previews of three bands, nodata transparent.

Values are stretched linearly from ``value_range`` to 0..255 (rounded half up) and clipped.
Without a ``value_range`` the stretch is :func:`default_stretch`: the bands' display range when
one is known, else the 2nd to 98th percentile of the valid pixels of the three bands together
(one range for all three, so colours keep their balance) — the same stretch the map tiles use
by default. A pixel is transparent (alpha 0, colour 0) where any of the three bands is nodata. The long
side is at most ``max_size`` pixels; smaller rasters are not enlarged. Downsampling is nearest
neighbour (the source pixel under each output pixel's centre), so nodata never blends into
colours.
"""

from __future__ import annotations

import contextlib
import math
import os
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import rasterio
from rasterio.enums import Resampling
from rasterio.errors import NotGeoreferencedWarning, RasterioIOError
from rasterio.io import DatasetReader, MemoryFile

from cube_assets.atomic import atomic_path
from cube_assets.errors import InvalidRaster

REFLECTANCE_DISPLAY_RANGE = (0.0, 4000.0)
"""The display range of the cube's spectral bands (reflectance × 10000): what the catalog records for them,
and so the stretch of their quicklooks, thumbnails and map tiles."""

STRETCH_PERCENTILES = (2.0, 98.0)
"""Percentiles of the valid pixels a stretch spans when no display range is known."""

THUMBNAIL_SIZE = 256
"""Long side, in pixels, of the thumbnails embedded in materialization metadata."""

THUMBNAIL_MAX_BYTES = 48_000
"""Largest thumbnail PNG: a noisy image is made smaller until its PNG fits."""


def percentile_stretch(
    bands: Sequence[np.ndarray], valid: np.ndarray, percentiles: tuple[float, float] = STRETCH_PERCENTILES
) -> tuple[float, float]:
    """The ``(low, high)`` percentiles of the pixels of ``bands`` where ``valid`` is True, all bands together.

    Returns:
        An increasing range: ``(0, 1)`` when no pixel is valid, ``(v, v + 1)`` when every valid
        pixel holds the same value ``v``.
    """
    values = np.concatenate([np.asarray(band)[valid].astype(np.float64).ravel() for band in bands])
    values = values[np.isfinite(values)]
    if values.size == 0:
        return (0.0, 1.0)
    low, high = (float(v) for v in np.percentile(values, percentiles))
    return (low, high) if high > low else (low, low + 1.0)


def default_stretch(
    display_ranges: Sequence[tuple[float, float] | None], bands: Sequence[np.ndarray], valid: np.ndarray
) -> tuple[float, float]:
    """The stretch of a colour composite: the bands' display range, else the percentiles of their pixels.

    ``display_ranges`` holds one entry per band (None: unknown). When every band has one, the
    stretch spans the lowest low to the highest high of them; otherwise it is
    :func:`percentile_stretch` of the valid pixels.

    Returns:
        An increasing ``(low, high)``.
    """
    known = [r for r in display_ranges if r is not None]
    if known and len(known) == len(display_ranges):
        low, high = min(float(r[0]) for r in known), max(float(r[1]) for r in known)
        if high > low:
            return (low, high)
    return percentile_stretch(bands, valid)


def write_quicklook(
    red: np.ndarray,
    green: np.ndarray,
    blue: np.ndarray,
    destination: str | os.PathLike[str],
    *,
    nodata: float | int | None,
    max_size: int = 768,
    value_range: tuple[float, float] | None = None,
) -> Path:
    """Write an RGBA PNG quicklook of three same-shaped 2-D bands to ``destination``.

    ``nodata`` applies to all three bands (``None``: only NaN counts as missing). Without
    ``value_range`` the bands are stretched over the 2nd to 98th percentile of their valid pixels.

    Returns:
        The destination path.

    Raises:
        InvalidRaster: if the bands are not 2-D arrays of one shape.
        ValueError: if ``max_size`` < 1 or ``value_range`` is empty.
    """
    bands = [np.asarray(band) for band in (red, green, blue)]
    for colour, band in zip(("red", "green", "blue"), bands, strict=True):
        if band.ndim != 2 or 0 in band.shape:
            raise InvalidRaster(f"quicklook {colour} band: expected a non-empty 2-D array, got shape {band.shape}")
    if len({band.shape for band in bands}) != 1:
        raise InvalidRaster(f"quicklook bands differ in shape: {[band.shape for band in bands]}")
    out_shape = quicklook_shape(bands[0].shape, max_size)
    rows, cols = _nearest_indices(bands[0].shape, out_shape)
    small = [band[np.ix_(rows, cols)] for band in bands]
    valid = np.logical_and.reduce([_valid(band, nodata) for band in small])
    stretch = value_range if value_range is not None else percentile_stretch(small, valid)
    return _write_png(_rgba(small, valid, stretch), destination)


def quicklook_from_files(
    red_path: str | os.PathLike[str],
    green_path: str | os.PathLike[str],
    blue_path: str | os.PathLike[str],
    destination: str | os.PathLike[str],
    max_size: int = 768,
    *,
    value_range: tuple[float, float] | None = None,
) -> Path:
    """Write an RGBA PNG quicklook of band 1 of three single-band rasters of one extent.

    Each band is read decimated straight to the quicklook size (``out_shape``, nearest, using
    the file's overviews when it has them), so a large raster is never read whole. The three
    files may differ in resolution (e.g. 10 m and 20 m bands) but must share CRS and bounds.
    Missing pixels come from each file's own mask (nodata value, mask band or alpha). Without
    ``value_range`` the stretch is the 2nd to 98th percentile of the valid pixels read.

    Returns:
        The destination path.

    Raises:
        InvalidRaster: if a file cannot be read, or the files differ in CRS or bounds.
        ValueError: if ``max_size`` < 1 or ``value_range`` is empty.
    """
    bands, valid = _read_decimated((red_path, green_path, blue_path), max_size)
    stretch = value_range if value_range is not None else percentile_stretch(bands, valid)
    return _write_png(_rgba(bands, valid, stretch), destination)


def thumbnail_png(
    red_path: str | os.PathLike[str],
    green_path: str | os.PathLike[str],
    blue_path: str | os.PathLike[str],
    max_size: int = THUMBNAIL_SIZE,
    *,
    value_range: tuple[float, float] | None = None,
    max_bytes: int = THUMBNAIL_MAX_BYTES,
) -> bytes:
    """An RGBA PNG thumbnail of three single-band rasters, as bytes (for embedding in metadata).

    Read and stretched like :func:`quicklook_from_files` (overviews, nodata transparent, the
    2nd to 98th percentile without ``value_range``), at most ``max_size`` pixels on the long side;
    when the PNG is larger than ``max_bytes`` (noise compresses badly), the side shrinks by a
    third until it fits (or reaches 16 px).

    Returns:
        The PNG file's bytes.

    Raises:
        InvalidRaster: if a file cannot be read, or the files differ in CRS or bounds.
        ValueError: if ``max_size`` < 1 or ``value_range`` is empty.
    """
    size = max_size
    while True:
        bands, valid = _read_decimated((red_path, green_path, blue_path), size)
        stretch = value_range if value_range is not None else percentile_stretch(bands, valid)
        png = _png_bytes(_rgba(bands, valid, stretch))
        if len(png) <= max_bytes or size <= 16:
            return png
        size = max(16, size * 2 // 3)


def _png_bytes(rgba: np.ndarray) -> bytes:
    """A ``(4, H, W)`` uint8 array encoded as an RGBA PNG, in memory."""
    with rasterio.Env(GDAL_PAM_ENABLED="NO"), warnings.catch_warnings():
        warnings.simplefilter("ignore", NotGeoreferencedWarning)
        with MemoryFile() as memory:
            with memory.open(driver="PNG", count=4, height=rgba.shape[1], width=rgba.shape[2], dtype="uint8") as png:
                png.write(rgba)
            return bytes(memory.read())


def _read_decimated(paths_in: Sequence[str | os.PathLike[str]], max_size: int) -> tuple[list[np.ndarray], np.ndarray]:
    """Band 1 of each file read at the quicklook size, and where all of them hold data."""
    paths = list(paths_in)
    with contextlib.ExitStack() as stack:
        sources = [_open(stack, path) for path in paths]
        for path, src in zip(paths[1:], sources[1:], strict=True):
            _check_same_extent(paths[0], sources[0], path, src)
        out_shape = quicklook_shape(sources[0].shape, max_size)
        bands, masks = [], []
        for path, src in zip(paths, sources, strict=True):
            try:
                bands.append(src.read(1, out_shape=out_shape, resampling=Resampling.nearest))
                masks.append(src.read_masks(1, out_shape=out_shape, resampling=Resampling.nearest) > 0)
            except RasterioIOError as error:
                raise InvalidRaster(f"{path}: cannot be read ({error})") from error
    return bands, np.logical_and.reduce(masks)


def quicklook_shape(shape: tuple[int, int], max_size: int) -> tuple[int, int]:
    """The ``(height, width)`` of the quicklook of a ``shape`` raster: long side ``<= max_size``.

    Returns:
        The shape scaled to keep the aspect ratio, each side at least 1; ``shape`` itself when
        it already fits.

    Raises:
        ValueError: if ``max_size`` < 1.
    """
    if max_size < 1:
        raise ValueError(f"max_size must be at least 1, got {max_size}")
    height, width = shape
    scale = max_size / max(height, width)
    if scale >= 1:
        return (height, width)
    return (max(1, round(height * scale)), max(1, round(width * scale)))


def _nearest_indices(shape: tuple[int, int], out_shape: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Row and column indices of the source pixels under each output pixel's centre."""
    rows = np.floor((np.arange(out_shape[0]) + 0.5) * shape[0] / out_shape[0]).astype(np.intp)
    cols = np.floor((np.arange(out_shape[1]) + 0.5) * shape[1] / out_shape[1]).astype(np.intp)
    return rows, cols


def _valid(band: np.ndarray, nodata: float | int | None) -> np.ndarray:
    """True where ``band`` holds data: not NaN and not ``nodata``."""
    valid = ~np.isnan(band) if band.dtype.kind == "f" else np.ones(band.shape, dtype=bool)
    if nodata is not None and not math.isnan(nodata):
        valid &= band != nodata
    return valid


def _rgba(bands: list[np.ndarray], valid: np.ndarray, value_range: tuple[float, float]) -> np.ndarray:
    """A ``(4, H, W)`` uint8 RGBA array: bands stretched from ``value_range`` to 0..255."""
    low, high = (float(v) for v in value_range)
    if not high > low:
        raise ValueError(f"value_range must be increasing, got {value_range}")
    rgba = np.zeros((4, *valid.shape), dtype=np.uint8)
    for index, band in enumerate(bands):
        scaled = (band.astype(np.float64) - low) * 255.0 / (high - low)
        scaled = np.clip(np.nan_to_num(scaled, nan=0.0), 0.0, 255.0)
        rgba[index] = np.where(valid, np.floor(scaled + 0.5), 0).astype(np.uint8)  # round half up
    rgba[3] = np.where(valid, 255, 0).astype(np.uint8)
    return rgba


def _open(stack: contextlib.ExitStack, path: str | os.PathLike[str]) -> DatasetReader:
    """Open a band file for the length of ``stack``."""
    try:
        return stack.enter_context(rasterio.open(path))
    except RasterioIOError as error:
        raise InvalidRaster(f"{path}: cannot be read as a raster ({error})") from error


def _check_same_extent(
    reference_path: str | os.PathLike[str], reference: DatasetReader, path: str | os.PathLike[str], src: DatasetReader
) -> None:
    """Raise ``InvalidRaster`` unless ``src`` has the reference's CRS and bounds (within a pixel)."""
    if src.crs != reference.crs:
        raise InvalidRaster(f"{path}: CRS {src.crs} differs from {Path(reference_path).name}'s {reference.crs}")
    tolerance = max(*reference.res, *src.res)
    if any(abs(a - b) > tolerance for a, b in zip(src.bounds, reference.bounds, strict=True)):
        raise InvalidRaster(
            f"{path}: bounds {tuple(src.bounds)} differ from {Path(reference_path).name}'s {tuple(reference.bounds)}"
        )


def _write_png(rgba: np.ndarray, destination: str | os.PathLike[str]) -> Path:
    """Write a ``(4, H, W)`` uint8 array as an RGBA PNG, atomically; no ``.aux.xml`` sidecar."""
    destination = Path(destination)
    profile = {
        "driver": "PNG",
        "count": 4,
        "height": rgba.shape[1],
        "width": rgba.shape[2],
        "dtype": "uint8",
    }
    with rasterio.Env(GDAL_PAM_ENABLED="NO"), atomic_path(destination) as tmp:
        with warnings.catch_warnings():
            # A quicklook is a picture, not a georeferenced raster; say so once, quietly.
            warnings.simplefilter("ignore", NotGeoreferencedWarning)
            with rasterio.open(tmp, "w", **profile) as png:
                png.write(rgba)
    return destination
