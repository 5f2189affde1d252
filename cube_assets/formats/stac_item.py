"""Band-by-band scenes described by a STAC Item: which asset holds a band, and its radiometry.

A ``stac`` provider stores a scene in the raw store as one file per band plus the Item it came
from (``item.json``). This module reads what the Item says about each band, so that surface
reflectance can be computed without the product's own metadata files:

**Band → asset.** Cube bands are named as the products name them (``B04``, ``SCL``, ``SR_B4``,
``QA_PIXEL``); APIs key assets differently (Planetary Computer ``B04``; Earth Search ``red``,
``nir08``, ``scl``; USGS ``red``, ``qa_pixel``). :func:`asset_key_for_band` finds the asset of
a band, in order: an asset keyed by the band name (then case-insensitively); the Earth Search
key of a Sentinel-2 band (:data:`SENTINEL2_ASSET_KEYS`); a single-band asset whose ``eo:bands``
(or STAC 1.1 ``bands``) name is the band; for Landsat ``SR_Bn``, a single-band asset whose band
name ends in ``Bn`` (USGS ``B4``, Earth Search ``OLI_B4``, Landsat 7 ``ETM_B3``: the file's band
number is the sensor's).

**Sentinel-2 L2A** (:func:`sentinel2_radiometry`): ``reflectance = (DN + add_offset) /
quantification``. The quantification value is ``1 / scale`` of ``raster:bands`` (10000 when
absent). The BOA offset (``BOA_ADD_OFFSET``, −1000 from processing baseline 04.00 on) must be
applied exactly once, whatever the API did to the files:

1. ``earthsearch:boa_offset_applied: true`` (or the older ``sentinel:boa_offset_applied``): the
   files were already shifted, so no offset is applied, even though Earth Search's
   ``raster:bands`` still says −0.1 (Element 84 documents the flag as the truth);
2. a processing baseline before 04.00 (``s2:processing_baseline``, ``processing:version``, or
   the ``_Nxxyy_`` of the product name): no offset existed;
3. the ``raster:bands`` offset, in DN: ``offset / scale`` (−0.1 / 0.0001 = −1000);
4. a baseline of 04.00 or later without ``raster:bands``: −1000 (the value of every such
   product; Planetary Computer Items do not carry it);
5. none of the above: an error, since guessing would be wrong for half the archive.

**Landsat Collection 2 Level-2** (:func:`landsat_radiometry`): ``reflectance = DN × scale +
offset`` with ``raster:bands`` scale and offset (USGS Items without them: the C2 L2 constants
2.75e-5 and −0.2), by the project's one Landsat rule (``raster.masks.rescale_landsat_c2``).
Anything else (surface temperature, atmospheric bands) is refused.

Other collections need ``raster:bands`` scale and offset (:func:`generic_radiometry`).

**Input nodata** comes from the product: ``raster:bands`` ``nodata`` (or STAC 1.1 ``nodata``),
else the product specification's (Sentinel-2 L2A ``NODATA`` 0, Landsat C2 fill 0); for other
collections nothing is assumed (the file's own nodata tag decides, and without one every
value is data). **Multi-band assets** (a BOA stack in one GeoTIFF): a band listed in an
asset's ``eo:bands`` / ``bands`` is read from its position there (:func:`band_index_in_asset`),
with that position's ``raster:bands`` entry.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from cube_assets.errors import InvalidScene

#: Earth Search v1 asset keys of the Sentinel-2 bands (L1C, L2A and the c1 collections).
SENTINEL2_ASSET_KEYS: dict[str, str] = {
    "B01": "coastal",
    "B02": "blue",
    "B03": "green",
    "B04": "red",
    "B05": "rededge1",
    "B06": "rededge2",
    "B07": "rededge3",
    "B08": "nir",
    "B8A": "nir08",
    "B09": "nir09",
    "B10": "cirrus",
    "B11": "swir16",
    "B12": "swir22",
    "SCL": "scl",
    "AOT": "aot",
    "WVP": "wvp",
}
#: Properties saying whether Earth Search already applied BOA_ADD_OFFSET to the files.
BOA_OFFSET_APPLIED_PROPERTIES = ("earthsearch:boa_offset_applied", "sentinel:boa_offset_applied")
SENTINEL2_BOA_ADD_OFFSET = -1000.0
SENTINEL2_QUANTIFICATION = 10000.0
SENTINEL2_L2A_NODATA = 0.0
"""The ``NODATA`` special value of every Sentinel-2 L2A band (the product specification's)."""
LANDSAT_C2_FILL = 0.0
"""The fill value of Landsat Collection 2 Level-2 surface reflectance (the product guide's)."""
LANDSAT_C2_SR_SCALE = 2.75e-5
LANDSAT_C2_SR_OFFSET = -0.2
_BASELINE = re.compile(r"^(\d{1,2})\.(\d{1,2})$")
_BASELINE_IN_NAME = re.compile(r"_N(\d{2})(\d{2})_")
_LANDSAT_SR = re.compile(r"^(?:SR_)?B(\d{1,2})$", re.IGNORECASE)
_NOT_REFLECTANCE = re.compile(r"^(st_|lwir|thermal|atran|cdist|drad|urad|trad|emis|emsd|qa)", re.IGNORECASE)

RadiometryKind = Literal["sentinel-2", "landsat", "generic"]


@dataclass(frozen=True)
class BandRadiometry:
    """How one band's digital numbers become reflectance: ``reflectance = DN × scale + offset``.

    ``asset`` is the Item's asset key (``None`` when the Item does not list the band);
    ``nodata`` the input nodata value: the one the Item declares, else the product
    specification's (Sentinel-2 L2A ``NODATA`` 0, Landsat C2 fill 0), else ``None`` (other
    collections: never guessed; the file's own nodata tag then decides); ``band_index`` the band's 1-based
    position in a multi-band asset (from its ``eo:bands`` / ``bands``); ``rule`` says, in words,
    where the offset came from (it goes into the ``surface_reflectance`` manifest).
    """

    band: str
    asset: str | None
    kind: RadiometryKind
    scale: float
    offset: float
    nodata: float | None
    rule: str
    band_index: int = 1

    @property
    def add_offset(self) -> float:
        """The offset in digital numbers (``BOA_ADD_OFFSET``): ``offset / scale``."""
        return _tidy(self.offset / self.scale)

    @property
    def quantification(self) -> float:
        """The quantification value: ``1 / scale``."""
        return _tidy(1.0 / self.scale)

    def as_json(self) -> dict[str, Any]:
        """The radiometry as JSON-able values."""
        return {
            "asset": self.asset,
            "kind": self.kind,
            "scale": self.scale,
            "offset": self.offset,
            "add_offset": self.add_offset,
            "nodata": self.nodata,
            "rule": self.rule,
            "band_index": self.band_index,
        }


def _tidy(value: float) -> float:
    """``value`` without the float noise of a division (−0.1 / 0.0001 is −1000.0000000000001)."""
    rounded = round(value, 6)
    return rounded if math.isclose(rounded, value, rel_tol=1e-9, abs_tol=1e-9) else value


def item_id(item: Mapping[str, Any]) -> str:
    """The Item's id, for messages."""
    return str(item.get("id") or "<Item without id>")


def _single_band_name(asset: Mapping[str, Any]) -> str | None:
    bands = asset.get("eo:bands") or asset.get("bands") or []
    if isinstance(bands, list) and len(bands) == 1 and isinstance(bands[0], Mapping):
        name = bands[0].get("name")
        return name if isinstance(name, str) else None
    return None


def _band_names(asset: Mapping[str, Any]) -> list[str | None]:
    bands = asset.get("eo:bands") or asset.get("bands") or []
    if not isinstance(bands, list):
        return []
    return [entry.get("name") if isinstance(entry, Mapping) else None for entry in bands]


def band_index_in_asset(item: Mapping[str, Any], asset: str | None, band: str) -> int:
    """The 1-based position of ``band`` in asset ``asset`` of ``item`` (a multi-band file such as a BOA stack).

    Returns:
        The position of the ``eo:bands`` (or STAC 1.1 ``bands``) entry named ``band``; 1 when the
        asset lists no such band (single-band files).
    """
    names = _band_names(_asset(item, asset))
    return names.index(band) + 1 if band in names else 1


def asset_key_for_band(item: Mapping[str, Any], band: str) -> str | None:
    """The key of the asset of ``item`` that holds ``band`` (see the module docstring for the order).

    Returns:
        The asset key, or ``None`` when no asset matches.
    """
    assets: Mapping[str, Any] = item.get("assets") or {}
    if band in assets:
        return band
    lower = {key.lower(): key for key in assets}
    if band.lower() in lower:
        return lower[band.lower()]
    alias = SENTINEL2_ASSET_KEYS.get(band.upper())
    if alias and alias in assets:
        return alias
    by_type = sorted(assets.items(), key=lambda kv: "tiff" not in str(kv[1].get("type", "")))
    for key, asset in by_type:
        if _single_band_name(asset) == band:
            return key
    for key, asset in by_type:
        if band in _band_names(asset):
            return key
    landsat = _LANDSAT_SR.match(band)
    if landsat:
        number = int(landsat.group(1))
        for key, asset in by_type:
            name = _single_band_name(asset) or ""
            match = re.search(r"B(\d{1,2})$", name, re.IGNORECASE)
            if match and int(match.group(1)) == number and not _NOT_REFLECTANCE.match(key):
                return key
    return None


def _raster_fields(
    asset: Mapping[str, Any], index: int = 1
) -> tuple[float | None, float | None, float | None, str | None]:
    """``(scale, offset, nodata, unit)`` of band ``index`` (1-based) of an asset: ``raster:bands``
    (STAC 1.0) or the STAC 1.1 ``bands`` / asset-level ``raster:scale``, ``raster:offset``, ``nodata``."""
    band: Mapping[str, Any] = {}
    raster_bands = asset.get("raster:bands")
    position = index - 1
    if isinstance(raster_bands, list) and len(raster_bands) > position and isinstance(raster_bands[position], Mapping):
        band = raster_bands[position]
        scale, offset = band.get("scale"), band.get("offset")
    else:
        bands = asset.get("bands")
        if isinstance(bands, list) and len(bands) > position and isinstance(bands[position], Mapping):
            band = bands[position]
        scale = band.get("raster:scale", asset.get("raster:scale"))
        offset = band.get("raster:offset", asset.get("raster:offset"))
    nodata = band.get("nodata", asset.get("nodata"))
    unit = band.get("unit", asset.get("unit"))

    def number(value: Any) -> float | None:
        return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None

    return number(scale), number(offset), number(nodata), unit if isinstance(unit, str) else None


def processing_baseline(item: Mapping[str, Any]) -> tuple[int, int] | None:
    """The Sentinel-2 processing baseline of ``item`` as ``(major, minor)``, if it says.

    Read from ``s2:processing_baseline``, ``processing:version``, ``sentinel:processing_baseline``
    or ``processing_baseline``, else from the ``_Nxxyy_`` part of ``s2:product_uri``,
    ``sentinel:product_id`` or the Item id.

    Returns:
        ``(4, 0)`` for ``"04.00"``; ``None`` when the Item does not tell.
    """
    properties = item.get("properties") or {}
    for key in ("s2:processing_baseline", "processing:version", "sentinel:processing_baseline", "processing_baseline"):
        value = properties.get(key)
        if isinstance(value, int | float) and not isinstance(value, bool):
            value = f"{float(value):.2f}"
        match = _BASELINE.match(str(value).strip()) if value is not None else None
        if match:
            return int(match.group(1)), int(match.group(2))
    for value in (properties.get("s2:product_uri"), properties.get("sentinel:product_id"), item.get("id")):
        match = _BASELINE_IN_NAME.search(str(value or ""))
        if match:
            return int(match.group(1)), int(match.group(2))
    return None


def _asset(item: Mapping[str, Any], asset: str | None) -> Mapping[str, Any]:
    found = (item.get("assets") or {}).get(asset) if asset else None
    return found if isinstance(found, Mapping) else {}


def sentinel2_radiometry(
    item: Mapping[str, Any], band: str, asset: str | None, index: int | None = None
) -> BandRadiometry:
    """The radiometry of Sentinel-2 L2A ``band`` (asset key ``asset``) from ``item``.

    Returns:
        The :class:`BandRadiometry`, its offset decided by the rules of the module docstring.

    Raises:
        InvalidScene: naming the Item and band, when the scale is not positive, or when
            neither the Earth Search flag, the processing baseline nor ``raster:bands`` says
            whether the BOA offset applies.
    """
    where = f"STAC Item {item_id(item)} band {band}"
    index = index or band_index_in_asset(item, asset, band)
    scale, offset, nodata, _ = _raster_fields(_asset(item, asset), index)
    if scale is None:
        scale = 1.0 / SENTINEL2_QUANTIFICATION
    if scale <= 0:
        raise InvalidScene(f"{where}: raster:bands scale {scale} is not positive")
    if nodata is None:
        nodata = SENTINEL2_L2A_NODATA  # the product specification's NODATA special value
    properties = item.get("properties") or {}
    applied = next((properties[key] for key in BOA_OFFSET_APPLIED_PROPERTIES if key in properties), None)
    baseline = processing_baseline(item)
    baseline_text = f"{baseline[0]:02d}.{baseline[1]:02d}" if baseline else None

    def result(dn_offset: float, rule: str) -> BandRadiometry:
        return BandRadiometry(band, asset, "sentinel-2", scale, dn_offset * scale, nodata, rule, index)

    if applied is True:
        return result(0.0, "earthsearch:boa_offset_applied: the files already include BOA_ADD_OFFSET")
    if baseline is not None and baseline < (4, 0):
        return result(0.0, f"processing baseline {baseline_text} (before 04.00): no BOA_ADD_OFFSET")
    if offset is not None:
        return result(offset / scale, "raster:bands offset")
    if baseline is not None:
        return result(
            SENTINEL2_BOA_ADD_OFFSET, f"processing baseline {baseline_text} (04.00 or later): BOA_ADD_OFFSET -1000"
        )
    raise InvalidScene(
        f"{where}: cannot tell whether BOA_ADD_OFFSET applies: the Item has no processing baseline "
        "(s2:processing_baseline, processing:version or an _Nxxyy_ product name), no "
        "earthsearch:boa_offset_applied and no raster:bands offset"
    )


def landsat_radiometry(
    item: Mapping[str, Any], band: str, asset: str | None, index: int | None = None
) -> BandRadiometry:
    """The radiometry of Landsat C2 Level-2 surface-reflectance ``band`` (asset key ``asset``).

    Returns:
        The :class:`BandRadiometry` with ``raster:bands`` scale and offset, else the C2 L2
        surface-reflectance constants (2.75e-5, −0.2); nodata from ``raster:bands``, else the
        C2 fill value 0 of the product guide.

    Raises:
        InvalidScene: naming the Item and band, when the band is not surface reflectance
            (a thermal, atmospheric or QA asset, a unit such as kelvin, or a scale and offset
            other than the C2 surface-reflectance ones).
    """
    where = f"STAC Item {item_id(item)} band {band}"
    index = index or band_index_in_asset(item, asset, band)
    scale, offset, nodata, unit = _raster_fields(_asset(item, asset), index)
    if _NOT_REFLECTANCE.match(band) or _NOT_REFLECTANCE.match(asset or "") or unit not in (None, "", "reflectance"):
        raise InvalidScene(
            f"{where}: asset {asset} is not a surface-reflectance band" + (f" (unit {unit})" if unit else "")
        )
    rule = "raster:bands scale and offset"
    if scale is None and offset is None:
        scale, offset, rule = LANDSAT_C2_SR_SCALE, LANDSAT_C2_SR_OFFSET, "Landsat C2 L2 surface-reflectance constants"
    if (
        scale is None
        or offset is None
        or not (
            math.isclose(scale, LANDSAT_C2_SR_SCALE, rel_tol=1e-6)
            and math.isclose(offset, LANDSAT_C2_SR_OFFSET, rel_tol=1e-6)
        )
    ):
        raise InvalidScene(
            f"{where}: scale {scale} and offset {offset} are not those of Landsat C2 surface reflectance "
            f"({LANDSAT_C2_SR_SCALE}, {LANDSAT_C2_SR_OFFSET})"
        )
    nodata = LANDSAT_C2_FILL if nodata is None else nodata  # the product guide's fill value
    return BandRadiometry(band, asset, "landsat", scale, offset, nodata, rule, index)


def generic_radiometry(
    item: Mapping[str, Any], band: str, asset: str | None, index: int | None = None
) -> BandRadiometry:
    """The radiometry of ``band`` of an Item of any other collection: its ``raster:bands``.

    Returns:
        The :class:`BandRadiometry` (offset 0 when only a scale is given).

    Raises:
        InvalidScene: naming the Item and band, when ``raster:bands`` gives no positive scale.
    """
    index = index or band_index_in_asset(item, asset, band)
    scale, offset, nodata, _ = _raster_fields(_asset(item, asset), index)
    if scale is None or scale <= 0:
        raise InvalidScene(
            f"STAC Item {item_id(item)} band {band}: no positive raster:bands scale to turn its values into reflectance"
        )
    return BandRadiometry(band, asset, "generic", scale, offset or 0.0, nodata, "raster:bands scale and offset", index)
