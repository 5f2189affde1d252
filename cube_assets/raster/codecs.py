"""The lossless codecs rasters are written with, and their GeoTIFF creation options.

``COMPRESSIONS`` are DEFLATE and ZSTD (both with a TIFF predictor: horizontal differencing for
integers, floating point for floats) and LERC_ZSTD with ``MAX_Z_ERROR=0`` (lossless). GDAL, and
so rasterio, odc-stac and rio-tiler, reads all three. :data:`DEFAULT_COMPRESSION` and the levels
of :data:`DEFAULT_LEVELS` were chosen by measurement (``benchmarks/codecs.py``, see
docs/benchmarks.md): the smallest write + read time at a size no larger than DEFLATE's.
"""

from __future__ import annotations

from typing import Any

import numpy as np

COMPRESSIONS = ("DEFLATE", "ZSTD", "LERC_ZSTD")
"""The codecs a COG can be written with; all are lossless (LERC with ``MAX_Z_ERROR=0``)."""
DEFAULT_COMPRESSION = "ZSTD"
"""The codec of every COG unless a cube chooses another: the fastest to write and read at a size no
larger than DEFLATE's on merges and composites (``benchmarks/codecs.py``, docs/benchmarks.md)."""
DEFAULT_LEVELS = {"DEFLATE": 6, "ZSTD": 3, "LERC_ZSTD": 3}
"""The compression level of each codec when the caller gives none (DEFLATE: libdeflate's 1-12)."""
_LEVEL_RANGES = {"DEFLATE": (1, 12), "ZSTD": (1, 22), "LERC_ZSTD": (1, 22)}
_PREDICTED = ("DEFLATE", "ZSTD")  # LERC has its own lossless coding; a TIFF predictor does not apply


def compression_options(
    compress: str, dtype: Any, *, level: int | None = None, predictor: int | None = None
) -> dict[str, Any]:
    """The GTiff creation options (rasterio profile keys) that compress ``dtype`` data losslessly with ``compress``.

    ``compress`` is one of :data:`COMPRESSIONS` (any case); ``level`` defaults to
    :data:`DEFAULT_LEVELS`; ``predictor=None`` picks 2 (horizontal differencing) for integer
    and 3 (floating point) for float data, for DEFLATE and ZSTD (LERC takes none; its
    ``max_z_error`` is 0, so it is lossless too).

    Returns:
        ``{"compress": ..., "predictor": ..., "zlevel" | "zstd_level": ..., "max_z_error": 0}``
        as the codec needs.

    Raises:
        ValueError: if ``compress``, ``level`` or ``predictor`` is not one this module supports,
            or predictor 3 is asked for integer data.
    """
    dtype = np.dtype(dtype)
    codec = compress.upper()
    if codec not in COMPRESSIONS:
        raise ValueError(f"compress {compress!r} is not one of {COMPRESSIONS}")
    level = DEFAULT_LEVELS[codec] if level is None else level
    low, high = _LEVEL_RANGES[codec]
    if not low <= level <= high:
        raise ValueError(f"level {level} of {codec} is not in {low}..{high}")
    options: dict[str, Any] = {"compress": codec.lower()}
    if codec in _PREDICTED:
        if predictor is None:
            predictor = 3 if np.issubdtype(dtype, np.floating) else 2
        if predictor not in (1, 2, 3):
            raise ValueError(f"predictor {predictor} is not 1, 2 or 3")
        if predictor == 3 and not np.issubdtype(dtype, np.floating):
            raise ValueError(f"predictor 3 needs floating point data, not {dtype}")
        options["predictor"] = predictor
    if codec == "DEFLATE":
        options["zlevel"] = level
    else:
        options["zstd_level"] = level
    if codec.startswith("LERC"):
        options["max_z_error"] = 0
    return options


def working_file_options(dtype: Any, *, predictor: bool = True) -> dict[str, Any]:
    """The creation options of a file a stage writes for the next one to read once: ZSTD level 1.

    Reflectance and quality files, an index before its COG: ZSTD level 1 wrote a 1400² int16
    band with a quarter of DEFLATE level 6's CPU time and read it in two thirds, at the same size
    (with the horizontal predictor). ``predictor=False`` leaves the predictor out (class bands).

    Returns:
        ``compress``, ``zstd_level`` and, unless ``predictor`` is false, ``dtype``'s predictor.

    Raises:
        TypeError: if ``dtype`` is not a numpy data type.
    """
    options = compression_options("ZSTD", dtype, level=1)
    if not predictor:
        del options["predictor"]
    return options


__all__ = ["COMPRESSIONS", "DEFAULT_COMPRESSION", "DEFAULT_LEVELS", "compression_options", "working_file_options"]
