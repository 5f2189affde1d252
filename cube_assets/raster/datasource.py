"""DATASOURCE: which of a cube's sources (at most eight) each composite pixel came from, one bit per source.

Bit i (value ``1 << i``) is source i of the cube's ``sources``; 0 is nodata. A rule that chooses
one observation per pixel (LCF, MAXNDVI, BAP) gives the chosen observation's bit
(:func:`datasource_chosen`); a rule over the clear observations (MED, AVG, the metrics, Pnn,
GMED) the OR of the bits of the CLEAR ones (:func:`datasource_contributed`). Both engines of the
composites call these same numpy functions (or, for the quality pass, a kernel that gives the
same pixels).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from cube_assets.raster.masks import QualityClass

DATASOURCE = "DATASOURCE"
"""The composite band telling, bit by bit, which of a cube's sources each pixel came from."""
DATASOURCE_NODATA = 0
"""DATASOURCE of pixels no observation was chosen for or contributed to."""
DATASOURCE_DTYPE = "uint8"
MAX_SOURCES = 8
"""DATASOURCE is uint8: bit i (value ``1 << i``) is source i."""


def source_bits(sources: Sequence[int]) -> np.ndarray:
    """The DATASOURCE bit of each observation: ``1 << source`` for its source index.

    Returns:
        A ``uint8`` array, one entry per observation.

    Raises:
        ValueError: if a source index is outside ``0..MAX_SOURCES - 1``.
    """
    indices = np.asarray(sources, dtype=np.int64)
    if indices.size and (indices.min() < 0 or indices.max() >= MAX_SOURCES):
        raise ValueError(f"DATASOURCE: source indices {indices.tolist()} must lie in 0..{MAX_SOURCES - 1}")
    bits: np.ndarray = np.left_shift(np.uint8(1), indices.astype(np.uint8)).astype(np.uint8)
    return bits


def datasource_chosen(chosen_index: np.ndarray, bits: np.ndarray) -> np.ndarray:
    """DATASOURCE of a rule that chooses one observation: the chosen observation's source bit.

    Returns:
        A ``uint8`` array of ``chosen_index``'s shape, ``DATASOURCE_NODATA`` where none was chosen.
    """
    chosen_index = np.asarray(chosen_index)
    out: np.ndarray = np.asarray(bits, dtype=np.uint8)[np.maximum(chosen_index, 0)]
    out[chosen_index < 0] = DATASOURCE_NODATA
    return out


def datasource_contributed(classes: np.ndarray, bits: np.ndarray) -> np.ndarray:
    """DATASOURCE of a rule over the clear observations: the OR of the bits of those that are CLEAR.

    Returns:
        A ``uint8`` array of shape ``(H, W)``, ``DATASOURCE_NODATA`` where none is clear.
    """
    clear = np.asarray(classes) == QualityClass.CLEAR
    per_observation = np.asarray(bits, dtype=np.uint8)[:, np.newaxis, np.newaxis]
    out: np.ndarray = np.bitwise_or.reduce(np.where(clear, per_observation, np.uint8(0)), axis=0).astype(np.uint8)
    return out


__all__ = [
    "DATASOURCE",
    "DATASOURCE_DTYPE",
    "DATASOURCE_NODATA",
    "MAX_SOURCES",
    "datasource_chosen",
    "datasource_contributed",
    "source_bits",
]
