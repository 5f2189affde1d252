"""A provider over a folder of products on local (or mounted) disk.

:class:`LocalArchiveProvider` finds two kinds of products anywhere below its root:

* **Sentinel-2 ``.SAFE`` folders** (L1C or L2A). Only ``MTD_MSIL1C.xml`` / ``MTD_MSIL2A.xml``
  is read; the collection is ``sentinel-2-l2a`` or ``sentinel-2-l1c`` by product type.
* **COG-per-band products**: a folder holding a ``product.json`` manifest next to one
  (Cloud-Optimized) GeoTIFF per band. The manifest format, defined here::

      {
        "id": "S2B_23LLF_20240105_L2A",            # unique scene id
        "collection": "sentinel-2-l2a",            # collection the scene is searched under
        "datetime": "2024-01-05T13:32:29Z",        # ISO 8601 with a timezone (Z or ±hh:mm)
        "footprint": {"type": "Polygon", ...},     # GeoJSON geometry, EPSG:4326 lon/lat
        "cloud_cover": 12.5,                       # percent of valid pixels, or null
        "bands": {"B04": "B04.tif", "SCL": "SCL.tif"},  # band → file relative to the folder
        "properties": {"tile_id": "T23LLF"}        # optional, free-form
      }

  :func:`read_product_manifest` validates it and :func:`write_product_manifest` writes it.
* **Landsat Collection 2 Level-2 products**: a folder holding a ``*_MTL.json``, ``*_MTL.xml``
  or ``*_MTL.txt`` beside its GeoTIFFs (:mod:`cube_assets.formats.landsat`), in the
  ``landsat-c2-l2`` collection. The footprint is the MTL's product frame; fetching names the
  copy after the product id, whatever the archive folder is called.

Folders whose name starts with a dot are skipped: they are the temporary folders of
products being written. Symbolic links to product folders are followed; other symbolic
links to folders are not descended into, so link cycles cannot trap the scan. A product
whose metadata cannot be read is skipped with a warning, so one broken product does not
hide the rest of the archive.

The scan is cached: a product's metadata is parsed again only when the modification time of
its folder or of its metadata file changes.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import threading
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from types import MappingProxyType
from typing import Any

from shapely.geometry import mapping, shape
from shapely.geometry.base import BaseGeometry

from cube_assets.atomic import atomic_write_text
from cube_assets.errors import InvalidScene, ProviderError
from cube_assets.formats.landsat import LANDSAT_C2_L2, MTL_SUFFIXES, is_landsat_folder, open_landsat_product, parse_mtl
from cube_assets.formats.sentinel2_safe import PRODUCT_METADATA_FILES, parse_product_metadata
from cube_assets.names import check_name, relative_path_problem
from cube_assets.providers.base import (
    SENTINEL2_L1C,
    SENTINEL2_L2A,
    Provider,
    SceneRef,
    check_search_arguments,
    select_scenes,
)
from cube_assets.quoting import quoted

logger = logging.getLogger(__name__)

PRODUCT_MANIFEST = "product.json"
LANDSAT_FORMAT = "LANDSAT_C2"
_MANIFEST_KEYS = ("id", "collection", "datetime", "footprint", "cloud_cover", "bands")


# --------------------------------------------------------------------------------------------
# The COG-per-band product manifest


@dataclass(frozen=True)
class ProductManifest:
    """The content of a COG-per-band product's ``product.json`` (format in the module docstring)."""

    id: str
    collection: str
    datetime: datetime
    footprint: BaseGeometry
    cloud_cover: float | None
    bands: Mapping[str, str] = field(hash=False)
    properties: Mapping[str, Any] = field(default_factory=dict, hash=False)

    def to_json(self) -> str:
        """The manifest as indented JSON text (datetime in UTC with a ``Z`` suffix)."""
        document = {
            "id": self.id,
            "collection": self.collection,
            "datetime": self.datetime.astimezone(UTC).isoformat().replace("+00:00", "Z"),
            "footprint": mapping(self.footprint),
            "cloud_cover": self.cloud_cover,
            "bands": dict(self.bands),
            "properties": dict(self.properties),
        }
        return json.dumps(document, indent=2) + "\n"


