"""Reference blends for the benchmark: numpy / numpy.ma, one block window at a time, this project's rules.

Two styles, both giving exactly the pixels of ``cube_assets.raster.composite`` (the benchmark
asserts it) and both writing their outputs window by window:

``cube_builder`` -- the reference this project is measured against: the per-window loop of the BDC cube builder's
    ``blend`` (``cube_builder/utils/processing.py``), ported statement by statement. One
    composite function per run; per window the ranked merges are read one after the other,
    the quality read as a masked array and masked with ``numpy.isin`` (not clear, band nodata,
    saturated, then clear unmasked), every observation stored in a ``numpy.ma`` stack, the best
    pixel filled through ``where`` / ``ravel_multi_index`` / ``intersect1d`` position lists
    and then by the clear pixels not done yet; MED is ``numpy.ma.median`` of the stack. As in
    the cube builder, every run builds the stack and the best-pixel composite whatever its
    function (the cube builder computes the composite's statistics from it).

``lean`` -- the same rules written as plainly as numpy.ma allows: boolean masks, the
    best-pixel fill with boolean indexing, a masked stack only for MED and AVG
    (``numpy.ma.median`` / ``numpy.ma.mean``). This is the stronger baseline.

Where the cube builder's code and this project's rules differ, the rules win in both styles:

* ranking: efficacy descending, ties to the newer date (the cube builder: efficacy /
  resolution);
* a pixel is NODATA when its quality code is a nodata code or its band value is the band's
  nodata; codes listed nowhere are not clear (the cube builder lets a clear code override band
  nodata and leaves unlisted codes unmasked);
* the LCF fallback is the first observation that is not NODATA (the cube builder: the first
  band value that is not nodata, whatever the quality says);
* integer MED and AVG truncate toward zero (``astype`` of the float result) and are nodata
  without a clear observation; AVG (``numpy.ma.mean``) is not in the cube builder; types are
  kept (the cube builder's stack is always int16);
* outputs are written window by window (the cube builder holds whole-tile arrays), so memory
  stays bounded.

Only numpy, numpy.ma and rasterio are used, not ``cube_assets.raster.composite``.

The references of the spectral-temporal metrics and the geometric median are the libraries
users would reach for: ``reference_percentile_band`` is ``numpy.nanpercentile`` of the clear
stack, ``reference_geomedian`` the ``geomad`` package (Geoscience Australia's hdstats
successor), each window by window with the same staging files and COG conversion.
"""

from __future__ import annotations

import contextlib
import datetime
import os
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import rasterio
from rasterio.windows import Window

PathLike = str | os.PathLike[str]
Finalize = Callable[[Path, Path], None]

STYLES = ("cube_builder", "lean")
FUNCTIONS = ("LCF", "MED", "AVG")
QUALITY_OUTPUTS = ("quality", "provenance", "clearob", "totalob")


def reference_rank(efficacies: Sequence[float], dates: Sequence[datetime.date]) -> list[int]:
    """Observation indices, best first: efficacy descending, then newer date, then input order."""
    return sorted(range(len(dates)), key=lambda i: (efficacies[i], dates[i]), reverse=True)


def _staging_profile(reference: rasterio.io.DatasetReader, dtype: str, nodata: float | None) -> dict:
    """Tiled, uncompressed: the same staging files ``composite.blend_band`` hands to a finalize."""
    profile = dict(reference.profile)
    for key in ("photometric", "interleave", "compress", "predictor"):
        profile.pop(key, None)
    profile.update(driver="GTiff", count=1, dtype=dtype, nodata=nodata, tiled=True, blockxsize=512, blockysize=512)
    return profile


