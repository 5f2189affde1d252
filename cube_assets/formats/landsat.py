"""Landsat Collection 2 Level-2 products: MTL metadata and the scene folder's band files.

A C2 L2 product (``LC08_L2SP_008059_20191201_20200825_02_T1``) is a folder of GeoTIFFs, one
per band (``…_SR_B4.TIF``, ``…_ST_B10.TIF``, ``…_QA_PIXEL.TIF``…), and its metadata in up to
three equivalent encodings: ``…_MTL.txt`` (ODL), ``…_MTL.xml`` and ``…_MTL.json``. All three
parse into the same group → key → value tree; :func:`parse_mtl` reads any of them.

What is taken from the MTL:

* identity: product id, spacecraft, sensor, processing level (``L2SP``/``L2SR``), collection
  number and category, WRS path and row;
* acquisition time: ``DATE_ACQUIRED`` + ``SCENE_CENTER_TIME`` (UTC);
* ``CLOUD_COVER`` (percent, −1 when unknown → ``None``);
* the CRS: ``UTM`` products are in the northern UTM zone (``EPSG:326zz``) even south of the
  equator, as USGS delivers them; polar ``PS`` products in EPSG:3031;
* the product frame (``CORNER_*_LAT/LON_PRODUCT``): the outline of the image grid, not of the
  valid data, which is a rotated rectangle inside it. It is good for searching; a published
  footprint comes from the valid-data outline instead;
* scale and offset of every surface-reflectance band (``LEVEL2_SURFACE_REFLECTANCE_PARAMETERS``:
  ``reflectance = DN × 2.75e-5 − 0.2``) and surface-temperature band
  (``LEVEL2_SURFACE_TEMPERATURE_PARAMETERS``: kelvin ``= DN × 0.00341802 + 149``). The Level-1
  groups carry keys of the same name (TOA reflectance) and are never read for these.
* band files: ``FILE_NAME_*`` entries of ``PRODUCT_CONTENTS``; a band is named by its file
  name without the product id and extension (``SR_B4``, ``ST_B10``, ``QA_PIXEL``, ``ST_QA``…).

Band names given by users are normalised by :func:`normalize_landsat_band`: ``B4``, ``b4``,
``SR_B4`` → ``SR_B4``; ``ST_B10`` stays; ``QA_PIXEL`` stays.
"""

from __future__ import annotations

import json
import re
import xml.etree.ElementTree as ET
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time
from pathlib import Path
from types import MappingProxyType
from typing import Any

from shapely.geometry import MultiPolygon, Polygon

from cube_assets.errors import InvalidScene
from cube_assets.formats.sentinel2_safe import footprint_from_lon_lat

#: The collection name Landsat Collection 2 Level-2 scenes are searched under.
LANDSAT_C2_L2 = "landsat-c2-l2"
#: The per-pixel quality band of a C2 product (bit flags; see ``raster.masks.LandsatQAPixelRules``).
QA_PIXEL = "QA_PIXEL"
#: MTL encodings in the order they are preferred when a folder holds several.
MTL_SUFFIXES: tuple[str, ...] = ("_MTL.json", "_MTL.xml", "_MTL.txt")
LEVEL2_PROCESSING_LEVELS = ("L2SP", "L2SR")

_ROOT = "LANDSAT_METADATA_FILE"
_ODL_LINE = re.compile(r"^\s*(?P<key>[A-Za-z0-9_]+)\s*=\s*(?P<value>.*?)\s*$")
_SR_BAND = re.compile(r"^(?:SR_)?B(?P<number>\d{1,2})$")
_ST_BAND = re.compile(r"^ST_B(?P<number>\d{1,2})$")
_SPACECRAFT = re.compile(r"^LANDSAT_(\d)$")

Mtl = Mapping[str, Mapping[str, str]]
"""An MTL document: group name → key → value (as text)."""


# --------------------------------------------------------------------------------------------
# Parsing the three encodings


