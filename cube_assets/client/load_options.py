"""The loading arguments the client's ``ndarray``/``stack``/``mosaic``/``download`` calls share, resolved once.

They take the catalog guide's arguments (``crs``, ``resolution``, ``all_touched``,
``resampler``, ``processing_level``, ``progress``) beside this project's own
(``resampling``, ``use_overviews``); this module turns them into a grid and the options of
:mod:`cube_assets.client.raster_read`.

* ``crs`` and ``resolution`` replace those parts of the grid (:meth:`GeoContext.assign`).
* ``all_touched`` is accepted as a boolean and has no effect: loads here fill the whole grid's
  rectangle and are never clipped to a geometry, which is what it would control.
* ``resampler`` is a :class:`~cube_assets.client.enums.ResampleAlgorithm` (or its name);
  ``resampling=`` is this project's name for the same thing.
* ``processing_level``: catalog images hold one processing level each (what their product
  says it is), so only ``None`` is accepted.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from cube_assets.client.enums import ResampleAlgorithm
from cube_assets.client.geocontext import GeoContext


def adjusted_grid(
    geocontext: GeoContext, crs: Any = None, resolution: Any = None, all_touched: Any = None
) -> GeoContext:
    """Return ``geocontext`` with ``crs`` and ``resolution`` replaced when given.

    Raises:
        ValueError: if ``all_touched`` is not a boolean or None, or the new grid is invalid (a new
            CRS without a new resolution, a non-positive resolution).
    """
    if all_touched is not None and not isinstance(all_touched, bool):
        raise ValueError(f"all_touched must be True, False or None, got {all_touched!r}")
    if crs is None and resolution is None:
        return geocontext
    return geocontext.assign(crs=crs, resolution=resolution)


def reader_options(
    *,
    resampler: Any = ResampleAlgorithm.NEAR,
    processing_level: Any = None,
    progress: Any = None,
    options: Mapping[str, Any],
) -> dict[str, Any]:
    """Return the keyword arguments for :mod:`~cube_assets.client.raster_read` from the documented ones.

    ``options`` are this project's own keywords (``resampling``, ``use_overviews``, ``cog``...),
    passed on unchanged; ``resampling`` there wins over a default ``resampler``.

    Raises:
        ValueError: for an unknown ``resampler``, both ``resampler`` (other than the default) and
            ``resampling`` given, a ``processing_level`` other than None, or a non-boolean ``progress``.
    """
    merged = dict(options)
    if processing_level is not None:
        raise ValueError(
            f"processing_level {processing_level!r}: images of this catalog hold one processing level each"
            " (the one their product describes); pass None"
        )
    try:
        method = ResampleAlgorithm(resampler)
    except ValueError:
        raise ValueError(
            f"resampler must be one of {[member.value for member in ResampleAlgorithm]}, got {resampler!r}"
        ) from None
    if "resampling" in merged:
        if method != ResampleAlgorithm.NEAR:
            raise ValueError(
                f"resampler {method.value!r} and resampling {merged['resampling']!r} both given; give one of them"
            )
    else:
        merged["resampling"] = method.value
    if progress is not None:
        if not isinstance(progress, bool):
            raise ValueError(f"progress must be True, False or None, got {progress!r}")
        merged["progress"] = progress
    return merged


__all__ = ["adjusted_grid", "reader_options"]
