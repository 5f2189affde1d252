"""The compositing rules of a period: pure functions over one window's stack of observations.

Each works on a stack of T observations of one band, shape ``(T, H, W)``, and their
``QualityClass`` codes of the same shape:

* ``rank_observations``: merges ranked by efficacy descending, ties to the newer date.
* ``lcf`` (best pixel): first clear observation in rank order, else first non-nodata one
  (even cloudy or saturated), else nodata; ``provenance`` (day of year, int16, nodata -1) and
  ``composite_quality`` follow the same chosen observation.
* ``median_clear`` / ``mean_clear``: median / mean of the clear observations, integer results
  truncated toward zero (an even count's median is the mean of the two middle values),
  nodata where none is clear.
* ``clear_observation_count`` / ``total_observation_count``: CLEAROB / TOTALOB (uint8).

All are vectorised numpy, keep the input dtype (uint16 40000 stays 40000) and never wrap (sums
are taken in 64 bits). They are the reference ("pure numpy") path.

``COMPOSITE_FUNCTIONS`` is the table the window engine (``composite``) picks a band's rules
from by name ("LCF", "MED", "AVG", the metrics of ``composite_metrics``: "STD", "MIN", "MAX",
"RANGE", "IQR", and ``composite_rule`` for any "Pnn"), like rasterio's ``MERGE_METHODS``: each ``CompositeRule``
holds its numpy function and, side by side, its compiled twin over one ``KernelWindow`` (the
kernels of ``composite_kernels``, which give the same pixels). ``composite_quality_window`` and
``composite_quality_kernel`` are the same pair for the quality outputs (quality, PROVENANCE,
CLEAROB, TOTALOB). numba is optional: the compiled twins import ``composite_kernels`` when
first called, so this module imports without it.
"""

from __future__ import annotations

import datetime
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from types import ModuleType
from typing import Literal

import numpy as np

from cube_assets.errors import InvalidRaster
from cube_assets.raster.composite_cube_rules import CUBE_FUNCTION_NAMES
from cube_assets.raster.composite_metrics import (
    finish_difference,
    finish_percentile,
    iqr_clear,
    percentiles_clear,
    range_clear,
    std_clear,
)
from cube_assets.raster.datasource import datasource_chosen, datasource_contributed
from cube_assets.raster.masks import QualityClass
from cube_assets.raster.windowed_io import check_nodata_fits

PROVENANCE_NODATA = -1
"""PROVENANCE value of pixels no observation was chosen for."""
MAX_COUNT = np.iinfo(np.uint8).max
"""CLEAROB and TOTALOB saturate at this count."""


# --------------------------------------------------------------------------- ranking


def rank_observations(efficacies: Sequence[float], dates: Sequence[datetime.date]) -> list[int]:
    """Order a period's observations for best-pixel compositing.

    Rule: highest efficacy first; equal efficacies go to the newer date; equal efficacy and
    date keep their input order.

    Returns:
        Observation indices, best first.

    Raises:
        ValueError: if the sequences differ in length or an efficacy is not a finite number.
    """
    if len(efficacies) != len(dates):
        raise ValueError(f"rank_observations: {len(efficacies)} efficacies for {len(dates)} dates")
    for position, value in enumerate(efficacies):
        if not np.isfinite(value):
            raise ValueError(f"rank_observations: efficacy {value!r} of observation {position} ({dates[position]})")
    order = sorted(range(len(dates)), key=lambda i: dates[i], reverse=True)  # stable: ties keep input order
    return sorted(order, key=lambda i: -float(efficacies[i]))


# --------------------------------------------------------------------------- checks


def _check_stack(values: np.ndarray, classes: np.ndarray, what: str) -> None:
    """Raise ``InvalidRaster`` unless ``values`` and ``classes`` are one non-empty ``(T, H, W)`` stack."""
    if values.ndim != 3:
        raise InvalidRaster(f"{what}: values must have shape (T, H, W), got {values.shape}")
    if classes.shape != values.shape:
        raise InvalidRaster(f"{what}: quality classes have shape {classes.shape}, values {values.shape}")
    if values.shape[0] == 0:
        raise InvalidRaster(f"{what}: no observations")


