"""Compiled (numba) kernels of the composites, one window at a time.

Each kernel walks the pixels of one window once and, per pixel, the T observations of the
stack, applying exactly the rule of its pure-numpy twin in ``composite_rules``:

* ``lcf_window``: ``composite_rules.lcf`` (first CLEAR in rank order, else first non-NODATA, else
  nodata) and the chosen observation index;
* ``median_window``: ``composite_rules.median_clear`` (median of CLEAR values; even count: the two
  middle values' mean truncated toward zero for integers, ``(a + b) / 2`` in float64 for
  floats; NaN sorts last like ``numpy.sort``);
* ``mean_window``: ``composite_rules.mean_clear`` (integer sums in int64, mean truncated toward zero;
  float sums in float64 in observation order, like numpy's axis-0 sum);
* ``percentiles_window`` / ``std_window``: the spectral-temporal metrics of ``composite_metrics``
  (percentiles, MIN, MAX, RANGE, IQR; STD);
* ``quality_mosaic_window``, ``geomedian_window``, ``deviations_window``: the rules over all
  bands of ``composite_cube_rules`` (MAXNDVI and BAP, GMED and its deviations);
  ``cloud_distance_window`` and ``bap_mosaic_window``: BAP's distance to cloud, its scores and choice;
* ``quality_window``: LCF of the quality band itself with PROVENANCE, CLEAROB and TOTALOB;
  ``quality_sources_window`` the DATASOURCE of that choice and of the clear observations.

The quality band is classified on the fly through a lookup table built by
``masks.classify_quality`` over every code of its dtype (so classification cannot differ from
the numpy path), and band values equal to the band's nodata count as NODATA (spectral nodata
propagation, ``masks.propagate_spectral_nodata``). Observations whose band values were not read
(``loaded[t]`` false) are never looked at: the caller only skips reading observations that no
rule needs (see ``composite.blend_band``).

Integer arithmetic is exact for band dtypes of at most 32 bits; ``composite`` sends 64-bit
integer bands to the numpy path. Kernels are compiled on first use for each combination of
dtypes (``cache=True`` keeps the machine code under ``__pycache__`` for later processes) and
release the GIL, so reading the next files can overlap the computation.
"""

from __future__ import annotations

import numba
import numpy as np

_NODATA = 0  # QualityClass.NODATA
_CLEAR = 1  # QualityClass.CLEAR
_NOT_CLEAR = 2  # QualityClass.NOT_CLEAR
_MAX_COUNT = 255


@numba.njit(inline="always", cache=True, nogil=True, boundscheck=False)
def _is_band_nodata(value, fill, nodata_is_nan):  # type: ignore[no-untyped-def]  # numba types it per call
    """``value`` equals the band's nodata ``fill`` (given in the band's dtype; NaN matches NaN)."""
    if nodata_is_nan:
        return value != value
    return value == fill


@numba.njit(inline="always", cache=True, nogil=True, boundscheck=False)
def _is_band_value(value, fill, nodata_is_nan):  # type: ignore[no-untyped-def]  # numba types it per call
    """Not ``_is_band_nodata``: written without a branch, to be combined with ``&`` in hot loops."""
    if nodata_is_nan:
        return value == value
    return value != fill


@numba.njit(inline="always", cache=True, nogil=True, boundscheck=False)
def _is_clear(code, lut, lut_offset, value, check_band, fill, nodata_is_nan):  # type: ignore[no-untyped-def]  # numba types it per call
    """The observation is CLEAR by its quality ``code`` and (with ``check_band``) its band ``value`` is data."""
    keep = lut[np.int64(code) + lut_offset] == _CLEAR
    if check_band:
        # ``&``, not ``and``: no branch per pixel, which cloud edges would mispredict
        keep = keep & _is_band_value(value, fill, nodata_is_nan)
    return keep


@numba.njit(inline="always", cache=True, nogil=True, boundscheck=False)
def _sorts_before(a, b):  # type: ignore[no-untyped-def]  # numba types it per call
    """``a < b`` with NaN after every number, as ``numpy.sort`` orders them."""
    if a != a:
        return False
    if b != b:
        return True
    return a < b


