"""Compositing functions over all the bands of a cube at once: MAXNDVI, BAP and GMED.

Each works on one window's ``CubeWindow``: the values of B bands x T observations, shape
``(B, T, H, W)``, and one ``QualityClass`` stack ``(T, H, W)`` in which a pixel nodata in any
band is already NODATA (``masks.propagate_spectral_nodata``). Only CLEAR observations take part.

* ``quality_mosaic`` (Earth Engine's ``qualityMosaic``): every band from the CLEAR observation
  with the highest score; ties go to the better ranked observation (``rank_observations``), a
  NaN score counts as minus infinity; nodata where none is clear. The chosen observation gives PROVENANCE
  (its day of year). ``MAXNDVI`` scores with any band index (``index_scores``; default NDVI:
  the greenest pixel); ``BAP`` with ``bap_scores``.
* ``bap_scores``: best-available-pixel scores after Griffiths et al. (2013) as FORCE computes
  them: ``sum(w_i * s_i) / sum(w_i)`` of a Gaussian of the day-of-year distance to a target
  (``s_doy``, width ``doy_sigma`` days, distances taken around the year), of the year distance
  (``s_year``), a logistic of the distance to the nearest cloud or shadow pixel (``s_cloud``:
  ``1 / (1 + exp(-10 / D * (d - D / 2)))``, 1 beyond ``D = max_cloud_distance`` pixels), a
  logistic of haze in the blue band (``s_haze``: ``1 / (1 + exp(10 / h * (blue - h / 2)))``)
  and of the view zenith where known (``s_view``: ``1 - min(vz, v) / v``, 1 where unknown).
  The information outputs are SCORE (float32), DOY and DOY_DISTANCE (int16, -1) and NUM, the
  clear observation count (uint8).
* ``geomedian`` (GMED): the geometric median of each pixel's CLEAR observations across the
  bands, by Weiszfeld's iterations with Vardi and Zhang's modification for data points at the
  estimate, as the ``geomad`` package (hdstats, odc-algo) iterates: start at the mean, stop
  when the estimate moves less than ``eps`` (band units) or after ``max_iterations``. In
  float64; integer bands are truncated toward zero (MED's rule). The optional median absolute
  deviations SMAD (cosine), EMAD (Euclidean, band units) and BCMAD (Bray-Curtis) are float32
  (NaN without clear data), medians over the clear observations of their distance to the
  geometric median.

Every function is a ``CubeRule``: a numpy rule and a compiled twin (the kernels of
``composite_kernels``) that give the same pixels. Every exponential in the scores of MAXNDVI
and BAP is numpy's in both engines (so ``exp`` cannot round differently): MAXNDVI's scores are
computed per window by ``index_scores`` and handed to both; the compiled BAP gets the distance
to cloud from its own exact transform, then scores and chooses in one kernel from terms numpy
tabulated (``_bap_mosaic_kernel``). ``cube_rule`` builds a rule by name from the cube's
options, checking them.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any

import numpy as np

from cube_assets.raster.datasource import DATASOURCE, datasource_chosen, datasource_contributed
from cube_assets.raster.masks import QualityClass

PROVENANCE_NODATA = -1
"""PROVENANCE, DOY and DOY_DISTANCE of pixels no observation was chosen for."""
MAX_COUNT = 255
GMED_MADS = ("SMAD", "EMAD", "BCMAD")
"""The optional deviation outputs of GMED."""
CUBE_FUNCTION_NAMES = ("MAXNDVI", "BAP", "GMED")
"""The compositing functions over all bands of a cube (IDT, the identity, is not a rule)."""


@dataclass(frozen=True)
class CubeWindow:
    """One window of every band of a cube.

    Attributes:
        values: ``(B, T, H, W)`` band values in the bands' dtype.
        classes: ``(T, H, W)`` quality classes, NODATA wherever any band is nodata.
        band_names: the B bands' names.
        order: observation indices, best first (``rank_observations``), int64.
        days: day of year of each observation (int16).
        years: year of each observation (int64).
        nodata: the bands' nodata.
        cloud_distance: ``(T, H, W)`` distance in pixels to the nearest NOT_CLEAR pixel of the same
            observation, capped (only for rules with a ``halo``), else None.
        view_zenith: view zenith angle of each observation in degrees (NaN where unknown), or None.
        source_bits: each observation's DATASOURCE bit (uint8), or None: the rule then writes no
            DATASOURCE.
    """

    values: np.ndarray
    classes: np.ndarray
    band_names: tuple[str, ...]
    order: np.ndarray
    days: np.ndarray
    years: np.ndarray
    nodata: float
    cloud_distance: np.ndarray | None = None
    view_zenith: np.ndarray | None = None
    source_bits: np.ndarray | None = None

    @property
    def dtype(self) -> np.dtype:
        """The bands' dtype."""
        return self.values.dtype

    @property
    def clear(self) -> np.ndarray:
        """``(T, H, W)`` bool: the CLEAR observations."""
        clear: np.ndarray = self.classes == QualityClass.CLEAR
        return clear


