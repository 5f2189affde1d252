"""Opening and reading rasters that come from outside, with errors that name the file.

:func:`open_input` is how every reader of scene files opens one: it checks the header (the
band exists, a CRS is declared, the size is one the product can have, see
``product_limits.check_declared_size``) before any pixel is read. :func:`reading_from` wraps
the reads themselves, so a truncated or corrupt file raises :class:`InvalidRaster` naming the
file and the band instead of GDAL's bare ``Read failed``.

JPEG 2000 tiles are decoded one after the other (``GDAL_NUM_THREADS=1`` while a JP2 file is
open), each with several OpenJPEG threads (``OPJ_NUM_THREADS``, see
:func:`enable_openjpeg_threads`). GDAL's own multi-threaded mode decodes the tiles of one read in
a thread pool, and there a tile that fails to decode is only logged and comes back as zeros: a
truncated Sentinel-2 band would become a band of nodata without an error (a read of one tile, or
GDAL_NUM_THREADS=1, raises). OpenJPEG's threads work inside one tile, in the reading thread's
decode call, so a failing tile still fails the read; ``cube_assets_tests/raster/test_inputs.py``
checks both behaviours on a real Sentinel-2 band cut short.
"""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Iterator

import rasterio
from rasterio._err import CPLE_BaseError  # GDAL's own errors, which some calls raise bare
from rasterio.errors import RasterioError
from rasterio.io import DatasetReader

from cube_assets.errors import InvalidRaster
from cube_assets.raster.product_limits import ProductLimits, check_declared_size

OPENJPEG_THREADS_VARIABLE = "OPJ_NUM_THREADS"
"""The environment variable OpenJPEG reads its decoding threads from (GDAL then leaves them be)."""

MAX_QUOTED = 200
"""Characters of a GDAL message quoted in an error (they can repeat long paths)."""
_QUERY = re.compile(r"\?[^\s'\"]*")


def display_name(path: str | os.PathLike[str]) -> str:
    """``path`` as messages show it: without a URL's query string (which may hold a token).

    Returns:
        The path as text, with any ``?query`` replaced by ``?…``.
    """
    return _QUERY.sub("?…", str(path))


def enable_openjpeg_threads(threads: int | None = None) -> str:
    """Let OpenJPEG decode each JPEG 2000 tile with ``threads`` threads (default: the CPU count).

    OpenJPEG reads ``OPJ_NUM_THREADS`` from the process environment when it creates a decoder
    (GDAL's configuration options do not reach it), so this sets the variable, unless it is
    already set (an operator's choice wins). Tiles are still decoded one after the other
    (:func:`open_input`), so a tile that fails to decode fails the read.

    Returns:
        The value in effect.

    Raises:
        ValueError: if ``threads`` is less than 1.
    """
    if threads is not None and threads < 1:
        raise ValueError(f"threads must be at least 1, got {threads}")
    value = str(threads if threads is not None else os.cpu_count() or 1)
    return os.environ.setdefault(OPENJPEG_THREADS_VARIABLE, value)


def _brief(error: BaseException) -> str:
    """The text of a GDAL error and its cause, without query strings, at most ``MAX_QUOTED`` characters."""
    text = str(error)
    if error.__cause__ is not None and str(error.__cause__) not in text:
        text = f"{text}: {error.__cause__}"
    text = display_name(text)
    return text if len(text) <= MAX_QUOTED else text[: MAX_QUOTED - 1] + "…"


@contextlib.contextmanager
def open_input(
    path: str | os.PathLike[str],
    *,
    limits: ProductLimits | None,
    band: int | None = 1,
    require_crs: bool = True,
) -> Iterator[DatasetReader]:
    """Open the raster at ``path`` after checking its header; no pixel is read.

    Checks, in order: GDAL can open it; it has band ``band`` (None: any band count); it has a
    CRS (unless ``require_crs`` is false); its declared size fits ``limits`` (None: not checked,
    for rasters this package made itself).

    Returns:
        A context manager yielding the open dataset, closed on exit.

    Raises:
        InvalidRaster: naming the file and what is wrong with it.
    """
    name = display_name(path)
    try:
        dataset = rasterio.open(path)
    except (RasterioError, CPLE_BaseError) as error:
        raise InvalidRaster(f"{name}: cannot be opened as a raster ({_brief(error)})") from error
    with dataset, _errors_reported(dataset):
        if band is not None and not 1 <= band <= dataset.count:
            raise InvalidRaster(f"{name}: has no band {band} (it has {dataset.count})")
        if require_crs and dataset.crs is None:
            raise InvalidRaster(f"{name}: has no CRS, so it cannot be placed on the cube's grid")
        if limits is not None:
            check_declared_size(dataset, name, limits)
        yield dataset


def _errors_reported(dataset: DatasetReader) -> contextlib.AbstractContextManager[object]:
    """The GDAL settings under which every decoding error of ``dataset`` reaches the caller."""
    if dataset.driver == "JP2OpenJPEG":
        single_threaded: contextlib.AbstractContextManager[object] = rasterio.Env(GDAL_NUM_THREADS="1")
        return single_threaded
    return contextlib.nullcontext()


@contextlib.contextmanager
def reading_from(path: str | os.PathLike[str], band: int | str) -> Iterator[None]:
    """Turn GDAL read errors inside the block into :class:`InvalidRaster` naming ``path`` and ``band``.

    ``band`` is a band number or a description (``"all bands"``). Errors that are not GDAL's
    pass through unchanged.

    Returns:
        A context manager.

    Raises:
        InvalidRaster: "{path}: band {band} cannot be read (truncated or corrupt?): {GDAL's message}".
    """
    try:
        yield
    except (RasterioError, CPLE_BaseError) as error:
        what = f"band {band}" if isinstance(band, int) else band
        raise InvalidRaster(
            f"{display_name(path)}: {what} cannot be read (truncated or corrupt?): {_brief(error)}"
        ) from error