def _check_order(order: Sequence[int], count: int) -> np.ndarray:
    """``order`` as an index array; ``ValueError`` unless it is a permutation of the ``count`` observations."""
    order_array = np.asarray(order, dtype=np.intp)
    if order_array.shape != (count,) or not np.array_equal(np.sort(order_array), np.arange(count)):
        raise ValueError(f"observation order {list(order)} is not a permutation of 0..{count - 1}")
    return order_array


# --------------------------------------------------------------------------- pure array functions


def lcf(values: np.ndarray, classes: np.ndarray, order: Sequence[int], nodata: float) -> tuple[np.ndarray, np.ndarray]:
    """Best-pixel (LCF) composite.

    Rule: each pixel takes its value from the first CLEAR observation in ``order``; where none
    is clear, from the first whose class is not NODATA (cloudy or saturated); otherwise
    ``nodata``.

    Returns:
        ``(composite, chosen_index)``: the composite in ``values.dtype`` and, per pixel, the
        chosen observation's index into the stack (``int32``, -1 where none).

    Raises:
        InvalidRaster: on shapes other than matching ``(T, H, W)`` or a nodata the dtype cannot hold.
        ValueError: if ``order`` is not a permutation of the observations.
    """
    values, classes = np.asarray(values), np.asarray(classes)
    _check_stack(values, classes, "lcf")
    check_nodata_fits(nodata, values.dtype, "lcf")
    order_array = _check_order(order, values.shape[0])
    ranked = classes[order_array]
    clear = ranked == QualityClass.CLEAR
    present = ranked != QualityClass.NODATA
    rank = np.where(clear.any(axis=0), clear.argmax(axis=0), present.argmax(axis=0))
    chosen = np.where(present.any(axis=0), order_array[rank], -1).astype(np.int32)
    composite = np.take_along_axis(values, np.maximum(chosen, 0)[np.newaxis], axis=0)[0]
    composite[chosen < 0] = nodata
    return composite, chosen


def provenance(chosen_index: np.ndarray, day_of_year: Sequence[int]) -> np.ndarray:
    """PROVENANCE band: the day of year of the observation each LCF pixel came from.

    Returns:
        An ``int16`` array, -1 where ``chosen_index`` is -1.

    Raises:
        InvalidRaster: if an index does not name one of the ``day_of_year`` entries.
        ValueError: if a day of year is outside 1..366.
    """
    chosen_index = np.asarray(chosen_index)
    days = np.asarray(day_of_year, dtype=np.int64)
    if np.any((days < 1) | (days > 366)):
        raise ValueError(f"provenance: days of year {days.tolist()} must lie in 1..366")
    if chosen_index.size and (chosen_index.min() < -1 or chosen_index.max() >= len(days)):
        raise InvalidRaster(f"provenance: chosen indices must lie in -1..{len(days) - 1}")
    if len(days) == 0:
        return np.full(chosen_index.shape, PROVENANCE_NODATA, dtype=np.int16)
    out: np.ndarray = days.astype(np.int16)[np.maximum(chosen_index, 0)]
    out[chosen_index < 0] = PROVENANCE_NODATA
    return out


def composite_quality(quality_values: np.ndarray, chosen_index: np.ndarray, quality_nodata: int) -> np.ndarray:
    """Composite the raw quality band (e.g. Fmask codes) by the LCF choice.

    Rule: each pixel takes the raw quality value of the observation LCF chose there, and
    ``quality_nodata`` where none was chosen.

    Returns:
        An array in ``quality_values.dtype`` of shape ``(H, W)``.

    Raises:
        InvalidRaster: if the shapes do not match or ``quality_nodata`` does not fit the dtype.
    """
    quality_values, chosen_index = np.asarray(quality_values), np.asarray(chosen_index)
    if quality_values.ndim != 3 or quality_values.shape[1:] != chosen_index.shape:
        raise InvalidRaster(
            f"composite_quality: quality {quality_values.shape} does not match chosen index {chosen_index.shape}"
        )
    if chosen_index.size and chosen_index.max() >= quality_values.shape[0]:
        raise InvalidRaster(f"composite_quality: chosen index {chosen_index.max()} exceeds the stack")
    check_nodata_fits(quality_nodata, quality_values.dtype, "composite_quality")
    out: np.ndarray = np.take_along_axis(quality_values, np.maximum(chosen_index, 0)[np.newaxis], axis=0)[0]
    out[chosen_index < 0] = quality_nodata
    return out