@dataclass(frozen=True)
class OutputSpec:
    """An information output of a cube rule: its dtype and nodata (None: none)."""

    dtype: str
    nodata: float | None


CubeNumpyRule = Callable[[CubeWindow], dict[str, np.ndarray]]
"""``rule(window)``: ``{band name or output name: (H, W) array}``."""


@dataclass(frozen=True)
class CubeRule:
    """A compositing function over all bands: numpy rule, compiled twin, and what it writes.

    Attributes:
        name: "MAXNDVI", "BAP" or "GMED".
        numpy: the pure numpy rule.
        kernel: the compiled rule (same pixels).
        outputs: the information outputs besides the bands, by name (e.g. PROVENANCE, SCORE).
        band_dtype: the dtype of the band outputs (None: the bands' own).
        halo: pixels of quality context each window needs around it (``cloud_distance``).
        options: the options the rule was built with, as given.
    """

    name: str
    numpy: CubeNumpyRule
    kernel: CubeNumpyRule
    outputs: Mapping[str, OutputSpec]
    halo: int = 0
    options: Mapping[str, Any] = field(default_factory=dict)


def _kernels() -> ModuleType:
    """``composite_kernels``, imported on first use: numba is only needed by the compiled path."""
    from cube_assets.raster import composite_kernels

    return composite_kernels


# --------------------------------------------------------------------------- quality mosaic


def quality_mosaic(
    values: np.ndarray, classes: np.ndarray, order: np.ndarray, score: np.ndarray, nodata: float
) -> tuple[np.ndarray, np.ndarray]:
    """Every band from the CLEAR observation with the highest ``score`` (ties: better rank).

    The first CLEAR observation in ``order`` is taken, then replaced by any later one whose
    score is strictly higher; a NaN score counts as minus infinity.

    Returns:
        ``(composite, chosen)``: ``(B, H, W)`` in the values' dtype (``nodata`` where none is
        clear) and the chosen observation per pixel (int32, -1 where none).
    """
    best = np.full(classes.shape[1:], -np.inf)
    chosen = np.full(classes.shape[1:], -1, dtype=np.int32)
    for t in np.asarray(order, dtype=np.int64):
        value = np.where(np.isnan(score[t]), -np.inf, score[t])
        candidate = (classes[t] == QualityClass.CLEAR) & ((value > best) | (chosen < 0))
        best = np.where(candidate, value, best)
        chosen = np.where(candidate, np.int32(t), chosen)
    composite = np.take_along_axis(values, np.maximum(chosen, 0)[np.newaxis, np.newaxis], axis=1)[:, 0]
    composite[:, chosen < 0] = nodata
    return composite, chosen


def _quality_mosaic_kernel(
    values: np.ndarray, classes: np.ndarray, order: np.ndarray, score: np.ndarray, nodata: float
) -> tuple[np.ndarray, np.ndarray]:
    """``quality_mosaic`` compiled (``quality_mosaic_window``)."""
    out = np.empty((values.shape[0], *classes.shape[1:]), dtype=values.dtype)
    chosen = np.empty(classes.shape[1:], dtype=np.int32)
    _kernels().quality_mosaic_window(
        values, classes, np.asarray(order, dtype=np.int64), score, values.dtype.type(nodata), out, chosen
    )
    return out, chosen


def _gathered(chosen: np.ndarray, per_observation: Sequence[int] | np.ndarray, fill: float, dtype: Any) -> np.ndarray:
    """``per_observation[chosen]`` per pixel in ``dtype``, ``fill`` where none was chosen."""
    out: np.ndarray = np.asarray(per_observation)[np.maximum(chosen, 0)].astype(dtype)
    out[chosen < 0] = fill
    return out


def _clear_count(window: CubeWindow) -> np.ndarray:
    """The clear observations per pixel, uint8, saturating at 255."""
    count: np.ndarray = np.minimum(window.clear.sum(axis=0), MAX_COUNT).astype(np.uint8)
    return count


# --------------------------------------------------------------------------- MAXNDVI


IndexFunction = Callable[[Mapping[str, np.ndarray]], np.ndarray]
"""Evaluates a band index over ``{variable: (T, H, W) array}`` in float64."""


