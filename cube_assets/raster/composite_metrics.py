"""Spectral-temporal metrics of a band's clear observations: percentiles, MIN, MAX, RANGE, IQR, STD.

Pure numpy functions over one window's stack of T observations of a band, shape ``(T, H, W)``,
and their ``QualityClass`` codes; they are the reference path of the compiled kernels
``percentiles_window`` and ``std_window`` (``composite_kernels``), which give the same pixels.

Rules (every one counts only CLEAR observations and is the band's nodata where none is clear):

* ``percentiles_clear``: the ``nn``-th percentile by linear interpolation between order
  statistics (numpy's default "linear" method): with ``n`` clear values sorted ascending, the
  rank is ``h = (n - 1) * nn / 100``, taken exactly as ``(n - 1) * nn = 100 * low + r``; the
  result is ``(v[low] * (100 - r) + v[low + 1] * r) / 100``, computed exactly in int64 and
  truncated toward zero for integer bands (MED's rounding rule: ``P50`` is ``MED``), in float64
  for float bands. ``P0`` is the minimum, ``P100`` the maximum.
* ``MIN``, ``MAX``: ``P0``, ``P100``. ``RANGE``: ``MAX - MIN``. ``IQR``: ``P75 - P25`` of the
  truncated percentiles. Both differences saturate at the band dtype's limits (an int16 band
  spanning -30000..30000 has a RANGE of 32767).
* ``std_clear`` (STD): the population standard deviation (``ddof=0``): mean and squared
  deviations summed in float64 in observation order (integer sums exact in int64), square root,
  truncated toward zero for integer bands.
"""

from __future__ import annotations

import numpy as np

from cube_assets.errors import InvalidRaster
from cube_assets.raster.masks import QualityClass
from cube_assets.raster.windowed_io import check_nodata_fits


def check_percent(percent: int, what: str) -> int:
    """``percent`` as an int; ``ValueError`` naming ``what`` unless it is an integer in 0..100."""
    if isinstance(percent, bool) or not isinstance(percent, (int, np.integer)) or not 0 <= percent <= 100:
        raise ValueError(f"{what}: percentile {percent!r} must be an integer in 0..100")
    return int(percent)


def _check(values: np.ndarray, classes: np.ndarray, nodata: float, what: str) -> None:
    """Raise ``InvalidRaster`` unless the stack is one non-empty ``(T, H, W)`` pair and ``nodata`` fits."""
    if values.ndim != 3 or classes.shape != values.shape or values.shape[0] == 0:
        raise InvalidRaster(f"{what}: values {values.shape} and classes {classes.shape} must be one (T, H, W) stack")
    check_nodata_fits(nodata, values.dtype, what)