@numba.njit(cache=True, nogil=True, boundscheck=False)
def observations_with_clear(quality, lut, lut_offset, out):  # type: ignore[no-untyped-def]  # numba types it per call
    """Set ``out[t]`` when observation ``t`` has at least one CLEAR quality pixel in the window."""
    count, height, width = quality.shape
    for t in range(count):
        found = False
        for row in range(height):
            for col in range(width):
                if lut[np.int64(quality[t, row, col]) + lut_offset] == _CLEAR:
                    found = True
                    break
            if found:
                break
        out[t] = found


@numba.njit(cache=True, nogil=True, boundscheck=False)
def lcf_window(  # type: ignore[no-untyped-def]  # numba types it per call
    values, quality, lut, lut_offset, order, loaded, check_band, fill, nodata_is_nan, out, chosen, wanted
):
    """Best-pixel composite of one window (``composite_rules.lcf``).

    ``out`` gets the chosen value (``fill``, the band's nodata, where none), ``chosen`` the
    chosen observation (-1 where none). An observation whose values are not ``loaded`` is
    assumed to hold data; when it is chosen, ``wanted[t]`` is set and ``out`` is left as is
    there, so the caller reads it and calls again. Once every chosen observation is loaded,
    the result is exact.
    """
    count, height, width = quality.shape
    for row in range(height):
        for col in range(width):
            first_present = -1
            pick = -1
            for rank in range(count):
                t = order[rank]
                klass = lut[np.int64(quality[t, row, col]) + lut_offset]
                if klass == _NODATA:
                    continue
                if check_band and loaded[t] and _is_band_nodata(values[t, row, col], fill, nodata_is_nan):
                    continue
                if klass == _CLEAR:
                    pick = t
                    break
                if first_present < 0:
                    first_present = t
            if pick < 0:
                pick = first_present
            chosen[row, col] = pick
            if pick < 0:
                out[row, col] = fill
            elif loaded[pick]:
                out[row, col] = values[pick, row, col]
            else:
                wanted[pick] = True


