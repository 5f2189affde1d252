"""Scene stages: surface reflectance and publishing (COGs, quicklook, footprint, indexes) of one scene.

Scene outputs are keyed by scene id, not by tile: a scene over two tiles is processed by
whichever tile partition gets to it first and reused by the other (files appear atomically,
so an existing key is a complete file).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from cube_assets.cube_config import CubeConfig
from cube_assets.errors import InvalidScene
from cube_assets.raster.cog import COG_CONTENT_TYPE, cog_from_file
from cube_assets.raster.indexes import compile_expression, write_index
from cube_assets.raster.quicklook import quicklook_from_files
from cube_assets.raster.reflectance import copy_band, write_reflectance
from cube_assets.sources.sentinel2_safe import open_safe
from cube_assets.steps.indexes import index_inputs
from cube_assets.storage.layout import scene_cog_key, scene_reflectance_key
from cube_assets.storage.raster_store import RasterStore



def reflectance_for_scene(cube: CubeConfig, scene: Mapping[str, Any], store: RasterStore) -> dict[str, Any]:
    """Write each cube band of a Level-2A ``.SAFE`` scene as reflectance × 10000 and copy its quality band.

    Each band is read at the cube's read resolution (or the finest coarser one the product
    has) with the product's own ``BOA_ADD_OFFSET`` and quantification value.

    Returns:
        The scene entry extended with ``bands`` and ``quality`` URIs and the radiometry used.

    Raises:
        InvalidScene: when the product is not a Level-2A ``.SAFE`` or lacks a band.
    """
    product_path = Path(scene["path"])
    if not product_path.name.endswith(".SAFE"):
        raise InvalidScene(f"{scene['scene_id']}: only Sentinel-2 .SAFE products are supported so far ({product_path})")
    product = open_safe(product_path)
    metadata = product.metadata
    if metadata.product_type != "L2A":
        raise InvalidScene(f"{metadata.product_id}: is {metadata.product_type}; Level-1C needs Sen2Cor first")
    resolution = int(round(cube.read_resolution))
    bands = {}
    for band in cube.bands:
        source = product.band_path(band.source_band, resolution)
        offset = metadata.offset(band.source_band)
        bands[band.name] = _produce(
            store, scene_reflectance_key(cube.name, metadata.product_id, band.name),
            lambda out, source=source, offset=offset: write_reflectance(
                source, out, add_offset=offset, quantification=metadata.quantification_value
            ),
        )
    quality_source = product.band_path(cube.quality.band, resolution)
    quality = _produce(
        store, scene_reflectance_key(cube.name, metadata.product_id, cube.quality.band),
        lambda out: copy_band(quality_source, out, nodata=cube.quality.nodata),
    )
    return {
        **scene,
        "bands": bands,
        "quality": quality,
        "radiometry": {
            "processing_baseline": metadata.processing_baseline,
            "quantification_value": metadata.quantification_value,
            "offsets": {b.name: metadata.offset(b.source_band) for b in cube.bands},
        },
    }


def publish_scene(cube: CubeConfig, scene: Mapping[str, Any], store: RasterStore) -> dict[str, Any]:
    """Publish one scene: a COG per band and for the quality band, a quicklook, its footprint and indexes.

    The footprint is the product's own (from its metadata), written as GeoJSON.

    Returns:
        The scene entry with ``bands``, ``quality``, ``indexes``, ``quicklook`` and ``footprint_file`` URIs.

    Raises:
        InvalidRaster: when a reflectance file is unreadable or a COG fails validation.
    """
    scene_id = scene["scene_id"]
    sr_paths = {band: store.gdal_path(uri) for band, uri in scene["bands"].items()}
    bands = {
        band: _produce(store, scene_cog_key(cube.name, scene_id, band),
                       lambda out, src=src: cog_from_file(src, out, overview_resampling="average"))
        for band, src in sr_paths.items()
    }
    quality = _produce(
        store, scene_cog_key(cube.name, scene_id, cube.quality.band),
        lambda out: cog_from_file(store.gdal_path(scene["quality"]), out, overview_resampling="nearest"),
    )
    indexes = {}
    inputs = index_inputs(cube, sr_paths)
    for name, expression in cube.indexes.items():
        compiled = compile_expression(expression, inputs.keys())
        indexes[name] = _produce(
            store, scene_cog_key(cube.name, scene_id, name),
            lambda out, compiled=compiled: _index_cog(compiled, inputs, out, cube.nodata),
        )
    rgb = [cube.band_by_common_name(c) for c in ("red", "green", "blue")]
    quicklook = quicklook_key = None
    if all(rgb):
        quicklook_key = scene_cog_key(cube.name, scene_id, "quicklook", suffix="png")
        quicklook = _produce(
            store, quicklook_key,
            lambda out: quicklook_from_files(*(sr_paths[b.name] for b in rgb), out),  # type: ignore[union-attr]
            content_type="image/png",
        )
    footprint_key = scene_cog_key(cube.name, scene_id, "footprint", suffix="geojson")
    footprint_file = store.write_bytes(
        footprint_key, json.dumps({"type": "Feature", "id": scene_id, "properties": {}, "geometry": scene["footprint"]}).encode(),
        content_type="application/geo+json",
    )
    return {
        **{k: v for k, v in scene.items() if k not in ("bands", "quality")},
        "bands": bands,
        "quality": quality,
        "indexes": indexes,
        "quicklook": quicklook,
        "quicklook_key": quicklook_key,
        "footprint_file": footprint_file,
    }


def _index_cog(compiled, inputs: Mapping[str, str], out: Path, nodata: float) -> Path:
    raw = out.with_name(out.stem + ".raw.tif")
    write_index(compiled, inputs, raw, nodata=nodata)
    try:
        return cog_from_file(raw, out, overview_resampling="average")
    finally:
        raw.unlink(missing_ok=True)


def _produce(store: RasterStore, key: str, make: Callable[[Path], Path], content_type: str = COG_CONTENT_TYPE) -> str:
    """Return the URI of ``key``, building it with ``make(local_path)`` and publishing it if absent."""
    if store.exists(key):
        return store.uri(key)
    with store.staging_dir() as staging:
        local = make(staging / key.rsplit("/", 1)[-1])
        return store.publish(Path(local), key, content_type=content_type)