def write_product_manifest(folder: str | os.PathLike[str], manifest: ProductManifest) -> Path:
    """Write ``manifest`` as ``folder/product.json`` atomically.

    Returns:
        The path of the written manifest.

    Raises:
        InvalidScene: if a band path is absolute or leaves the folder.
        OSError: if the file cannot be written.
    """
    for band, relative in manifest.bands.items():
        _check_relative_band_path(manifest.id, band, relative)
    return atomic_write_text(Path(folder) / PRODUCT_MANIFEST, manifest.to_json())


def read_product_manifest(folder: str | os.PathLike[str]) -> ProductManifest:
    """Read and validate ``folder/product.json``.

    Returns:
        The :class:`ProductManifest`.

    Raises:
        InvalidScene: naming the folder, if the manifest is missing or not JSON, a key is
            missing or has the wrong type, the datetime lacks a timezone, the footprint is not
            a valid GeoJSON geometry in lon/lat, or a band file is missing or outside the folder.
    """
    folder = Path(folder)
    path = folder / PRODUCT_MANIFEST
    where = f"{folder.name}/{PRODUCT_MANIFEST}"
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InvalidScene(f"{where}: manifest not found") from None
    except (OSError, ValueError) as exc:
        raise InvalidScene(f"{where}: cannot read JSON ({exc})") from exc
    if not isinstance(document, dict):
        raise InvalidScene(f"{where}: expected a JSON object")
    missing = [key for key in _MANIFEST_KEYS if key not in document]
    if missing:
        raise InvalidScene(f"{where}: missing keys {missing}")

    scene_id, collection = document["id"], document["collection"]
    if not isinstance(scene_id, str) or not scene_id:
        raise InvalidScene(f"{where}: 'id' must be a non-empty string")
    if not isinstance(collection, str) or not collection:
        raise InvalidScene(f"{where}: 'collection' must be a non-empty string")
    try:
        when = datetime.fromisoformat(str(document["datetime"]))
    except ValueError:
        raise InvalidScene(f"{where}: 'datetime' {document['datetime']!r} is not ISO 8601") from None
    if when.tzinfo is None:
        raise InvalidScene(f"{where}: 'datetime' {document['datetime']!r} has no timezone")
    try:
        footprint = shape(document["footprint"])
    except (AttributeError, KeyError, TypeError, ValueError) as exc:
        raise InvalidScene(f"{where}: 'footprint' is not a GeoJSON geometry ({exc})") from exc
    if footprint.is_empty or not footprint.is_valid:
        raise InvalidScene(f"{where}: 'footprint' is empty or invalid")
    minx, miny, maxx, maxy = footprint.bounds
    if minx < -180 or maxx > 180 or miny < -90 or maxy > 90:
        raise InvalidScene(f"{where}: 'footprint' bounds {footprint.bounds} are not lon/lat degrees")
    cloud_cover = document["cloud_cover"]
    if cloud_cover is not None and (
        isinstance(cloud_cover, bool) or not isinstance(cloud_cover, int | float) or not 0 <= cloud_cover <= 100
    ):
        raise InvalidScene(f"{where}: 'cloud_cover' must be a percentage or null, got {cloud_cover!r}")
    bands = document["bands"]
    if not isinstance(bands, dict) or not bands:
        raise InvalidScene(f"{where}: 'bands' must be a non-empty object of band → file")
    for band, relative in bands.items():
        _check_relative_band_path(where, band, relative)
        if not (folder / relative).is_file():
            raise InvalidScene(f"{where}: band {band} file {relative} missing in archive")
    properties = document.get("properties") or {}
    if not isinstance(properties, dict):
        raise InvalidScene(f"{where}: 'properties' must be an object")
    return ProductManifest(
        id=scene_id,
        collection=collection,
        datetime=when.astimezone(UTC),
        footprint=footprint,
        cloud_cover=float(cloud_cover) if cloud_cover is not None else None,
        bands=MappingProxyType(dict(bands)),
        properties=MappingProxyType(properties),
    )


def _check_relative_band_path(where: str, band: object, relative: object) -> None:
    if not isinstance(relative, str) or not relative:
        raise InvalidScene(f"{where}: band {quoted(band)} file must be a non-empty string, got {quoted(relative)}")
    problem = relative_path_problem(relative, "the product folder")
    if problem is not None:
        raise InvalidScene(
            f"{where}: band {quoted(band)} file {quoted(relative)} must be relative to the product folder: it {problem}"
        )


# --------------------------------------------------------------------------------------------
# The provider