def wide_percentiles(
    values: np.ndarray, classes: np.ndarray, percents: tuple[int, ...]
) -> tuple[np.ndarray, np.ndarray]:
    """Percentiles of the CLEAR observations before the cast to the band dtype.

    Returns:
        ``(wide, count)``: ``wide`` of shape ``(len(percents), H, W)``, int64 (already truncated
        toward zero) for integer bands, float64 for float bands, undefined where ``count`` (the
        clear observations per pixel, int64) is 0.
    """
    clear = classes == QualityClass.CLEAR
    count = clear.sum(axis=0, dtype=np.int64)
    integer = values.dtype.kind in "iu"
    sentinel = np.iinfo(values.dtype).max if integer else np.nan
    ordered = np.sort(np.where(clear, values, sentinel).astype(values.dtype, copy=False), axis=0)
    top = np.maximum(count - 1, 0)
    wide = np.empty((len(percents), *values.shape[1:]), dtype=np.int64 if integer else np.float64)
    for k, percent in enumerate(percents):
        position = top * percent
        low_rank, remainder = position // 100, position % 100
        high_rank = np.minimum(low_rank + 1, top)
        low = np.take_along_axis(ordered, low_rank[np.newaxis], axis=0)[0]
        high = np.take_along_axis(ordered, high_rank[np.newaxis], axis=0)[0]
        if integer:
            total = low.astype(np.int64) * (100 - remainder) + high.astype(np.int64) * remainder
            wide[k] = np.where(total >= 0, total // 100, -((-total) // 100))
        else:
            wide[k] = (low.astype(np.float64) * (100 - remainder) + high.astype(np.float64) * remainder) / 100.0
    return wide, count


def finish_percentile(wide: np.ndarray, count: np.ndarray, dtype: np.dtype, nodata: float) -> np.ndarray:
    """A percentile of ``wide_percentiles`` in ``dtype``, ``nodata`` where no observation is clear.

    Returns:
        An ``(H, W)`` array in ``dtype``.
    """
    out: np.ndarray = wide.astype(dtype)
    out[count == 0] = nodata
    return out


def finish_difference(
    high: np.ndarray, low: np.ndarray, count: np.ndarray, dtype: np.dtype, nodata: float
) -> np.ndarray:
    """``high - low`` of two wide percentiles in ``dtype``, saturating at its limits; ``nodata`` without clear data.

    Returns:
        An ``(H, W)`` array in ``dtype``.
    """
    difference = high - low
    if dtype.kind in "iu":
        info = np.iinfo(dtype)
        difference = np.clip(difference, int(info.min), int(info.max))
    out: np.ndarray = difference.astype(dtype)
    out[count == 0] = nodata
    return out


def percentiles_clear(values: np.ndarray, classes: np.ndarray, percents: tuple[int, ...], nodata: float) -> np.ndarray:
    """The ``Pnn`` composites: percentiles of each pixel's CLEAR observations (rule in the module docstring).

    Returns:
        A ``(len(percents), H, W)`` array in ``values.dtype``.

    Raises:
        InvalidRaster: on mismatched shapes or a nodata the dtype cannot hold.
        ValueError: if a percent is not an integer in 0..100.
    """
    values, classes = np.asarray(values), np.asarray(classes)
    _check(values, classes, nodata, "percentiles_clear")
    percents = tuple(check_percent(p, "percentiles_clear") for p in percents)
    wide, count = wide_percentiles(values, classes, percents)
    return np.stack([finish_percentile(wide[k], count, values.dtype, nodata) for k in range(len(percents))])


def range_clear(values: np.ndarray, classes: np.ndarray, nodata: float) -> np.ndarray:
    """RANGE: maximum minus minimum of each pixel's CLEAR observations, saturating at the dtype's limits.

    Returns:
        An ``(H, W)`` array in ``values.dtype``.

    Raises:
        InvalidRaster: on mismatched shapes or a nodata the dtype cannot hold.
    """
    values, classes = np.asarray(values), np.asarray(classes)
    _check(values, classes, nodata, "range_clear")
    wide, count = wide_percentiles(values, classes, (0, 100))
    return finish_difference(wide[1], wide[0], count, values.dtype, nodata)


def iqr_clear(values: np.ndarray, classes: np.ndarray, nodata: float) -> np.ndarray:
    """IQR: ``P75 - P25`` of each pixel's CLEAR observations, saturating at the dtype's limits.

    Returns:
        An ``(H, W)`` array in ``values.dtype``.

    Raises:
        InvalidRaster: on mismatched shapes or a nodata the dtype cannot hold.
    """
    values, classes = np.asarray(values), np.asarray(classes)
    _check(values, classes, nodata, "iqr_clear")
    wide, count = wide_percentiles(values, classes, (25, 75))
    return finish_difference(wide[1], wide[0], count, values.dtype, nodata)


def std_clear(values: np.ndarray, classes: np.ndarray, nodata: float) -> np.ndarray:
    """STD: the population standard deviation of each pixel's CLEAR observations.

    Rule: mean = sum / n (integer sums exact in int64, float sums in float64 in observation
    order), then the squared deviations summed in float64 in observation order, divided by n,
    square root; truncated toward zero for integer bands; ``nodata`` where none is clear.

    Returns:
        An ``(H, W)`` array in ``values.dtype``.

    Raises:
        InvalidRaster: on mismatched shapes or a nodata the dtype cannot hold.
    """
    values, classes = np.asarray(values), np.asarray(classes)
    _check(values, classes, nodata, "std_clear")
    clear = classes == QualityClass.CLEAR
    count = clear.sum(axis=0, dtype=np.int64)
    divisor = np.maximum(count, 1).astype(np.float64)
    if values.dtype.kind in "iu":
        total = np.where(clear, values, 0).astype(np.int64).sum(axis=0).astype(np.float64)
    else:
        total = np.zeros(values.shape[1:], dtype=np.float64)
        for t in range(values.shape[0]):
            total += np.where(clear[t], values[t].astype(np.float64), 0.0)
    mean = total / divisor
    squares = np.zeros(values.shape[1:], dtype=np.float64)
    for t in range(values.shape[0]):
        deviation = np.where(clear[t], values[t].astype(np.float64) - mean, 0.0)
        squares += deviation * deviation
    deviation_std = np.sqrt(squares / divisor)
    if values.dtype.kind in "iu":
        deviation_std = np.trunc(deviation_std)
    out: np.ndarray = deviation_std.astype(values.dtype)
    out[count == 0] = nodata
    return out


__all__ = [
    "check_percent",
    "finish_difference",
    "finish_percentile",
    "iqr_clear",
    "percentiles_clear",
    "range_clear",
    "std_clear",
    "wide_percentiles",
]
