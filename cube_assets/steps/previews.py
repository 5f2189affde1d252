"""Previews: a scene's own preview image handed between steps, and the thumbnails of merges and composites.

:func:`rgb_thumbnail` makes the small PNG (at most 256 px) a merge or composite embeds in its
materialization, so the Dagster UI shows an image; the full quicklook stays a file.

A scene's own preview image (a ``.SAFE``'s PVI) is handed from one step to the next through the store.

``surface_reflectance`` finds the preview inside the raw product and ``scene_cog`` turns it into
the quicklook. On the local store both steps see the same disk, so the entry just names the
file. On any other store (S3) the next step may run on another machine: :func:`share_preview`
publishes a copy of the preview and the entry names that instead (``pvi`` its URI, ``pvi_key`` its
key), and :func:`local_preview` fetches it into a staging folder for the step that reads it.
"""

from __future__ import annotations

import contextlib
import shutil
from collections.abc import Iterator, Mapping
from pathlib import Path

from cube_assets.cube_config import CubeConfig
from cube_assets.manifests import ReflectanceScene
from cube_assets.raster.quicklook import REFLECTANCE_DISPLAY_RANGE, THUMBNAIL_SIZE, thumbnail_png
from cube_assets.storage.layout import scene_preview_key
from cube_assets.storage.raster_store import LocalRasterStore, RasterStore

_CONTENT_TYPES = {".jp2": "image/jp2", ".png": "image/png", ".jpg": "image/jpeg", ".tif": "image/tiff"}


def share_preview(cube_name: str, scene: ReflectanceScene, store: RasterStore) -> ReflectanceScene:
    """Return the scene entry with its preview published to ``store`` when the store is not the local filesystem.

    The copy goes to :func:`~cube_assets.storage.layout.scene_preview_key` (once: an existing
    object is complete and reused). Entries without a preview, and every entry on a
    ``LocalRasterStore``, are returned unchanged.

    Raises:
        FileNotFoundError: when the entry's ``pvi`` file does not exist.
        OSError: when publishing fails.
    """
    if not scene.pvi or isinstance(store, LocalRasterStore) or scene.pvi_key:
        return scene
    source = Path(scene.pvi)
    if not source.is_file():
        raise FileNotFoundError(f"{scene.scene_id}: preview {source} does not exist")
    suffix = source.suffix.lower()
    key = scene_preview_key(cube_name, scene.scene_id, suffix)
    if not store.exists(key):
        with store.staging_dir() as staging:
            copy = staging / source.name
            shutil.copyfile(source, copy)
            store.publish(copy, key, content_type=_CONTENT_TYPES.get(suffix, "application/octet-stream"))
    return scene.model_copy(update={"pvi": store.uri(key), "pvi_key": key})


@contextlib.contextmanager
def local_preview(scene: ReflectanceScene, store: RasterStore) -> Iterator[ReflectanceScene]:
    """Yield the scene entry with ``pvi`` naming a local file: the shared copy fetched into a staging folder.

    Entries whose preview was not shared (no ``pvi_key``) are yielded unchanged. The staging
    folder is removed on exit.

    Raises:
        FileNotFoundError: when the shared copy is missing from the store.
    """
    key = scene.pvi_key
    if not key:
        yield scene
        return
    with store.staging_dir() as staging:
        local = staging / key.rsplit("/", 1)[-1]
        local.write_bytes(store.read_bytes(key))
        yield scene.model_copy(update={"pvi": str(local)})


def rgb_thumbnail(
    cube: CubeConfig, bands: Mapping[str, str], store: RasterStore, max_size: int = THUMBNAIL_SIZE
) -> bytes | None:
    """A true-colour PNG thumbnail of one merge or composite (``bands``: band name → URI in ``store``).

    Stretched over the spectral bands' display range (``REFLECTANCE_DISPLAY_RANGE``, what the
    catalog records and the map tiles use), like the composites' quicklooks; read from the COGs'
    overviews, so a large tile costs a few small reads.

    Returns:
        The PNG bytes, or None when the cube has no red, green and blue bands or ``bands``
        lacks one of them.

    Raises:
        InvalidRaster: when a band file cannot be read.
    """
    rgb = [cube.band_by_common_name(colour) for colour in ("red", "green", "blue")]
    names = [band.name for band in rgb if band is not None]
    if len(names) != 3 or any(name not in bands for name in names):
        return None
    with store.gdal_environment():
        return thumbnail_png(
            *(store.gdal_path(bands[name]) for name in names), max_size=max_size, value_range=REFLECTANCE_DISPLAY_RANGE
        )
