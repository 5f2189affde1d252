"""Small real GeoTIFFs, sound and hostile, written with rasterio for the raster-input tests."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
import rasterio
import rasterio.shutil
from affine import Affine
from rasterio.io import DatasetReader, MemoryFile
from rasterio.vrt import WarpedVRT

UTM29 = "EPSG:32629"
ORIGIN = (499_980.0, 5_900_040.0)  # the T29UNU tile's upper left corner


def write_geotiff(
    path: Path,
    array: np.ndarray,
    *,
    crs: str | None = UTM29,
    transform: Affine | None = None,
    nodata: float | None = 0,
) -> Path:
    """A tiled single-band GeoTIFF of ``array`` (``crs=None``: none; ``transform=None``: 10 m at ``ORIGIN``)."""
    profile = {
        "driver": "GTiff",
        "width": array.shape[1],
        "height": array.shape[0],
        "count": 1,
        "dtype": array.dtype.name,
        "transform": transform if transform is not None else Affine(10, 0, ORIGIN[0], 0, -10, ORIGIN[1]),
        "nodata": nodata,
        "tiled": True,
        "blockxsize": 256,
        "blockysize": 256,
        "compress": "deflate",
    }
    if crs is not None:
        profile["crs"] = crs
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(array, 1)
    return path


def declared_only(path: Path, width: int, height: int, pixel_size: float, *, crs: str = UTM29) -> Path:
    """A sparse tiled GeoTIFF whose header declares ``width`` x ``height`` pixels but holds none (a few hundred KB)."""
    profile = {
        "driver": "GTiff",
        "width": width,
        "height": height,
        "count": 1,
        "dtype": "uint16",
        "crs": crs,
        "transform": Affine(pixel_size, 0, ORIGIN[0], 0, -pixel_size, ORIGIN[1]),
        "nodata": 0,
        "tiled": True,
        "blockxsize": 4096,
        "blockysize": 4096,
        "sparse_ok": True,
        "compress": "deflate",
        "BIGTIFF": "YES",
    }
    with rasterio.open(path, "w", **profile):
        pass  # no block written: every tile is sparse
    return path


def cog_layout(path: Path, size: int = 1024) -> Path:
    """A real 16-bit GeoTIFF with its header first and its tiles after it (COG layout), of random values."""
    array = np.random.default_rng(8).integers(1, 10_000, (1, size, size), dtype=np.uint16)
    profile = {
        "driver": "GTiff",
        "width": size,
        "height": size,
        "count": 1,
        "dtype": "uint16",
        "crs": UTM29,
        "transform": Affine(10, 0, ORIGIN[0], 0, -10, ORIGIN[1]),
        "nodata": 0,
    }
    with MemoryFile() as memfile:
        with memfile.open(**profile) as staging:
            staging.write(array)
        with memfile.open() as staging:
            rasterio.shutil.copy(staging, path, driver="COG", compress="deflate", blocksize=256)
    return path


def cut(source: Path, destination: Path, keep: float) -> Path:
    """``destination`` = the first ``keep`` fraction of ``source``'s bytes, as a download cut short leaves it."""
    data = source.read_bytes()
    destination.write_bytes(data[: int(len(data) * keep)])
    return destination


def everything_in(folder: Path) -> list[str]:
    """Every file and folder under ``folder``, hidden ones included, relative to it."""
    return sorted(
        str(Path(root, name).relative_to(folder)) for root, dirs, files in os.walk(folder) for name in dirs + files
    )


@contextmanager
def pixel_reads(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """Record every ``read`` of a rasterio dataset or warped view, delegating to it.

    Yield the list of recorded calls; ``read`` is the readers' only way to pixels.
    """
    calls: list[str] = []
    for cls in (DatasetReader, WarpedVRT):
        original = cls.read

        def spy(self, *args, _original=original, **kwargs):
            calls.append(str(self.name))
            return _original(self, *args, **kwargs)

        monkeypatch.setattr(cls, "read", spy)
    yield calls