@numba.njit(cache=True, nogil=True, boundscheck=False)
def median_window(  # type: ignore[no-untyped-def]  # numba types it per call
    values, quality, lut, lut_offset, loaded, check_band, fill, nodata_is_nan, integer, sentinel, network, out
):
    """Median of each pixel's CLEAR observations (``composite_rules.median_clear``) into ``out``.

    Row by row, like the numpy path: values that are not usable become ``sentinel`` (the dtype's
    maximum, NaN for floats), so they sort after every clear value; the row's T x W values are
    sorted along T by the compare-exchange ``network`` (pairs i < j, see ``sorting_network``),
    all pixels of the row at once (min/max for integers, NaN last for floats); the clear count
    n then picks ranks (n - 1) // 2 and n // 2.
    """
    count, height, width = quality.shape
    ordered = np.empty((count, width), dtype=values.dtype)
    sizes = np.empty(width, dtype=np.int64)
    for row in range(height):
        sizes[:] = 0
        for t in range(count):
            if not loaded[t]:
                ordered[t, :] = sentinel
                continue
            for col in range(width):
                value = values[t, row, col]
                keep = _is_clear(quality[t, row, col], lut, lut_offset, value, check_band, fill, nodata_is_nan)
                ordered[t, col] = value if keep else sentinel
                sizes[col] += keep
        for pair in range(network.shape[0]):
            i = network[pair, 0]
            j = network[pair, 1]
            if integer:
                for col in range(width):
                    a = ordered[i, col]
                    b = ordered[j, col]
                    ordered[i, col] = min(a, b)
                    ordered[j, col] = max(a, b)
            else:
                for col in range(width):
                    a = ordered[i, col]
                    b = ordered[j, col]
                    if _sorts_before(b, a):
                        ordered[i, col] = b
                        ordered[j, col] = a
        for col in range(width):
            size = sizes[col]
            if size == 0:
                out[row, col] = fill
                continue
            low = ordered[(size - 1) // 2, col]
            high = ordered[size // 2, col]
            if integer:
                total = np.int64(low) + np.int64(high)
                out[row, col] = total // 2 if total >= 0 else -((-total) // 2)
            else:
                out[row, col] = (np.float64(low) + np.float64(high)) / 2.0


@numba.njit(cache=True, nogil=True, boundscheck=False)
def mean_window(  # type: ignore[no-untyped-def]  # numba types it per call
    values, quality, lut, lut_offset, loaded, check_band, fill, nodata_is_nan, integer, out
):
    """Mean of each pixel's CLEAR observations (``composite_rules.mean_clear``) into ``out``.

    Row by row, observations in index order (the order numpy's axis-0 sum adds them in);
    integer sums in int64 with the mean truncated toward zero, float sums in float64.
    """
    count, height, width = quality.shape
    wholes = np.empty(width, dtype=np.int64)
    reals = np.empty(width, dtype=np.float64)
    sizes = np.empty(width, dtype=np.int64)
    for row in range(height):
        wholes[:] = 0
        reals[:] = 0.0
        sizes[:] = 0
        for t in range(count):
            if not loaded[t]:
                continue
            for col in range(width):
                value = values[t, row, col]
                keep = _is_clear(quality[t, row, col], lut, lut_offset, value, check_band, fill, nodata_is_nan)
                if integer:
                    wholes[col] += np.int64(value) * np.int64(keep)
                else:
                    reals[col] += np.float64(value) if keep else 0.0
                sizes[col] += keep
        for col in range(width):
            size = sizes[col]
            if size == 0:
                out[row, col] = fill
            elif integer:
                whole = wholes[col]
                magnitude = (whole if whole >= 0 else -whole) // size
                out[row, col] = magnitude if whole >= 0 else -magnitude
            else:
                out[row, col] = reals[col] / size


@numba.njit(cache=True, nogil=True, boundscheck=False)
def percentiles_window(  # type: ignore[no-untyped-def]  # numba types it per call
    values,
    quality,
    lut,
    lut_offset,
    loaded,
    check_band,
    fill,
    nodata_is_nan,
    integer,
    sentinel,
    network,
    percents,
    wide,
    counts,
):
    """Percentiles of each pixel's CLEAR observations (``composite_metrics.wide_percentiles``).

    Sorted row by row as ``median_window`` sorts; ``wide[k]`` gets percentile ``percents[k]``
    before the cast to the band dtype (int64 truncated toward zero for integer bands, float64
    otherwise) and ``counts`` the clear observations of each pixel.
    """
    count, height, width = quality.shape
    ordered = np.empty((count, width), dtype=values.dtype)
    sizes = np.empty(width, dtype=np.int64)
    for row in range(height):
        sizes[:] = 0
        for t in range(count):
            if not loaded[t]:
                ordered[t, :] = sentinel
                continue
            for col in range(width):
                value = values[t, row, col]
                keep = _is_clear(quality[t, row, col], lut, lut_offset, value, check_band, fill, nodata_is_nan)
                ordered[t, col] = value if keep else sentinel
                sizes[col] += keep
        for pair in range(network.shape[0]):
            i = network[pair, 0]
            j = network[pair, 1]
            if integer:
                for col in range(width):
                    a = ordered[i, col]
                    b = ordered[j, col]
                    ordered[i, col] = min(a, b)
                    ordered[j, col] = max(a, b)
            else:
                for col in range(width):
                    a = ordered[i, col]
                    b = ordered[j, col]
                    if _sorts_before(b, a):
                        ordered[i, col] = b
                        ordered[j, col] = a
        for col in range(width):
            size = sizes[col]
            counts[row, col] = size
            top = size - 1 if size > 0 else 0
            for k in range(percents.shape[0]):
                position = top * percents[k]
                low_rank = position // 100
                remainder = position % 100
                high_rank = min(low_rank + 1, top)
                low = ordered[low_rank, col]
                high = ordered[high_rank, col]
                if integer:
                    total = np.int64(low) * (100 - remainder) + np.int64(high) * remainder
                    wide[k, row, col] = total // 100 if total >= 0 else -((-total) // 100)
                else:
                    wide[k, row, col] = (np.float64(low) * (100 - remainder) + np.float64(high) * remainder) / 100.0


@numba.njit(cache=True, nogil=True, boundscheck=False)
def std_window(  # type: ignore[no-untyped-def]  # numba types it per call
    values, quality, lut, lut_offset, loaded, check_band, fill, nodata_is_nan, integer, out
):
    """Population standard deviation of each pixel's CLEAR observations (``composite_metrics.std_clear``).

    Row by row, observations in index order: the mean from an exact int64 sum (integers) or a
    float64 sum, then the squared float64 deviations; integer results truncated toward zero.
    """
    count, height, width = quality.shape
    wholes = np.empty(width, dtype=np.int64)
    reals = np.empty(width, dtype=np.float64)
    squares = np.empty(width, dtype=np.float64)
    sizes = np.empty(width, dtype=np.int64)
    keeps = np.empty((count, width), dtype=np.bool_)
    for row in range(height):
        wholes[:] = 0
        reals[:] = 0.0
        squares[:] = 0.0
        sizes[:] = 0
        for t in range(count):
            for col in range(width):
                keep = loaded[t] and _is_clear(
                    quality[t, row, col], lut, lut_offset, values[t, row, col], check_band, fill, nodata_is_nan
                )
                keeps[t, col] = keep
                if keep:
                    if integer:
                        wholes[col] += np.int64(values[t, row, col])
                    else:
                        reals[col] += np.float64(values[t, row, col])
                    sizes[col] += 1
        for col in range(width):
            divisor = np.float64(max(sizes[col], 1))
            reals[col] = (np.float64(wholes[col]) if integer else reals[col]) / divisor
        for t in range(count):
            for col in range(width):
                if keeps[t, col]:
                    deviation = np.float64(values[t, row, col]) - reals[col]
                    squares[col] += deviation * deviation
        for col in range(width):
            size = sizes[col]
            if size == 0:
                out[row, col] = fill
                continue
            deviation_std = np.sqrt(squares[col] / np.float64(size))
            out[row, col] = np.trunc(deviation_std) if integer else deviation_std


@numba.njit(cache=True, nogil=True, boundscheck=False)
def quality_window(  # type: ignore[no-untyped-def]  # numba types it per call
    quality, lut, lut_offset, order, days, fill, out_quality, out_provenance, out_clear, out_total
):
    """LCF of the quality band, PROVENANCE (day of year, -1), CLEAROB and TOTALOB of one window.

    Row by row, observations in rank order: the first CLEAR one wins, else the first present.
    """
    count, height, width = quality.shape
    classes = np.empty(width, dtype=np.uint8)
    picks = np.empty(width, dtype=np.int64)
    presents = np.empty(width, dtype=np.int64)
    clears = np.empty(width, dtype=np.int64)
    totals = np.empty(width, dtype=np.int64)
    for row in range(height):
        picks[:] = -1
        presents[:] = -1
        clears[:] = 0
        totals[:] = 0
        for rank in range(count):
            t = order[rank]
            for col in range(width):
                classes[col] = lut[np.int64(quality[t, row, col]) + lut_offset]
            for col in range(width):
                present = classes[col] != _NODATA
                clear = classes[col] == _CLEAR
                totals[col] += present
                clears[col] += clear
                presents[col] = t if present and presents[col] < 0 else presents[col]
                picks[col] = t if clear and picks[col] < 0 else picks[col]
        for col in range(width):
            pick = picks[col] if picks[col] >= 0 else presents[col]
            out_clear[row, col] = min(clears[col], _MAX_COUNT)
            out_total[row, col] = min(totals[col], _MAX_COUNT)
            if pick < 0:
                out_quality[row, col] = fill
                out_provenance[row, col] = -1
            else:
                out_quality[row, col] = quality[pick, row, col]
                out_provenance[row, col] = days[pick]


@numba.njit(cache=True, nogil=True, boundscheck=False)
def quality_sources_window(quality, lut, lut_offset, order, bits, out_chosen, out_clear):  # type: ignore[no-untyped-def]  # numba types it per call
    """The two DATASOURCE outputs of one window, beside ``quality_window``'s LCF choice.

    ``out_chosen`` gets the ``bits`` entry of the observation LCF chooses (the first CLEAR in
    rank order, else the first present; 0 where none), ``out_clear`` the OR of the entries of the
    CLEAR observations. A pass of its own, so cubes without sources pay nothing for it.
    """
    count, height, width = quality.shape
    classes = np.empty(width, dtype=np.uint8)
    picks = np.empty(width, dtype=np.int64)
    presents = np.empty(width, dtype=np.int64)
    sources = np.empty(width, dtype=np.uint8)
    for row in range(height):
        picks[:] = -1
        presents[:] = -1
        sources[:] = 0
        for rank in range(count):
            t = order[rank]
            bit = bits[t]
            for col in range(width):
                classes[col] = lut[np.int64(quality[t, row, col]) + lut_offset]
            for col in range(width):
                present = classes[col] != _NODATA
                clear = classes[col] == _CLEAR
                presents[col] = t if present and presents[col] < 0 else presents[col]
                picks[col] = t if clear and picks[col] < 0 else picks[col]
                sources[col] |= bit if clear else np.uint8(0)
        for col in range(width):
            pick = picks[col] if picks[col] >= 0 else presents[col]
            out_clear[row, col] = sources[col]
            out_chosen[row, col] = 0 if pick < 0 else bits[pick]


@numba.njit(cache=True, nogil=True, boundscheck=False)
def quality_mosaic_window(values, classes, order, score, fill, out, chosen):  # type: ignore[no-untyped-def]  # numba types it per call
    """Every band from the CLEAR observation with the highest score (``composite_cube_rules.quality_mosaic``).

    ``values`` is ``(B, T, H, W)``, ``classes`` and ``score`` ``(T, H, W)``; the first CLEAR
    observation in ``order`` is taken and replaced by a later one only with a strictly higher
    score (NaN counts as minus infinity). ``out`` gets every band (``fill`` where none is
    clear), ``chosen`` the observation (-1).
    """
    bands = values.shape[0]
    count, height, width = classes.shape
    best = np.empty(width)
    for row in range(height):  # row by row, observations in rank order: contiguous reads
        chosen[row, :] = -1
        best[:] = -np.inf
        for rank in range(count):
            t = order[rank]
            for col in range(width):
                if classes[t, row, col] != _CLEAR:
                    continue
                value = score[t, row, col]
                if value != value:
                    value = -np.inf
                if chosen[row, col] < 0 or value > best[col]:
                    chosen[row, col] = t
                    best[col] = value
        for b in range(bands):
            for col in range(width):
                pick = chosen[row, col]
                out[b, row, col] = fill if pick < 0 else values[b, pick, row, col]


@numba.njit(cache=True, nogil=True, boundscheck=False)
def geomedian_window(values, clear, eps, max_iterations, out):  # type: ignore[no-untyped-def]  # numba types it per call
    """Geometric median of each pixel's CLEAR observations across the bands (``composite_cube_rules.geomedian``).

    Weiszfeld's iterations with Vardi and Zhang's modification, as ``geomad`` iterates, in
    float64 from the mean of the clear observations; sums over observations and bands in index
    order. ``out`` is ``(B, H, W)`` float64, NaN where no observation is clear.
    """
    bands, count, height, width = values.shape
    x = np.empty((bands, count), dtype=np.float64)
    valid = np.empty(count, dtype=np.bool_)
    y = np.empty(bands, dtype=np.float64)
    target = np.empty(bands, dtype=np.float64)
    updated = np.empty(bands, dtype=np.float64)
    distance = np.empty(count, dtype=np.float64)
    inverse = np.empty(count, dtype=np.float64)
    for row in range(height):
        for col in range(width):
            n = 0
            for t in range(count):
                valid[t] = clear[t, row, col]
                n += valid[t]
                for b in range(bands):
                    x[b, t] = np.float64(values[b, t, row, col])
            if n == 0:
                for b in range(bands):
                    out[b, row, col] = np.nan
                continue
            for b in range(bands):
                total = 0.0
                for t in range(count):
                    total += x[b, t] if valid[t] else 0.0
                y[b] = total / np.float64(n)
            for _ in range(max_iterations):
                for t in range(count):
                    total = 0.0
                    for b in range(bands):
                        gap = x[b, t] - y[b]
                        total += gap * gap
                    distance[t] = np.sqrt(total)
                    inverse[t] = 1.0 / distance[t] if distance[t] > 0.0 else 1.0
                inverse_sum = 0.0
                for t in range(count):
                    inverse_sum += inverse[t] if valid[t] else 0.0
                for b in range(bands):
                    total = 0.0
                    for t in range(count):
                        total += inverse[t] / inverse_sum * x[b, t] if valid[t] else 0.0
                    target[b] = total
                zeros = 0
                for t in range(count):
                    zeros += valid[t] and distance[t] == 0.0
                if zeros == n:
                    break
                if zeros == 0:
                    for b in range(bands):
                        updated[b] = target[b]
                else:
                    residual = 0.0
                    for b in range(bands):
                        r = (target[b] - y[b]) * inverse_sum
                        residual += r * r
                    residual = np.sqrt(residual)
                    ratio = zeros / residual if residual > 0.0 else 0.0
                    for b in range(bands):
                        updated[b] = max(0.0, 1.0 - ratio) * target[b] + min(1.0, ratio) * y[b]
                moved = 0.0
                for b in range(bands):
                    gap = y[b] - updated[b]
                    moved += gap * gap
                moved = np.sqrt(moved)
                for b in range(bands):
                    y[b] = updated[b]
                if moved < eps:
                    break
            for b in range(bands):
                out[b, row, col] = y[b]


@numba.njit(cache=True, nogil=True, boundscheck=False)
def deviations_window(values, clear, median, kind, out):  # type: ignore[no-untyped-def]  # numba types it per call
    """SMAD (``kind`` 0), EMAD (1) or BCMAD (2) of each pixel (``composite_cube_rules.geomedian_deviations``).

    The median over the CLEAR observations of their cosine, Euclidean or Bray-Curtis distance
    to the geometric ``median`` (``(B, H, W)`` float64); ``out`` float64, NaN without clear data.
    """
    bands, count, height, width = values.shape
    distances = np.empty(count, dtype=np.float64)
    for row in range(height):
        for col in range(width):
            norm_median = 0.0
            for b in range(bands):
                norm_median += median[b, row, col] * median[b, row, col]
            norm_median = np.sqrt(norm_median)
            n = 0
            for t in range(count):
                if not clear[t, row, col]:
                    continue
                first = 0.0
                second = 0.0
                for b in range(bands):
                    value = np.float64(values[b, t, row, col])
                    m = median[b, row, col]
                    if kind == 0:
                        first += value * m
                        second += value * value
                    elif kind == 1:
                        gap = value - m
                        first += gap * gap
                    else:
                        first += abs(value - m)
                        second += abs(value + m)
                if kind == 0:
                    denominator = np.sqrt(second) * norm_median
                    distance = 1.0 - first / denominator if denominator != 0.0 else np.nan
                elif kind == 1:
                    distance = np.sqrt(first)
                else:
                    distance = first / second if second != 0.0 else np.nan
                distances[n] = distance
                n += 1
            if n == 0:
                out[row, col] = np.nan
                continue
            ordered = np.sort(distances[:n])
            out[row, col] = (ordered[(n - 1) // 2] + ordered[n // 2]) / 2.0


@numba.njit(cache=True, nogil=True, boundscheck=False)
def cloud_distance_window(classes, cap, row_off, col_off, out):  # type: ignore[no-untyped-def]  # numba types it per call
    """Capped distance to the nearest NOT_CLEAR pixel of each observation (``composite_cube_rules.cloud_distance``).

    ``classes`` is ``(T, H, W)`` (the window and its halo); ``out`` ``(T, h, w)`` float64 gets
    ``min(sqrt(d2), cap)`` of the pixels from ``(row_off, col_off)`` on: ``cap`` where the
    observation has no NOT_CLEAR pixel, and in each row of the window without a CLEAR pixel
    (never scored). Meijster, Roerdink and Hesselink's exact transform in
    integers: the distance ``g`` to the nearest NOT_CLEAR pixel of the same column, then per
    row the lower envelope of the parabolas ``(x - i)**2 + g(i)**2``. Columns farther than
    ``cap`` from any NOT_CLEAR pixel are left out of the envelope: their parabolas exceed
    ``cap**2`` everywhere, so they change no capped distance. The square root of the exact
    integer is scipy's (both correctly rounded).
    """
    count, height, width = classes.shape
    rows, cols = out.shape[1], out.shape[2]
    column = np.empty((height, width), dtype=np.int32)
    square = np.empty(width, dtype=np.int64)
    sites = np.empty(width, dtype=np.int64)
    starts = np.empty(width, dtype=np.int64)
    limit = float(cap)
    for t in range(count):
        scored = False
        for row in range(row_off, row_off + rows):
            for col in range(col_off, col_off + cols):
                scored |= classes[t, row, col] == _CLEAR
        cloudy = False
        for row in range(height):
            for col in range(width):
                if classes[t, row, col] == _NOT_CLEAR:
                    column[row, col] = 0
                    cloudy = True
                elif row == 0 or column[row - 1, col] >= cap:
                    column[row, col] = cap + 1
                else:
                    column[row, col] = column[row - 1, col] + 1
        if not (scored and cloudy):
            out[t] = limit
            continue
        for row in range(height - 2, -1, -1):
            for col in range(width):
                below = column[row + 1, col] + 1
                if below < column[row, col]:
                    column[row, col] = below
        for row in range(row_off, row_off + rows):
            scored = False
            for col in range(col_off, col_off + cols):
                scored |= classes[t, row, col] == _CLEAR
            if not scored:
                out[t, row - row_off] = limit
                continue
            for col in range(width):
                g = np.int64(column[row, col])
                square[col] = g * g
            q = -1
            for u in range(width):
                if column[row, u] > cap:
                    continue
                while q >= 0:
                    s, x = sites[q], starts[q]
                    if (x - s) * (x - s) + square[s] <= (x - u) * (x - u) + square[u]:
                        break
                    q -= 1
                if q < 0:
                    q = 0
                    sites[0] = u
                    starts[0] = 0
                else:
                    s = sites[q]
                    start = 1 + (u * u - s * s + square[u] - square[s]) // (2 * (u - s))
                    if start < width:
                        q += 1
                        sites[q] = u
                        starts[q] = start
            for u in range(col_off + cols - 1, col_off - 1, -1):
                while q > 0 and u < starts[q]:
                    q -= 1
                if q < 0:
                    out[t, row - row_off, u - col_off] = limit
                    continue
                s = sites[q]
                distance = np.sqrt(np.float64((u - s) * (u - s) + square[s]))
                out[t, row - row_off, u - col_off] = distance if distance < limit else limit


@numba.njit(cache=True, nogil=True, boundscheck=False)
def bap_mosaic_window(  # type: ignore[no-untyped-def]  # numba types it per call
    values,
    classes,
    order,
    distance,
    per_observation,
    cloud_terms,
    haze,
    use_haze,
    cloud_weight,
    haze_weight,
    total,
    fill,
    out,
    chosen,
    picked,
):
    """BAP's quality mosaic of one window, scoring as it goes (``composite_cube_rules.bap_scores``).

    The score of a CLEAR observation is ``(per_observation[t] + cloud_weight * s_cloud +
    haze_weight * s_haze) / total`` in that order: ``s_cloud`` is
    ``cloud_terms[round(distance**2)]`` (``distance`` is the square root of an integer, so its
    square rounds back to it), ``s_haze`` ``haze[t, row, col]`` with ``use_haze``, else 1. Then
    ``quality_mosaic_window``'s choice: ``out`` gets every band, ``chosen`` the observation (-1),
    ``picked`` its score (NaN where none).
    """
    bands = values.shape[0]
    count, height, width = classes.shape
    best = np.empty(width)
    for row in range(height):  # row by row, observations in rank order: contiguous reads
        chosen[row, :] = -1
        picked[row, :] = np.nan
        best[:] = -np.inf
        for rank in range(count):
            t = order[rank]
            for col in range(width):
                if classes[t, row, col] != _CLEAR:
                    continue
                d = distance[t, row, col]
                s_cloud = cloud_terms[np.int64(d * d + 0.5)]
                s_haze = haze[t, row, col] if use_haze else 1.0
                score = (per_observation[t] + cloud_weight * s_cloud + haze_weight * s_haze) / total
                value = -np.inf if score != score else score
                if chosen[row, col] < 0 or value > best[col]:
                    chosen[row, col] = t
                    best[col] = value
                    picked[row, col] = score
        for b in range(bands):
            for col in range(width):
                pick = chosen[row, col]
                out[b, row, col] = fill if pick < 0 else values[b, pick, row, col]


def sorting_network(count: int) -> np.ndarray:
    """Compare-exchange pairs (i, j), i < j, that sort ``count`` values ascending.

    Knuth's merge exchange (Batcher's odd-even merge, TAOCP 5.2.2 algorithm M), valid for any
    ``count``: applying "if a[j] sorts before a[i], swap them" to the pairs in order sorts.

    Returns:
        An ``(n_pairs, 2)`` int64 array (empty for ``count`` < 2).
    """
    pairs: list[tuple[int, int]] = []
    if count >= 2:
        top = 1 << ((count - 1).bit_length() - 1)
        p = top
        while p > 0:
            q, r, d = top, 0, p
            while True:
                pairs.extend((i, i + d) for i in range(count - d) if i & p == r)
                if q == p:
                    break
                d, q, r = q - p, q // 2, p
            p //= 2
    return np.asarray(pairs, dtype=np.int64).reshape(-1, 2)


__all__ = [
    "bap_mosaic_window",
    "cloud_distance_window",
    "deviations_window",
    "geomedian_window",
    "lcf_window",
    "mean_window",
    "median_window",
    "observations_with_clear",
    "percentiles_window",
    "quality_mosaic_window",
    "quality_window",
    "quality_sources_window",
    "sorting_network",
    "std_window",
]