def find_mtl_file(folder: str | Path) -> Path:
    """The MTL file of the product in ``folder`` (JSON preferred, then XML, then ODL text).

    Returns:
        The path of the ``*_MTL.json``, ``*_MTL.xml`` or ``*_MTL.txt`` file.

    Raises:
        InvalidScene: if ``folder`` is missing, holds no MTL file, or MTL files of several products.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise InvalidScene(f"{folder}: no such Landsat product folder")
    found = {suffix: sorted(folder.glob(f"*{suffix}")) for suffix in MTL_SUFFIXES}
    products = {p.name[: -len(suffix)] for suffix, paths in found.items() for p in paths}
    if not products:
        raise InvalidScene(f"{folder.name}: no Landsat MTL file (*_MTL.json, *_MTL.xml or *_MTL.txt)")
    if len(products) > 1:
        raise InvalidScene(f"{folder.name}: MTL files of several products: {sorted(products)}")
    for suffix in MTL_SUFFIXES:
        if found[suffix]:
            return found[suffix][0]
    raise AssertionError("unreachable")


def is_landsat_folder(folder: Path) -> bool:
    """Whether ``folder`` directly holds a Landsat ``*_MTL.json``, ``*_MTL.xml`` or ``*_MTL.txt``."""
    return any(next(folder.glob(f"*{suffix}"), None) is not None for suffix in MTL_SUFFIXES)


def read_mtl(path: str | Path) -> Mtl:
    """Read an MTL file in any of its encodings (chosen by extension) into group → key → value.

    Values are text exactly as in the file, without ODL quotes. Nested ODL groups are flattened
    to their innermost group name.

    Returns:
        The groups below ``LANDSAT_METADATA_FILE``.

    Raises:
        InvalidScene: naming the file, if it is missing, malformed, or not a Collection 2
            ``LANDSAT_METADATA_FILE`` (e.g. a Collection 1 or pre-collection ``L1_METADATA_FILE``).
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise InvalidScene(f"{path}: MTL file not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise InvalidScene(f"{path}: cannot read MTL file ({exc})") from exc
    suffix = path.suffix.lower()
    if suffix == ".json":
        groups = _mtl_from_json(text, path.name)
    elif suffix == ".xml":
        groups = _mtl_from_xml(text, path.name)
    elif suffix == ".txt":
        groups = _mtl_from_odl(text, path.name)
    else:
        raise InvalidScene(f"{path.name}: unknown MTL encoding {path.suffix!r} (expected .json, .xml or .txt)")
    return MappingProxyType({name: MappingProxyType(values) for name, values in groups.items()})


def _mtl_from_json(text: str, where: str) -> dict[str, dict[str, str]]:
    try:
        document = json.loads(text)
    except ValueError as exc:
        raise InvalidScene(f"{where}: not JSON ({exc})") from exc
    if not isinstance(document, dict) or _ROOT not in document or not isinstance(document[_ROOT], dict):
        roots = list(document) if isinstance(document, dict) else type(document).__name__
        raise InvalidScene(f"{where}: no {_ROOT} object (found {roots}); not a Collection 2 MTL")
    groups: dict[str, dict[str, str]] = {}
    for name, values in document[_ROOT].items():
        if not isinstance(values, dict):
            raise InvalidScene(f"{where}: group {name} is not an object")
        groups[name] = {key: _json_text(value) for key, value in values.items() if not isinstance(value, dict)}
    return groups


def _json_text(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value)


def _mtl_from_xml(text: str, where: str) -> dict[str, dict[str, str]]:
    try:
        root = ET.fromstring(text)
    except ET.ParseError as exc:
        raise InvalidScene(f"{where}: cannot parse XML ({exc})") from exc
    if root.tag != _ROOT:
        raise InvalidScene(f"{where}: root element is {root.tag}, not {_ROOT}; not a Collection 2 MTL")
    groups: dict[str, dict[str, str]] = {}
    for group in root:
        groups[group.tag] = {leaf.tag: (leaf.text or "").strip() for leaf in group if len(leaf) == 0}
    return groups


def _mtl_from_odl(text: str, where: str) -> dict[str, dict[str, str]]:
    groups: dict[str, dict[str, str]] = {}
    stack: list[str] = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip() or line.strip() == "END":
            continue
        match = _ODL_LINE.match(line)
        if match is None:
            raise InvalidScene(f"{where}: line {number} is not 'KEY = VALUE': {line.strip()!r}")
        key, value = match.group("key"), match.group("value")
        if key == "GROUP":
            stack.append(value)
            groups.setdefault(value, {})
        elif key == "END_GROUP":
            if not stack or stack[-1] != value:
                raise InvalidScene(
                    f"{where}: line {number}: END_GROUP = {value} does not close {stack[-1:] or 'a group'}"
                )
            stack.pop()
        elif not stack:
            raise InvalidScene(f"{where}: line {number}: {key} outside any GROUP")
        else:
            groups[stack[-1]][key] = value[1:-1] if len(value) >= 2 and value[0] == value[-1] == '"' else value
    if stack:
        raise InvalidScene(f"{where}: GROUP {stack[-1]} is never closed")
    if _ROOT not in groups:
        first = next(iter(groups), "nothing")
        raise InvalidScene(f"{where}: no GROUP = {_ROOT} (found {first}); not a Collection 2 MTL")
    groups.pop(_ROOT)
    return groups


# --------------------------------------------------------------------------------------------
# Metadata


@dataclass(frozen=True)
class LandsatMetadata:
    """What the MTL of a Landsat Collection 2 Level-2 product says (see the module docstring).

    ``band_files`` maps band names (``SR_B4``, ``QA_PIXEL``…) to file names as listed in the
    MTL (they need not all exist on disk); ``scales``/``offsets`` hold the Level-2 rescaling of
    the ``SR_B*`` and ``ST_B*`` bands.
    """

    product_id: str
    spacecraft: str
    sensor: str
    processing_level: str
    collection_number: int
    collection_category: str
    wrs_path: int
    wrs_row: int
    acquired: datetime
    cloud_cover: float | None
    cloud_cover_land: float | None
    epsg: int
    frame: Polygon | MultiPolygon
    band_files: Mapping[str, str] = field(hash=False)
    scales: Mapping[str, float] = field(hash=False)
    offsets: Mapping[str, float] = field(hash=False)

    @property
    def surface_reflectance_bands(self) -> tuple[str, ...]:
        """The ``SR_B*`` bands the product lists, in band-number order."""
        return tuple(
            sorted((b for b in self.band_files if _SR_BAND.match(b) and b.startswith("SR_")), key=_band_number)
        )

    def scale_and_offset(self, band: str) -> tuple[float, float]:
        """The Level-2 rescaling of ``band``: ``value = DN * scale + offset``.

        Returns:
            ``(scale, offset)``: reflectance for ``SR_B*`` bands, kelvin for ``ST_B*`` bands.

        Raises:
            InvalidScene: naming the product and the band, if the band has no Level-2 rescaling
                (e.g. ``QA_PIXEL``, or a band number the product lacks).
        """
        name = normalize_landsat_band(band)
        if name not in self.scales or name not in self.offsets:
            known = ", ".join(sorted(self.scales, key=_band_number)) or "none"
            raise InvalidScene(
                f"{self.product_id}: band {name} has no Level-2 scale and offset (bands with one: {known})"
            )
        return self.scales[name], self.offsets[name]


def normalize_landsat_band(name: str) -> str:
    """Canonical Landsat C2 band name: ``"B4"``/``"b4"``/``"SR_B4"`` → ``"SR_B4"``; others upper-cased.

    Returns:
        The band name as used in file names (``SR_B4``, ``ST_B10``, ``QA_PIXEL``).
    """
    upper = name.strip().upper()
    match = _SR_BAND.match(upper)
    if match:
        return f"SR_B{int(match.group('number'))}"
    return upper


def _band_number(band: str) -> tuple[int, str]:
    digits = re.search(r"(\d+)$", band)
    return (int(digits.group(1)) if digits else 99, band)


def parse_mtl(path: str | Path) -> LandsatMetadata:
    """Parse the MTL (``.txt``, ``.xml`` or ``.json``) of a Landsat Collection 2 Level-2 product.

    Args:
        path: the MTL file, or the product folder (see :func:`find_mtl_file`).

    Returns:
        The :class:`LandsatMetadata`.

    Raises:
        InvalidScene: naming the file, if it is not a Collection 2 Level-2 MTL (Level-1 products,
            Collection 1 and pre-collection files are refused), or a required value is missing or
            malformed.
    """
    path = Path(path)
    if path.is_dir():
        path = find_mtl_file(path)
    groups = read_mtl(path)
    where = path.name
    values = _Values(groups, where)

    product_id = values.text("PRODUCT_CONTENTS", "LANDSAT_PRODUCT_ID")
    level = values.text("PRODUCT_CONTENTS", "PROCESSING_LEVEL")
    if level not in LEVEL2_PROCESSING_LEVELS:
        raise InvalidScene(f"{where}: processing level {level} is not Level-2 ({', '.join(LEVEL2_PROCESSING_LEVELS)})")
    collection = values.integer("PRODUCT_CONTENTS", "COLLECTION_NUMBER")
    if collection != 2:
        raise InvalidScene(f"{where}: collection {collection}; only Landsat Collection 2 is supported")

    spacecraft_id = values.text("IMAGE_ATTRIBUTES", "SPACECRAFT_ID")
    spacecraft_match = _SPACECRAFT.match(spacecraft_id)
    if spacecraft_match is None:
        raise InvalidScene(f"{where}: SPACECRAFT_ID {spacecraft_id!r} is not LANDSAT_<n>")

    acquired_day = values.text("IMAGE_ATTRIBUTES", "DATE_ACQUIRED")
    center_time = values.text("IMAGE_ATTRIBUTES", "SCENE_CENTER_TIME")
    acquired = _acquisition_time(acquired_day, center_time, where)

    band_files: dict[str, str] = {}
    for key, file_name in groups["PRODUCT_CONTENTS"].items():
        if key.startswith("FILE_NAME_") and file_name.upper().endswith(".TIF"):
            band = file_name[: -len(".TIF")]
            band = band[len(product_id) + 1 :] if band.startswith(product_id + "_") else band.rsplit("_", 1)[-1]
            band_files[band.upper()] = file_name
    if QA_PIXEL not in band_files:
        raise InvalidScene(f"{where}: no QA_PIXEL file (FILE_NAME_QUALITY_L1_PIXEL) in PRODUCT_CONTENTS")

    scales: dict[str, float] = {}
    offsets: dict[str, float] = {}
    for group, mult_prefix, add_prefix in (
        ("LEVEL2_SURFACE_REFLECTANCE_PARAMETERS", "REFLECTANCE_MULT_BAND_", "REFLECTANCE_ADD_BAND_"),
        ("LEVEL2_SURFACE_TEMPERATURE_PARAMETERS", "TEMPERATURE_MULT_BAND_", "TEMPERATURE_ADD_BAND_"),
    ):
        for key in groups.get(group, {}):
            if not key.startswith(mult_prefix):
                continue
            suffix = key[len(mult_prefix) :]
            band = normalize_landsat_band(suffix if suffix.startswith("ST_") else f"SR_B{suffix}")
            scales[band] = values.number(group, key)
            offsets[band] = values.number(group, add_prefix + suffix)
    if not any(b.startswith("SR_") for b in scales):
        raise InvalidScene(f"{where}: no LEVEL2_SURFACE_REFLECTANCE_PARAMETERS (REFLECTANCE_MULT_BAND_n)")

    return LandsatMetadata(
        product_id=product_id,
        spacecraft=f"LANDSAT_{spacecraft_match.group(1)}",
        sensor=values.text("IMAGE_ATTRIBUTES", "SENSOR_ID"),
        processing_level=level,
        collection_number=collection,
        collection_category=values.text("PRODUCT_CONTENTS", "COLLECTION_CATEGORY"),
        wrs_path=values.integer("IMAGE_ATTRIBUTES", "WRS_PATH"),
        wrs_row=values.integer("IMAGE_ATTRIBUTES", "WRS_ROW"),
        acquired=acquired,
        cloud_cover=values.percentage("IMAGE_ATTRIBUTES", "CLOUD_COVER"),
        cloud_cover_land=values.percentage("IMAGE_ATTRIBUTES", "CLOUD_COVER_LAND", required=False),
        epsg=_epsg(values, where),
        frame=_frame(values, where),
        band_files=MappingProxyType(band_files),
        scales=MappingProxyType(scales),
        offsets=MappingProxyType(offsets),
    )


class _Values:
    """Typed access to MTL values; every error names the file, group and key."""

    def __init__(self, groups: Mtl, where: str) -> None:
        self.groups, self.where = groups, where

    def optional(self, group: str, key: str) -> str | None:
        value = self.groups.get(group, {}).get(key)
        return value.strip() if value is not None and value.strip() else None

    def text(self, group: str, key: str) -> str:
        value = self.optional(group, key)
        if value is None:
            raise InvalidScene(f"{self.where}: {group}/{key} missing or empty")
        return value

    def number(self, group: str, key: str) -> float:
        value = self.text(group, key)
        try:
            return float(value)
        except ValueError:
            raise InvalidScene(f"{self.where}: {group}/{key} is not a number: {value!r}") from None

    def integer(self, group: str, key: str) -> int:
        value = self.number(group, key)
        if not value.is_integer():
            raise InvalidScene(f"{self.where}: {group}/{key} is not an integer: {value}")
        return int(value)

    def percentage(self, group: str, key: str, required: bool = True) -> float | None:
        if not required and self.optional(group, key) is None:
            return None
        value = self.number(group, key)
        if value < 0:  # USGS writes -1 when the cloud cover could not be assessed
            return None
        if value > 100:
            raise InvalidScene(f"{self.where}: {group}/{key} = {value} is not a percentage")
        return value


def _acquisition_time(day: str, center_time: str, where: str) -> datetime:
    try:
        acquired_day = date.fromisoformat(day)
    except ValueError:
        raise InvalidScene(f"{where}: DATE_ACQUIRED {day!r} is not YYYY-MM-DD") from None
    match = re.fullmatch(r"(\d{2}):(\d{2}):(\d{2})(?:\.(\d+))?Z?", center_time.strip().strip('"'))
    if match is None:
        raise InvalidScene(f"{where}: SCENE_CENTER_TIME {center_time!r} is not HH:MM:SS[.fff]Z")
    hours, minutes, seconds = (int(match.group(i)) for i in (1, 2, 3))
    micro = int((match.group(4) or "0")[:6].ljust(6, "0"))  # USGS writes 7 digits; keep microseconds
    try:
        return datetime.combine(acquired_day, time(hours, minutes, seconds, micro), tzinfo=UTC)
    except ValueError:
        raise InvalidScene(f"{where}: SCENE_CENTER_TIME {center_time!r} is not a valid time") from None


def _epsg(values: _Values, where: str) -> int:
    projection = values.text("PROJECTION_ATTRIBUTES", "MAP_PROJECTION")
    if projection == "UTM":
        zone = values.integer("PROJECTION_ATTRIBUTES", "UTM_ZONE")
        if not 1 <= zone <= 60:
            raise InvalidScene(f"{where}: UTM_ZONE {zone} is not 1..60")
        datum = values.optional("PROJECTION_ATTRIBUTES", "DATUM") or "WGS84"
        if datum != "WGS84":
            raise InvalidScene(f"{where}: datum {datum} is not WGS84")
        return 32600 + zone
    if projection == "PS":
        return 3031
    raise InvalidScene(f"{where}: MAP_PROJECTION {projection!r} is neither UTM nor PS")


def _frame(values: _Values, where: str) -> Polygon | MultiPolygon:
    ring = [
        (values.number("PROJECTION_ATTRIBUTES", f"CORNER_{corner}_LON_PRODUCT"),
         values.number("PROJECTION_ATTRIBUTES", f"CORNER_{corner}_LAT_PRODUCT"))
        for corner in ("UL", "UR", "LR", "LL")
    ]  # fmt: skip
    parts = footprint_from_lon_lat(ring, f"{where} product corners")
    return parts[0] if len(parts) == 1 else MultiPolygon(parts)


# --------------------------------------------------------------------------------------------
# The product folder


@dataclass(frozen=True)
class LandsatProduct:
    """A Landsat C2 Level-2 product folder: its metadata and the band files present on disk."""

    path: Path
    mtl_path: Path
    metadata: LandsatMetadata
    band_files: Mapping[str, Path] = field(hash=False)

    @property
    def product_id(self) -> str:
        """The product identifier, e.g. ``LC08_L2SP_008059_20191201_20200825_02_T1``."""
        return self.metadata.product_id

    @property
    def quality_band(self) -> str:
        """The per-pixel quality band, ``QA_PIXEL``."""
        return QA_PIXEL

    def band_path(self, band: str) -> Path:
        """The file of ``band`` (``"B4"``, ``"SR_B4"``, ``"QA_PIXEL"``…).

        Returns:
            The path of the GeoTIFF.

        Raises:
            InvalidScene: naming the product, the band and the bands present, if it has no file.
        """
        name = normalize_landsat_band(band)
        try:
            return self.band_files[name]
        except KeyError:
            present = ", ".join(sorted(self.band_files, key=_band_number)) or "none"
            raise InvalidScene(
                f"{self.product_id}: band {name} missing in archive (bands present: {present})"
            ) from None


def open_landsat_product(folder: str | Path) -> LandsatProduct:
    """Open a Landsat C2 Level-2 product folder: parse its MTL and find its band files.

    Every surface-reflectance band the MTL lists and ``QA_PIXEL`` must be present; other files
    (thermal bands, angle bands…) are optional, as archives often drop them.

    Returns:
        The :class:`LandsatProduct`.

    Raises:
        InvalidScene: if the folder has no readable MTL, or a listed ``SR_B*`` or the ``QA_PIXEL``
            file is missing.
    """
    folder = Path(folder)
    mtl_path = find_mtl_file(folder)
    metadata = parse_mtl(mtl_path)
    present = {band: folder / name for band, name in metadata.band_files.items() if (folder / name).is_file()}
    required = (*metadata.surface_reflectance_bands, QA_PIXEL)
    missing = [band for band in required if band not in present]
    if missing:
        raise InvalidScene(f"{metadata.product_id}: band file(s) {', '.join(missing)} missing in archive ({folder})")
    return LandsatProduct(folder, mtl_path, metadata, MappingProxyType(dict(sorted(present.items()))))
