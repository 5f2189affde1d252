"""Opening and reading rasters that come from outside, with errors that name the file.

:func:`open_input` is how every reader of scene files opens one: it checks the header (the
band exists, a CRS is declared, the size is one the product can have, see
``product_limits.check_declared_size``) before any pixel is read. :func:`reading_from` wraps
the reads themselves, so a truncated or corrupt file raises :class:`InvalidRaster` naming the
file and the band instead of GDAL's bare ``Read failed``.

JPEG 2000 files are decoded in the reading thread: when OpenJPEG decodes several tiles of one
read in worker threads (GDAL's default), a tile that fails to decode is only logged and the read
returns zeros, so a truncated Sentinel-2 band would become a band of nodata without an error.
One thread decodes such a band about half as fast on two cores.
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

MAX_QUOTED = 200
"""Characters of a GDAL message quoted in an error (they can repeat long paths)."""
_QUERY = re.compile(r"\?[^\s'\"]*")


def display_name(path: str | os.PathLike[str]) -> str:
    """``path`` as messages show it: without a URL's query string (which may hold a token).

    Returns:
        The path as text, with any ``?query`` replaced by ``?…``.
    """
    return _QUERY.sub("?…", str(path))


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