def index_scores(window: CubeWindow, index: IndexFunction, variables: Mapping[str, str]) -> np.ndarray:
    """The index of every observation, ``(T, H, W)`` float64, NaN where it is not a finite number.

    ``variables`` maps each name the index uses to the band holding it.
    """
    positions = {name: i for i, name in enumerate(window.band_names)}
    inputs = {variable: window.values[positions[band]].astype(np.float64) for variable, band in variables.items()}
    with np.errstate(all="ignore"):
        scores = np.asarray(index(inputs), dtype=np.float64)
    scores = np.broadcast_to(scores, window.classes.shape).copy()
    scores[~np.isfinite(scores)] = np.nan
    return scores


def _mosaic_outputs(window: CubeWindow, composite: np.ndarray, chosen: np.ndarray) -> dict[str, np.ndarray]:
    """The bands of a quality mosaic, its PROVENANCE and (with source bits) its DATASOURCE."""
    results = {name: composite[b] for b, name in enumerate(window.band_names)}
    results["PROVENANCE"] = _gathered(chosen, window.days, PROVENANCE_NODATA, np.int16)
    if window.source_bits is not None:
        results[DATASOURCE] = datasource_chosen(chosen, window.source_bits)
    return results


def _max_index_rule(index: IndexFunction, variables: Mapping[str, str], options: Mapping[str, Any]) -> CubeRule:
    """MAXNDVI: the quality mosaic of ``index``."""

    def run(window: CubeWindow, mosaic: Callable[..., tuple[np.ndarray, np.ndarray]]) -> dict[str, np.ndarray]:
        scores = index_scores(window, index, variables)
        composite, chosen = mosaic(window.values, window.classes, window.order, scores, window.nodata)
        return _mosaic_outputs(window, composite, chosen)

    return CubeRule(
        "MAXNDVI",
        numpy=lambda window: run(window, quality_mosaic),
        kernel=lambda window: run(window, _quality_mosaic_kernel),
        outputs={"PROVENANCE": OutputSpec("int16", PROVENANCE_NODATA)},
        options=dict(options),
    )


# --------------------------------------------------------------------------- BAP


@dataclass(frozen=True)
class BapOptions:
    """The best-available-pixel parameters of a cube (FORCE's names in brackets).

    Attributes:
        target_doy: the target day of year (``DOY_SCORE``'s peak); None: the middle of the period.
        doy_sigma: width of the day-of-year Gaussian, in days.
        target_year: the target year; None: the year of the period's middle.
        year_sigma: width of the year Gaussian, in years.
        max_cloud_distance: distance to a cloud or shadow from which ``s_cloud`` is 1, in pixels
            (``DREQ``).
        haze_band: the band whose value measures haze (the blue band); None: ``s_haze`` is 1.
        haze_max: the haze band's value at which ``s_haze`` is nearly 0 (band units).
        view_max: the view zenith at which ``s_view`` is 0, in degrees (``VZEN``'s maximum).
        weights: ``{"doy", "year", "cloud", "haze", "view"}`` weights (``SCORE_*_WEIGHT``).
    """

    target_doy: int | None = None
    doy_sigma: float = 30.0
    target_year: int | None = None
    year_sigma: float = 1.0
    max_cloud_distance: int = 50
    haze_band: str | None = None
    haze_max: float = 1000.0
    view_max: float = 7.5
    weights: Mapping[str, float] = field(
        default_factory=lambda: {"doy": 1.0, "year": 0.0, "cloud": 0.4, "haze": 0.3, "view": 0.0}
    )


BAP_WEIGHTS = ("doy", "year", "cloud", "haze", "view")