class LocalArchiveProvider(Provider):
    """Search and fetch the ``.SAFE`` and COG-per-band products below ``root``."""

    def __init__(self, root: str | os.PathLike[str], name: str = "local") -> None:
        self.root = Path(root)
        self.name = name
        self._cache: dict[Path, tuple[tuple[int, ...], SceneRef | None]] = {}
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"LocalArchiveProvider(root={str(self.root)!r}, name={self.name!r})"

    # -- scanning ------------------------------------------------------------------------------

    def scenes(self) -> list[SceneRef]:
        """Every readable product in the archive, re-parsing only products that changed.

        Returns:
            All scenes, sorted by datetime then scene id.

        Raises:
            ProviderError: if the archive root is not a folder.
        """
        if not self.root.is_dir():
            raise ProviderError(f"{self.name}: archive root {self.root} is not a folder")
        with self._lock:
            fresh: dict[Path, tuple[tuple[int, ...], SceneRef | None]] = {}
            for folder, kind in self._product_folders():
                stamp = _stamp(folder, kind)
                cached = self._cache.get(folder)
                if cached is not None and cached[0] == stamp:
                    fresh[folder] = cached
                    continue
                try:
                    scene = self._scene_of(folder, kind)
                except InvalidScene as exc:
                    logger.warning("%s: skipping unreadable product %s: %s", self.name, folder, exc)
                    scene = None
                fresh[folder] = (stamp, scene)
            self._cache = fresh
            found = [scene for _, scene in fresh.values() if scene is not None]
        return sorted(found, key=lambda scene: (scene.datetime, scene.scene_id))

    def _product_folders(self) -> Iterator[tuple[Path, str]]:
        pending = [self.root]
        while pending:
            folder = pending.pop()
            try:
                entries = sorted(os.scandir(folder), key=lambda entry: entry.name)
            except OSError as exc:
                logger.warning("%s: cannot list %s: %s", self.name, folder, exc)
                continue
            for entry in entries:
                if entry.name.startswith(".") or not entry.is_dir():
                    continue
                path = Path(entry.path)
                if entry.name.endswith(".SAFE"):
                    yield path, "safe"
                elif (path / PRODUCT_MANIFEST).is_file():
                    yield path, "manifest"
                elif is_landsat_folder(path):
                    yield path, "landsat"
                elif not entry.is_symlink():
                    pending.append(path)

    def _scene_of(self, folder: Path, kind: str) -> SceneRef:
        if kind == "safe":
            metadata = parse_product_metadata(folder)
            return SceneRef(
                provider=self.name,
                collection=SENTINEL2_L2A if metadata.product_type == "L2A" else SENTINEL2_L1C,
                scene_id=metadata.product_id,
                datetime=metadata.sensing_time,
                footprint=metadata.footprint,
                cloud_cover=metadata.cloud_cover,
                href=str(folder),
                properties={
                    "format": "SAFE",
                    "product_type": metadata.product_type,
                    "tile_id": metadata.tile_id,
                    "spacecraft": metadata.spacecraft,
                    "processing_baseline": metadata.processing_baseline,
                    "relative_orbit": metadata.relative_orbit,
                    "nodata_pixel_percentage": metadata.nodata_pixel_percentage,
                },
            )
        if kind == "landsat":
            landsat = parse_mtl(folder)
            return SceneRef(
                provider=self.name,
                collection=LANDSAT_C2_L2,
                scene_id=landsat.product_id,
                datetime=landsat.acquired,
                footprint=landsat.frame,
                cloud_cover=landsat.cloud_cover,
                href=str(folder),
                properties={
                    "format": LANDSAT_FORMAT,
                    "spacecraft": landsat.spacecraft,
                    "processing_level": landsat.processing_level,
                    "wrs_path": landsat.wrs_path,
                    "wrs_row": landsat.wrs_row,
                    "epsg": landsat.epsg,
                },
            )
        manifest = read_product_manifest(folder)
        return SceneRef(
            provider=self.name,
            collection=manifest.collection,
            scene_id=manifest.id,
            datetime=manifest.datetime,
            footprint=manifest.footprint,
            cloud_cover=manifest.cloud_cover,
            href=str(folder),
            properties={**manifest.properties, "format": "COG", "bands": dict(manifest.bands)},
        )

    # -- Provider ------------------------------------------------------------------------------

    def search(
        self,
        collection: str,
        geometry: BaseGeometry,
        start: datetime,
        end: datetime,
        max_cloud_cover: float | None = None,
    ) -> list[SceneRef]:
        """Products of ``collection`` below the root intersecting ``geometry``, ``start <= t < end``.

        Returns:
            Matching scenes sorted by datetime, then scene id.

        Raises:
            ProviderError: if the arguments are invalid or the archive root is not a folder.
        """
        check_search_arguments(geometry, start, end, f"{self.name} search {collection}")
        return select_scenes(
            self.scenes(),
            collection=collection,
            geometry=geometry,
            start=start,
            end=end,
            max_cloud_cover=max_cloud_cover,
        )

    def fetch(self, scene: SceneRef, destination_dir: Path) -> Path:
        """Place the product folder of ``scene`` in ``destination_dir``.

        Files are hard-linked when source and destination share a filesystem (and linking is
        allowed), else copied. The copy is assembled in a hidden temporary folder and renamed
        into place, so ``destination_dir/<product folder name>`` is either absent or complete.
        A complete copy already there is reused; an incomplete folder of that name is replaced.
        Hard links share the source's bytes: treat fetched files as read-only.

        Returns:
            ``destination_dir / <product folder name>``.

        Raises:
            ProviderError: if ``scene`` comes from another provider, its folder is gone, the
                name of its copy (the scene id of a Landsat product, else the folder's name)
                cannot be a folder name under the rule of :mod:`cube_assets.names`, or the
                copy fails.
        """
        if scene.provider != self.name:
            raise ProviderError(f"{self.name}: scene {scene.scene_id} belongs to provider {scene.provider!r}")
        source = Path(scene.href)
        if not source.is_dir():
            raise ProviderError(f"{self.name}: scene {scene.scene_id}: product folder {source} no longer exists")
        destination_dir = Path(destination_dir)
        # Landsat archives often keep products in folders not named after them. The name comes
        # from the product's metadata, so it is checked before anything is created or removed.
        name = scene.scene_id if scene.properties.get("format") == LANDSAT_FORMAT else source.name
        target = destination_dir / check_name(name, f"{self.name}: scene {quoted(scene.scene_id)}: product folder")
        if is_complete_product(target):
            return target
        staging = destination_dir / f".{target.name}.{uuid.uuid4().hex[:12]}.tmp"
        try:
            destination_dir.mkdir(parents=True, exist_ok=True)
            _link_or_copy_tree(source, staging)
            if target.is_symlink() or target.is_file():
                target.unlink()
            elif target.exists():
                shutil.rmtree(target)
            os.rename(staging, target)
        except OSError as exc:
            if is_complete_product(target):  # another worker finished the same fetch first
                return target
            raise ProviderError(f"{self.name}: cannot fetch {scene.scene_id} to {target}: {exc}") from exc
        finally:
            if staging.exists():
                shutil.rmtree(staging, ignore_errors=True)
        return target