def _truncated_midpoint(low: np.ndarray, high: np.ndarray) -> np.ndarray:
    """``trunc((low + high) / 2)`` for integer arrays, exact and without overflow in their dtype.

    ``low//2 + high//2 + (low%2 + high%2)//2`` is ``floor((low+high)/2)`` and lies between the
    two inputs; truncation differs from floor only for a negative odd sum, where we add one.
    """
    odd = (low % 2) + (high % 2)
    floor = low // 2 + high // 2 + odd // 2
    truncated: np.ndarray = floor + ((odd == 1) & (floor < 0)).astype(floor.dtype)
    return truncated


def median_clear(values: np.ndarray, classes: np.ndarray, nodata: float) -> np.ndarray:
    """MED composite: the median of each pixel's CLEAR observations.

    Rule: with an even count, the mean of the two middle values, truncated toward zero for
    integer dtypes (plain mean for float dtypes); ``nodata`` where no observation is clear.

    Returns:
        An ``(H, W)`` array in ``values.dtype``.

    Raises:
        InvalidRaster: on mismatched shapes or a nodata the dtype cannot hold.
    """
    values, classes = np.asarray(values), np.asarray(classes)
    _check_stack(values, classes, "median_clear")
    check_nodata_fits(nodata, values.dtype, "median_clear")
    clear = classes == QualityClass.CLEAR
    count = clear.sum(axis=0)
    # Non-clear observations become a sentinel that sorts after every clear value (dtype max
    # for integers, NaN for floats); the first `count` sorted entries are then exactly the
    # clear values, so no conversion to float is needed and integers survive exactly.
    sentinel = np.iinfo(values.dtype).max if values.dtype.kind in "iu" else np.nan
    ordered = np.sort(np.where(clear, values, sentinel).astype(values.dtype, copy=False), axis=0)
    low_rank = np.maximum(count - 1, 0) // 2
    high_rank = count // 2
    low = np.take_along_axis(ordered, low_rank[np.newaxis], axis=0)[0]
    high = np.take_along_axis(ordered, high_rank[np.newaxis], axis=0)[0]
    if values.dtype.kind in "iu":
        median = _truncated_midpoint(low, high)
    else:
        median = ((low.astype(np.float64) + high.astype(np.float64)) / 2.0).astype(values.dtype)
    median[count == 0] = nodata
    return median


