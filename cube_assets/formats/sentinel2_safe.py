"""Sentinel-2 Level-1C and Level-2A ``.SAFE`` products: metadata parsing and band file lookup.

Only the two metadata files that matter for building data cubes are read:

* the product metadata ``MTD_MSIL1C.xml`` / ``MTD_MSIL2A.xml`` (sensing time, processing
  baseline, radiometric scaling, cloud cover, footprint), parsed into :class:`ProductMetadata`;
* the tile metadata ``GRANULE/<granule>/MTD_TL.xml`` (CRS and pixel grid of each resolution),
  parsed into :class:`TileMetadata`.

Band files are found on disk rather than taken from the ``IMAGE_FILE`` list, because archives
often keep only some of them (the real T29UNU sample holds only the 60 m bands). XML is read
with the standard library; element tags are matched on their local names so the ESA
namespaces (which changed between PSD versions) do not matter.

Radiometry: from processing baseline 04.00 on, ESA adds ``-BOA_ADD_OFFSET`` (L2A) or
``-RADIO_ADD_OFFSET`` (L1C), i.e. +1000, to every digital number, so
``reflectance = (DN + offset) / quantification_value``. Older baselines have no offset
(offset 0). :meth:`ProductMetadata.scale_and_offset` returns the pair for one band.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from types import MappingProxyType
from typing import Literal

import shapely
from affine import Affine
from shapely.affinity import translate
from shapely.geometry import MultiPolygon, Polygon, box

from cube_assets.errors import InvalidScene

#: Spectral band names in ``band_id`` order 0..12, as in the products' ``Spectral_Information``
#: lists. Used only when a product lacks that list.
BAND_NAMES: tuple[str, ...] = (
    "B01", "B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B09", "B10", "B11", "B12",
)  # fmt: skip

#: Native pixel size in metres of each spectral band (used when ``Spectral_Information`` is absent).
NATIVE_RESOLUTION_M: Mapping[str, int] = MappingProxyType(
    {
        "B01": 60,
        "B02": 10,
        "B03": 10,
        "B04": 10,
        "B05": 20,
        "B06": 20,
        "B07": 20,
        "B08": 10,
        "B8A": 20,
        "B09": 60,
        "B10": 60,
        "B11": 20,
        "B12": 20,
        "TCI": 10,
        "SCL": 20,
        "AOT": 10,
        "WVP": 10,
    }  # fmt: skip
)

#: The processing baseline from which digital numbers carry an additive offset.
OFFSET_BASELINE: tuple[int, int] = (4, 0)

PRODUCT_METADATA_FILES: tuple[str, ...] = ("MTD_MSIL2A.xml", "MTD_MSIL1C.xml")
TILE_METADATA_FILE = "MTD_TL.xml"

_TILE_IN_NAME = re.compile(r"_T(\d{2}[A-Z]{3})(?:_|$)")
_SPACECRAFT_IN_NAME = re.compile(r"^(S2[A-D])_")
# Band files: L2A "T29UNU_20221005T115411_B04_10m.jp2", L1C "T46RER_20210908T042701_B04.jp2",
# and the pre-2016 long L1C names "..._B04.jp2".
_BAND_FILE = re.compile(r"_(?P<band>B0[1-9]|B1[0-2]|B8A|TCI|SCL|AOT|WVP)(?:_(?P<res>\d+)m)?\.jp2$", re.IGNORECASE)
_RESOLUTION_FOLDER = re.compile(r"^R(\d+)m$")


# --------------------------------------------------------------------------------------------
# Small XML helpers


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


class _XmlIndex:
    """Elements of one XML document grouped by local tag name, in document order."""

    def __init__(self, path: Path) -> None:
        self.path = path
        try:
            root = ET.parse(path).getroot()
        except FileNotFoundError:
            raise InvalidScene(f"{path}: metadata file not found") from None
        except (ET.ParseError, OSError) as exc:
            raise InvalidScene(f"{path}: cannot parse XML ({exc})") from exc
        self.root_name = _local(root.tag)
        self._by_name: dict[str, list[ET.Element]] = {}
        for element in root.iter():
            self._by_name.setdefault(_local(element.tag), []).append(element)

    def all(self, name: str) -> list[ET.Element]:
        return self._by_name.get(name, [])

    def text(self, name: str) -> str:
        """Text of the first element ``name``; raises InvalidScene when absent or empty."""
        elements = self.all(name)
        if not elements or not (elements[0].text or "").strip():
            raise InvalidScene(f"{self.path}: element {name} missing or empty")
        return (elements[0].text or "").strip()

    def optional_text(self, name: str) -> str | None:
        elements = self.all(name)
        if not elements or not (elements[0].text or "").strip():
            return None
        return (elements[0].text or "").strip()

    def number(self, name: str) -> float:
        value = self.text(name)
        try:
            return float(value)
        except ValueError:
            raise InvalidScene(f"{self.path}: element {name} is not a number: {value!r}") from None


def _parse_utc(value: str, where: str) -> datetime:
    """An ISO-8601 timestamp as a timezone-aware UTC datetime (naive values are taken as UTC)."""
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise InvalidScene(f"{where}: invalid timestamp {value!r}") from None
    if parsed.tzinfo is None:
        return parsed.replace(tzinfo=UTC)
    return parsed.astimezone(UTC)


def normalize_band_name(name: str) -> str:
    """Canonical band name: ``"B1"`` → ``"B01"``, ``"b8a"`` → ``"B8A"``, ``"scl"`` → ``"SCL"``.

    Returns:
        The upper-case, zero-padded band name.
    """
    upper = name.strip().upper()
    match = re.fullmatch(r"B(\d)", upper)
    if match:
        return f"B0{match.group(1)}"
    return upper


# --------------------------------------------------------------------------------------------
# Product metadata


@dataclass(frozen=True)
class ProductMetadata:
    """What ``MTD_MSIL1C.xml`` / ``MTD_MSIL2A.xml`` says about one Sentinel-2 product.

    ``footprint`` is in EPSG:4326 with (lon, lat) axis order. It is a ``Polygon``, or a
    ``MultiPolygon`` split at ±180° for products that cross the antimeridian (so that
    ``intersects`` tests against ordinary lon/lat geometries give the right answer).
    ``band_offsets`` holds the additive DN offset of all 13 spectral bands by name (0.0 for
    baselines before 04.00); ``band_resolutions`` their native pixel size in metres.
    """

    product_id: str
    product_type: Literal["L1C", "L2A"]
    spacecraft: str
    sensing_time: datetime
    processing_baseline: str
    tile_id: str
    cloud_cover: float
    quantification_value: float
    footprint: Polygon | MultiPolygon
    band_offsets: Mapping[str, float] = field(hash=False)
    band_resolutions: Mapping[str, int] = field(hash=False)
    nodata_pixel_percentage: float | None = None
    relative_orbit: int | None = None

    @property
    def product_uri(self) -> str:
        """The product folder name, ``<product_id>.SAFE``."""
        return f"{self.product_id}.SAFE"

    @property
    def baseline_version(self) -> tuple[int, int]:
        """The processing baseline as a comparable ``(major, minor)`` tuple, e.g. ``(4, 0)``."""
        return _baseline_tuple(self.processing_baseline, self.product_id)

    @property
    def baseline_number(self) -> float:
        """The processing baseline as a float, e.g. ``4.0`` for ``"04.00"``, ``5.1`` for ``"05.10"``."""
        major, minor = self.baseline_version
        return major + minor / 100.0

    def offset(self, band: str) -> float:
        """The additive DN offset of ``band`` (``-1000.0`` from baseline 04.00 on, else 0.0).

        Returns:
            The offset to add to digital numbers before dividing by the quantification value.

        Raises:
            InvalidScene: if ``band`` is not a spectral band of this product.
        """
        name = normalize_band_name(band)
        try:
            return self.band_offsets[name]
        except KeyError:
            raise InvalidScene(
                f"{self.product_id}: no radiometric offset for band {name!r} "
                f"(spectral bands: {', '.join(self.band_offsets)})"
            ) from None

    def scale_and_offset(self, band: str) -> tuple[float, float]:
        """Linear scaling from digital numbers to reflectance: ``reflectance = DN * scale + offset``.

        Returns:
            ``(1 / quantification_value, band_offset / quantification_value)``.

        Raises:
            InvalidScene: if ``band`` is not a spectral band of this product.
        """
        q = self.quantification_value
        return 1.0 / q, self.offset(band) / q


def _baseline_tuple(baseline: str, where: str) -> tuple[int, int]:
    match = re.fullmatch(r"(\d{1,2})\.(\d{1,2})", baseline.strip())
    if not match:
        raise InvalidScene(f"{where}: processing baseline {baseline!r} is not of the form NN.NN")
    return int(match.group(1)), int(match.group(2))


def find_product_metadata_file(path: str | Path) -> Path:
    """The product metadata XML for a ``.SAFE`` folder, or ``path`` itself if it is a file.

    Returns:
        The path of ``MTD_MSIL2A.xml`` or ``MTD_MSIL1C.xml``.

    Raises:
        InvalidScene: if ``path`` does not exist or a folder holds neither file (or both).
    """
    path = Path(path)
    if path.is_file():
        return path
    if not path.is_dir():
        raise InvalidScene(f"{path}: no such product folder or metadata file")
    found = [path / name for name in PRODUCT_METADATA_FILES if (path / name).is_file()]
    if len(found) != 1:
        what = "no" if not found else "more than one"
        raise InvalidScene(f"{path.name}: {what} product metadata file ({' or '.join(PRODUCT_METADATA_FILES)})")
    return found[0]


def parse_product_metadata(path: str | Path) -> ProductMetadata:
    """Parse the product metadata of a Sentinel-2 L1C or L2A product.

    Args:
        path: the ``.SAFE`` folder, or the ``MTD_MSIL1C.xml`` / ``MTD_MSIL2A.xml`` file.

    Returns:
        The parsed :class:`ProductMetadata`. ``product_id`` is ``PRODUCT_URI`` without
        ``.SAFE`` (the folder name when the XML lacks it); the tile comes from that name.

    Raises:
        InvalidScene: if the file is missing or not XML, a required element is missing or
            malformed, the product type is neither L1C nor L2A, or a baseline ≥ 04.00 product
            lacks its radiometric offsets.
    """
    mtd_path = find_product_metadata_file(path)
    xml = _XmlIndex(mtd_path)

    uri = xml.optional_text("PRODUCT_URI") or mtd_path.parent.name
    product_id = uri.removesuffix(".SAFE")
    where = product_id

    product_type_code = xml.text("PRODUCT_TYPE")
    if "1C" in product_type_code:
        product_type: Literal["L1C", "L2A"] = "L1C"
    elif "2A" in product_type_code:
        product_type = "L2A"
    else:
        raise InvalidScene(f"{where}: unsupported PRODUCT_TYPE {product_type_code!r}")

    spacecraft_name = xml.optional_text("SPACECRAFT_NAME")
    spacecraft_match = re.fullmatch(r"Sentinel-(2[A-D])", spacecraft_name or "")
    if spacecraft_match:
        spacecraft = f"S{spacecraft_match.group(1)}"
    else:
        name_match = _SPACECRAFT_IN_NAME.match(product_id)
        if not name_match:
            raise InvalidScene(f"{where}: cannot tell the spacecraft (SPACECRAFT_NAME missing)")
        spacecraft = name_match.group(1)

    tile_match = _TILE_IN_NAME.search(product_id) or _TILE_IN_NAME.search(mtd_path.parent.name)
    if tile_match is None:
        granules = xml.all("Granule")
        ident = granules[0].get("granuleIdentifier", "") if granules else ""
        tile_match = _TILE_IN_NAME.search(ident)
    if tile_match is None:
        raise InvalidScene(f"{where}: no MGRS tile (Txxxxx) in the product or granule name")
    tile_id = f"T{tile_match.group(1)}"

    baseline = xml.text("PROCESSING_BASELINE")
    baseline_version = _baseline_tuple(baseline, where)

    sensing_time = _parse_utc(xml.text("PRODUCT_START_TIME"), f"{where} PRODUCT_START_TIME")

    quantification_tag = "BOA_QUANTIFICATION_VALUE" if product_type == "L2A" else "QUANTIFICATION_VALUE"
    quantification = xml.number(quantification_tag)
    if quantification <= 0:
        raise InvalidScene(f"{where}: {quantification_tag} must be positive, got {quantification}")

    band_names_by_id, band_resolutions = _spectral_bands(xml)
    offsets = _band_offsets(xml, product_type, band_names_by_id, where)
    if baseline_version >= OFFSET_BASELINE and not any(offsets.values()):
        tag = "BOA_ADD_OFFSET" if product_type == "L2A" else "RADIO_ADD_OFFSET"
        raise InvalidScene(f"{where}: processing baseline {baseline} but no {tag} values")

    nodata_text = xml.optional_text("NODATA_PIXEL_PERCENTAGE")
    orbit_text = xml.optional_text("SENSING_ORBIT_NUMBER")

    return ProductMetadata(
        product_id=product_id,
        product_type=product_type,
        spacecraft=spacecraft,
        sensing_time=sensing_time,
        processing_baseline=baseline,
        tile_id=tile_id,
        cloud_cover=xml.number("Cloud_Coverage_Assessment"),
        quantification_value=quantification,
        footprint=_footprint(xml, where),
        band_offsets=MappingProxyType(offsets),
        band_resolutions=MappingProxyType(band_resolutions),
        nodata_pixel_percentage=float(nodata_text) if nodata_text is not None else None,
        relative_orbit=int(orbit_text) if orbit_text is not None else None,
    )


def _spectral_bands(xml: _XmlIndex) -> tuple[dict[int, str], dict[str, int]]:
    """``band_id → name`` and ``name → native resolution`` from ``Spectral_Information``."""
    names: dict[int, str] = {}
    resolutions: dict[str, int] = {}
    for info in xml.all("Spectral_Information"):
        band_id, physical = info.get("bandId"), info.get("physicalBand")
        if band_id is None or physical is None:
            raise InvalidScene(f"{xml.path}: Spectral_Information without bandId/physicalBand")
        name = normalize_band_name(physical)
        names[int(band_id)] = name
        for child in info:
            if _local(child.tag) == "RESOLUTION" and (child.text or "").strip():
                resolutions[name] = int(float(child.text))  # type: ignore[arg-type]  # the text was checked to be non-blank just above
    if not names:
        names = dict(enumerate(BAND_NAMES))
    for name in names.values():
        resolutions.setdefault(name, NATIVE_RESOLUTION_M.get(name, 0))
    return names, resolutions


def _band_offsets(
    xml: _XmlIndex, product_type: str, band_names_by_id: Mapping[int, str], where: str
) -> dict[str, float]:
    tag = "BOA_ADD_OFFSET" if product_type == "L2A" else "RADIO_ADD_OFFSET"
    offsets = {name: 0.0 for name in band_names_by_id.values()}
    for element in xml.all(tag):
        band_id = element.get("band_id", element.get("bandId"))
        if band_id is None or int(band_id) not in band_names_by_id:
            raise InvalidScene(f"{where}: {tag} with unknown band_id {band_id!r}")
        try:
            offsets[band_names_by_id[int(band_id)]] = float((element.text or "").strip())
        except ValueError:
            raise InvalidScene(f"{where}: {tag} band_id={band_id} is not a number") from None
    return offsets


def _footprint(xml: _XmlIndex, where: str) -> Polygon | MultiPolygon:
    lists = xml.all("EXT_POS_LIST")
    if not lists:
        raise InvalidScene(f"{where}: element EXT_POS_LIST (product footprint) missing")
    parts: list[Polygon] = []
    for element in lists:
        try:
            values = [float(v) for v in (element.text or "").split()]
        except ValueError:
            raise InvalidScene(f"{where}: EXT_POS_LIST holds non-numbers") from None
        if len(values) % 2 or len(values) < 6:
            raise InvalidScene(f"{where}: EXT_POS_LIST needs lat/lon pairs, got {len(values)} values")
        lon_lat = [(values[i + 1], values[i]) for i in range(0, len(values), 2)]
        parts.extend(footprint_from_lon_lat(lon_lat, where))
    if len(parts) == 1:
        return parts[0]
    merged = shapely.union_all(parts)
    return merged if isinstance(merged, (Polygon, MultiPolygon)) else MultiPolygon(parts)


def footprint_from_lon_lat(ring: Iterable[tuple[float, float]], where: str = "footprint") -> list[Polygon]:
    """Polygons of a lon/lat ring, split at the antimeridian when the ring crosses it.

    A ring crosses ±180° when two consecutive vertices are more than 180° of longitude apart;
    such a ring is unwrapped to continuous longitudes, cut at 180° and the eastern part moved
    back by −360°, as RFC 7946 recommends.

    Returns:
        One polygon, or two for a ring that crosses the antimeridian.

    Raises:
        InvalidScene: if the ring does not make a polygon with an area.
    """
    points = list(ring)
    lons = [p[0] for p in points]
    crosses = any(abs(a - b) > 180.0 for a, b in zip(lons, lons[1:], strict=False))
    if crosses:
        points = [(lon + 360.0 if lon < 0 else lon, lat) for lon, lat in points]
    polygon = Polygon(points)
    if not polygon.is_valid:
        polygon = shapely.make_valid(polygon)
    polygons = _polygons_of(polygon)
    if not polygons:
        raise InvalidScene(f"{where}: footprint ring has no area")
    if not crosses:
        return polygons
    whole = shapely.union_all(polygons)
    west = whole.intersection(box(-180.0, -90.0, 180.0, 90.0))
    east = translate(whole.intersection(box(180.0, -90.0, 540.0, 90.0)), xoff=-360.0)
    return _polygons_of(west) + _polygons_of(east)


def _polygons_of(geometry: shapely.Geometry) -> list[Polygon]:
    if isinstance(geometry, Polygon):
        return [geometry] if not geometry.is_empty and geometry.area > 0 else []
    if hasattr(geometry, "geoms"):
        return [g for part in geometry.geoms for g in _polygons_of(part)]
    return []


# --------------------------------------------------------------------------------------------
# Tile metadata


@dataclass(frozen=True)
class TileMetadata:
    """What ``GRANULE/<granule>/MTD_TL.xml`` says about the tile's grid.

    ``sizes`` maps a resolution in metres (10, 20, 60) to ``(rows, cols)``; ``origins`` to the
    upper-left corner ``(ulx, uly)`` in the tile CRS; ``pixel_sizes`` to ``(xdim, ydim)``
    (``ydim`` negative, north-up).
    """

    tile_id: str
    granule_id: str
    epsg: int
    sensing_time: datetime
    sizes: Mapping[int, tuple[int, int]] = field(hash=False)
    origins: Mapping[int, tuple[float, float]] = field(hash=False)
    pixel_sizes: Mapping[int, tuple[float, float]] = field(hash=False)

    @property
    def resolutions(self) -> tuple[int, ...]:
        """The resolutions (m) the tile describes, finest first."""
        return tuple(sorted(self.sizes))

    def shape(self, resolution: int) -> tuple[int, int]:
        """``(rows, cols)`` of the grid at ``resolution`` metres.

        Returns:
            The grid shape.

        Raises:
            InvalidScene: if the tile metadata has no grid at that resolution.
        """
        self._check_resolution(resolution)
        return self.sizes[resolution]

    def transform(self, resolution: int) -> Affine:
        """The affine pixel-to-CRS transform of the grid at ``resolution`` metres.

        Returns:
            ``Affine(xdim, 0, ulx, 0, ydim, uly)``.

        Raises:
            InvalidScene: if the tile metadata has no grid at that resolution.
        """
        self._check_resolution(resolution)
        ulx, uly = self.origins[resolution]
        xdim, ydim = self.pixel_sizes[resolution]
        return Affine(xdim, 0.0, ulx, 0.0, ydim, uly)

    def bounds(self, resolution: int | None = None) -> tuple[float, float, float, float]:
        """``(minx, miny, maxx, maxy)`` in the tile CRS, from the finest grid unless told.

        Returns:
            The grid bounds.

        Raises:
            InvalidScene: if the tile metadata has no grid at that resolution.
        """
        resolution = resolution if resolution is not None else self.resolutions[0]
        rows, cols = self.shape(resolution)
        t = self.transform(resolution)
        xs = (t.c, t.c + cols * t.a)
        ys = (t.f, t.f + rows * t.e)
        return min(xs), min(ys), max(xs), max(ys)

    def _check_resolution(self, resolution: int) -> None:
        if resolution not in self.sizes or resolution not in self.origins:
            available = ", ".join(f"{r} m" for r in self.resolutions)
            raise InvalidScene(f"{self.granule_id}: no {resolution} m grid in tile metadata ({available})")


def find_tile_metadata_file(path: str | Path) -> Path:
    """The ``MTD_TL.xml`` for a ``.SAFE`` folder, a granule folder, or ``path`` itself if a file.

    Returns:
        The path of the tile metadata file.

    Raises:
        InvalidScene: if it does not exist, or a product holds no granule or more than one.
    """
    path = Path(path)
    if path.is_file():
        return path
    if not path.is_dir():
        raise InvalidScene(f"{path}: no such product, granule or tile metadata file")
    if (path / TILE_METADATA_FILE).is_file():
        return path / TILE_METADATA_FILE
    found = sorted((path / "GRANULE").glob(f"*/{TILE_METADATA_FILE}"))
    if len(found) != 1:
        what = "no" if not found else f"{len(found)}"
        raise InvalidScene(f"{path.name}: {what} GRANULE/*/{TILE_METADATA_FILE} (expected exactly one)")
    return found[0]


def parse_tile_metadata(path: str | Path) -> TileMetadata:
    """Parse the tile metadata ``MTD_TL.xml`` of a Sentinel-2 granule.

    Args:
        path: the ``MTD_TL.xml`` file, its granule folder, or the ``.SAFE`` folder.

    Returns:
        The parsed :class:`TileMetadata`; ``tile_id`` like ``"T29UNU"`` is taken from ``TILE_ID``.

    Raises:
        InvalidScene: if the file is missing or not XML, or ``TILE_ID``, ``SENSING_TIME``,
            ``HORIZONTAL_CS_CODE`` or the ``Size``/``Geoposition`` grids are missing or malformed.
    """
    mtd_path = find_tile_metadata_file(path)
    xml = _XmlIndex(mtd_path)
    granule_id = xml.text("TILE_ID")
    where = f"{mtd_path.parent.name}/{TILE_METADATA_FILE}"
    tile_match = _TILE_IN_NAME.search(granule_id) or _TILE_IN_NAME.search(mtd_path.parent.name)
    if tile_match is None:
        raise InvalidScene(f"{where}: no MGRS tile (Txxxxx) in TILE_ID {granule_id!r}")

    cs_code = xml.text("HORIZONTAL_CS_CODE")
    epsg_match = re.fullmatch(r"EPSG:(\d+)", cs_code)
    if epsg_match is None:
        raise InvalidScene(f"{where}: HORIZONTAL_CS_CODE {cs_code!r} is not EPSG:<code>")

    sizes: dict[int, tuple[int, int]] = {}
    for element in xml.all("Size"):
        resolution = _resolution_attribute(element, where)
        sizes[resolution] = (_child_int(element, "NROWS", where), _child_int(element, "NCOLS", where))
    origins: dict[int, tuple[float, float]] = {}
    pixel_sizes: dict[int, tuple[float, float]] = {}
    for element in xml.all("Geoposition"):
        resolution = _resolution_attribute(element, where)
        origins[resolution] = (_child_float(element, "ULX", where), _child_float(element, "ULY", where))
        xdim = _child_float(element, "XDIM", where, default=float(resolution))
        ydim = _child_float(element, "YDIM", where, default=-float(resolution))
        pixel_sizes[resolution] = (xdim, ydim)
    if not sizes or set(sizes) != set(origins):
        raise InvalidScene(
            f"{where}: Size resolutions {sorted(sizes)} and Geoposition resolutions "
            f"{sorted(origins)} must be present and agree"
        )

    return TileMetadata(
        tile_id=f"T{tile_match.group(1)}",
        granule_id=granule_id,
        epsg=int(epsg_match.group(1)),
        sensing_time=_parse_utc(xml.text("SENSING_TIME"), f"{where} SENSING_TIME"),
        sizes=MappingProxyType(sizes),
        origins=MappingProxyType(origins),
        pixel_sizes=MappingProxyType(pixel_sizes),
    )


def _resolution_attribute(element: ET.Element, where: str) -> int:
    value = element.get("resolution")
    try:
        return int(value)  # type: ignore[arg-type]  # None raises TypeError, turned into InvalidScene below
    except (TypeError, ValueError):
        raise InvalidScene(f"{where}: {_local(element.tag)} without a valid resolution attribute") from None


def _child_text(element: ET.Element, name: str) -> str | None:
    for child in element:
        if _local(child.tag) == name and (child.text or "").strip():
            return (child.text or "").strip()
    return None


def _child_float(element: ET.Element, name: str, where: str, default: float | None = None) -> float:
    text = _child_text(element, name)
    if text is None:
        if default is not None:
            return default
        raise InvalidScene(f"{where}: {_local(element.tag)} {element.get('resolution')} m lacks {name}")
    try:
        return float(text)
    except ValueError:
        raise InvalidScene(f"{where}: {name} is not a number: {text!r}") from None


def _child_int(element: ET.Element, name: str, where: str) -> int:
    value = _child_float(element, name, where)
    if not value.is_integer() or value <= 0:
        raise InvalidScene(f"{where}: {name} must be a positive integer, got {value}")
    return int(value)


# --------------------------------------------------------------------------------------------
# Opened products


@dataclass(frozen=True)
class SafeProduct:
    """A Sentinel-2 ``.SAFE`` product on disk: its metadata and where its band files are.

    ``band_files`` maps a band name (``"B04"``, ``"B8A"``, ``"SCL"``, ``"TCI"``…) to
    ``{resolution_m: path}`` for the files that exist. L2A files come from
    ``IMG_DATA/R10m|R20m|R60m``; L1C files are at their native resolution.
    """

    path: Path
    granule_dir: Path
    metadata: ProductMetadata
    tile_metadata: TileMetadata
    band_files: Mapping[str, Mapping[int, Path]] = field(hash=False)
    pvi_path: Path | None = None

    @property
    def product_id(self) -> str:
        """The product identifier (folder name without ``.SAFE``)."""
        return self.metadata.product_id

    @property
    def quality_band(self) -> str | None:
        """The per-pixel quality band: ``"SCL"`` for L2A, ``None`` for L1C."""
        return "SCL" if self.metadata.product_type == "L2A" else None

    def resolutions(self, band: str) -> tuple[int, ...]:
        """The resolutions (m) at which ``band`` has a file, finest first (empty if none)."""
        return tuple(sorted(self.band_files.get(normalize_band_name(band), {})))

    def band_path(self, band: str, resolution: int | None = None, *, allow_coarser: bool = True) -> Path:
        """The file of ``band`` at ``resolution`` metres.

        Semantics: with ``resolution=None`` the finest file is returned. Otherwise the file at
        exactly that resolution if it exists; if not and ``allow_coarser`` is true (the
        default), the finest file *coarser* than requested (e.g. the 60 m B02 when 10 m was
        asked for but only 60 m is in the archive); the caller resamples. A finer file than
        requested is never returned: downsampling choices belong to the caller.

        Returns:
            The path of the JPEG 2000 band file.

        Raises:
            InvalidScene: naming the product, the band and the resolutions that exist, if the
                band has no file, or none at an acceptable resolution.
        """
        name = normalize_band_name(band)
        files = self.band_files.get(name)
        if not files:
            available = ", ".join(sorted(self.band_files)) or "none"
            raise InvalidScene(f"{self.product_id}: band {name} missing in archive (bands present: {available})")
        available_res = sorted(files)
        if resolution is None:
            return files[available_res[0]]
        if resolution in files:
            return files[resolution]
        listed = ", ".join(f"{r} m" for r in available_res)
        if not allow_coarser:
            raise InvalidScene(
                f"{self.product_id}: band {name} not available at {resolution} m (available at {listed})"
            )
        coarser = [r for r in available_res if r > resolution]
        if not coarser:
            raise InvalidScene(
                f"{self.product_id}: band {name} has no file at {resolution} m or coarser (available at {listed})"
            )
        return files[coarser[0]]


def open_safe(safe_dir: str | Path) -> SafeProduct:
    """Open a Sentinel-2 L1C or L2A ``.SAFE`` folder: parse its metadata and find its band files.

    Returns:
        The :class:`SafeProduct`.

    Raises:
        InvalidScene: if the folder is missing, its product or tile metadata is missing or
            malformed, it holds no granule or several, or product and tile metadata name
            different tiles.
    """
    safe_dir = Path(safe_dir)
    if not safe_dir.is_dir():
        raise InvalidScene(f"{safe_dir}: no such .SAFE product folder")
    metadata = parse_product_metadata(safe_dir)
    tile_path = find_tile_metadata_file(safe_dir)
    tile = parse_tile_metadata(tile_path)
    if tile.tile_id != metadata.tile_id:
        raise InvalidScene(
            f"{metadata.product_id}: product names tile {metadata.tile_id} "
            f"but {tile_path.parent.name}/{TILE_METADATA_FILE} names {tile.tile_id}"
        )
    granule = tile_path.parent
    band_files = _find_band_files(granule / "IMG_DATA", metadata)
    pvi = sorted((granule / "QI_DATA").glob("*PVI*.jp2")) or sorted(safe_dir.glob("**/QI_DATA/*PVI*.jp2"))
    return SafeProduct(
        path=safe_dir,
        granule_dir=granule,
        metadata=metadata,
        tile_metadata=tile,
        band_files=MappingProxyType({k: MappingProxyType(v) for k, v in sorted(band_files.items())}),
        pvi_path=pvi[0] if pvi else None,
    )


def _find_band_files(img_data: Path, metadata: ProductMetadata) -> dict[str, dict[int, Path]]:
    found: dict[str, dict[int, Path]] = {}
    if not img_data.is_dir():
        return found
    for file in sorted(img_data.rglob("*.jp2")):
        match = _BAND_FILE.search(file.name)
        if match is None:
            continue
        band = normalize_band_name(match.group("band"))
        if match.group("res"):
            resolution = int(match.group("res"))
        elif (folder := _RESOLUTION_FOLDER.match(file.parent.name)) is not None:
            resolution = int(folder.group(1))
        else:
            resolution = metadata.band_resolutions.get(band) or NATIVE_RESOLUTION_M.get(band, 0)
        if resolution <= 0:
            raise InvalidScene(f"{metadata.product_id}: cannot tell the resolution of {file.name}")
        found.setdefault(band, {})[resolution] = file
    return found
