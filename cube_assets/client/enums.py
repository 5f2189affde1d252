"""The client's enumerations and the :class:`Resolution` value, under the names the catalog guide uses.

Every enum is a ``StrEnum``, so its members compare equal to the plain strings the rest of the
client accepts (``BandType.CLASS == "class"``, ``DataType.UINT16 == "UInt16"``).
``DataType.BYTE`` is GDAL's ``"Byte"``; the catalog stores it under its own name ``"UInt8"``
(:func:`catalog_data_type`), and reads it back as that.
"""

from __future__ import annotations

import enum
from typing import Any

from cube_assets.errors import CatalogError


class BandType(enum.StrEnum):
    """What a band holds; the value is the catalog's ``bands.type``."""

    SPECTRAL = "spectral"
    MICROWAVE = "microwave"
    MASK = "mask"
    CLASS = "class"
    GENERIC = "generic"
    DERIVED = "derived"


class DataType(enum.StrEnum):
    """A band's stored pixel type, as GDAL names it."""

    BYTE = "Byte"
    UINT8 = "UInt8"
    INT8 = "Int8"
    UINT16 = "UInt16"
    INT16 = "Int16"
    UINT32 = "UInt32"
    INT32 = "Int32"
    UINT64 = "UInt64"
    INT64 = "Int64"
    FLOAT32 = "Float32"
    FLOAT64 = "Float64"


#: Data type names accepted for a band and the catalog name each is stored under.
_DATA_TYPE_NAMES: dict[str, str] = {"Byte": "UInt8", "uint8": "UInt8", "Uint16": "UInt16"}


def catalog_data_type(value: Any) -> Any:
    """Return the catalog's name of the data type ``value`` (``"Byte"`` → ``"UInt8"``); other values unchanged."""
    text = str(value) if isinstance(value, str) else value
    return _DATA_TYPE_NAMES.get(text, text) if isinstance(text, str) else text


class ResolutionUnit(enum.StrEnum):
    """The unit of a band's :class:`Resolution`."""

    METERS = "meters"
    DEGREES = "degrees"


class ResampleAlgorithm(enum.StrEnum):
    """How pixels are interpolated when loading onto another grid (GDAL's warp resamplers)."""

    NEAR = "near"
    BILINEAR = "bilinear"
    CUBIC = "cubic"
    CUBICSPLINE = "cubicspline"
    LANCZOS = "lanczos"
    AVERAGE = "average"
    MODE = "mode"
    MAX = "max"
    MIN = "min"
    MED = "med"
    Q1 = "q1"
    Q3 = "q3"


class OverviewResampler(enum.StrEnum):
    """How overviews of an uploaded image are built."""

    NEAREST = "nearest"
    AVERAGE = "average"
    GAUSS = "gauss"
    CUBIC = "cubic"
    CUBICSPLINE = "cubicspline"
    LANCZOS = "lanczos"
    AVERAGE_MP = "average_mp"
    AVERAGE_MAGPHASE = "average_magphase"
    MODE = "mode"


class DownloadFileFormat(enum.StrEnum):
    """The file format of a download."""

    TIF = "tif"
    PNG = "png"
    JPG = "jpg"


class StorageState(enum.StrEnum):
    """Whether an image's data can be loaded: every image here has its files, so ``available``."""

    AVAILABLE = "available"
    REMOTE = "remote"


class ImageUploadStatus(enum.StrEnum):
    """Where an upload is: ``pending`` → ``running`` → ``success``, ``failure`` or ``canceled``."""

    PENDING = "pending"
    RUNNING = "running"
    SUCCESS = "success"
    FAILURE = "failure"
    CANCELED = "canceled"


class Resolution(float):
    """A band's pixel size with its unit: ``Resolution(unit=ResolutionUnit.METERS, value=60)``.

    It is a ``float`` (its ``value``), so arithmetic and comparisons with plain numbers keep working.

    Raises:
        CatalogError: if ``value`` is not a positive number or ``unit`` is not a ResolutionUnit.
    """

    unit: ResolutionUnit

    def __new__(cls, value: float, unit: ResolutionUnit | str = ResolutionUnit.METERS) -> Resolution:
        if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
            raise CatalogError(f"Resolution: value must be a positive number, got {value!r}")
        try:
            checked = ResolutionUnit(unit)
        except ValueError:
            raise CatalogError(
                f"Resolution: unit must be one of {[u.value for u in ResolutionUnit]}, got {unit!r}"
            ) from None
        obj = super().__new__(cls, value)
        obj.unit = checked
        return obj

    @property
    def value(self) -> float:
        """The pixel size as a plain float."""
        return float(self)

    def __repr__(self) -> str:
        return f"Resolution(value={float(self)!r}, unit={self.unit.value!r})"

    def __reduce__(self) -> tuple[Any, ...]:
        return (Resolution, (float(self), self.unit.value))


__all__ = [
    "BandType",
    "DataType",
    "DownloadFileFormat",
    "ImageUploadStatus",
    "OverviewResampler",
    "ResampleAlgorithm",
    "Resolution",
    "ResolutionUnit",
    "StorageState",
    "catalog_data_type",
]