def mean_clear(values: np.ndarray, classes: np.ndarray, nodata: float) -> np.ndarray:
    """AVG composite: the mean of each pixel's CLEAR observations.

    Rule: integer means are truncated toward zero (sums in int64 / uint64); float means are
    computed in float64; ``nodata`` where no observation is clear.

    Returns:
        An ``(H, W)`` array in ``values.dtype``.

    Raises:
        InvalidRaster: on mismatched shapes or a nodata the dtype cannot hold.
    """
    values, classes = np.asarray(values), np.asarray(classes)
    _check_stack(values, classes, "mean_clear")
    check_nodata_fits(nodata, values.dtype, "mean_clear")
    clear = classes == QualityClass.CLEAR
    count = clear.sum(axis=0)
    divisor = np.maximum(count, 1)
    mean: np.ndarray
    if values.dtype.kind == "u":
        total = np.where(clear, values, 0).sum(axis=0, dtype=np.uint64)
        mean = (total // divisor.astype(np.uint64)).astype(values.dtype)
    elif values.dtype.kind == "i":
        total = np.where(clear, values, 0).sum(axis=0, dtype=np.int64)
        magnitude = np.abs(total) // divisor
        mean = np.where(total < 0, -magnitude, magnitude).astype(values.dtype)
    else:
        total = np.where(clear, values, 0).sum(axis=0, dtype=np.float64)
        mean = (total / divisor).astype(values.dtype)
    mean[count == 0] = nodata
    return mean


def clear_observation_count(classes: np.ndarray) -> np.ndarray:
    """CLEAROB: how many observations are CLEAR at each pixel.

    Returns:
        A ``uint8`` ``(H, W)`` array, saturating at 255.
    """
    count = (np.asarray(classes) == QualityClass.CLEAR).sum(axis=0)
    saturated: np.ndarray = np.minimum(count, MAX_COUNT).astype(np.uint8)
    return saturated


def total_observation_count(classes: np.ndarray) -> np.ndarray:
    """TOTALOB: how many observations are not NODATA at each pixel (clear, cloudy or saturated).

    Returns:
        A ``uint8`` ``(H, W)`` array, saturating at 255.
    """
    count = (np.asarray(classes) != QualityClass.NODATA).sum(axis=0)
    saturated: np.ndarray = np.minimum(count, MAX_COUNT).astype(np.uint8)
    return saturated


# --------------------------------------------------------------------------- the compiled twins


def _kernels() -> ModuleType:
    """``composite_kernels``, imported on first use: numba is only needed by the compiled path."""
    from cube_assets.raster import composite_kernels

    return composite_kernels


@dataclass(frozen=True)
class KernelWindow:
    """One window of a band as the compiled kernels read it.

    Attributes:
        values: the band's ``(T, H, W)`` stack; only the ``loaded`` observations hold values.
        quality: the quality stack the kernels classify through ``table`` (raw codes or classes).
        table: ``QualityClass`` code of each quality value + ``offset``.
        offset: added to a quality value to index ``table``.
        loaded: per observation, whether its band values have been read.
        order: observation indices, best first (``rank_observations``), int64.
        fill: the band's nodata in its dtype.
        nodata_is_nan: whether ``fill`` is NaN.
        sentinel: sorts after every value (dtype maximum, NaN for floats): the median's filler.
        network: the compare-exchange pairs that sort T values (``sorting_network``).
    """

    values: np.ndarray
    quality: np.ndarray
    table: np.ndarray
    offset: int
    loaded: np.ndarray
    order: np.ndarray
    fill: np.generic
    nodata_is_nan: bool
    sentinel: np.generic
    network: np.ndarray

    @property
    def integer(self) -> bool:
        """Whether the band has an integer dtype."""
        return self.values.dtype.kind in "iu"

    def empty(self) -> np.ndarray:
        """An uninitialised ``(H, W)`` array of the band's dtype."""
        return np.empty(self.quality.shape[1:], dtype=self.values.dtype)


NumpyRule = Callable[[np.ndarray, np.ndarray, Sequence[int], float], np.ndarray]
"""``rule(values, classes, order, nodata)``: the ``(H, W)`` composite of a ``(T, H, W)`` stack."""

KernelRule = Callable[[KernelWindow, np.ndarray], np.ndarray]
"""``rule(window, wanted)``: the compiled composite of a window; sets ``wanted[t]`` for every
unread observation it needs (then its result is not final)."""


@dataclass(frozen=True)
class CompositeRule:
    """One compositing function: its numpy rule and its compiled twin, which give the same pixels.

    Attributes:
        name: the function's name in the cube configuration ("LCF", "MED", "AVG").
        numpy: the pure numpy rule.
        kernel: the compiled rule over a ``KernelWindow``.
        reads: which band files the compiled path must read in a window. ``"clear"``: every
            observation with a CLEAR pixel there, before ``kernel`` runs (it ignores the
            others); ``"chosen"``: those ``kernel`` asks for in ``wanted``, run again until it
            asks for none.
    """

    name: str
    numpy: NumpyRule
    kernel: KernelRule
    reads: Literal["clear", "chosen"]


def _lcf_values(values: np.ndarray, classes: np.ndarray, order: Sequence[int], nodata: float) -> np.ndarray:
    """LCF: ``lcf``'s composite without the chosen indices."""
    return lcf(values, classes, order, nodata)[0]


def _median_values(values: np.ndarray, classes: np.ndarray, order: Sequence[int], nodata: float) -> np.ndarray:
    """MED: ``median_clear`` (the order does not matter)."""
    return median_clear(values, classes, nodata)


def _mean_values(values: np.ndarray, classes: np.ndarray, order: Sequence[int], nodata: float) -> np.ndarray:
    """AVG: ``mean_clear`` (the order does not matter)."""
    return mean_clear(values, classes, nodata)


def _lcf_kernel(window: KernelWindow, wanted: np.ndarray) -> np.ndarray:
    """LCF compiled (``lcf_window``): unread observations are assumed valid and asked for when chosen."""
    out, chosen = window.empty(), np.empty(window.quality.shape[1:], dtype=np.int32)
    _kernels().lcf_window(
        window.values,
        window.quality,
        window.table,
        window.offset,
        window.order,
        window.loaded,
        True,
        window.fill,
        window.nodata_is_nan,
        out,
        chosen,
        wanted,
    )
    return out


def _median_kernel(window: KernelWindow, wanted: np.ndarray) -> np.ndarray:
    """MED compiled (``median_window``) over the loaded observations."""
    out = window.empty()
    _kernels().median_window(
        window.values,
        window.quality,
        window.table,
        window.offset,
        window.loaded,
        True,
        window.fill,
        window.nodata_is_nan,
        window.integer,
        window.sentinel,
        window.network,
        out,
    )
    return out


def _clear_summary_kernel(kernel_name: str, window: KernelWindow) -> np.ndarray:
    """Run the compiled ``kernel_name`` (``mean_window``, ``std_window``) over the loaded observations."""
    out = window.empty()
    getattr(_kernels(), kernel_name)(
        window.values,
        window.quality,
        window.table,
        window.offset,
        window.loaded,
        True,
        window.fill,
        window.nodata_is_nan,
        window.integer,
        out,
    )
    return out


def _mean_kernel(window: KernelWindow, wanted: np.ndarray) -> np.ndarray:
    """AVG compiled (``mean_window``) over the loaded observations."""
    return _clear_summary_kernel("mean_window", window)


def _wide_kernel(window: KernelWindow, percents: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
    """``percentiles_window`` of a window: the wide percentiles and the clear counts."""
    shape = window.quality.shape[1:]
    wide = np.empty((len(percents), *shape), dtype=np.int64 if window.integer else np.float64)
    counts = np.empty(shape, dtype=np.int64)
    _kernels().percentiles_window(
        window.values,
        window.quality,
        window.table,
        window.offset,
        window.loaded,
        True,
        window.fill,
        window.nodata_is_nan,
        window.integer,
        window.sentinel,
        window.network,
        np.asarray(percents, dtype=np.int64),
        wide,
        counts,
    )
    return wide, counts


def _percentile_rule(name: str, percent: int) -> CompositeRule:
    """``Pnn`` (``MIN`` = P0, ``MAX`` = P100): ``percentiles_clear`` and its compiled twin."""

    def numpy_rule(values: np.ndarray, classes: np.ndarray, order: Sequence[int], nodata: float) -> np.ndarray:
        composite: np.ndarray = percentiles_clear(values, classes, (percent,), nodata)[0]
        return composite

    def kernel_rule(window: KernelWindow, wanted: np.ndarray) -> np.ndarray:
        wide, counts = _wide_kernel(window, (percent,))
        return finish_percentile(wide[0], counts, window.values.dtype, window.fill.item())

    return CompositeRule(name, numpy=numpy_rule, kernel=kernel_rule, reads="clear")


def _difference_rule(name: str, low: int, high: int) -> CompositeRule:
    """``RANGE`` (P100 - P0) or ``IQR`` (P75 - P25): ``range_clear`` / ``iqr_clear`` and their compiled twin."""
    numpy_rule = range_clear if (low, high) == (0, 100) else iqr_clear

    def numpy_values(values: np.ndarray, classes: np.ndarray, order: Sequence[int], nodata: float) -> np.ndarray:
        return numpy_rule(values, classes, nodata)

    def kernel_rule(window: KernelWindow, wanted: np.ndarray) -> np.ndarray:
        wide, counts = _wide_kernel(window, (low, high))
        return finish_difference(wide[1], wide[0], counts, window.values.dtype, window.fill.item())

    return CompositeRule(name, numpy=numpy_values, kernel=kernel_rule, reads="clear")


def _std_values(values: np.ndarray, classes: np.ndarray, order: Sequence[int], nodata: float) -> np.ndarray:
    """STD: ``std_clear`` (the order does not matter)."""
    return std_clear(values, classes, nodata)


def _std_kernel(window: KernelWindow, wanted: np.ndarray) -> np.ndarray:
    """STD compiled (``std_window``) over the loaded observations."""
    return _clear_summary_kernel("std_window", window)


COMPOSITE_FUNCTIONS: dict[str, CompositeRule] = {
    "LCF": CompositeRule("LCF", numpy=_lcf_values, kernel=_lcf_kernel, reads="chosen"),
    "MED": CompositeRule("MED", numpy=_median_values, kernel=_median_kernel, reads="clear"),
    "AVG": CompositeRule("AVG", numpy=_mean_values, kernel=_mean_kernel, reads="clear"),
    "STD": CompositeRule("STD", numpy=_std_values, kernel=_std_kernel, reads="clear"),
    "MIN": _percentile_rule("MIN", 0),
    "MAX": _percentile_rule("MAX", 100),
    "RANGE": _difference_rule("RANGE", 0, 100),
    "IQR": _difference_rule("IQR", 25, 75),
}
"""The compositing functions of a band with a fixed name; ``Pnn`` percentiles come from ``composite_rule``."""

FUNCTIONS = tuple(COMPOSITE_FUNCTIONS)
"""Names of the fixed-name compositing functions ``blend_band`` knows (besides ``P0`` .. ``P100``)."""

PERCENTILE_NAME = re.compile(r"^P(100|[0-9]{1,2})$")
"""A percentile function's name: ``P`` and the percent, 0..100 (``P5``, ``P05``, ``P25``, ``P100``)."""


def is_band_function(name: str) -> bool:
    """Whether ``name`` is a compositing function of one band: a ``COMPOSITE_FUNCTIONS`` name or ``Pnn``.

    Returns:
        True for "LCF", "MED", "AVG", "STD", "MIN", "MAX", "RANGE", "IQR" and "P0" .. "P100".
    """
    return name in COMPOSITE_FUNCTIONS or PERCENTILE_NAME.match(name) is not None


IDENTITY = "IDT"
"""The identity "composite": the period's merges as a cube of dates (``composite.identity_cube``)."""

CUBE_FUNCTIONS: tuple[str, ...] = (*CUBE_FUNCTION_NAMES, IDENTITY)
"""Compositing functions over all the bands of a cube at once (``composite_cube_rules``) and IDT."""

COMPOSITE_FUNCTION_NAMES = FUNCTIONS + CUBE_FUNCTIONS
"""Every fixed compositing function name a cube may configure (besides ``Pnn``)."""


def is_composite_function(name: str) -> bool:
    """Whether a cube may configure ``name`` as a composite: a band function or a cube function.

    Returns:
        True for the names of ``COMPOSITE_FUNCTION_NAMES`` and "P0" .. "P100".
    """
    return is_band_function(name) or name in CUBE_FUNCTIONS


def composite_rule(name: str) -> CompositeRule:
    """The rule of the band function ``name``; ``Pnn`` builds the ``nn``-th percentile (``P50`` is MED's rule).

    Returns:
        The ``CompositeRule`` named ``name``.

    Raises:
        ValueError: if ``name`` is not a band function (``is_band_function``).
    """
    if name in COMPOSITE_FUNCTIONS:
        return COMPOSITE_FUNCTIONS[name]
    match = PERCENTILE_NAME.match(name)
    if match is None:
        raise ValueError(f"compositing function {name!r} is unknown (expected one of {FUNCTIONS} or P0..P100)")
    percent = int(match.group(1))
    if percent == 50:
        median = COMPOSITE_FUNCTIONS["MED"]
        return CompositeRule(name, numpy=median.numpy, kernel=median.kernel, reads=median.reads)
    return _percentile_rule(name, percent)


# --------------------------------------------------------------------------- the quality outputs

QUALITY_OUTPUTS = ("quality", "provenance", "clearob", "totalob")
"""The outputs of ``blend_quality``, in order."""
DATASOURCE_OUTPUTS = ("datasource_chosen", "datasource_clear")
"""The DATASOURCE outputs of ``blend_quality`` for a cube with sources: of LCF (the chosen observation's
source) and of the rules over the clear observations (the OR of their sources)."""


def composite_quality_window(
    quality: np.ndarray,
    classes: np.ndarray,
    order: Sequence[int],
    days: Sequence[int],
    quality_nodata: int,
    bits: np.ndarray | None = None,
) -> dict[str, np.ndarray]:
    """The quality outputs of one window: the raw quality by LCF of its own classes, PROVENANCE, CLEAROB, TOTALOB.

    With ``bits`` (each observation's DATASOURCE bit, ``source_bits``) also both
    ``DATASOURCE_OUTPUTS``: ``datasource_chosen`` of LCF's choice, ``datasource_clear`` of the
    CLEAR observations.

    Returns:
        ``{"quality", "provenance", "clearob", "totalob"}`` (and the DATASOURCE outputs) arrays of
        the window's shape.

    Raises:
        InvalidRaster: as ``lcf`` and ``provenance``.
        ValueError: as ``lcf`` and ``provenance``.
    """
    # LCF of the raw quality values is composite_quality() of its own choice.
    quality_composite, chosen = lcf(quality, classes, order, quality_nodata)
    results = {
        "quality": quality_composite,
        "provenance": provenance(chosen, days),
        "clearob": clear_observation_count(classes),
        "totalob": total_observation_count(classes),
    }
    if bits is not None:
        results["datasource_chosen"] = datasource_chosen(chosen, bits)
        results["datasource_clear"] = datasource_contributed(classes, bits)
    return results


def composite_quality_kernel(
    quality: np.ndarray,
    table: np.ndarray,
    offset: int,
    order: np.ndarray,
    days: np.ndarray,
    fill: np.generic,
    bits: np.ndarray | None = None,
) -> dict[str, np.ndarray]:
    """``composite_quality_window`` compiled (``quality_window``; ``quality_sources_window`` with ``bits``).

    Classifies through ``table``; ``order`` is int64, ``days`` int16, ``fill`` the quality
    nodata in the quality's dtype and ``bits`` (uint8, or None) each observation's DATASOURCE bit.

    Returns:
        ``{"quality", "provenance", "clearob", "totalob"}`` (and, with ``bits``, the DATASOURCE
        outputs) arrays of the window's shape.

    Raises:
        ImportError: if numba cannot be imported.
    """
    shape = quality.shape[1:]
    results = {
        "quality": np.empty(shape, dtype=quality.dtype),
        "provenance": np.empty(shape, dtype=np.int16),
        "clearob": np.empty(shape, dtype=np.uint8),
        "totalob": np.empty(shape, dtype=np.uint8),
    }
    kernels = _kernels()
    kernels.quality_window(
        quality,
        table,
        offset,
        order,
        days,
        fill,
        results["quality"],
        results["provenance"],
        results["clearob"],
        results["totalob"],
    )
    if bits is not None:
        results["datasource_chosen"] = np.empty(shape, dtype=np.uint8)
        results["datasource_clear"] = np.empty(shape, dtype=np.uint8)
        kernels.quality_sources_window(
            quality,
            table,
            offset,
            order,
            np.asarray(bits, dtype=np.uint8),
            results["datasource_chosen"],
            results["datasource_clear"],
        )
    return results


__all__ = [
    "COMPOSITE_FUNCTIONS",
    "DATASOURCE_OUTPUTS",
    "COMPOSITE_FUNCTION_NAMES",
    "CUBE_FUNCTIONS",
    "IDENTITY",
    "FUNCTIONS",
    "MAX_COUNT",
    "PROVENANCE_NODATA",
    "QUALITY_OUTPUTS",
    "CompositeRule",
    "KernelRule",
    "KernelWindow",
    "NumpyRule",
    "PERCENTILE_NAME",
    "clear_observation_count",
    "composite_rule",
    "composite_quality",
    "composite_quality_kernel",
    "composite_quality_window",
    "is_band_function",
    "is_composite_function",
    "lcf",
    "mean_clear",
    "median_clear",
    "provenance",
    "rank_observations",
    "total_observation_count",
]
