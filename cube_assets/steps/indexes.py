"""Which file feeds each name an index expression may use, and what a written index lost."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import TypeVar

from cube_assets.cube_config import CubeConfig
from cube_assets.manifests import IndexPixels
from cube_assets.raster.indexes import IndexWrite

T = TypeVar("T")


def index_inputs(cube: CubeConfig, band_files: Mapping[str, T]) -> dict[str, T]:
    """Map every band name and every common name (``nir``, ``red`` …) of ``cube`` to its file.

    Returns:
        A dict usable as ``band_paths`` for ``write_index``; names of bands without a file are left out.
    """
    inputs: dict[str, T] = {}
    for band in cube.bands:
        if band.name in band_files:
            inputs[band.name] = band_files[band.name]
            if band.common_name:
                inputs[band.common_name] = band_files[band.name]
    return inputs


def index_pixel_counts(written: IndexWrite) -> IndexPixels:
    """The pixels with valid inputs a written index lost, as recorded in manifests and metadata.

    Returns:
        ``IndexPixels``: ``nodata_pixels``, results that were not finite (stored as nodata), and
        ``clipped_pixels``, finite results outside the output dtype's range (clipped into it).
    """
    return IndexPixels(nodata_pixels=written.nodata_pixels, clipped_pixels=written.clipped_pixels)


def total_nodata_pixels(index_pixels: Iterable[Mapping[str, IndexPixels | None]]) -> int:
    """Sum the ``nodata_pixels`` of every index of every entry (unknown counts, None, add nothing).

    Returns:
        The total, for an asset's ``index_nodata_pixels`` metadata.
    """
    return sum(counts.nodata_pixels for entry in index_pixels for counts in entry.values() if counts is not None)