def is_complete_product(folder: Path) -> bool:
    """Whether ``folder`` is a complete product: a ``.SAFE`` with its product metadata, a
    COG-per-band folder whose manifest reads and whose band files all exist, or a Landsat
    folder whose MTL reads and whose surface-reflectance and QA_PIXEL files all exist.
    """
    if not folder.is_dir():
        return False
    if folder.name.endswith(".SAFE"):
        return any((folder / name).is_file() for name in PRODUCT_METADATA_FILES)
    if is_landsat_folder(folder):
        try:
            open_landsat_product(folder)
        except InvalidScene:
            return False
        return True
    try:
        read_product_manifest(folder)
    except InvalidScene:
        return False
    return True


def _stamp(folder: Path, kind: str) -> tuple[int, ...]:
    if kind == "landsat":
        names = tuple(sorted(p.name for suffix in MTL_SUFFIXES for p in folder.glob(f"*{suffix}")))
    else:
        names = PRODUCT_METADATA_FILES if kind == "safe" else (PRODUCT_MANIFEST,)
    stamp = [folder.stat().st_mtime_ns]
    for name in names:
        try:
            stamp.append((folder / name).stat().st_mtime_ns)
        except FileNotFoundError:
            stamp.append(0)
    return tuple(stamp)


def _link_or_copy_tree(source: Path, destination: Path) -> None:
    linking = True

    def link_or_copy(src: str, dst: str) -> str:
        nonlocal linking
        if linking:
            try:
                os.link(src, dst)
                return dst
            except OSError:  # other filesystem, or linking not permitted: copy from now on
                linking = False
        return shutil.copy2(src, dst)

    shutil.copytree(source, destination, copy_function=link_or_copy, symlinks=False)