def bap_options(options: Mapping[str, Any], band_names: Sequence[str]) -> BapOptions:
    """Check a cube's BAP options (the fields of ``BapOptions``).

    Returns:
        The ``BapOptions``; weights not given keep their defaults.

    Raises:
        ValueError: naming the option, if one is unknown, of the wrong type or out of range.
    """
    known = set(BapOptions.__dataclass_fields__)
    unknown = sorted(set(options) - known)
    if unknown:
        raise ValueError(f"BAP: unknown options {unknown}; expected some of {sorted(known)}")
    checked = dict(options)
    for name in ("doy_sigma", "year_sigma", "haze_max", "view_max"):
        if name in checked and not (_is_number(checked[name]) and checked[name] > 0):
            raise ValueError(f"BAP: {name} must be a positive number, got {checked[name]!r}")
    if "target_doy" in checked and checked["target_doy"] is not None:
        if not (_is_integer(checked["target_doy"]) and 1 <= checked["target_doy"] <= 366):
            raise ValueError(f"BAP: target_doy must be an integer in 1..366, got {checked['target_doy']!r}")
    if "target_year" in checked and checked["target_year"] is not None and not _is_integer(checked["target_year"]):
        raise ValueError(f"BAP: target_year must be an integer, got {checked['target_year']!r}")
    if "max_cloud_distance" in checked and not (
        _is_integer(checked["max_cloud_distance"]) and 1 <= checked["max_cloud_distance"] <= 1000
    ):
        raise ValueError(
            f"BAP: max_cloud_distance must be an integer in 1..1000 pixels, got {checked['max_cloud_distance']!r}"
        )
    haze_band = checked.get("haze_band")
    if haze_band is not None and haze_band not in band_names:
        raise ValueError(f"BAP: haze_band {haze_band!r} is not one of the cube's bands {list(band_names)}")
    weights = dict(BapOptions().weights)
    given = checked.pop("weights", {}) or {}
    if not isinstance(given, Mapping) or set(given) - set(BAP_WEIGHTS):
        raise ValueError(f"BAP: weights must map some of {list(BAP_WEIGHTS)} to numbers, got {given!r}")
    for name, weight in given.items():
        if not (_is_number(weight) and weight >= 0):
            raise ValueError(f"BAP: weights.{name} must be a number >= 0, got {weight!r}")
        weights[name] = float(weight)
    if sum(weights.values()) <= 0:
        raise ValueError("BAP: the weights sum to 0")
    return BapOptions(**checked, weights=weights)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _is_integer(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def cloud_distance(
    classes: np.ndarray, cap: int, rows: slice | None = None, cols: slice | None = None, *, compiled: bool = False
) -> np.ndarray:
    """Distance in pixels from each pixel to the nearest NOT_CLEAR pixel of its observation, capped at ``cap``.

    Euclidean (``scipy.ndimage.distance_transform_edt``); ``cap`` where the observation has no
    NOT_CLEAR pixel within ``cap``. Exact for a window cut out of a larger stack as long as it
    was computed with ``cap`` pixels of context around the window: ``classes`` is the window
    and its context, ``rows`` and ``cols`` (default: all) the window in it. ``compiled`` runs
    ``composite_kernels.cloud_distance_window`` instead: the same distances in every row of
    the window with a CLEAR pixel, ``cap`` in the others (never scored).

    Returns:
        A ``(T, len(rows), len(cols))`` float64 array.
    """
    row0, row1, _ = (rows or slice(None)).indices(classes.shape[1])
    col0, col1, _ = (cols or slice(None)).indices(classes.shape[2])
    if compiled:
        out = np.empty((classes.shape[0], row1 - row0, col1 - col0))
        _kernels().cloud_distance_window(classes, int(cap), row0, col0, out)
        return out
    from scipy.ndimage import distance_transform_edt

    distances = np.full(classes.shape, float(cap))
    for t in range(classes.shape[0]):
        cloudy = classes[t] == QualityClass.NOT_CLEAR
        if cloudy.any():
            distances[t] = np.minimum(distance_transform_edt(~cloudy), float(cap))
    return np.ascontiguousarray(distances[:, row0:row1, col0:col1])


def day_distance(day: int, target: int) -> int:
    """Days between two days of the year, around the year end (at most 183)."""
    gap = abs(int(day) - int(target)) % 365
    return min(gap, 365 - gap)


def _observation_terms(window: CubeWindow, options: BapOptions, target_doy: int, target_year: int) -> np.ndarray:
    """``w_doy * s_doy + w_year * s_year + w_view * s_view`` of each observation (float64)."""
    weights = options.weights
    count = window.classes.shape[0]
    s_doy = [math.exp(-0.5 * (day_distance(d, target_doy) / options.doy_sigma) ** 2) for d in window.days]
    s_year = [math.exp(-0.5 * ((int(y) - target_year) / options.year_sigma) ** 2) for y in window.years]
    zenith = window.view_zenith if window.view_zenith is not None else np.full(count, np.nan)
    s_view = [
        1.0 if not math.isfinite(v) else 1.0 - min(abs(float(v)), options.view_max) / options.view_max for v in zenith
    ]
    return np.array(
        [weights["doy"] * s_doy[t] + weights["year"] * s_year[t] + weights["view"] * s_view[t] for t in range(count)]
    )


def _cloud_term(distance: np.ndarray, cap: float) -> np.ndarray:
    """``s_cloud`` of distances below ``cap``."""
    with np.errstate(over="ignore"):
        term: np.ndarray = 1.0 / (1.0 + np.exp(-10.0 / cap * (distance - cap / 2.0)))
    return term


def _haze_term(blue: np.ndarray, haze_max: float) -> np.ndarray:
    """``s_haze`` of haze band values (float64)."""
    with np.errstate(over="ignore"):
        term: np.ndarray = 1.0 / (1.0 + np.exp(10.0 / haze_max * (blue - haze_max / 2.0)))
    return term


def bap_scores(window: CubeWindow, options: BapOptions, target_doy: int, target_year: int) -> np.ndarray:
    """The BAP score of every observation, ``(T, H, W)`` float64 in 0..1 (rule in the module docstring).

    Returns:
        Scores; non-CLEAR observations score NaN (never chosen).

    Raises:
        ValueError: if the window has no ``cloud_distance``.
    """
    if window.cloud_distance is None:
        raise ValueError("bap_scores: the window was read without cloud distances")
    weights = options.weights
    total = sum(weights.values())
    per_observation = _observation_terms(window, options, target_doy, target_year)
    cap = float(options.max_cloud_distance)
    clear = window.clear
    scores: np.ndarray = np.full(window.classes.shape, np.nan)
    # Only the clear pixels are scored (the others are never chosen), each term where it is not 1.
    distance = window.cloud_distance[clear]
    s_cloud = np.ones(distance.shape)
    near = distance < cap
    s_cloud[near] = _cloud_term(distance[near], cap)
    if options.haze_band is not None:
        blue = window.values[window.band_names.index(options.haze_band)][clear].astype(np.float64)
        s_haze = _haze_term(blue, options.haze_max)
    else:
        s_haze = np.ones(distance.shape)
    observation = np.broadcast_to(per_observation[:, None, None], window.classes.shape)[clear]
    scores[clear] = (observation + weights["cloud"] * s_cloud + weights["haze"] * s_haze) / total
    return scores


def _bap_mosaic_kernel(
    window: CubeWindow, options: BapOptions, target_doy: int, target_year: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``quality_mosaic`` of ``bap_scores`` compiled (``bap_mosaic_window``), with the chosen scores.

    The exponentials stay numpy's, so they cannot round differently: ``s_cloud`` is tabulated
    over every squared distance below ``cap**2`` (the distances are square roots of integers),
    ``s_haze`` computed over the whole window.

    Returns:
        ``(composite, chosen, picked)``: as ``quality_mosaic``, and the chosen observation's
        score per pixel (float64, NaN where none).
    """
    if window.cloud_distance is None:
        raise ValueError("bap_scores: the window was read without cloud distances")
    weights = options.weights
    cap = options.max_cloud_distance
    cloud_terms = np.ones(cap * cap + 1)
    cloud_terms[:-1] = _cloud_term(np.sqrt(np.arange(cap * cap, dtype=np.float64)), float(cap))
    if options.haze_band is not None:
        blue = window.values[window.band_names.index(options.haze_band)].astype(np.float64)
        haze = _haze_term(blue, options.haze_max)
    else:
        haze = np.ones((1, 1, 1))
    values = window.values
    composite = np.empty((values.shape[0], *window.classes.shape[1:]), dtype=values.dtype)
    chosen = np.empty(window.classes.shape[1:], dtype=np.int32)
    picked = np.empty(window.classes.shape[1:])
    _kernels().bap_mosaic_window(
        values,
        window.classes,
        np.asarray(window.order, dtype=np.int64),
        window.cloud_distance,
        _observation_terms(window, options, target_doy, target_year),
        cloud_terms,
        haze,
        options.haze_band is not None,
        float(weights["cloud"]),
        float(weights["haze"]),
        float(sum(weights.values())),
        values.dtype.type(window.nodata),
        composite,
        chosen,
        picked,
    )
    return composite, chosen, picked


def _bap_numpy(
    window: CubeWindow, options: BapOptions, target_doy: int, target_year: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``quality_mosaic`` of ``bap_scores``, with the chosen scores (as ``_bap_mosaic_kernel``)."""
    scores = bap_scores(window, options, target_doy, target_year)
    composite, chosen = quality_mosaic(window.values, window.classes, window.order, scores, window.nodata)
    picked = np.take_along_axis(scores, np.maximum(chosen, 0)[np.newaxis], axis=0)[0]
    return composite, chosen, np.where(chosen < 0, np.nan, picked)


def _bap_rule(options: BapOptions, target_doy: int, target_year: int, given: Mapping[str, Any]) -> CubeRule:
    """BAP: the quality mosaic of ``bap_scores`` and its information outputs."""

    def run(window: CubeWindow, mosaic: Callable[..., tuple[np.ndarray, ...]]) -> dict[str, np.ndarray]:
        composite, chosen, picked = mosaic(window, options, target_doy, target_year)
        results = _mosaic_outputs(window, composite, chosen)
        results["SCORE"] = picked.astype(np.float32)
        results["DOY"] = results["PROVENANCE"]
        distances = [day_distance(d, target_doy) for d in window.days]
        results["DOY_DISTANCE"] = _gathered(chosen, distances, PROVENANCE_NODATA, np.int16)
        results["NUM"] = _clear_count(window)
        return results

    return CubeRule(
        "BAP",
        numpy=lambda window: run(window, _bap_numpy),
        kernel=lambda window: run(window, _bap_mosaic_kernel),
        outputs={
            "PROVENANCE": OutputSpec("int16", PROVENANCE_NODATA),
            "SCORE": OutputSpec("float32", float("nan")),
            "DOY": OutputSpec("int16", PROVENANCE_NODATA),
            "DOY_DISTANCE": OutputSpec("int16", PROVENANCE_NODATA),
            "NUM": OutputSpec("uint8", None),
        },
        halo=options.max_cloud_distance,
        options=dict(given),
    )


# --------------------------------------------------------------------------- GMED


@dataclass(frozen=True)
class GeomedianOptions:
    """GMED's parameters.

    Attributes:
        eps: stop when the estimate moves less than this (band units).
        max_iterations: at most this many Weiszfeld iterations.
        mads: which of SMAD, EMAD, BCMAD to write.
    """

    eps: float = 1e-2
    max_iterations: int = 1000
    mads: tuple[str, ...] = ()


def geomedian_options(options: Mapping[str, Any]) -> GeomedianOptions:
    """Check a cube's GMED options (``eps``, ``max_iterations``, ``mads``).

    Returns:
        The ``GeomedianOptions``.

    Raises:
        ValueError: naming the option, if one is unknown, of the wrong type or out of range.
    """
    unknown = sorted(set(options) - {"eps", "max_iterations", "mads"})
    if unknown:
        raise ValueError(f"GMED: unknown options {unknown}; expected some of ['eps', 'mads', 'max_iterations']")
    eps = options.get("eps", GeomedianOptions.eps)
    if not (_is_number(eps) and eps > 0):
        raise ValueError(f"GMED: eps must be a positive number, got {eps!r}")
    iterations = options.get("max_iterations", GeomedianOptions.max_iterations)
    if not (_is_integer(iterations) and 1 <= iterations <= 100000):
        raise ValueError(f"GMED: max_iterations must be an integer in 1..100000, got {iterations!r}")
    mads = options.get("mads", [])
    if isinstance(mads, str) or not all(m in GMED_MADS for m in mads) or len(set(mads)) != len(mads):
        raise ValueError(f"GMED: mads must list some of {list(GMED_MADS)} once each, got {mads!r}")
    return GeomedianOptions(float(eps), int(iterations), tuple(mads))


def geomedian(values: np.ndarray, clear: np.ndarray, eps: float, max_iterations: int) -> np.ndarray:
    """The geometric median of each pixel's CLEAR observations across the bands (Weiszfeld, float64).

    ``values`` is ``(B, T, H, W)``, ``clear`` ``(T, H, W)``. Per pixel, exactly the iterations of
    the compiled ``geomedian_window`` (sums over observations and bands in index order).

    Returns:
        ``(B, H, W)`` float64, NaN where no observation is clear.
    """
    bands, count = values.shape[:2]
    shape = values.shape[2:]
    x = values.reshape(bands, count, -1).astype(np.float64)
    valid = clear.reshape(count, -1)
    n = valid.sum(axis=0)
    result = np.full((bands, x.shape[2]), np.nan)
    pixels = np.flatnonzero(n > 0)
    x, valid, n = x[:, :, pixels], valid[:, pixels], n[pixels].astype(np.float64)
    y = np.zeros((bands, pixels.size))
    for b in range(bands):
        for t in range(count):
            y[b] += np.where(valid[t], x[b, t], 0.0)
        y[b] /= n
    active = np.arange(pixels.size)
    iteration = 0
    while active.size and iteration < max_iterations:
        xa, va, ya = x[:, :, active], valid[:, active], y[:, active]
        distance = np.zeros((count, active.size))
        for t in range(count):
            for b in range(bands):
                gap = xa[b, t] - ya[b]
                distance[t] += gap * gap
        distance = np.sqrt(distance)
        inverse = np.where(distance > 0.0, 1.0 / np.where(distance > 0.0, distance, 1.0), 1.0)
        inverse_sum = np.zeros(active.size)
        for t in range(count):
            inverse_sum += np.where(va[t], inverse[t], 0.0)
        target = np.zeros((bands, active.size))
        for b in range(bands):
            for t in range(count):
                target[b] += np.where(va[t], inverse[t] / inverse_sum * xa[b, t], 0.0)
        zeros = (va & (distance == 0.0)).sum(axis=0)
        residual = np.zeros(active.size)
        for b in range(bands):
            r = (target[b] - ya[b]) * inverse_sum
            residual += r * r
        residual = np.sqrt(residual)
        ratio = np.where(residual > 0.0, zeros / np.where(residual > 0.0, residual, 1.0), 0.0)
        modified = np.maximum(0.0, 1.0 - ratio) * target + np.minimum(1.0, ratio) * ya
        updated = np.where(zeros == 0, target, modified)
        at_point = zeros == n[active]
        updated = np.where(at_point, ya, updated)
        moved = np.zeros(active.size)
        for b in range(bands):
            gap = ya[b] - updated[b]
            moved += gap * gap
        moved = np.sqrt(moved)
        y[:, active] = updated
        iteration += 1
        active = active[~(at_point | (moved < eps))]
    result[:, pixels] = y
    return result.reshape(bands, *shape)


def geomedian_deviations(
    values: np.ndarray, clear: np.ndarray, median: np.ndarray, mads: Sequence[str]
) -> dict[str, np.ndarray]:
    """SMAD, EMAD and BCMAD of ``mads``: per pixel the median over CLEAR observations of their distance to ``median``.

    Cosine distance ``1 - x.m / (|x| |m|)``, Euclidean ``|x - m|``, Bray-Curtis
    ``sum|x - m| / sum|x + m|`` (sums over bands in order; NaN where a denominator is 0, sorted
    last); an even count's median is the mean of the two middle distances.

    Returns:
        ``{mad: (H, W) float32}``, NaN where no observation is clear.
    """
    bands, count = values.shape[:2]
    x = values.astype(np.float64)
    norm_median = np.zeros(median.shape[1:])
    for b in range(bands):
        norm_median += median[b] * median[b]
    norm_median = np.sqrt(norm_median)
    results: dict[str, np.ndarray] = {}
    for mad in mads:
        distances = np.empty((count, *median.shape[1:]))
        for t in range(count):
            first = np.zeros(median.shape[1:])
            second = np.zeros(median.shape[1:])
            for b in range(bands):
                if mad == "SMAD":
                    first += x[b, t] * median[b]
                    second += x[b, t] * x[b, t]
                elif mad == "EMAD":
                    gap = x[b, t] - median[b]
                    first += gap * gap
                else:
                    first += np.abs(x[b, t] - median[b])
                    second += np.abs(x[b, t] + median[b])
            with np.errstate(all="ignore"):
                if mad == "SMAD":
                    denominator = np.sqrt(second) * norm_median
                    distance = np.where(denominator != 0.0, 1.0 - first / denominator, np.nan)
                elif mad == "EMAD":
                    distance = np.sqrt(first)
                else:
                    distance = np.where(second != 0.0, first / second, np.nan)
            distances[t] = np.where(clear[t], distance, np.nan)
        results[mad] = _median_of_valid(distances, clear.sum(axis=0)).astype(np.float32)
    return results


def _median_of_valid(distances: np.ndarray, count: np.ndarray) -> np.ndarray:
    """Median along axis 0 of the ``count`` non-NaN entries (NaN sort last); NaN where ``count`` is 0."""
    ordered = np.sort(distances, axis=0)
    low = np.take_along_axis(ordered, (np.maximum(count - 1, 0) // 2)[np.newaxis], axis=0)[0]
    high = np.take_along_axis(ordered, (count // 2)[np.newaxis], axis=0)[0]
    return np.where(count > 0, (low + high) / 2.0, np.nan)


def _geomedian_kernel(values: np.ndarray, clear: np.ndarray, eps: float, max_iterations: int) -> np.ndarray:
    """``geomedian`` compiled (``geomedian_window``)."""
    out = np.empty((values.shape[0], *values.shape[2:]), dtype=np.float64)
    _kernels().geomedian_window(values, clear, eps, max_iterations, out)
    return out


def _geomedian_deviations_kernel(
    values: np.ndarray, clear: np.ndarray, median: np.ndarray, mads: Sequence[str]
) -> dict[str, np.ndarray]:
    """``geomedian_deviations`` compiled (``deviations_window``)."""
    results = {}
    for mad in mads:
        out = np.empty(median.shape[1:], dtype=np.float64)
        _kernels().deviations_window(values, clear, median, GMED_MADS.index(mad), out)
        results[mad] = out.astype(np.float32)
    return results


def _to_band_dtype(median: np.ndarray, dtype: np.dtype, nodata: float) -> np.ndarray:
    """The float64 geometric median in the bands' dtype: truncated toward zero for integers, ``nodata`` where NaN."""
    missing = np.isnan(median)
    if dtype.kind in "iu":
        info = np.iinfo(dtype)
        out: np.ndarray = np.clip(np.trunc(np.where(missing, 0.0, median)), info.min, info.max).astype(dtype)
    else:
        out = median.astype(dtype)
    out[missing] = nodata
    return out


def _geomedian_rule(options: GeomedianOptions, given: Mapping[str, Any]) -> CubeRule:
    """GMED: the geometric median of the bands and the deviations ``options.mads``."""

    def run(window: CubeWindow, compiled: bool) -> dict[str, np.ndarray]:
        clear = window.clear
        if compiled:
            median = _geomedian_kernel(window.values, clear, options.eps, options.max_iterations)
            deviations = _geomedian_deviations_kernel(window.values, clear, median, options.mads)
        else:
            median = geomedian(window.values, clear, options.eps, options.max_iterations)
            deviations = geomedian_deviations(window.values, clear, median, options.mads)
        results = {
            name: _to_band_dtype(median[b], window.dtype, window.nodata) for b, name in enumerate(window.band_names)
        }
        results.update(deviations)
        if window.source_bits is not None:
            results[DATASOURCE] = datasource_contributed(window.classes, window.source_bits)
        return results

    return CubeRule(
        "GMED",
        numpy=lambda window: run(window, compiled=False),
        kernel=lambda window: run(window, compiled=True),
        outputs={mad: OutputSpec("float32", float("nan")) for mad in options.mads},
        options=dict(given),
    )


# --------------------------------------------------------------------------- by name


@dataclass(frozen=True)
class CubeContext:
    """What a cube rule may need from its cube and period to be built.

    Attributes:
        band_names: the cube's bands, in order.
        indexes: the cube's index functions by name, with the band each variable reads.
        period_middle_doy: day of year of the period's middle (BAP's default target).
        period_middle_year: year of the period's middle.
    """

    band_names: tuple[str, ...]
    indexes: Mapping[str, tuple[IndexFunction, Mapping[str, str]]] = field(default_factory=dict)
    period_middle_doy: int = 183
    period_middle_year: int = 2000


def cube_rule(name: str, options: Mapping[str, Any], context: CubeContext) -> CubeRule:
    """The cube rule ``name`` ("MAXNDVI", "BAP", "GMED") built from its ``options``.

    MAXNDVI's option ``index`` names one of the cube's indexes (default "NDVI").

    Returns:
        The ``CubeRule``.

    Raises:
        ValueError: on an unknown name or bad options (naming the option).
    """
    if name == "MAXNDVI":
        unknown = sorted(set(options) - {"index"})
        if unknown:
            raise ValueError(f"MAXNDVI: unknown options {unknown}; expected ['index']")
        index = options.get("index", "NDVI")
        if index not in context.indexes:
            raise ValueError(f"MAXNDVI: index {index!r} is not one of the cube's indexes {sorted(context.indexes)}")
        function, variables = context.indexes[index]
        return _max_index_rule(function, variables, options)
    if name == "BAP":
        bap = bap_options(options, context.band_names)
        target_doy = bap.target_doy if bap.target_doy is not None else context.period_middle_doy
        target_year = bap.target_year if bap.target_year is not None else context.period_middle_year
        return _bap_rule(bap, target_doy, target_year, options)
    if name == "GMED":
        return _geomedian_rule(geomedian_options(options), options)
    raise ValueError(f"compositing function {name!r} is not one of {list(CUBE_FUNCTION_NAMES)}")


def check_cube_function_options(
    name: str, options: Mapping[str, Any], band_names: Sequence[str], index_names: Sequence[str]
) -> None:
    """Check the options of cube function ``name`` as a cube configures them, before any pixel is read.

    Returns:
        None.

    Raises:
        ValueError: naming the option, as ``cube_rule`` would on these bands and indexes.
    """
    if not isinstance(options, Mapping):
        raise ValueError(f"{name}: options must be a mapping, got {options!r}")
    indexes: dict[str, tuple[IndexFunction, Mapping[str, str]]] = {index: (_no_index, {}) for index in index_names}
    cube_rule(name, options, CubeContext(band_names=tuple(band_names), indexes=indexes))


def _no_index(inputs: Mapping[str, np.ndarray]) -> np.ndarray:
    """Stands for an index while options are only checked."""
    raise NotImplementedError("an index placeholder is never evaluated")


__all__ = [
    "BAP_WEIGHTS",
    "CUBE_FUNCTION_NAMES",
    "GMED_MADS",
    "PROVENANCE_NODATA",
    "BapOptions",
    "CubeContext",
    "CubeRule",
    "CubeWindow",
    "GeomedianOptions",
    "OutputSpec",
    "bap_options",
    "bap_scores",
    "check_cube_function_options",
    "cloud_distance",
    "cube_rule",
    "day_distance",
    "geomedian",
    "geomedian_deviations",
    "geomedian_options",
    "index_scores",
    "quality_mosaic",
]