@contextlib.contextmanager
def _output(destination: Path, profile: dict, finalize: Finalize | None):
    """Open a staging GeoTIFF beside ``destination``; afterwards finalize it (COG) or rename it."""
    destination.parent.mkdir(parents=True, exist_ok=True)
    staging = destination.with_name(f".{destination.stem}.reference-staging.tif")
    try:
        with rasterio.open(staging, "w", **profile) as dataset:
            yield dataset
        if finalize is None:
            os.replace(staging, destination)
        else:
            finalize(staging, destination)
    finally:
        with contextlib.suppress(FileNotFoundError):
            staging.unlink()


def _block_windows(dataset: rasterio.io.DatasetReader) -> list[Window]:
    return [window for _, window in dataset.block_windows(1)]


class _Codes:
    """The code lists of value quality rules (``masks.ValueMaskRules`` or alike)."""

    def __init__(self, rules) -> None:  # type: ignore[no-untyped-def]  # the reference takes the quality rules untyped, as written
        self.clear = list(rules.clear)
        self.not_clear = list(rules.not_clear)
        self.saturated = list(rules.saturated)
        self.nodata = list(rules.nodata)


def _cube_builder_window(
    bands: Sequence[rasterio.io.DatasetReader] | None,
    masks: Sequence[rasterio.io.DatasetReader],
    window: Window,
    codes: _Codes,
    band_nodata: float,
    days: Sequence[int],
    dtype: str,
) -> tuple[np.ma.MaskedArray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """One window of the cube builder's blend loop (``bands`` None: the quality band is the band).

    Returns:
        ``(stack, best, provenance, notdone, total_observation)``.
    """
    shape = (window.height, window.width)
    stack_ma = np.ma.zeros((len(masks), *shape), dtype=dtype)
    notdonemask = np.ones(shape, dtype=np.bool_)
    best = np.full(shape, band_nodata, dtype=dtype)
    provenance = np.full(shape, -1, dtype=np.int16)
    total_observation = np.zeros(shape, dtype=np.int64)
    for order in range(len(masks)):
        masked = masks[order].read(1, window=window, masked=True)
        raster = masked.data.copy() if bands is None else bands[order].read(1, window=window)
        copy_mask = np.array(masked.data, copy=True)
        masked.mask = np.ma.getmaskarray(masked).copy()
        masked.mask[np.where(np.isin(masked.data, codes.not_clear))] = True
        masked.mask[raster == band_nodata] = True
        masked.mask[np.where(np.isin(masked.data, codes.saturated))] = True
        masked.mask[np.where(np.isin(masked.data, codes.clear))] = False
        # Rules: nodata codes and band nodata are never clear; codes listed nowhere are not clear.
        nodata = np.isin(copy_mask, codes.nodata) | (raster == band_nodata)
        masked.mask[nodata | ~np.isin(masked.data, codes.clear)] = True
        bmask = masked.mask
        stack_ma[order] = np.ma.masked_where(bmask, raster)
        # Total observations: quality pixels that are not nodata.
        valid_pos = np.where(~np.isin(copy_mask, codes.nodata))
        copy_mask[:] = 0
        copy_mask[valid_pos] = 1
        total_observation += copy_mask
        # Best pixel fallback: positions still nodata in the composite where this observation has data.
        stack_raster_where_nodata = np.where(best == band_nodata)
        stack_raster_nodata_pos = np.ravel_multi_index(stack_raster_where_nodata, shape)
        raster_where_data = np.where(~nodata)
        raster_data_pos = np.ravel_multi_index(raster_where_data, shape)
        intersect_ravel = np.intersect1d(stack_raster_nodata_pos, raster_data_pos, assume_unique=True)
        if len(intersect_ravel):
            where_intersec = np.unravel_index(intersect_ravel, shape)
            best[where_intersec] = raster[where_intersec]
            provenance[where_intersec] = days[order]
        # Clear pixels not done yet override the fallback.
        todomask = notdonemask * np.invert(bmask)
        clear_not_done_pixels = np.where(np.logical_and(todomask, np.invert(masked.mask)))
        best[clear_not_done_pixels] = raster[clear_not_done_pixels]
        provenance[clear_not_done_pixels] = days[order]
        notdonemask = notdonemask * bmask
    return stack_ma, best, provenance, notdonemask, total_observation


def _lean_band_window(
    bands: Sequence[rasterio.io.DatasetReader],
    masks: Sequence[rasterio.io.DatasetReader],
    window: Window,
    codes: _Codes,
    band_nodata: float,
    function: str,
    dtype: str,
) -> np.ndarray:
    shape = (window.height, window.width)
    if function == "LCF":
        best = np.full(shape, band_nodata, dtype=dtype)
        notdone = np.ones(shape, dtype=bool)
    else:
        stack = np.ma.zeros((len(bands), *shape), dtype=dtype)
    for order in range(len(bands)):
        raster = bands[order].read(1, window=window)
        quality = masks[order].read(1, window=window)
        nodata = np.isin(quality, codes.nodata) | (raster == band_nodata)
        masked = ~np.isin(quality, codes.clear) | nodata  # True: not a clear observation
        if function == "LCF":
            fallback = (best == band_nodata) & ~nodata
            best[fallback] = raster[fallback]
            clear_not_done = notdone & ~masked
            best[clear_not_done] = raster[clear_not_done]
            notdone &= masked
        else:
            stack[order] = np.ma.masked_where(masked, raster)
    if function == "LCF":
        return best
    reduced = np.ma.median(stack, axis=0) if function == "MED" else np.ma.mean(stack, axis=0)
    result = reduced.data.astype(dtype)  # truncation toward zero
    result[np.ma.count(stack, axis=0) == 0] = band_nodata
    return result


def reference_blend_band(
    merge_paths: Sequence[PathLike],
    quality_paths: Sequence[PathLike],
    dates: Sequence[datetime.date],
    efficacies: Sequence[float],
    rules,  # type: ignore[no-untyped-def]  # the reference takes the quality rules untyped, as written
    function: str,
    out_path: PathLike,
    band_nodata: float,
    finalize: Finalize | None = None,
    style: str = "cube_builder",
) -> Path:
    """One band, one function ("LCF", "MED" or "AVG"), in the given ``style`` (see the module).

    ``rules`` are value quality rules (``clear``, ``not_clear``, ``saturated``, ``nodata`` code
    lists, e.g. ``masks.SCL_RULES``).

    Returns:
        ``out_path``.

    Raises:
        ValueError: on an unknown function or style.
    """
    if function not in FUNCTIONS or style not in STYLES:
        raise ValueError(f"reference_blend_band: function {function!r} / style {style!r} unknown")
    codes = _Codes(rules)
    ranked = reference_rank(efficacies, dates)
    days = [dates[i].timetuple().tm_yday for i in ranked]
    bands = [rasterio.open(merge_paths[i]) for i in ranked]
    masks = [rasterio.open(quality_paths[i]) for i in ranked]
    try:
        dtype = bands[0].dtypes[0]
        with _output(Path(out_path), _staging_profile(bands[0], dtype, band_nodata), finalize) as out:
            for window in _block_windows(bands[0]):
                if style == "lean":
                    result = _lean_band_window(bands, masks, window, codes, band_nodata, function, dtype)
                else:
                    stack, best, _, notdone, _ = _cube_builder_window(
                        bands, masks, window, codes, band_nodata, days, dtype
                    )
                    if function == "LCF":
                        result = best
                    else:
                        reduced = np.ma.median(stack, axis=0) if function == "MED" else np.ma.mean(stack, axis=0)
                        result = reduced.data.astype(dtype)
                        result[notdone.astype(np.bool_)] = band_nodata
                out.write(result, 1, window=window)
    finally:
        for dataset in bands + masks:
            dataset.close()
    return Path(out_path)


def reference_blend_quality(
    quality_paths: Sequence[PathLike],
    dates: Sequence[datetime.date],
    efficacies: Sequence[float],
    rules,  # type: ignore[no-untyped-def]  # the reference takes the quality rules untyped, as written
    out_paths: dict[str, PathLike],
    finalize: Finalize | None = None,
    style: str = "cube_builder",
) -> dict[str, Path]:
    """The quality band's LCF with PROVENANCE (day of year), CLEAROB and TOTALOB, in one pass.

    ``out_paths`` has the keys "quality", "provenance", "clearob", "totalob". The cube builder
    does this as the quality band's LCF blend with ``build_clear_observation``.

    Returns:
        ``out_paths`` as paths.

    Raises:
        ValueError: on an unknown style.
    """
    if style not in STYLES:
        raise ValueError(f"reference_blend_quality: style {style!r} unknown")
    codes = _Codes(rules)
    ranked = reference_rank(efficacies, dates)
    masks = [rasterio.open(quality_paths[i]) for i in ranked]
    days = [dates[i].timetuple().tm_yday for i in ranked]
    quality_nodata = codes.nodata[0]
    try:
        dtype = masks[0].dtypes[0]
        profiles = {
            "quality": _staging_profile(masks[0], dtype, quality_nodata),
            "provenance": _staging_profile(masks[0], "int16", -1),
            "clearob": _staging_profile(masks[0], "uint8", None),
            "totalob": _staging_profile(masks[0], "uint8", None),
        }
        with contextlib.ExitStack() as outputs:
            out = {
                name: outputs.enter_context(_output(Path(out_paths[name]), profiles[name], finalize))
                for name in QUALITY_OUTPUTS
            }
            for window in _block_windows(masks[0]):
                if style == "cube_builder":
                    stack, best, provenance, _, total = _cube_builder_window(
                        None, masks, window, codes, quality_nodata, days, dtype
                    )
                    clear = np.ma.count(stack, axis=0)
                else:
                    best, provenance, clear, total = _lean_quality_window(masks, window, codes, days, dtype)
                out["quality"].write(best, 1, window=window)
                out["provenance"].write(provenance, 1, window=window)
                out["clearob"].write(np.minimum(clear, 255).astype(np.uint8), 1, window=window)
                out["totalob"].write(np.minimum(total, 255).astype(np.uint8), 1, window=window)
    finally:
        for dataset in masks:
            dataset.close()
    return {name: Path(path) for name, path in out_paths.items()}


def _lean_quality_window(
    masks: Sequence[rasterio.io.DatasetReader], window: Window, codes: _Codes, days: Sequence[int], dtype: str
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    shape = (window.height, window.width)
    best = np.full(shape, codes.nodata[0], dtype=dtype)
    provenance = np.full(shape, -1, dtype=np.int16)
    clear = np.zeros(shape, dtype=np.int64)
    total = np.zeros(shape, dtype=np.int64)
    notdone = np.ones(shape, dtype=bool)
    for order in range(len(masks)):
        quality = masks[order].read(1, window=window)
        nodata = np.isin(quality, codes.nodata)
        masked = ~np.isin(quality, codes.clear) | nodata
        total += ~nodata
        clear += ~masked
        fallback = (provenance == -1) & ~nodata
        best[fallback] = quality[fallback]
        provenance[fallback] = days[order]
        clear_not_done = notdone & ~masked
        best[clear_not_done] = quality[clear_not_done]
        provenance[clear_not_done] = days[order]
        notdone &= masked
    return best, provenance, clear, total


# --------------------------------------------------------------------------- references of the new functions


def _clear_stack(
    datasets: Sequence[rasterio.io.DatasetReader],
    masks: Sequence[rasterio.io.DatasetReader],
    window: Window,
    codes: _Codes,
    band_nodata: float,
) -> tuple[np.ndarray, np.ndarray]:
    """A window's ``(T, H, W)`` float64 stack with NaN where an observation is not clear, and the clear mask."""
    values = np.stack([dataset.read(1, window=window) for dataset in datasets]).astype(np.float64)
    quality = np.stack([mask.read(1, window=window) for mask in masks])
    clear = np.isin(quality, codes.clear) & (values != band_nodata)
    values[~clear] = np.nan
    return values, clear


def reference_percentile_band(
    merge_paths: Sequence[PathLike],
    quality_paths: Sequence[PathLike],
    rules,  # type: ignore[no-untyped-def]  # value rules, as the other references take them
    percent: float,
    out_path: PathLike,
    band_nodata: float,
    finalize: Finalize | None = None,
) -> Path:
    """``numpy.nanpercentile`` of the clear observations (linear), truncated toward zero, window by window.

    Returns:
        ``out_path``.
    """
    codes = _Codes(rules)
    bands = [rasterio.open(path) for path in merge_paths]
    masks = [rasterio.open(path) for path in quality_paths]
    try:
        dtype = bands[0].dtypes[0]
        with _output(Path(out_path), _staging_profile(bands[0], dtype, band_nodata), finalize) as out:
            for window in _block_windows(bands[0]):
                values, clear = _clear_stack(bands, masks, window, codes, band_nodata)
                with np.errstate(all="ignore"), warnings_ignored():
                    result = np.nanpercentile(values, percent, axis=0)
                out.write(np.where(clear.any(axis=0), np.trunc(result), band_nodata).astype(dtype), 1, window=window)
    finally:
        for dataset in bands + masks:
            dataset.close()
    return Path(out_path)


@contextlib.contextmanager
def warnings_ignored():
    """Silence numpy's "All-NaN slice" warnings of pixels without clear observations."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        yield


def reference_geomedian(
    merge_paths: dict[str, Sequence[PathLike]],
    quality_paths: Sequence[PathLike],
    rules,  # type: ignore[no-untyped-def]  # value rules, as the other references take them
    out_paths: dict[str, PathLike],
    band_nodata: float,
    eps: float,
    max_iterations: int,
    finalize: Finalize | None = None,
    num_threads: int | None = None,
) -> dict[str, Path]:
    """The ``geomad`` package's geometric median of the clear observations, window by window.

    Per window the bands' clear stacks (NaN elsewhere) go to ``geomad.nangeomedian_pcm`` as one
    float32 ``(H, W, B, T)`` array; the result is truncated toward zero into the bands' dtype.

    Returns:
        ``{band: path}``.
    """
    import geomad

    codes = _Codes(rules)
    names = list(merge_paths)
    bands = {name: [rasterio.open(path) for path in merge_paths[name]] for name in names}
    masks = [rasterio.open(path) for path in quality_paths]
    threads = num_threads or os.cpu_count() or 1
    try:
        first = bands[names[0]][0]
        dtype = first.dtypes[0]
        with contextlib.ExitStack() as outputs:
            out = {
                name: outputs.enter_context(
                    _output(Path(out_paths[name]), _staging_profile(first, dtype, band_nodata), finalize)
                )
                for name in names
            }
            for window in _block_windows(first):
                stacks = [_clear_stack(bands[name], masks, window, codes, band_nodata) for name in names]
                clear = np.logical_and.reduce([c for _, c in stacks])
                stacked = np.stack([np.where(clear, v, np.nan) for v, _ in stacks]).astype(np.float32)
                cube = np.ascontiguousarray(stacked.transpose(2, 3, 0, 1))  # (H, W, B, T)
                with warnings_ignored():
                    median = geomad.nangeomedian_pcm(cube, eps=eps, maxiters=max_iterations, num_threads=threads)
                any_clear = clear.any(axis=0)
                for b, name in enumerate(names):
                    result = np.where(any_clear, np.trunc(np.nan_to_num(median[:, :, b])), band_nodata)
                    out[name].write(result.astype(dtype), 1, window=window)
    finally:
        for dataset in [d for group in bands.values() for d in group] + masks:
            dataset.close()
    return {name: Path(path) for name, path in out_paths.items()}
