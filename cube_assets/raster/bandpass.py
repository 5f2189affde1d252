"""Bandpass adjustment of Landsat 8/9 OLI surface reflectance to Sentinel-2 MSI (HLS coefficients).

HLS v2.0 (Claverie et al. 2018, "The Harmonized Landsat and Sentinel-2 surface reflectance data
set", Remote Sensing of Environment 219; HLS User Guide v2.0; https://hls.gsfc.nasa.gov/
algorithms/bandpass-adjustment/) publishes per-band linear fits that bring Sentinel-2 MSI
reflectance (0..1) to Landsat 8 OLI: ``OLI = slope * MSI + offset``. This module keeps the
Sentinel-2A fits (the table's first pair of columns; the Sentinel-2B ones differ by at most 0.016
in slope) and inverts them, so Landsat is brought to Sentinel-2: ``MSI = (OLI - offset) / slope``.

A band role is a STAC ``eo:common_name``: blue, green, red, nir (MSI's narrow NIR, B8A, against
OLI B5), swir16 and swir22.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from types import MappingProxyType

HLS_MSI_TO_OLI: Mapping[str, tuple[float, float]] = MappingProxyType(
    {
        # role: (slope, offset) of OLI = slope * MSI + offset, HLS v2.0, Sentinel-2A.
        "blue": (0.9778, -0.004),
        "green": (1.0053, -0.0009),
        "red": (0.9765, 0.0009),
        "nir": (0.9983, -0.0001),
        "swir16": (0.9987, -0.0011),
        "swir22": (1.003, -0.0012),
    }
)
"""HLS v2.0 bandpass fits from Sentinel-2A MSI to Landsat 8 OLI, in reflectance (0..1), by band role."""

BANDPASS_ADJUSTMENTS = ("hls", "none")
"""``bandpass_adjustment`` choices of a cube: HLS's fits, or none."""


def oli_to_msi(role: str) -> tuple[float, float]:
    """The linear map that brings OLI reflectance of band ``role`` to MSI: ``MSI = slope * OLI + offset``.

    The inverse of HLS's ``OLI = a * MSI + b``: ``slope = 1 / a`` and ``offset = -b / a``.

    Returns:
        ``(slope, offset)`` in reflectance units (0..1).

    Raises:
        KeyError: naming ``role`` and the known roles, if HLS publishes no fit for it.
    """
    if role not in HLS_MSI_TO_OLI:
        raise KeyError(f"bandpass: no HLS adjustment for band role {role!r}; known roles: {sorted(HLS_MSI_TO_OLI)}")
    a, b = HLS_MSI_TO_OLI[role]
    return 1.0 / a, -b / a


def adjusted_scale_and_offset(scale: float, offset: float, role: str) -> tuple[float, float]:
    """A Landsat band's rescaling ``DN * scale + offset`` with the OLI-to-MSI adjustment of ``role`` folded in.

    ``(DN * scale + offset - b) / a`` with HLS's ``(a, b)``, i.e. ``scale / a`` and ``(offset - b) / a``.

    Returns:
        ``(scale, offset)`` giving MSI-equivalent reflectance (0..1) from the band's DNs.

    Raises:
        KeyError: as :func:`oli_to_msi`.
        ValueError: if ``scale`` or ``offset`` is not a finite number.
    """
    if not (math.isfinite(scale) and math.isfinite(offset)):
        raise ValueError(f"bandpass: scale {scale!r} and offset {offset!r} must be finite numbers")
    slope, intercept = oli_to_msi(role)
    return scale * slope, offset * slope + intercept


__all__ = ["BANDPASS_ADJUSTMENTS", "HLS_MSI_TO_OLI", "adjusted_scale_and_offset", "oli_to_msi"]
