"""Which file feeds each name an index expression may use."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TypeVar

from cube_assets.cube_config import CubeConfig

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
