"""Scene stages: surface reflectance and publishing (COGs, quicklook, footprint, indexes) of one scene.

Scene outputs are keyed by scene id, not by tile: a scene over two tiles is processed by
whichever tile partition gets to it first and reused by the other (files appear atomically,
so an existing key is a complete file).

Inputs: Sentinel-2 L2A ``.SAFE`` products are read with their own offset and quantification;
Sentinel-2 L1C products first become L2A through the ``to_l2a`` callable (Sen2Cor, see
``resources/sen2cor.py``); Landsat Collection 2 Level-2 folders are read with the MTL's scale
and offset, ``QA_PIXEL`` being their quality band. Zipped ``.SAFE`` products (a ``.zip`` file,
or the band files of a raw-store scene that are zips, as a Copernicus Data Space ``Product``
asset is) are extracted first (``formats/safe_archive.py``). Scenes a ``stac`` provider stored
band by band (a ``product.json`` folder with the ``item.json`` they came from) are read with
the radiometry their STAC Item gives each band (``formats/stac_item.py``).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from shapely.geometry import mapping

from cube_assets.cube_config import BandConfig, CubeConfig
from cube_assets.errors import InvalidScene
from cube_assets.formats.landsat import LANDSAT_C2_L2, is_landsat_folder, normalize_landsat_band, open_landsat_product
from cube_assets.formats.safe_archive import extract_safe_zip, safe_members
from cube_assets.formats.sen2cor import Sen2CorOutput
from cube_assets.formats.sentinel2_safe import SafeProduct, open_safe
from cube_assets.formats.stac_item import (
    BandRadiometry,
    asset_key_for_band,
    band_index_in_asset,
    generic_radiometry,
    landsat_radiometry,
    sentinel2_radiometry,
)
from cube_assets.manifests import IndexPixels, RawScene, ReflectanceScene, SceneCog, Sen2CorRecord
from cube_assets.providers.base import SENTINEL2_L1C
from cube_assets.providers.local import PRODUCT_MANIFEST, ProductManifest, read_product_manifest
from cube_assets.raster.bandpass import adjusted_scale_and_offset
from cube_assets.raster.cog import COG_CONTENT_TYPE, cog_from_file
from cube_assets.raster.footprint import valid_data_footprint
from cube_assets.raster.indexes import CompiledExpression, IndexWrite, compile_expression, write_index
from cube_assets.raster.inputs import enable_openjpeg_threads, open_input, reading_from
from cube_assets.raster.masks import rules_from_config
from cube_assets.raster.product_limits import LANDSAT_C2, SENTINEL2, ProductLimits, limits_for_collection
from cube_assets.raster.quicklook import quicklook_from_files, write_quicklook
from cube_assets.raster.reflectance import (
    FROM_FILE,
    LANDSAT_C2_FILL,
    SENTINEL2_L2A_NODATA,
    copy_band,
    write_landsat_reflectance,
    write_quality_classes,
    write_quality_with_radsat,
    write_reflectance,
)
from cube_assets.steps.indexes import index_inputs, index_pixel_counts
from cube_assets.storage.layout import scene_cog_key, scene_reflectance_key
from cube_assets.storage.raster_store import RasterStore

#: Key of the raw store's record inside ``product.json`` properties (``providers/raw_store.py``).
_RAW_STORE_PROPERTY = "raw_store"
_STAC_ITEM_FILE = "item.json"


def reflectance_for_scene(
    cube: CubeConfig,
    scene: RawScene,
    store: RasterStore,
    *,
    to_l2a: Callable[[Path], Sen2CorOutput] | None = None,
) -> ReflectanceScene:
    """Write each cube band of a scene as reflectance × 10000 and copy its quality band.

    Sentinel-2 ``.SAFE``: each band is read at the cube's read resolution (or the finest coarser
    one the product has) with the product's own ``BOA_ADD_OFFSET`` and quantification value; a
    Level-1C product is first turned into Level-2A by ``to_l2a`` (Sen2Cor), and the entry gets
    a ``sen2cor`` record. The product's preview (``pvi``) is passed on for the quicklook.
    Landsat C2 Level-2 folder: each ``SR_B*`` band with the MTL's scale and offset; the
    footprint is cleared, because the MTL only knows the image frame, so publishing traces the
    valid data instead. A zipped ``.SAFE`` (the scene's ``.zip``, or zips as its raw-store band
    files) is extracted beside it first and read as a ``.SAFE``. A raw-store scene stored band
    by band is read file by file, each band with the scale and offset of its STAC Item (see
    :func:`_stac_band_reflectance`).

    Returns:
        The scene entry extended with ``bands`` and ``quality`` URIs and the radiometry used
        (a ``ReflectanceScene``).

    Raises:
        InvalidScene: when the product is neither a Sentinel-2 ``.SAFE`` (or a zip of one), a
            Landsat C2 Level-2 folder nor a band-by-band raw-store scene, lacks a band, asks
            for a non-reflectance Landsat band, is Level-1C and no ``to_l2a`` is given, or its
            STAC Item does not tell the band's radiometry.
        UnsafeArchive: when a zipped product has a member that would land outside its folder,
            is a bomb, or holds another product than the scene (its id is the ``.SAFE`` name).
        Sen2CorError: from ``to_l2a`` when Sen2Cor fails or times out.
    """
    enable_openjpeg_threads()  # JPEG 2000 tiles decode with OpenJPEG's threads, one tile at a time
    product_path = Path(scene.path)
    if product_path.is_file() and product_path.name.lower().endswith(".zip"):
        product_path = extract_safe_zip(product_path, product_path.parent, product_id=scene.scene_id)
    elif product_path.is_dir() and (product_path / PRODUCT_MANIFEST).is_file():
        manifest = read_product_manifest(product_path)
        archive = _product_archive(product_path, manifest)
        if archive is None:
            return _stac_band_reflectance(cube, scene, store, product_path, manifest)
        product_path = extract_safe_zip(archive, product_path, product_id=manifest.id)
    if product_path.is_dir() and not product_path.name.endswith(".SAFE") and is_landsat_folder(product_path):
        return _landsat_reflectance(cube, scene, store, product_path)
    if not product_path.name.endswith(".SAFE"):
        raise InvalidScene(
            f"{scene.scene_id}: neither a Sentinel-2 .SAFE nor a Landsat C2 Level-2 folder with an MTL ({product_path})"
        )
    product, sen2cor = _open_l2a(cube, product_path, to_l2a)
    return _sentinel2_reflectance(cube, scene, store, product, sen2cor)


def reflectance_for_cube_scene(
    cube: CubeConfig,
    scene: RawScene,
    store: RasterStore,
    *,
    to_l2a: Callable[[Path], Sen2CorOutput] | None = None,
) -> ReflectanceScene:
    """:func:`reflectance_for_scene` of a scene of ``cube``, read as its source says.

    A cube without ``sources`` reads every scene as itself. In a cube with sources the scene is
    read through its source's view (:meth:`~cube_assets.cube_config.CubeConfig.source_view`:
    that source's band names, quality band and, for Landsat, the cube's bandpass adjustment),
    and its quality band is then classified by the source's rules into the cube's quality band
    of ``QualityClass`` codes, so scenes of every source composite together.

    Returns:
        The scene entry, as :func:`reflectance_for_scene` returns it; ``quality`` is the
        classified band in a cube with sources.

    Raises:
        InvalidScene: as :func:`reflectance_for_scene`, or when the scene names no source of the cube.
        UnsafeArchive: as :func:`reflectance_for_scene`.
        Sen2CorError: as :func:`reflectance_for_scene`.
    """
    if not cube.sources:
        return reflectance_for_scene(cube, scene, store, to_l2a=to_l2a)
    if scene.source not in cube.source_names:
        raise InvalidScene(
            f"{scene.scene_id}: source {scene.source!r} is not one of cube {cube.name}'s sources {cube.source_names}"
        )
    view = cube.source_view(scene.source)
    entry = reflectance_for_scene(view, scene, store, to_l2a=to_l2a)
    raw_quality = store.gdal_path(entry.quality)
    rules = rules_from_config(view.quality.rules)
    quality = _produce(
        store,
        scene_reflectance_key(cube.name, scene.scene_id, cube.quality.band),
        lambda out: write_quality_classes(raw_quality, out, rules, tile_size=cube.file_block_size),
    )
    return entry.model_copy(update={"quality": quality})


def _open_l2a(
    cube: CubeConfig,
    product_path: Path,
    to_l2a: Callable[[Path], Sen2CorOutput] | None,
) -> tuple[SafeProduct, dict[str, Any] | None]:
    """Open the ``.SAFE`` at ``product_path`` as Level-2A, running ``to_l2a`` (Sen2Cor) on a Level-1C product.

    Returns:
        The Level-2A product, and Sen2Cor's record (``None`` when the product was Level-2A already).

    Raises:
        InvalidScene: when the product cannot be read, is Level-1C and no ``to_l2a`` is given,
            or is neither Level-1C nor Level-2A.
        Sen2CorError: from ``to_l2a`` when Sen2Cor fails or times out.
    """
    product = open_safe(product_path)
    sen2cor: Sen2CorRecord | None = None
    if product.metadata.product_type == "L1C":
        if to_l2a is None:
            raise InvalidScene(
                f"{product.metadata.product_id}: is Level-1C; it needs Sen2Cor, which runs for cubes "
                f"of collection sentinel-2-l1c (this cube's is {cube.collection})"
            )
        output = to_l2a(product_path)
        sen2cor = Sen2CorRecord.model_validate(output.as_json())
        product = open_safe(output.path)
    metadata = product.metadata
    if metadata.product_type != "L2A":
        raise InvalidScene(f"{metadata.product_id}: is {metadata.product_type}; expected Level-2A")
    return product, sen2cor


def _sentinel2_reflectance(
    cube: CubeConfig,
    scene: Mapping[str, Any],
    store: RasterStore,
    product: SafeProduct,
    sen2cor: dict[str, Any] | None,
) -> dict[str, Any]:
    """The Sentinel-2 Level-2A branch of :func:`reflectance_for_scene`: band reflectance, quality band, radiometry.

    Raises:
        InvalidScene: when the product lacks a band of the cube (or its quality band).
    """
    metadata = product.metadata
    resolution = int(round(cube.read_resolution))
    bands = {}
    for band in cube.bands:
        source = product.band_path(band.source_band, resolution)
        offset = metadata.offset(band.source_band)
        bands[band.name] = _produce(
            store,
            scene_reflectance_key(cube.name, scene.scene_id, band.name),
            lambda out, source=source, offset=offset, band=band: write_reflectance(
                source,
                out,
                add_offset=offset,
                quantification=metadata.quantification_value,
                nodata_in=_source_nodata(band, SENTINEL2_L2A_NODATA),
                storage=cube.band_storage(band),
                band_index=band.band_index or 1,
                tile_size=cube.file_block_size,
            ),
        )
    quality_source = product.band_path(cube.quality.band, resolution)
    quality = _produce(
        store,
        scene_reflectance_key(cube.name, scene.scene_id, cube.quality.band),
        lambda out: copy_band(quality_source, out, limits=SENTINEL2, **_quality_copy(cube)),
    )
    return _with_reflectance(
        scene,
        bands=bands,
        quality=quality,
        radiometry={
            "processing_baseline": metadata.processing_baseline,
            "quantification_value": metadata.quantification_value,
            "offsets": {b.name: metadata.offset(b.source_band) for b in cube.bands},
        },
        pvi=str(product.pvi_path) if product.pvi_path else None,
        sen2cor=sen2cor,
    )


def _with_reflectance(scene: RawScene, **reflectance: Any) -> ReflectanceScene:
    """The raw ``scene`` entry extended with its reflectance fields (which may override raw ones)."""
    return ReflectanceScene.model_validate({**dict(scene), **reflectance})


def _landsat_reflectance(cube: CubeConfig, scene: RawScene, store: RasterStore, folder: Path) -> ReflectanceScene:
    """The Landsat C2 Level-2 branch of :func:`reflectance_for_scene`."""
    product = open_landsat_product(folder)
    metadata = product.metadata
    bands, scales, offsets = {}, {}, {}
    for band in cube.bands:
        name = normalize_landsat_band(band.source_band)
        if not name.startswith("SR_B"):
            raise InvalidScene(
                f"{metadata.product_id}: cube band {band.name} reads {name}, which is not a surface-reflectance "
                f"band ({', '.join(metadata.surface_reflectance_bands)})"
            )
        scale, offset = landsat_rescaling(cube, band, *metadata.scale_and_offset(name))
        source = product.band_path(name)
        scales[band.name], offsets[band.name] = scale, offset
        bands[band.name] = _produce(
            store,
            scene_reflectance_key(cube.name, scene.scene_id, band.name),
            lambda out, source=source, scale=scale, offset=offset, band=band: write_landsat_reflectance(
                source,
                out,
                scale=scale,
                offset=offset,
                nodata_in=_source_nodata(band, LANDSAT_C2_FILL),
                storage=cube.band_storage(band),
                band_index=band.band_index or 1,
                tile_size=cube.file_block_size,
            ),
        )
    quality_source = product.band_path(cube.quality.band)
    quality_key = scene_reflectance_key(cube.name, scene.scene_id, cube.quality.band)
    if cube.quality.radsat:
        radsat_source = product.band_path(normalize_landsat_band(cube.quality.radsat))
        quality = _produce(
            store,
            quality_key,
            lambda out: write_quality_with_radsat(
                quality_source, radsat_source, out, limits=LANDSAT_C2, **_quality_copy(cube)
            ),
        )
    else:
        quality = _produce(
            store, quality_key, lambda out: copy_band(quality_source, out, limits=LANDSAT_C2, **_quality_copy(cube))
        )
    return _with_reflectance(
        scene,
        footprint=None,  # the MTL has only the image frame; publish_scene traces the valid data
        bands=bands,
        quality=quality,
        radiometry={
            "processing_level": metadata.processing_level,
            "scales": scales,
            "offsets": offsets,
            "bandpass_adjustment": cube.landsat_bandpass,
        },
        pvi=None,
    )


def _product_archive(folder: Path, manifest: ProductManifest) -> Path | None:
    """The zipped ``.SAFE`` among the band files of a raw-store scene, or ``None`` if they are rasters.

    A provider that only delivers whole products (the Copernicus Data Space ``Product`` asset)
    gives every band the same zip; they must all hold the same ``.SAFE``.

    Raises:
        InvalidScene: naming the scene, when some band files are zips and others not, or
            the zips hold different products.
    """
    zips = {band: folder / name for band, name in manifest.bands.items() if name.lower().endswith(".zip")}
    if not zips:
        return None
    others = sorted(set(manifest.bands) - set(zips))
    if others:
        raise InvalidScene(f"{manifest.id}: bands {sorted(zips)} are zipped products but {others} are not")
    names = {safe_members(path)[0] for path in dict.fromkeys(zips.values())}
    if len(names) != 1:
        raise InvalidScene(f"{manifest.id}: its zipped bands hold different products ({', '.join(sorted(names))})")
    return next(iter(zips.values()))


def _stored_item(folder: Path, manifest: ProductManifest) -> dict[str, Any]:
    """The STAC Item a raw-store scene came from; without ``item.json``, its manifest's properties."""
    try:
        item = json.loads((folder / _STAC_ITEM_FILE).read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {"id": manifest.id, "properties": dict(manifest.properties), "assets": {}}
    except (OSError, ValueError) as exc:
        raise InvalidScene(f"{manifest.id}: {_STAC_ITEM_FILE} cannot be read ({exc})") from exc
    if not isinstance(item, dict):
        raise InvalidScene(f"{manifest.id}: {_STAC_ITEM_FILE} is not a STAC Item")
    return item


def _band_file(folder: Path, manifest: ProductManifest, band: str) -> Path:
    if band not in manifest.bands:
        raise InvalidScene(f"{manifest.id}: band {band} is not in the raw store ({', '.join(sorted(manifest.bands))})")
    return folder / manifest.bands[band]


def _stac_band_reflectance(
    cube: CubeConfig, scene: RawScene, store: RasterStore, folder: Path, manifest: ProductManifest
) -> ReflectanceScene:
    """The band-by-band branch of :func:`reflectance_for_scene`: a raw-store scene and its STAC Item.

    Each cube band is read from its own file, at the resolution the provider delivered it (the
    merge warps it onto the grid), with the radiometry of its Item asset: which asset served the
    band is recorded by the raw store (else found by :func:`~cube_assets.formats.stac_item.
    asset_key_for_band`); Sentinel-2 offsets follow :func:`~cube_assets.formats.stac_item.
    sentinel2_radiometry` (the BOA offset applied exactly once), Landsat C2 L2 bands the C2 rule.
    The quality band (SCL, QA_PIXEL…) is copied unchanged with the cube's quality nodata.
    """
    collection = scene.collection or cube.collection
    scene_id = scene.scene_id
    if collection == SENTINEL2_L1C:
        raise InvalidScene(
            f"{scene_id}: a Level-1C scene stored band by band cannot go through Sen2Cor, which needs the whole "
            ".SAFE; configure the provider to deliver the zipped product"
        )
    item = _stored_item(folder, manifest)
    entries = (manifest.properties.get(_RAW_STORE_PROPERTY) or {}).get("bands") or {}
    if collection == LANDSAT_C2_L2 or collection.startswith("landsat"):
        radiometry_of = landsat_radiometry
    elif collection.startswith("sentinel-2"):
        radiometry_of = sentinel2_radiometry
    else:
        radiometry_of = generic_radiometry
    bands: dict[str, str] = {}
    radiometry: dict[str, BandRadiometry] = {}
    for band in cube.bands:
        name = band.source_band
        source = _band_file(folder, manifest, name)
        entry = entries.get(name) if isinstance(entries.get(name), Mapping) else {}
        asset = entry.get("asset") or asset_key_for_band(item, name)
        found = radiometry[band.name] = radiometry_of(item, name, asset, band.band_index)
        band_limits = _asset_limits(item, asset, limits_for_collection(collection))
        if found.kind == "landsat":

            def make(
                out: Path,
                source: Path = source,
                found: BandRadiometry = found,
                limits: ProductLimits = band_limits,
                band: BandConfig = band,
            ) -> Path:
                scale, offset = landsat_rescaling(cube, band, found.scale, found.offset)
                return write_landsat_reflectance(
                    source,
                    out,
                    scale=scale,
                    offset=offset,
                    nodata_in=_source_nodata(band, found.nodata),
                    limits=limits,
                    storage=cube.band_storage(band),
                    band_index=found.band_index,
                    tile_size=cube.file_block_size,
                )
        else:

            def make(
                out: Path,
                source: Path = source,
                found: BandRadiometry = found,
                limits: ProductLimits = band_limits,
                band: BandConfig = band,
            ) -> Path:
                return write_reflectance(
                    source,
                    out,
                    add_offset=found.add_offset,
                    quantification=found.quantification,
                    nodata_in=_source_nodata(band, found.nodata),
                    limits=limits,
                    storage=cube.band_storage(band),
                    band_index=found.band_index,
                    tile_size=cube.file_block_size,
                )

        bands[band.name] = _produce(store, scene_reflectance_key(cube.name, scene_id, band.name), make)
    quality_source = _band_file(folder, manifest, cube.quality.band)
    quality_entry = entries.get(cube.quality.band) if isinstance(entries.get(cube.quality.band), Mapping) else {}
    quality_limits = _asset_limits(
        item,
        quality_entry.get("asset") or asset_key_for_band(item, cube.quality.band),
        limits_for_collection(collection),
    )
    quality_asset = quality_entry.get("asset") or asset_key_for_band(item, cube.quality.band)
    quality_index = cube.quality.band_index or band_index_in_asset(item, quality_asset, cube.quality.band)
    quality_copy = {**_quality_copy(cube), "band_index": quality_index}
    if cube.quality.radsat:
        radsat_source = _band_file(folder, manifest, cube.quality.radsat)

        def make_quality(out: Path) -> Path:
            return write_quality_with_radsat(quality_source, radsat_source, out, limits=quality_limits, **quality_copy)
    else:

        def make_quality(out: Path) -> Path:
            return copy_band(quality_source, out, limits=quality_limits, **quality_copy)

    quality = _produce(store, scene_reflectance_key(cube.name, scene_id, cube.quality.band), make_quality)
    return _with_reflectance(
        scene,
        bands=bands,
        quality=quality,
        radiometry={
            "source": f"STAC Item {item.get('id', manifest.id)}",
            "offsets": {name: r.add_offset for name, r in radiometry.items()},
            "quantification_values": {name: r.quantification for name, r in radiometry.items()},
            "bands": {name: r.as_json() for name, r in radiometry.items()},
        },
        pvi=None,
    )


def landsat_rescaling(cube: CubeConfig, band: BandConfig, scale: float, offset: float) -> tuple[float, float]:
    """The scale and offset a Landsat band of ``cube`` is read with: the product's, with the cube's bandpass folded in.

    With ``cube.landsat_bandpass == "hls"`` the OLI-to-MSI adjustment of the band's role
    (``common_name``) is folded into ``DN × scale + offset``
    (:func:`~cube_assets.raster.bandpass.adjusted_scale_and_offset`); otherwise they are unchanged.

    Returns:
        ``(scale, offset)`` giving reflectance (0..1) from the band's DNs.

    Raises:
        InvalidScene: naming the band, when the cube adjusts and the band has no role HLS knows.
    """
    if cube.landsat_bandpass != "hls":
        return scale, offset
    try:
        return adjusted_scale_and_offset(scale, offset, band.common_name or "")
    except KeyError as exc:
        raise InvalidScene(f"cube {cube.name} band {band.name}: {exc.args[0]}") from None


def _source_nodata(band: BandConfig, product_nodata: float | None) -> float | str | None:
    """The input nodata of ``band``: the cube file's ``source_nodata``, else the product's, else the file's tag."""
    if band.source_nodata is not None:
        return band.source_nodata
    return FROM_FILE if product_nodata is None else product_nodata


def _quality_copy(cube: CubeConfig) -> dict[str, Any]:
    """The keyword arguments of ``copy_band`` for the cube's quality band: nodata, band index, block size."""
    return {
        "nodata": cube.quality.nodata,
        "band_index": cube.quality.band_index or 1,
        "tile_size": cube.file_block_size,
    }


def _asset_limits(item: Mapping[str, Any], asset: str | None, limits: ProductLimits) -> ProductLimits:
    """``limits`` narrowed to the ``proj:shape`` the Item declares for ``asset`` (else for the whole Item).

    Raises:
        InvalidRaster: naming the Item and field, when that ``proj:shape`` is not two positive integers.
    """
    assets = item.get("assets") if isinstance(item.get("assets"), Mapping) else {}
    declared = assets.get(asset) if asset and isinstance(assets.get(asset), Mapping) else {}
    properties = item.get("properties") if isinstance(item.get("properties"), Mapping) else {}
    item_id = str(item.get("id"))[:100]
    if declared.get("proj:shape") is not None:
        return limits.narrowed_to(declared["proj:shape"], f"STAC Item {item_id}: assets.{str(asset)[:100]}.proj:shape")
    return limits.narrowed_to(properties.get("proj:shape"), f"STAC Item {item_id}: properties.proj:shape")


def publish_scene(cube: CubeConfig, scene: ReflectanceScene, store: RasterStore) -> SceneCog:
    """Publish one scene: a COG per band and for the quality band, a quicklook, its footprint and indexes.

    The quicklook is the product's own preview (``pvi``, e.g. a ``.SAFE``'s PVI) when it has
    one, else red, green and blue scaled from 0–10000; 768 px on the long side at most,
    nodata transparent. The footprint is the product's own (from its metadata) when the entry
    has one, else the outline of the valid pixels of the quality band (``footprint_source``
    says which); it is written as GeoJSON in EPSG:4326. Every COG is written by GDAL's COG
    driver with the cube's ``compression``.

    Returns:
        The scene entry (a ``SceneCog``) with ``bands``, ``quality``, ``indexes``, ``quicklook`` and
        ``footprint_file`` URIs, the ``footprint`` geometry and its ``footprint_source``, and
        ``index_pixels``: per index, the pixels with valid inputs it turned into nodata or clipped
        (:func:`~cube_assets.steps.indexes.index_pixel_counts`; None for an index COG an earlier
        run had already published).

    Raises:
        InvalidRaster: when a reflectance file or preview is unreadable, a COG fails
            validation, or the quality band has no valid pixel to outline.
    """
    scene_id = scene.scene_id
    sr_paths = {band: store.gdal_path(uri) for band, uri in scene.bands.items()}
    bands = {
        band: _produce(
            store,
            scene_cog_key(cube.name, scene_id, band),
            lambda out, src=src: cog_from_file(
                src,
                out,
                compress=cube.compression,
                overview_resampling="average",
                driver="gdal",
                blocksize=cube.file_block_size,
            ),
        )
        for band, src in sr_paths.items()
    }
    quality = _produce(
        store,
        scene_cog_key(cube.name, scene_id, cube.quality.band),
        lambda out: cog_from_file(
            store.gdal_path(scene.quality),
            out,
            compress=cube.compression,
            overview_resampling="nearest",
            driver="gdal",
            blocksize=cube.file_block_size,
        ),
    )
    indexes = {}
    index_pixels: dict[str, IndexPixels | None] = {}
    inputs = index_inputs(cube, sr_paths)
    for name, expression in cube.indexes.items():
        compiled = compile_expression(expression, inputs.keys())
        written: list[IndexWrite] = []
        indexes[name] = _produce(
            store,
            scene_cog_key(cube.name, scene_id, name),
            lambda out, compiled=compiled, written=written: _index_cog(
                compiled, inputs, out, cube.nodata, written, cube.index_nodata, cube.compression
            ),
        )
        index_pixels[name] = index_pixel_counts(written[0]) if written else None
    rgb = [cube.band_by_common_name(c) for c in ("red", "green", "blue")]
    quicklook = quicklook_key = None
    pvi = scene.pvi
    if pvi or all(rgb):
        quicklook_key = scene_cog_key(cube.name, scene_id, "quicklook", suffix="png")
        quicklook = _produce(
            store,
            quicklook_key,
            (lambda out: _pvi_quicklook(Path(pvi), out))
            if pvi
            else (lambda out: quicklook_from_files(*(sr_paths[b.name] for b in rgb), out)),  # type: ignore[union-attr]  # rgb is None only when no quicklook is made, and then this is not called
            content_type="image/png",
        )
    geometry, footprint_source = scene.footprint, "product_metadata"
    if not geometry:
        geometry = mapping(valid_data_footprint(store.gdal_path(quality)))
        footprint_source = "valid_data_outline"
    footprint_key = scene_cog_key(cube.name, scene_id, "footprint", suffix="geojson")
    footprint_file = store.write_bytes(
        footprint_key,
        json.dumps(
            {"type": "Feature", "id": scene_id, "properties": {"source": footprint_source}, "geometry": geometry}
        ).encode(),
        content_type="application/geo+json",
    )
    return SceneCog.model_validate(
        {
            **dict(scene),
            "bands": bands,
            "quality": quality,
            "indexes": indexes,
            "index_pixels": index_pixels,
            "quicklook": quicklook,
            "quicklook_key": quicklook_key,
            "footprint": json.loads(json.dumps(geometry)),
            "footprint_source": footprint_source,
            "footprint_file": footprint_file,
        }
    )


def _pvi_quicklook(pvi: Path, out: Path) -> Path:
    """The quicklook from a product's RGB preview (PVI: 8-bit, 0 where there is no data), its size checked first."""
    with open_input(pvi, limits=SENTINEL2, require_crs=False) as src:
        if src.count < 3:
            raise InvalidScene(f"{pvi}: preview has {src.count} band(s), expected red, green and blue")
        with reading_from(pvi, "bands 1-3"):
            red, green, blue = src.read([1, 2, 3])
    return write_quicklook(red, green, blue, out, nodata=0, value_range=(0.0, 255.0))


def _index_cog(
    compiled: CompiledExpression,
    inputs: Mapping[str, str],
    out: Path,
    nodata: float,
    written: list[IndexWrite],
    index_nodata: float,
    compression: str,
) -> Path:
    raw = out.with_name(out.stem + ".raw.tif")
    written.append(write_index(compiled, inputs, raw, nodata=nodata, out_nodata=index_nodata))
    try:
        return cog_from_file(raw, out, compress=compression, overview_resampling="average", driver="gdal")
    finally:
        raw.unlink(missing_ok=True)


def _produce(store: RasterStore, key: str, make: Callable[[Path], Path], content_type: str = COG_CONTENT_TYPE) -> str:
    """Return the URI of ``key``, building it with ``make(local_path)`` and publishing it if absent."""
    if store.exists(key):
        return store.uri(key)
    with store.staging_dir() as staging:
        local = make(staging / key.rsplit("/", 1)[-1])
        return store.publish(Path(local), key, content_type=content_type)
