"""The raw data store: every scene stored once, per band, checked before use.

Layout under the store's root (``{data root}/raw``)::

    {collection}/{scene_id}/product.json       the manifest (format of ``providers/local.py``)
    {collection}/{scene_id}/{band}{suffix}     one file per band (.tif, .jp2, .zip …)
    {collection}/{scene_id}/item.json          the STAC Item the scene came from, when it did
    {collection}/.{scene_id}.lock              held while the scene is being changed
    {collection}/{name}.SAFE/                  whole products from providers that only deliver those
    {collection}/{product id}/                 (``.SAFE`` folders, Landsat C2 L2 folders with their MTL)

A stored scene is therefore a COG-per-band product that :class:`~cube_assets.providers.local.
LocalArchiveProvider` can read, which is how :meth:`RawStore.search` finds scenes offline. The
manifest's ``properties.raw_store`` records, per band, the file, its size, its multihash, the
provider that served it and the (redacted) source URL.

:meth:`RawStore.load` rules:

* only the requested bands that are missing are fetched; ``force=True`` fetches them again;
* bands added later are appended: the files of the other bands are not touched;
* every band file already stored is checked before it is returned (expected size, and that it
  opens: zip and tar members read back, GeoTIFFs read, JPEG 2000 box structure complete with
  its end-of-codestream marker); a truncated or corrupt file is removed and fetched again;
* a downloaded file is written under a temporary name, checked the same way, and only then
  moved onto its final name, and the manifest is rewritten atomically after each band;
* bands the provider serves from one file (every band of a zipped ``.SAFE`` product) are
  downloaded once and stored as hard links of each other, and checked once per load;
* a band's manifest entry records the STAC asset it came from (``asset``), so its radiometry
  can be read from ``item.json`` later (``formats/stac_item.py``);
* offline (``offline=True``), nothing is fetched: a scene whose requested bands are all stored
  and sound is returned, anything else raises :class:`SceneNotStored` naming the missing bands;
* a scene comes from one provider: loading it through a different provider than the one that
  stored it fetches the requested bands again from the new provider and drops the old
  provider's other bands, so bands of one scene never mix radiometry from two sources.

Providers that deliver scenes band by band implement :class:`BandSource` (the ``stac`` driver);
COG-per-band products of a local archive are copied band by band too. Other products (the
``.SAFE`` folders of the ``local`` and ``simulator`` drivers) are fetched whole with
``Provider.fetch`` into the collection's folder, and the requested bands are checked to be in them.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import shutil
import struct
import tarfile
import zipfile
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path, PurePosixPath
from typing import Any, Protocol, runtime_checkable
from urllib.parse import urlsplit

from shapely.geometry import shape
from shapely.geometry.base import BaseGeometry

from cube_assets.atomic import atomic_write_text, exclusive_lock
from cube_assets.errors import InvalidRaster, InvalidScene, ProviderError
from cube_assets.formats.archives import ArchiveMember, UnsafeArchive, tar_members, zip_members
from cube_assets.formats.landsat import is_landsat_folder, open_landsat_product
from cube_assets.names import check_name
from cube_assets.providers.base import Provider, SceneRef, check_search_arguments, select_scenes
from cube_assets.providers.http import DownloadResult, RemoteFile
from cube_assets.providers.local import (
    LANDSAT_FORMAT,
    PRODUCT_MANIFEST,
    LocalArchiveProvider,
    ProductManifest,
    is_complete_product,
)
from cube_assets.providers.multihash import file_multihash, parse_multihash
from cube_assets.quoting import quoted
from cube_assets.redaction import redact_url

logger = logging.getLogger(__name__)

#: Key of the store's own record inside ``product.json`` ``properties``.
STORE_PROPERTY = "raw_store"
STAC_ITEM_FILE = "item.json"
_MEDIA_SUFFIXES = {
    "image/jp2": ".jp2",
    "image/tiff": ".tif",
    "application/zip": ".zip",
    "application/x-tar": ".tar",
    "application/gzip": ".tar.gz",
    "application/xml": ".xml",
    "text/xml": ".xml",
    "application/json": ".json",
}
_ARCHIVE_SUFFIXES = (".tar.gz", ".tar.bz2", ".tar.xz", ".tgz", ".tar", ".zip")


class RawStoreError(ProviderError):
    """A scene could not be stored or read back from the raw store."""


class SceneNotStored(RawStoreError):
    """Offline, a scene lacks some of the requested bands (``missing``)."""

    def __init__(self, scene_id: str, missing: Sequence[str], detail: str = "") -> None:
        self.scene_id = scene_id
        self.missing = tuple(missing)
        suffix = f" ({detail})" if detail else ""
        super().__init__(
            f"{scene_id}: offline and bands {list(self.missing)} are not in the raw store{suffix}; "
            "run online once to fetch them"
        )


class CorruptFile(InvalidScene):
    """A stored or downloaded file is truncated, corrupt, or not what it should be."""


@runtime_checkable
class BandSource(Protocol):
    """A provider that delivers a scene band by band (the ``stac`` driver does)."""

    name: str

    def band_files(self, scene: SceneRef) -> Mapping[str, RemoteFile]:
        """The file of each band the provider can deliver for ``scene``."""
        ...

    def fetch_band(self, scene: SceneRef, band: str, destination: Path) -> DownloadResult:
        """Download ``band`` of ``scene`` to ``destination`` (size and checksum verified)."""
        ...


@dataclass(frozen=True)
class StoredScene:
    """A scene in the raw store: its folder, the file of each requested band, and who served it.

    ``fetched`` lists the bands this call downloaded (empty when everything was already stored).
    For a whole product (``.SAFE``) ``bands`` maps each band to its finest file in the product.
    """

    scene_id: str
    collection: str
    path: Path
    bands: Mapping[str, Path]
    provider: str | None
    fetched: tuple[str, ...] = ()
    properties: Mapping[str, Any] = field(default_factory=dict)


# --------------------------------------------------------------------------------------------
# Checking files


def _suffix_of(name: str) -> str:
    lower = name.lower()
    for suffix in _ARCHIVE_SUFFIXES:
        if lower.endswith(suffix):
            return suffix
    return PurePosixPath(lower).suffix


def verify_file(
    path: str | os.PathLike[str], *, size: int | None = None, checksum: str | None = None, kind: str | None = None
) -> None:
    """Check that the file at ``path`` is complete and sound before it is used.

    ``kind`` is a suffix (``.zip``, ``.tar.gz``, ``.tif``, ``.jp2``…; default: the file's own).
    Checks, cheapest first: the size (when given); the multihash ``checksum`` (when given);
    then by kind: every zip member's CRC, every tar member read to its end, a GeoTIFF opened
    with GDAL, its declared size checked against the largest scene (``raster.product_limits.
    ANY_SCENE``) and its last row read (the tiles written last), a JPEG 2000 file's box
    structure (box lengths add up to the file size, the codestream ends with its EOC marker)
    and header. Zip and tar files are first checked member by member with the rules of
    :mod:`cube_assets.formats.archives` (safe member paths, no links, size bound and
    compression ratio), so an archive that could not be extracted safely is never stored.

    Returns:
        None.

    Raises:
        CorruptFile: naming the file and what is wrong.
    """
    path = Path(path)
    where = path.name
    try:
        actual = path.stat().st_size
    except OSError as exc:
        raise CorruptFile(f"{where}: cannot be read ({exc.strerror})") from None
    if size is not None and actual != size:
        raise CorruptFile(f"{where}: {actual} bytes, expected {size}")
    if actual == 0:
        raise CorruptFile(f"{where}: empty file")
    if checksum:
        expected = parse_multihash(checksum, f"{where}: checksum")
        if expected.supported and file_multihash(path, expected.code, len(expected.digest)) != expected.hex():
            raise CorruptFile(f"{where}: {expected.algorithm} checksum mismatch")
    kind = (kind or _suffix_of(path.name)).lower()
    if kind == ".zip":
        _verify_zip(path, where)
    elif kind in (".tar", ".tar.gz", ".tgz", ".tar.bz2", ".tar.xz"):
        _verify_tar(path, where)
    elif kind in (".tif", ".tiff"):
        _verify_geotiff(path, where)
    elif kind in (".jp2", ".j2k"):
        _verify_jpeg2000(path, where)


def _verify_zip(path: Path, where: str) -> None:
    try:
        members = zip_members(path)
        with zipfile.ZipFile(path) as archive:
            for member, info in members:
                if not member.is_dir:
                    _read_to_end(path, member, archive.open(info))
    except UnsafeArchive as exc:
        raise CorruptFile(f"{exc} (an unsafe archive)") from exc
    except InvalidScene as exc:  # already names the file: "B04.zip: not a readable zip archive (…)"
        raise CorruptFile(str(exc)) from exc
    except (zipfile.BadZipFile, OSError, EOFError, ValueError) as exc:
        raise CorruptFile(f"{where}: zip member fails its CRC check or cannot be read ({exc})") from exc


def _read_to_end(path: Path, member: ArchiveMember, stream: Any) -> None:
    """Read ``stream`` to its end (the CRC is checked there), refusing more bytes than the member declares."""
    read = 0
    with stream:
        for chunk in iter(lambda: stream.read(1 << 20), b""):
            read += len(chunk)
            if read > member.size:
                raise UnsafeArchive(
                    f"{path.name}: member {quoted(member.name)} holds more than the {member.size} bytes it declares"
                )


def _verify_tar(path: Path, where: str) -> None:
    try:
        for member, stream in tar_members(path, read=True):
            if stream is not None:
                _read_to_end(path, member, stream)
    except UnsafeArchive as exc:
        raise CorruptFile(f"{exc} (an unsafe archive)") from exc
    except InvalidScene as exc:  # already names the file: "B04.tar: not a readable tar archive (…)"
        raise CorruptFile(str(exc)) from exc
    except (tarfile.TarError, OSError, EOFError, ValueError) as exc:
        raise CorruptFile(f"{where}: not a readable tar archive ({exc})") from exc


def _verify_geotiff(path: Path, where: str) -> None:
    import rasterio
    from rasterio.errors import RasterioError
    from rasterio.windows import Window

    from cube_assets.raster.product_limits import ANY_SCENE, check_declared_size

    try:
        with rasterio.open(path) as dataset:
            check_declared_size(dataset, where, ANY_SCENE)  # before the last row is read
            dataset.read(window=Window(0, dataset.height - 1, dataset.width, 1))
    except RasterioError as exc:
        raise CorruptFile(f"{where}: GDAL cannot read it ({exc})") from None
    except InvalidRaster as exc:
        raise CorruptFile(str(exc)) from exc


def _verify_jpeg2000(path: Path, where: str) -> None:
    size = path.stat().st_size
    with open(path, "rb") as stream:
        head = stream.read(12)
        if head[:4] == b"\xff\x4f\xff\x51":  # a bare codestream
            stream.seek(size - 2)
            if stream.read(2) != b"\xff\xd9":
                raise CorruptFile(f"{where}: JPEG 2000 codestream has no end marker (truncated)")
        else:
            position, codestream_end = 0, None
            while position < size:
                stream.seek(position)
                header = stream.read(16)
                if len(header) < 8:
                    raise CorruptFile(f"{where}: JPEG 2000 box header cut at byte {position} (truncated)")
                length, box = struct.unpack(">I4s", header[:8])
                if length == 1:
                    if len(header) < 16:
                        raise CorruptFile(f"{where}: JPEG 2000 box header cut at byte {position} (truncated)")
                    length = struct.unpack(">Q", header[8:16])[0]
                elif length == 0:
                    length = size - position
                if length < 8 or position + length > size:
                    raise CorruptFile(
                        f"{where}: JPEG 2000 box {box!r} at byte {position} runs past the end of the file (truncated)"
                    )
                if box == b"jp2c":
                    codestream_end = position + length
                position += length
            if codestream_end is None:
                raise CorruptFile(f"{where}: no JPEG 2000 codestream box")
            stream.seek(codestream_end - 2)
            if stream.read(2) != b"\xff\xd9":
                raise CorruptFile(f"{where}: JPEG 2000 codestream has no end marker (truncated)")
    import rasterio
    from rasterio.errors import RasterioError

    try:
        with rasterio.open(path) as dataset:
            if dataset.width <= 0 or dataset.height <= 0:
                raise CorruptFile(f"{where}: JPEG 2000 has no pixels")
    except RasterioError as exc:
        raise CorruptFile(f"{where}: GDAL cannot open it ({exc})") from None


# --------------------------------------------------------------------------------------------
# Band sources


class _LocalCogBands:
    """Band-by-band copies of a local COG-per-band product (``product.json`` + one file per band)."""

    def __init__(self, name: str) -> None:
        self.name = name

    def band_files(self, scene: SceneRef) -> Mapping[str, RemoteFile]:
        folder = Path(scene.href)
        bands = scene.properties.get("bands") or {}
        files = {}
        for band, relative in bands.items():
            path = folder / relative
            with contextlib.suppress(OSError):
                files[band] = RemoteFile(href=str(path), size=path.stat().st_size)
        return files

    def fetch_band(self, scene: SceneRef, band: str, destination: Path) -> DownloadResult:
        source = Path(self.band_files(scene)[band].href)
        destination.unlink(missing_ok=True)
        try:
            os.link(source, destination)
        except OSError:
            shutil.copyfile(source, destination)
        return DownloadResult(destination, destination.stat().st_size, None, 1, 0)


def band_source(provider: Provider | None, scene: SceneRef) -> BandSource | None:
    """The band-by-band source for ``scene`` from ``provider``, or ``None`` if it only delivers whole products.

    Returns:
        ``provider`` itself when it implements :class:`BandSource`; a local copier for a
        COG-per-band product on disk; else ``None``.
    """
    if provider is None:
        return None
    if isinstance(provider, BandSource):
        return provider
    if scene.properties.get("format") == "COG" and Path(scene.href).is_dir():
        return _LocalCogBands(provider.name)
    return None


def band_file_suffix(remote: RemoteFile) -> str:
    """The suffix to store a band under: from the URL path, else from the media type, else ``.bin``."""
    path = urlsplit(remote.href).path if "://" in remote.href else remote.href
    suffix = _suffix_of(PurePosixPath(path).name)
    if suffix and re.fullmatch(r"(\.[a-z0-9]{1,5}){1,2}", suffix):
        return suffix
    media = (remote.media_type or "").split(";")[0].strip().lower()
    return _MEDIA_SUFFIXES.get(media, ".bin")


# --------------------------------------------------------------------------------------------
# The store


@contextlib.contextmanager
def _scene_lock(folder: Path) -> Iterator[None]:
    """Hold an exclusive lock on the scene folder ``folder`` (a ``.{name}.lock`` file beside it).

    ``flock`` serializes processes and threads alike, so two partitions that share a scene
    fetch each band once and never write the same temporary file.
    """
    lock_path = folder.parent / f".{folder.name}.lock"
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    with exclusive_lock(lock_path):
        yield


def load_bands_into(
    folder: str | os.PathLike[str], scene: SceneRef, bands: Sequence[str], source: BandSource, *, force: bool = False
) -> StoredScene:
    """Store ``bands`` of ``scene`` band by band in ``folder`` with the rules of :class:`RawStore`.

    Returns:
        The :class:`StoredScene`.

    Raises:
        RawStoreError: if the folder's name or a band name cannot be a file name (the rule of
            :mod:`cube_assets.names`), the source has no file for a band, or a file is corrupt twice.
        ProviderError: if the source fails to deliver.
    """
    _check_name(Path(folder).name, "scene folder")
    wanted = list(dict.fromkeys(bands))
    for band in wanted:
        _check_name(band, "band")
    return RawStore(Path(folder).parent)._load_bands(scene, wanted, source, Path(folder), force=force, offline=False)


def _file_identity(path: Path) -> tuple[int, int] | None:
    try:
        status = path.stat()
    except OSError:
        return None
    return status.st_dev, status.st_ino


def _link_band(folder: Path, band: str, entry: Mapping[str, Any]) -> dict[str, Any]:
    """Store ``band`` as a hard link (else a copy) of the file of ``entry``, fetched for another band.

    Returns:
        The band's manifest entry: ``entry`` with its own file name.
    """
    final = folder / f"{band}{_suffix_of(entry['file'])}"
    if final.name != entry["file"]:
        staging = folder / f".{final.name}.link"
        staging.unlink(missing_ok=True)
        try:
            os.link(folder / entry["file"], staging)
        except OSError:
            shutil.copyfile(folder / entry["file"], staging)
        os.replace(staging, final)
    return {**entry, "file": final.name}


def _check_name(value: str, what: str) -> str:
    return check_name(value, f"raw store: {what}", RawStoreError)


def _json_scalar_properties(properties: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in properties.items() if isinstance(v, str | int | float | bool) or v is None}


class RawStore:
    """Scenes stored once, per band, under ``root`` (see the module docstring for the rules).

    ``offline`` is the default of :meth:`load`'s ``offline``. With ``verify_checksums`` a stored
    band's digest is recomputed on every load (slower; sizes and readability are always checked).
    """

    def __init__(self, root: str | os.PathLike[str], *, offline: bool = False, verify_checksums: bool = False) -> None:
        self.root = Path(root)
        self.offline = offline
        self.verify_checksums = verify_checksums

    def __repr__(self) -> str:
        return f"RawStore(root={str(self.root)!r}, offline={self.offline})"

    def collection_dir(self, collection: str) -> Path:
        """The folder of ``collection``'s scenes.

        Raises:
            RawStoreError: if the collection name cannot be a folder name.
        """
        return self.root / _check_name(collection, "collection")

    def scene_dir(self, collection: str, scene_id: str) -> Path:
        """The folder of a band-by-band scene.

        Raises:
            RawStoreError: if the collection or scene id cannot be a folder name.
        """
        return self.collection_dir(collection) / _check_name(scene_id, "scene id")

    # -- reading -------------------------------------------------------------------------------

    def _record(self, folder: Path) -> dict[str, Any]:
        """The manifest of ``folder`` as JSON (``{}`` if absent; unreadable ones are logged and ignored)."""
        path = folder / PRODUCT_MANIFEST
        try:
            document = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as exc:
            logger.warning("raw store: ignoring unreadable manifest %s: %s", path, exc)
            return {}
        return document if isinstance(document, dict) else {}

    @staticmethod
    def _entries(record: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
        store = (record.get("properties") or {}).get(STORE_PROPERTY) or {}
        entries = store.get("bands") or {}
        return {band: dict(entry) for band, entry in entries.items() if isinstance(entry, Mapping) and "file" in entry}

    def stored_bands(self, scene: SceneRef) -> dict[str, Path]:
        """The band files the manifest of ``scene`` lists (not checked; see :meth:`load`)."""
        folder = self.scene_dir(scene.collection, scene.scene_id)
        return {band: folder / entry["file"] for band, entry in self._entries(self._record(folder)).items()}

    def missing_bands(self, scene: SceneRef, bands: Sequence[str]) -> list[str]:
        """The bands of ``bands`` that the manifest of ``scene`` does not list (not checked)."""
        stored = self.stored_bands(scene)
        return [band for band in bands if band not in stored]

    def search(
        self,
        collection: str,
        geometry: BaseGeometry,
        start: datetime,
        end: datetime,
        max_cloud_cover: float | None = None,
    ) -> list[SceneRef]:
        """Scenes stored for ``collection`` that match the search (the rules of ``providers/base.py``).

        Returns:
            The stored scenes (band-by-band and whole products), sorted by datetime then id;
            their provider is ``"raw-store"``. A band-by-band scene is listed even when one of
            its files has gone missing, so that :meth:`load` can name the missing band rather
            than the scene silently disappearing from an offline run.

        Raises:
            ProviderError: if the arguments are invalid.
        """
        folder = self.collection_dir(collection)
        if not folder.is_dir():
            return []
        check_search_arguments(geometry, start, end, f"raw store search {collection}")
        scenes = {s.scene_id: s for s in LocalArchiveProvider(folder, name="raw-store").scenes()}
        for entry in sorted(folder.iterdir()):
            if entry.name.startswith(".") or not (entry / PRODUCT_MANIFEST).is_file():
                continue
            scene = self._manifest_scene(entry, collection)
            if scene is not None:
                scenes[scene.scene_id] = scene
        return select_scenes(
            scenes.values(),
            collection=collection,
            geometry=geometry,
            start=start,
            end=end,
            max_cloud_cover=max_cloud_cover,
        )

    def stored_scene(self, collection: str, scene_id: str) -> SceneRef | None:
        """The band-by-band scene ``scene_id`` as its stored manifest describes it, or None if it is not stored.

        Raises:
            RawStoreError: if the collection or scene id cannot be a folder name.
        """
        folder = self.scene_dir(collection, scene_id)
        if not (folder / PRODUCT_MANIFEST).is_file():
            return None
        return self._manifest_scene(folder, collection)

    def _manifest_scene(self, folder: Path, collection: str) -> SceneRef | None:
        record = self._record(folder)
        try:
            when = datetime.fromisoformat(str(record["datetime"]).replace("Z", "+00:00"))
            return SceneRef(
                provider="raw-store",
                collection=str(record.get("collection") or collection),
                scene_id=str(record["id"]),
                datetime=when,
                footprint=shape(record["footprint"]),
                cloud_cover=record.get("cloud_cover"),
                href=str(folder),
                properties={"format": "COG", "bands": dict(record.get("bands") or {})},
            )
        except (KeyError, TypeError, ValueError, AttributeError, ProviderError) as exc:
            logger.warning("raw store: skipping %s, its manifest is unreadable (%s)", folder, exc)
            return None

    # -- loading -------------------------------------------------------------------------------

    def load(
        self,
        scene: SceneRef,
        bands: Sequence[str],
        provider: Provider | None = None,
        *,
        force: bool = False,
        offline: bool | None = None,
    ) -> StoredScene:
        """Make ``bands`` of ``scene`` available in the store, fetching only what is missing.

        Returns:
            The :class:`StoredScene`.

        Raises:
            SceneNotStored: offline, when a requested band is missing or corrupt.
            RawStoreError: when a provider is needed but none is given, ``force`` is asked
                offline, the provider has no file for a band, or a fetched file is corrupt twice.
            ProviderError: when the provider fails to deliver (its message says why).
        """
        offline = self.offline if offline is None else offline
        if offline and force:
            raise RawStoreError(f"{scene.scene_id}: force=True needs to fetch, which offline mode forbids")
        wanted = list(dict.fromkeys(bands))
        for band in wanted:
            _check_name(band, "band")
        band_folder = self.scene_dir(scene.collection, scene.scene_id)
        if offline:
            if (band_folder / PRODUCT_MANIFEST).is_file():
                return self._load_bands(scene, wanted, None, band_folder, force=False, offline=True)
            return self._load_product(scene, wanted, None, force=False, offline=True)
        source = band_source(provider, scene)
        if source is None:
            return self._load_product(scene, wanted, provider, force=force, offline=False)
        return self._load_bands(scene, wanted, source, band_folder, force=force, offline=False)

    def _load_bands(
        self,
        scene: SceneRef,
        bands: list[str],
        source: BandSource | None,
        folder: Path,
        *,
        force: bool,
        offline: bool,
    ) -> StoredScene:
        """Load ``bands`` of a band-by-band scene in ``folder``, holding the scene's lock.

        The phases: verify the stored bands (corrupt ones are removed), then, online, fetch what
        is missing or comes from another provider, and drop the other provider's other bands.

        Returns:
            The :class:`StoredScene`; ``fetched`` names the bands fetched by this call.

        Raises:
            SceneNotStored: offline, when a requested band is missing or corrupt.
            RawStoreError: when the source has no file for a band, or a fetched file is corrupt twice.
            ProviderError: when the source fails to deliver.
        """
        with _scene_lock(folder):
            record = self._record(folder)
            entries = self._entries(record)
            to_fetch = self._verify_stored_bands(scene, bands, folder, record, entries, force=force)
            if offline:
                if to_fetch:
                    raise SceneNotStored(scene.scene_id, to_fetch)
                return self._stored(scene, folder, bands, entries, ())
            assert source is not None
            foreign = {band for band, entry in entries.items() if entry.get("provider") != source.name}
            to_fetch += [band for band in bands if band in foreign and band not in to_fetch]
            if not to_fetch:
                return self._stored(scene, folder, bands, entries, ())
            self._fetch_missing_bands(scene, to_fetch, source, folder, record, entries)
            self._drop_foreign_bands(scene, sorted(foreign - set(bands)), source.name, folder, record, entries)
            return self._stored(scene, folder, bands, entries, tuple(to_fetch))

    def _verify_stored_bands(
        self,
        scene: SceneRef,
        bands: list[str],
        folder: Path,
        record: Mapping[str, Any],
        entries: dict[str, dict[str, Any]],
        *,
        force: bool,
    ) -> list[str]:
        """Check the stored files of ``bands``; remove a corrupt one from disk and from ``entries`` (and the manifest).

        Bands that share one file (hard links) are checked once.

        Returns:
            The bands to fetch, in ``bands`` order: all of them with ``force``, else those not
            stored or found corrupt.
        """
        to_fetch = []
        verified: set[tuple[int, int]] = set()  # (device, inode): bands sharing one file are checked once
        for band in bands:
            entry = entries.get(band)
            if force or entry is None:
                to_fetch.append(band)
                continue
            try:
                identity = _file_identity(folder / entry["file"])
                if identity is None or identity not in verified:
                    verify_file(
                        folder / entry["file"],
                        size=entry.get("size"),
                        checksum=entry.get("checksum") if self.verify_checksums else None,
                    )
                    if identity is not None:
                        verified.add(identity)
            except CorruptFile as exc:
                logger.warning("raw store: %s band %s is corrupt (%s); removing it", scene.scene_id, band, exc)
                (folder / entry["file"]).unlink(missing_ok=True)
                del entries[band]
                self._write_record(folder, scene, record, entries)
                to_fetch.append(band)
        return to_fetch

    def _fetch_missing_bands(
        self,
        scene: SceneRef,
        to_fetch: list[str],
        source: BandSource,
        folder: Path,
        record: Mapping[str, Any],
        entries: dict[str, dict[str, Any]],
    ) -> None:
        """Fetch ``to_fetch`` from ``source`` into ``folder``, recording each band in ``entries`` and the manifest.

        A file that serves several bands is downloaded once and linked for the others; a band's
        previous file is removed once its new one is recorded.

        Raises:
            RawStoreError: when the source has no file for a band, or a fetched file is corrupt twice.
            ProviderError: when the source fails to deliver.
        """
        available = source.band_files(scene)
        unknown = [band for band in to_fetch if band not in available]
        if unknown:
            raise RawStoreError(
                f"{source.name}: scene {scene.scene_id} has no file for bands {unknown} (it has {sorted(available)})"
            )
        folder.mkdir(parents=True, exist_ok=True)
        self._write_stac_item(folder, scene)
        fetched_files: dict[str, dict[str, Any]] = {}  # href → entry: one download per file
        for band in to_fetch:
            previous = entries.get(band)
            remote = available[band]
            first = fetched_files.get(remote.href)
            if first is None:
                entries[band] = fetched_files[remote.href] = self._fetch_band(source, scene, band, remote, folder)
            else:  # e.g. every band served by one zipped product: link the file already fetched
                entries[band] = _link_band(folder, band, first)
            self._write_record(folder, scene, record, entries)
            if previous is not None and previous["file"] != entries[band]["file"]:
                (folder / previous["file"]).unlink(missing_ok=True)

    def _drop_foreign_bands(
        self,
        scene: SceneRef,
        dropped: list[str],
        provider: str,
        folder: Path,
        record: Mapping[str, Any],
        entries: dict[str, dict[str, Any]],
    ) -> None:
        """Remove ``dropped`` (bands another provider than ``provider`` stored) from ``entries``, the manifest and disk.

        The manifest is written before the files are deleted, so it never lists a missing file.
        """
        if not dropped:
            return
        logger.warning(
            "raw store: %s now comes from %s; dropping bands %s of another provider",
            scene.scene_id,
            provider,
            dropped,
        )
        files = [entries.pop(band)["file"] for band in dropped]
        self._write_record(folder, scene, record, entries)
        for name in files:
            (folder / name).unlink(missing_ok=True)

    def _fetch_band(
        self, source: BandSource, scene: SceneRef, band: str, remote: RemoteFile, folder: Path
    ) -> dict[str, Any]:
        suffix = band_file_suffix(remote)
        final = folder / f"{band}{suffix}"
        # A stable temporary name per provider: an interrupted download resumes on the next load,
        # and never from bytes another provider sent (they may differ).
        staging = folder / f".{band}{suffix}.{source.name}.download"
        problems = []
        for _ in range(2):
            result = source.fetch_band(scene, band, staging)
            try:
                verify_file(staging, size=remote.size, kind=suffix)
            except CorruptFile as exc:
                staging.unlink(missing_ok=True)
                problems.append(str(exc).replace(staging.name, final.name))
                logger.warning("raw store: %s from %s: %s; fetching again", final.name, source.name, problems[-1])
                continue
            checksum = result.checksum or file_multihash(staging)
            os.replace(staging, final)
            for leftover in folder.iterdir():  # partial files of other providers
                if leftover.name.lstrip(".").startswith(f"{band}{suffix}.") and ".download" in leftover.name:
                    leftover.unlink(missing_ok=True)
            return {
                "file": final.name,
                "size": result.size,
                "checksum": checksum,
                "provider": source.name,
                "source": redact_url(remote.href) if "://" in remote.href else remote.href,
                **({"asset": remote.asset} if remote.asset else {}),
            }
        raise RawStoreError(
            f"{source.name}: scene {scene.scene_id} band {band} is corrupt twice: {'; '.join(problems)}"
        )

    def _write_stac_item(self, folder: Path, scene: SceneRef) -> None:
        item = scene.properties.get("stac_item")
        if isinstance(item, Mapping):
            atomic_write_text(folder / STAC_ITEM_FILE, json.dumps(item, indent=2, sort_keys=True) + "\n")

    def _write_record(
        self, folder: Path, scene: SceneRef, record: Mapping[str, Any], entries: Mapping[str, Mapping[str, Any]]
    ) -> None:
        providers = sorted({entry.get("provider") for entry in entries.values() if entry.get("provider")})
        properties = {
            **_json_scalar_properties(scene.properties),
            **{k: v for k, v in (record.get("properties") or {}).items() if k != STORE_PROPERTY},
            STORE_PROPERTY: {"provider": providers[0] if len(providers) == 1 else None, "bands": dict(entries)},
        }
        manifest = ProductManifest(
            id=scene.scene_id,
            collection=scene.collection,
            datetime=scene.datetime,
            footprint=scene.footprint,
            cloud_cover=scene.cloud_cover,
            bands={band: entry["file"] for band, entry in sorted(entries.items())},
            properties=properties,
        )
        atomic_write_text(folder / PRODUCT_MANIFEST, manifest.to_json())

    def _stored(
        self,
        scene: SceneRef,
        folder: Path,
        bands: list[str],
        entries: Mapping[str, Mapping[str, Any]],
        fetched: tuple[str, ...],
    ) -> StoredScene:
        providers = {entries[band].get("provider") for band in bands}
        return StoredScene(
            scene_id=scene.scene_id,
            collection=scene.collection,
            path=folder,
            bands={band: folder / entries[band]["file"] for band in bands},
            provider=providers.pop() if len(providers) == 1 else None,
            fetched=fetched,
            properties={band: dict(entries[band]) for band in bands},
        )

    # -- whole products ------------------------------------------------------------------------

    def _load_product(
        self, scene: SceneRef, bands: list[str], provider: Provider | None, *, force: bool, offline: bool
    ) -> StoredScene:
        collection_dir = self.collection_dir(scene.collection)
        href = Path(scene.href)
        if href.parent == collection_dir:
            stored_path = href
        elif scene.properties.get("format") == LANDSAT_FORMAT:  # fetched under its product id
            stored_path = collection_dir / scene.scene_id
        else:
            stored_path = collection_dir / href.name
        already = True
        if offline:
            if not is_complete_product(stored_path):
                raise SceneNotStored(scene.scene_id, bands, f"product {stored_path.name} is not stored")
            path = stored_path
        else:
            if provider is None:
                raise RawStoreError(f"{scene.scene_id}: not stored and no provider given to fetch it")
            if force and stored_path.exists() and stored_path.parent == collection_dir:
                shutil.rmtree(stored_path)
            already = is_complete_product(stored_path)
            path = Path(provider.fetch(scene, collection_dir))
        files, missing = self._product_band_files(path, bands)
        if missing:
            if offline:
                raise SceneNotStored(scene.scene_id, missing, f"product {path.name} lacks them")
            raise RawStoreError(
                f"{provider.name if provider else 'raw-store'}: product {path.name} lacks bands {missing}"
            )
        return StoredScene(
            scene_id=scene.scene_id,
            collection=scene.collection,
            path=path,
            bands=files,
            provider=provider.name if provider is not None else None,
            fetched=() if already else tuple(bands),
        )

    @staticmethod
    def _product_band_files(path: Path, bands: list[str]) -> tuple[dict[str, Path], list[str]]:
        if path.name.endswith(".SAFE") or is_landsat_folder(path):
            from cube_assets.formats.sentinel2_safe import open_safe

            try:
                product: Any = open_safe(path) if path.name.endswith(".SAFE") else open_landsat_product(path)
            except InvalidScene as exc:
                raise RawStoreError(f"{path.name}: cannot be opened: {exc}") from exc
            files, missing = {}, []
            for band in bands:
                try:
                    files[band] = product.band_path(band)
                except InvalidScene:
                    missing.append(band)
            return files, missing
        from cube_assets.providers.local import read_product_manifest

        try:
            manifest = read_product_manifest(path)
        except InvalidScene as exc:
            raise RawStoreError(f"{path.name}: cannot be opened: {exc}") from exc
        files = {band: path / manifest.bands[band] for band in bands if band in manifest.bands}
        return files, [band for band in bands if band not in manifest.bands]
