"""The floor of a raster step: decoding its inputs once and encoding its outputs once, nothing else.

A step that reads GeoTIFFs and writes COGs cannot be faster than the codec work it has to do:
every block of every input decoded once, every output compressed once (with its overviews, as a
COG has them). ``floor_seconds`` times exactly that, with the same codec and the same number of
threads as the step, so ``step seconds / floor seconds`` (``ratio_to_floor``) says how much of a
step is anything else: compositing, staging files, validation, Python.

* decoding: the inputs are shared out over ``threads`` threads, each reading every block of its
  files with its own handle (GDAL decodes outside the GIL, as in the step);
* encoding: each output's full-resolution pixels are first read into an uncompressed tiled
  in-memory GeoTIFF (not timed); then its overviews are built into it (``cog_overview_factors``,
  the step's overview resampling) and GDAL's COG driver copies it with ``cog.cog_driver_options``
  (the step's codec, level and block size), so that every block of every level is compressed
  once; the outputs ``threads`` at a time. (Left to compute the overviews itself, the COG driver
  compresses them twice, into a temporary file and into the COG.)
"""

from __future__ import annotations

import shutil
import tempfile
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import rasterio
from rasterio.enums import Resampling
from rasterio.io import MemoryFile
from rasterio.shutil import copy as rio_copy

from cube_assets.raster.cog import DEFAULT_COMPRESSION, cog_driver_options, cog_overview_factors

_BLOCK = 512  # the COGs' block size, as the steps write them


@dataclass(frozen=True)
class Floor:
    """Seconds to decode a step's inputs once and to encode its outputs once."""

    decode_seconds: float
    encode_seconds: float

    @property
    def seconds(self) -> float:
        """Decoding plus encoding."""
        return self.decode_seconds + self.encode_seconds


def _decode_file(path: Path) -> None:
    with rasterio.open(path) as dataset:
        for band in range(1, dataset.count + 1):
            for _, window in dataset.block_windows(band):
                dataset.read(band, window=window)


def _in_parallel(function: Callable[[Path], None], paths: Iterable[Path], threads: int) -> float:
    """Seconds to run ``function`` on every path, ``threads`` at a time."""
    start = time.perf_counter()
    with ThreadPoolExecutor(max_workers=max(1, threads)) as pool:
        for _ in pool.map(function, paths):
            pass
    return time.perf_counter() - start


def decode_seconds(inputs: Sequence[Path], threads: int) -> float:
    """Seconds to decode every block of every band of ``inputs`` once, ``threads`` files at a time."""
    return _in_parallel(_decode_file, inputs, threads)


def encode_seconds(
    outputs: Sequence[Path],
    threads: int,
    *,
    compress: str = DEFAULT_COMPRESSION,
    level: int | None = None,
    overview_resampling: Callable[[Path], str] = lambda path: "nearest",
) -> float:
    """Seconds to write the pixels of ``outputs`` (already in memory) as COGs, ``threads`` at a time.

    The COGs go to a temporary folder that is removed afterwards; ``outputs`` are not changed.
    """
    workdir = Path(tempfile.mkdtemp(prefix="floor-encode-"))
    memfiles: dict[Path, MemoryFile] = {}
    try:
        for path in outputs:
            with rasterio.open(path) as source:
                profile = source.profile | {"driver": "GTiff", "compress": None, "tiled": True}
                profile.update(blockxsize=_BLOCK, blockysize=_BLOCK)
                memfile = MemoryFile()
                with memfile.open(**profile) as staging:
                    staging.write(source.read())
                memfiles[path] = memfile

        def encode(path: Path) -> None:
            with rasterio.Env(GDAL_NUM_THREADS="ALL_CPUS"), rasterio.open(memfiles[path].name, "r+") as staging:
                factors = cog_overview_factors(staging.width, staging.height, _BLOCK)
                if factors:
                    staging.build_overviews(factors, Resampling[overview_resampling(path)])
            with memfiles[path].open() as source:
                options = cog_driver_options(
                    source.dtypes[0],
                    width=source.width,
                    height=source.height,
                    compress=compress,
                    level=level,
                    overview_resampling=overview_resampling(path),
                )
                rio_copy(source, workdir / path.name, driver="COG", **options)

        return _in_parallel(encode, outputs, threads)
    finally:
        for memfile in memfiles.values():
            memfile.close()
        shutil.rmtree(workdir, ignore_errors=True)


def floor_seconds(
    inputs: Sequence[Path],
    outputs: Sequence[Path],
    threads: int,
    *,
    compress: str = DEFAULT_COMPRESSION,
    level: int | None = None,
    overview_resampling: Callable[[Path], str] = lambda path: "nearest",
) -> Floor:
    """The floor of a step that read ``inputs`` and wrote ``outputs`` (see the module's docstring).

    Returns:
        A ``Floor`` with the decoding and the encoding seconds.
    """
    return Floor(
        decode_seconds(inputs, threads),
        encode_seconds(outputs, threads, compress=compress, level=level, overview_resampling=overview_resampling),
    )


__all__ = ["Floor", "decode_seconds", "encode_seconds", "floor_seconds"]
