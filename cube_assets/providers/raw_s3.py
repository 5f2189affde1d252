"""Raw scenes kept in S3 as well, so that no step relies on a disk another step wrote (``CUBE_ENV=prod``).

The raw store (``providers/raw_store.py``) keeps scenes in a local folder. In production that
folder is only the scratch copy of one process: :class:`RawSceneMirror` uploads each scene that
``raw_scene`` stored to the S3 store, and a later step, in another process, pod or machine,
pulls the scene from there into its own raw folder. :class:`MirroredRawStore` is the raw store
that pulls before and pushes after :meth:`RawStore.load`.

Layout under the S3 store's prefix (``_raw`` cannot be a cube's key: cube names start with a letter)::

    _raw/{collection}/{path}                     a scene's files, at their path in the collection's folder
    _raw/{collection}/_scenes/{scene_id}.json    the scene's record

The record names the scene's entry in the collection folder (``root``: a band-by-band scene's
folder, a ``.SAFE``, a Landsat folder or a single zipped product), every file of it with its
size and modification time, and what an offline search needs (datetime, footprint, cloud cover).
It is written last, in one PUT, after every file it lists is uploaded: a scene whose record
exists is complete in S3, and a pull fetches only the files a record lists. A pulled file gets
the modification time recorded for it, so pushing a scene again uploads only the files whose
size or time changed (bands fetched later, a band fetched again).

What is pushed: for a band-by-band scene (a folder with ``product.json``) the manifest,
``item.json`` and the band files the manifest lists (not what a later step extracts beside
them); for a whole product, every file in it. Hidden names (temporary downloads, locks) never.
A pull into a folder that does not exist yet assembles it under a hidden name and renames it into
place, so a half-pulled product is never taken for a complete one.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import uuid
from collections.abc import Mapping, Sequence
from datetime import datetime
from pathlib import Path, PurePosixPath
from typing import Any

from shapely.geometry import mapping, shape
from shapely.geometry.base import BaseGeometry

from cube_assets.errors import ProviderError
from cube_assets.names import name_problem, relative_path_problem
from cube_assets.providers.base import Provider, SceneRef, select_scenes
from cube_assets.providers.local import PRODUCT_MANIFEST, read_product_manifest
from cube_assets.providers.raw_store import STAC_ITEM_FILE, RawStore, StoredScene
from cube_assets.quoting import quoted
from cube_assets.storage.s3_store import S3RasterStore

logger = logging.getLogger(__name__)

#: Key prefix of the raw scenes inside the S3 store, and of each collection's scene records.
RAW_PREFIX = "_raw"
RECORDS = "_scenes"
RECORD_FORMAT = 1


class RawMirrorError(ProviderError):
    """A scene could not be pushed to or pulled from the raw scenes in S3."""


def _check_component(value: str, what: str) -> str:
    """``value`` if it passes the name rule of :mod:`cube_assets.names` (the raw store's rule too)."""
    problem = name_problem(value)
    if problem is not None:
        raise RawMirrorError(f"raw mirror: {what} {quoted(value)} cannot be a key component: it {problem}")
    return value


def _is_metadata(relative: str) -> bool:
    """Files that make a product look complete (pulled last when a folder is updated in place)."""
    name = PurePosixPath(relative).name
    return name == PRODUCT_MANIFEST or name.startswith("MTD_") or "_MTL." in name


class RawSceneMirror:
    """The raw scenes of the local raw folder ``local_root`` mirrored in ``store`` (see the module docstring).

    Raises (constructor):
        RawMirrorError: when ``store`` is not an S3 store.
    """

    def __init__(self, store: S3RasterStore, local_root: str | os.PathLike[str]) -> None:
        if not isinstance(store, S3RasterStore):
            raise RawMirrorError(f"raw mirror: needs an S3 store, got {store!r}")
        self.store = store
        self.local_root = Path(local_root)

    def __repr__(self) -> str:
        return f"RawSceneMirror({self.store.uri(RAW_PREFIX)}, local_root={str(self.local_root)!r})"

    # -- keys ------------------------------------------------------------------------------------

    def record_key(self, collection: str, scene_id: str) -> str:
        """The store key of the record of ``scene_id``.

        Raises:
            RawMirrorError: when the collection or scene id cannot be a key component.
        """
        return (
            f"{RAW_PREFIX}/{_check_component(collection, 'collection')}/{RECORDS}/"
            f"{_check_component(scene_id, 'scene id')}.json"
        )

    def file_key(self, collection: str, relative: str) -> str:
        """The store key of the file at ``relative`` (a POSIX path) in ``collection``'s folder."""
        return f"{RAW_PREFIX}/{_check_component(collection, 'collection')}/{relative}"

    def record(self, collection: str, scene_id: str) -> dict[str, Any] | None:
        """The record of ``scene_id`` in S3, or ``None`` when the scene was never pushed.

        Raises:
            RawMirrorError: when the record exists but cannot be read, or S3 fails.
        """
        key = self.record_key(collection, scene_id)
        try:
            document = json.loads(self.store.read_bytes(key))
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as exc:
            raise RawMirrorError(f"raw mirror: record {self.store.uri(key)} cannot be read: {exc}") from exc
        if not isinstance(document, dict) or not isinstance(document.get("files"), dict) or "root" not in document:
            raise RawMirrorError(f"raw mirror: record {self.store.uri(key)} is not a scene record")
        return document

    # -- push ------------------------------------------------------------------------------------

    def _scene_files(self, entry: Path) -> list[Path]:
        """The files of the stored scene at ``entry`` that belong in S3 (see the module docstring)."""
        if entry.is_file():
            return [entry]
        if not entry.is_dir():
            raise RawMirrorError(f"raw mirror: stored scene {entry} does not exist")
        if (entry / PRODUCT_MANIFEST).is_file():
            manifest = read_product_manifest(entry)
            names = [PRODUCT_MANIFEST, STAC_ITEM_FILE, *manifest.bands.values()]
            return [entry / name for name in dict.fromkeys(names) if (entry / name).is_file()]
        files = []
        for folder, dirs, names in os.walk(entry):
            dirs[:] = sorted(d for d in dirs if not d.startswith("."))
            files += [Path(folder) / name for name in sorted(names) if not name.startswith(".")]
        return files

    def push(self, scene: SceneRef, entry: str | os.PathLike[str]) -> dict[str, Any]:
        """Upload the stored scene at ``entry`` (in its collection's local folder) and write its record last.

        Only files whose size or modification time differ from the record are uploaded; files
        the previous record listed and this one does not are deleted from S3 afterwards.

        Returns:
            The record written (or the unchanged one).

        Raises:
            RawMirrorError: when ``entry`` is not inside the collection's local folder or is missing.
            OSError: when an upload fails (the previous record, if any, still describes S3).
        """
        collection_dir = self.local_root / _check_component(scene.collection, "collection")
        entry = Path(entry)
        try:
            root = entry.relative_to(collection_dir).as_posix()
        except ValueError as exc:
            raise RawMirrorError(f"raw mirror: {entry} is not in the raw folder {collection_dir}") from exc
        _check_component(root, "stored scene")
        previous = self.record(scene.collection, scene.scene_id) or {}
        before: Mapping[str, Any] = previous.get("files", {}) if previous.get("root") == root else {}
        files: dict[str, dict[str, int]] = {}
        uploaded = []
        for path in self._scene_files(entry):
            relative = path.relative_to(collection_dir).as_posix()
            problem = relative_path_problem(relative, root)
            if problem is not None:
                raise RawMirrorError(
                    f"raw mirror: {scene.scene_id}: file {quoted(relative)} cannot be a key: it {problem}"
                )
            status = path.stat()
            files[relative] = {"size": status.st_size, "mtime_ns": status.st_mtime_ns}
            if before.get(relative) != files[relative]:
                self.store.upload_file(path, self.file_key(scene.collection, relative))
                uploaded.append(relative)
        record = {
            "format": RECORD_FORMAT,
            "scene_id": scene.scene_id,
            "collection": scene.collection,
            "root": root,
            "files": files,
            # Through JSON, so that it compares equal with the previous record's.
            "scene": json.loads(
                json.dumps(
                    {
                        "datetime": scene.datetime.isoformat(),
                        "footprint": mapping(scene.footprint),
                        "cloud_cover": scene.cloud_cover,
                    }
                )
            ),
        }
        if (
            uploaded
            or previous.get("root") != root
            or set(before) != set(files)
            or previous.get("scene") != record["scene"]
        ):
            self.store.write_bytes(
                self.record_key(scene.collection, scene.scene_id),
                json.dumps(record, sort_keys=True).encode(),
                content_type="application/json",
            )
            logger.info("raw mirror: pushed %s (%d of %d files uploaded)", scene.scene_id, len(uploaded), len(files))
        else:
            record = previous
        for relative in sorted(set(previous.get("files", {})) - set(files)):
            self.store.delete(self.file_key(scene.collection, relative))
        return record

    # -- pull ------------------------------------------------------------------------------------

    def _download(self, collection: str, relative: str, destination: Path, meta: Mapping[str, Any]) -> bool:
        """Download one listed file unless ``destination`` already matches its size and time; return whether it did."""
        try:
            status = destination.stat()
            if status.st_size == meta["size"] and status.st_mtime_ns == meta["mtime_ns"]:
                return False
        except FileNotFoundError:
            pass
        self.store.download_file(self.file_key(collection, relative), destination)
        os.utime(destination, ns=(meta["mtime_ns"], meta["mtime_ns"]))
        return True

    def pull(self, collection: str, scene_id: str) -> Path | None:
        """Bring the scene's files from S3 into the local raw folder (only those missing or different).

        Returns:
            The scene's local entry (folder or file), or ``None`` when S3 has no record of it.

        Raises:
            RawMirrorError: when the record is unreadable or lists a path outside the collection.
            FileNotFoundError: when a file the record lists is missing from S3.
            OSError: when a download fails.
        """
        record = self.record(collection, scene_id)
        if record is None:
            return None
        root = _check_component(str(record["root"]), "stored scene")
        files: Mapping[str, Mapping[str, Any]] = record["files"]
        for relative in files:
            problem = relative_path_problem(relative, root)
            if problem is not None:
                raise RawMirrorError(f"raw mirror: record of {scene_id} lists {quoted(relative)}, which {problem}")
            if PurePosixPath(relative).parts[0] != root:
                raise RawMirrorError(f"raw mirror: record of {scene_id} lists {quoted(relative)}, outside {root}")
        collection_dir = self.local_root / _check_component(collection, "collection")
        entry = collection_dir / root
        # Metadata last: a folder being updated must not look complete before its data is there.
        order = sorted(files, key=lambda relative: (_is_metadata(relative), relative))
        if not entry.exists() and all(len(PurePosixPath(r).parts) > 1 for r in files):
            staging = collection_dir / f".{root}.{uuid.uuid4().hex[:12]}.pull"
            try:
                for relative in order:
                    self._download(
                        collection, relative, staging.joinpath(*PurePosixPath(relative).parts[1:]), files[relative]
                    )
                try:
                    os.rename(staging, entry)
                except OSError:  # another process pulled it first; check it below
                    pass
            finally:
                shutil.rmtree(staging, ignore_errors=True)
        fetched = sum(self._download(collection, r, collection_dir / r, files[r]) for r in order)
        if fetched:
            logger.info("raw mirror: pulled %d files of %s", fetched, scene_id)
        return entry

    def pull_matching(
        self,
        collection: str,
        geometry: BaseGeometry,
        start: datetime,
        end: datetime,
        max_cloud_cover: float | None = None,
    ) -> list[str]:
        """Pull every scene of ``collection`` in S3 that matches the search (the rules of ``providers/base.py``).

        Returns:
            The scene ids pulled, sorted by datetime then id.

        Raises:
            RawMirrorError: when a record is unreadable; OSError when S3 fails.
        """
        prefix = f"{RAW_PREFIX}/{_check_component(collection, 'collection')}/{RECORDS}/"
        candidates = []
        for key in self.store.list_keys(prefix):
            scene_id = key[len(prefix) :].removesuffix(".json")
            record = self.record(collection, scene_id)
            if record is None:
                continue
            try:
                found = record["scene"]
                candidates.append(
                    SceneRef(
                        provider="raw-mirror",
                        collection=collection,
                        scene_id=scene_id,
                        datetime=datetime.fromisoformat(found["datetime"]),
                        footprint=shape(found["footprint"]),
                        cloud_cover=found.get("cloud_cover"),
                        href=self.store.uri(key),
                    )
                )
            except (KeyError, TypeError, ValueError, AttributeError) as exc:
                raise RawMirrorError(
                    f"raw mirror: record {self.store.uri(key)} has no usable scene metadata: {exc}"
                ) from exc
        selected = select_scenes(
            candidates, collection=collection, geometry=geometry, start=start, end=end, max_cloud_cover=max_cloud_cover
        )
        for scene in selected:
            self.pull(collection, scene.scene_id)
        return [scene.scene_id for scene in selected]


class MirroredRawStore(RawStore):
    """A :class:`RawStore` whose scenes also live in S3: pulled before each load, pushed after each fetch.

    The local folder ``root`` is a cache: a scene another process stored is pulled from S3 before
    :meth:`load` looks at the folder (so nothing is fetched twice from a provider), and after an
    online load the scene is pushed. An offline :meth:`search` first pulls the matching scenes.
    """

    def __init__(self, root: str | os.PathLike[str], mirror: RawSceneMirror, **options: Any) -> None:
        super().__init__(root, **options)
        if Path(mirror.local_root) != Path(root):
            raise RawMirrorError(f"raw mirror: its local root {mirror.local_root} is not the raw store's {root}")
        self.mirror = mirror

    def __repr__(self) -> str:
        return f"MirroredRawStore(root={str(self.root)!r}, offline={self.offline}, mirror={self.mirror!r})"

    def search(
        self,
        collection: str,
        geometry: BaseGeometry,
        start: datetime,
        end: datetime,
        max_cloud_cover: float | None = None,
    ) -> list[SceneRef]:
        """Pull the matching scenes from S3, then search the local folder (see :meth:`RawStore.search`)."""
        self.mirror.pull_matching(collection, geometry, start, end, max_cloud_cover)
        return super().search(collection, geometry, start, end, max_cloud_cover)

    def load(
        self, scene: SceneRef, bands: Sequence[str], provider: Provider | None = None, **options: Any
    ) -> StoredScene:
        """Pull ``scene`` from S3, load it as :meth:`RawStore.load` does, and push it back when online.

        Raises:
            What :meth:`RawStore.load` raises, and ``RawMirrorError`` or ``OSError`` when S3 fails.
        """
        self.mirror.pull(scene.collection, scene.scene_id)
        stored = super().load(scene, bands, provider, **options)
        offline = options.get("offline")
        if not (self.offline if offline is None else offline):
            self.mirror.push(scene, stored.path)
        return stored
