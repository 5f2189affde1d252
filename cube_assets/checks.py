"""Asset checks of a cube, one set per cube, each partitioned like its asset.

Every check has the cube's tile × period ``partitions_def``, so it runs on the partition that
was just built (and its result is recorded per partition in the UI), not on the whole asset.

=========================================  ==========  ============================================
check                                       blocking    what it verifies
=========================================  ==========  ============================================
``scene_cog`` / ``cogs_valid``              yes         every scene band, quality and index file is
                                                        a valid, complete COG (not truncated)
``tile_merge`` / ``cogs_valid``             yes         every merge band, quality and DATASOURCE file
                                                        is a valid, complete COG
``tile_merge`` / ``quality_recorded``       no          each merge's nodata fraction and cloud ratio,
                                                        recomputed from its quality band, equal what
                                                        the manifest records (both are in the
                                                        check's metadata)
``period_blend`` / ``cogs_valid``           yes         every composite file is a valid, complete COG
``period_blend`` / ``observation_counts``   yes         CLEAROB <= TOTALOB <= number of merges on the
                                                        whole tile, and on a sample window CLEAROB and
                                                        TOTALOB equal the clear / valid observations
                                                        counted again from the merges' quality bands
``catalog_item`` / ``files_exist``          no          every file the catalog lists for the partition
                                                        exists in the store
=========================================  ==========  ============================================

Partitioned asset checks (``partitions_def`` on ``@asset_check``) are a *preview* feature of
Dagster 1.13; ``build_cube_checks`` silences that one warning. The behaviour relied on here
(one evaluation per partition, blocking checks skipping downstream steps) is covered by
``cube_assets_tests/test_checks.py``.

A failing blocking check fails its step and Dagster skips the assets downstream of it in the
same run (a broken merge is never blended, a blend with bad counts never catalogued).

The functions above ``build_cube_checks`` are the checks' logic; they do not use Dagster and
return the problems found (empty when the check passes). They read rasters through the store's
``gdal_path``; the checks call them inside the store's ``gdal_environment()`` (S3 endpoints and
credentials for ``/vsis3/``).
"""

import warnings
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import numpy as np
import rasterio
import rasterio.errors
import rasterio.io
from dagster import (
    AssetCheckExecutionContext,
    AssetCheckResult,
    AssetChecksDefinition,
    AssetCheckSeverity,
    AssetKey,
    MetadataValue,
    PartitionsDefinition,
    PreviewWarning,
    asset_check,
)
from rasterio.windows import Window

from cube_assets.cube_config import CubeConfig
from cube_assets.manifests import Composite, Merge, PeriodBlendManifest, SceneCogManifest, TileMergeManifest
from cube_assets.partitions import cube_partitions
from cube_assets.raster.cog import is_valid_cog
from cube_assets.raster.masks import QualityClass, classify_quality, rules_from_config
from cube_assets.raster.windowed_io import block_windows
from cube_assets.redaction import redact_url
from cube_assets.resources.storage import RasterStoreResource
from cube_assets.storage.raster_store import RasterStore

# The side of the window where CLEAROB / TOTALOB are recomputed from the merges (centred on the tile).
SAMPLE_WINDOW_PX = 512
# Recorded statistics are rounded to 4 decimals by the merge step.
STATISTIC_TOLERANCE = 1e-3
# Problems listed in a check's metadata (the count is always complete).
MAX_LISTED_PROBLEMS = 20


# --------------------------------------------------------------------------------------------
# Which files each manifest names


def scene_cog_files(manifest: SceneCogManifest) -> list[str]:
    """Return the URIs of every raster a ``scene_cog`` manifest names (bands, quality, indexes)."""
    files: list[str] = []
    for scene in manifest.scenes:
        files += list(scene.bands.values()) + [scene.quality] + list(scene.indexes.values())
    return files


def tile_merge_files(manifest: TileMergeManifest) -> list[str]:
    """Return the URIs of every raster a ``tile_merge`` manifest names (bands, quality, DATASOURCE)."""
    files: list[str] = []
    for merge in manifest.merges:
        files += list(merge.bands.values()) + [merge.quality, merge.datasource]
    return files


def period_blend_files(manifest: PeriodBlendManifest) -> list[str]:
    """Return the URIs of every raster a ``period_blend`` manifest names (each composite's bands)."""
    return [uri for composite in manifest.composites.values() for uri in composite.bands.values()]


# --------------------------------------------------------------------------------------------
# The checks' logic (no Dagster)


def cog_problem(uri: str, store: RasterStore) -> str | None:
    """Return why the file at ``uri`` is not a usable COG, or ``None`` when it is.

    A usable COG passes ``is_valid_cog`` (layout: tiling, overviews, IFD order) and is
    complete: every full-resolution block ends within the file (a truncated upload or copy
    keeps a valid header, so the layout check alone does not see it).
    """
    path = store.gdal_path(uri)
    if not is_valid_cog(path):
        return "not a valid COG (or unreadable)"
    try:
        size = store.size(uri)
        with rasterio.open(path) as dataset:
            end = _last_block_end(dataset)
    except (OSError, rasterio.errors.RasterioError, ValueError, TypeError) as exc:
        return f"cannot read its block index ({exc})"
    if end > size:
        return f"truncated: blocks end at byte {end}, the file has {size}"
    return None


def _last_block_end(dataset: rasterio.io.DatasetReader) -> int:
    block_height, block_width = dataset.block_shapes[0]
    columns, rows = -(-dataset.width // block_width), -(-dataset.height // block_height)
    end = 0
    for band in range(1, dataset.count + 1):
        for column in range(columns):
            for row in range(rows):
                offset = dataset.get_tag_item(f"BLOCK_OFFSET_{column}_{row}", "TIFF", bidx=band)
                length = dataset.get_tag_item(f"BLOCK_SIZE_{column}_{row}", "TIFF", bidx=band)
                if offset is not None and length is not None:
                    end = max(end, int(offset) + int(length))
    return end


def invalid_cogs(uris: Iterable[str], store: RasterStore) -> list[str]:
    """Return ``"{uri}: {reason}"`` for every file of ``uris`` that is missing, not a COG, or truncated."""
    problems = []
    for uri in uris:
        reason = cog_problem(uri, store)
        if reason is not None:
            problems.append(f"{uri}: {reason}")
    return problems


def merge_statistics(quality_path: str, cube: CubeConfig) -> dict[str, float]:
    """Recompute a merge's statistics from its quality band, block by block.

    Returns:
        ``nodata_fraction`` (nodata pixels / all pixels, 0–1), ``efficacy`` and ``cloud_ratio``
        (percentages, defined as in ``cube_assets.raster.masks``).

    Raises:
        rasterio.errors.RasterioIOError: when the quality file cannot be read.
    """
    rules = rules_from_config(cube.quality.rules)
    counts = np.zeros(len(QualityClass), dtype=np.int64)
    with rasterio.open(quality_path) as src:
        for window in block_windows(src.width, src.height, 1024):
            classes = classify_quality(src.read(1, window=window), rules)
            counts += np.bincount(classes.ravel(), minlength=len(QualityClass))[: len(QualityClass)]
    total = int(counts.sum())
    clear, not_clear = int(counts[QualityClass.CLEAR]), int(counts[QualityClass.NOT_CLEAR])
    return {
        "nodata_fraction": counts[QualityClass.NODATA] / total if total else 1.0,
        "efficacy": 100.0 * clear / total if total else 0.0,
        "cloud_ratio": 100.0 * not_clear / (clear + not_clear) if clear + not_clear else 0.0,
    }


def merge_quality_problems(
    merges: Sequence[Merge],
    cube: CubeConfig,
    store: RasterStore,
) -> tuple[list[str], dict[str, dict[str, float]]]:
    """Compare each merge's recorded efficacy, cloud ratio and valid pixels with its quality band.

    Returns:
        ``(problems, statistics)``: one message per disagreement, and per date the recomputed
        ``nodata_fraction``, ``cloud_ratio`` and ``efficacy`` (keyed by ISO date).
    """
    problems: list[str] = []
    statistics: dict[str, dict[str, float]] = {}
    for merge in merges:
        where = merge.item
        recorded = {"efficacy": merge.efficacy, "cloud_ratio": merge.cloud_ratio}
        if merge.total_pixels <= 0:
            problems.append(f"{where}: statistics not recorded (total_pixels is {merge.total_pixels})")
            continue
        recorded_nodata = 1.0 - merge.valid_pixels / merge.total_pixels
        measured = merge_statistics(store.gdal_path(merge.quality), cube)
        statistics[merge.date.isoformat()] = {name: round(value, 4) for name, value in measured.items()}
        for name, value in recorded.items():
            if abs(value - measured[name]) > STATISTIC_TOLERANCE:
                problems.append(f"{where}: {name} recorded {value} but the quality band gives {measured[name]:.4f}")
        # Nodata in the manifest is 1 - valid/total, where valid = not nodata.
        if abs(recorded_nodata - measured["nodata_fraction"]) > STATISTIC_TOLERANCE / 100:
            problems.append(
                f"{where}: nodata fraction recorded {recorded_nodata:.6f} but the quality band gives "
                f"{measured['nodata_fraction']:.6f}"
            )
    return problems, statistics


def sample_window(width: int, height: int, size: int = SAMPLE_WINDOW_PX) -> Window:
    """Return the ``size`` × ``size`` window at the centre of a ``width`` × ``height`` raster (clipped)."""
    w, h = min(size, width), min(size, height)
    return Window((width - w) // 2, (height - h) // 2, w, h)


def observation_count_problems(
    composites: Mapping[str, Composite],
    merges: Sequence[Merge],
    cube: CubeConfig,
    store: RasterStore,
    window_size: int = SAMPLE_WINDOW_PX,
) -> list[str]:
    """Check every composite's CLEAROB and TOTALOB against each other and against the merges.

    On the whole tile (block by block): ``CLEAROB <= TOTALOB <= len(merges)``. On the central
    ``window_size`` window: CLEAROB equals the number of merges whose quality band is clear
    there, and TOTALOB the number where it is not nodata.

    Returns:
        One message per violated rule and composite (empty when consistent).

    Raises:
        rasterio.errors.RasterioIOError: when a file cannot be read.
    """
    problems: list[str] = []
    if not composites:
        return problems
    rules = rules_from_config(cube.quality.rules)
    expected_clear = expected_total = None
    for composite in composites.values():
        bands = composite.bands
        if "CLEAROB" not in bands or "TOTALOB" not in bands:
            problems.append(f"{composite.item}: CLEAROB or TOTALOB missing")
            continue
        with (
            rasterio.open(store.gdal_path(bands["CLEAROB"])) as clear_src,
            rasterio.open(store.gdal_path(bands["TOTALOB"])) as total_src,
        ):
            worst = {"clear_above_total": 0, "total_above_merges": 0}
            for window in block_windows(clear_src.width, clear_src.height, 1024):
                clear = clear_src.read(1, window=window).astype(np.int32)
                total = total_src.read(1, window=window).astype(np.int32)
                worst["clear_above_total"] += int(np.count_nonzero(clear > total))
                worst["total_above_merges"] += int(np.count_nonzero(total > len(merges)))
            if worst["clear_above_total"]:
                problems.append(f"{composite.item}: CLEAROB > TOTALOB at {worst['clear_above_total']} pixels")
            if worst["total_above_merges"]:
                problems.append(
                    f"{composite.item}: TOTALOB > {len(merges)} merges at {worst['total_above_merges']} pixels"
                )
            window = sample_window(clear_src.width, clear_src.height, window_size)
            clear_sample = clear_src.read(1, window=window).astype(np.int32)
            total_sample = total_src.read(1, window=window).astype(np.int32)
        if expected_clear is None:
            expected_clear, expected_total = _recount_observations(merges, window, rules, store)
        for name, found, expected in (
            ("CLEAROB", clear_sample, expected_clear),
            ("TOTALOB", total_sample, expected_total),
        ):
            wrong = int(np.count_nonzero(found != expected))
            if wrong:
                problems.append(
                    f"{composite.item}: {name} differs from the merges' quality bands at {wrong} of "
                    f"{found.size} sampled pixels "
                    f"(window {window.col_off},{window.row_off} {window.width}×{window.height})"
                )
    return problems


def _recount_observations(
    merges: Sequence[Merge], window: Window, rules, store: RasterStore
) -> tuple[np.ndarray, np.ndarray]:
    clear = np.zeros((int(window.height), int(window.width)), dtype=np.int32)
    total = np.zeros_like(clear)
    for merge in merges:
        with rasterio.open(store.gdal_path(merge.quality)) as src:
            classes = classify_quality(src.read(1, window=window), rules)
        clear += classes == QualityClass.CLEAR
        total += classes != QualityClass.NODATA
    return clear, total


def missing_files(images: Sequence[Mapping[str, Any]], store: RasterStore) -> list[str]:
    """Return ``"{image}/{band}: {href}"`` for every file of ``images`` that the store cannot find.

    ``images`` are catalog rows as the catalog IO manager loads them (``id`` and ``files``:
    band → href).
    """
    missing = []
    for image in images:
        for band, href in image["files"].items():
            try:
                store.size(href)
            except Exception as exc:  # any failure to stat the object means it is unusable
                missing.append(f"{image['id']}/{band}: {redact_url(href)} ({type(exc).__name__})")
    return missing


# --------------------------------------------------------------------------------------------
# The Dagster checks


def _result(
    problems: Sequence[str], severity: AssetCheckSeverity = AssetCheckSeverity.ERROR, **metadata: Any
) -> AssetCheckResult:
    return AssetCheckResult(
        passed=not problems,
        severity=severity,
        metadata={
            "problem_count": len(problems),
            "problems": MetadataValue.json(list(problems[:MAX_LISTED_PROBLEMS])),
            **metadata,
        },
    )


def _cogs_valid_check(
    asset: AssetKey,
    partitions: PartitionsDefinition,
    files_of: Callable[[Any], list[str]],
    description: str,
) -> AssetChecksDefinition:
    """The blocking ``cogs_valid`` check of ``asset``: every raster ``files_of`` its manifest is a valid, complete COG.

    Returns:
        The ``AssetChecksDefinition``; its result lists :func:`invalid_cogs` of the partition's
        manifest and records ``files_checked``.
    """

    @asset_check(asset=asset, name="cogs_valid", blocking=True, partitions_def=partitions, description=description)
    # The manifest IO manager loads (and validates) the stage's own manifest model; Any keeps
    # Dagster from checking the loaded model against one declared type for all three stages.
    def cogs_valid(context: AssetCheckExecutionContext, manifest: Any, store: RasterStoreResource) -> AssetCheckResult:
        files, raster_store = files_of(manifest), store.get_store()
        with raster_store.gdal_environment():
            return _result(invalid_cogs(files, raster_store), files_checked=len(files))

    return cogs_valid


def build_cube_checks(cube: CubeConfig) -> list[AssetChecksDefinition]:
    """Return the asset checks of ``cube`` (table in the module docstring), partitioned like its assets.

    Returns:
        Six ``AssetChecksDefinition`` objects: ``cogs_valid`` on ``scene_cog``, ``tile_merge``
        and ``period_blend``, ``quality_recorded`` on ``tile_merge``, ``observation_counts`` on
        ``period_blend`` and ``files_exist`` on ``catalog_item``.
    """
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=PreviewWarning, message=".*partitions_def on an AssetCheckSpec.*")
        return _build_cube_checks(cube)


def _build_cube_checks(cube: CubeConfig) -> list[AssetChecksDefinition]:
    partitions = cube_partitions(cube)

    def key(stage: str) -> AssetKey:
        return AssetKey([cube.name, stage])

    scene_cogs_valid = _cogs_valid_check(
        key("scene_cog"),
        partitions,
        scene_cog_files,
        "Every scene band, quality and index file of the partition is a valid COG.",
    )
    merge_cogs_valid = _cogs_valid_check(
        key("tile_merge"),
        partitions,
        tile_merge_files,
        "Every merge band, quality and DATASOURCE file of the partition is a valid COG.",
    )

    @asset_check(
        asset=key("tile_merge"),
        name="quality_recorded",
        blocking=False,
        partitions_def=partitions,
        description=(
            "Each merge's nodata fraction and cloud ratio, recomputed from its quality band, match the manifest."
        ),
    )
    def merge_quality_recorded(
        context: AssetCheckExecutionContext, tile_merge: TileMergeManifest, store: RasterStoreResource
    ) -> AssetCheckResult:
        raster_store = store.get_store()
        with raster_store.gdal_environment():
            problems, statistics = merge_quality_problems(tile_merge.merges, cube, raster_store)
        return _result(
            problems,
            merge_count=len(statistics),
            nodata_fraction_by_date=MetadataValue.json({d: s["nodata_fraction"] for d, s in statistics.items()}),
            cloud_ratio_by_date=MetadataValue.json({d: s["cloud_ratio"] for d, s in statistics.items()}),
        )

    blend_cogs_valid = _cogs_valid_check(
        key("period_blend"),
        partitions,
        period_blend_files,
        "Every composite file of the partition is a valid COG.",
    )

    @asset_check(
        asset=key("period_blend"),
        name="observation_counts",
        blocking=True,
        partitions_def=partitions,
        description=(
            "CLEAROB <= TOTALOB <= number of merges, and both equal the counts recomputed from the merges' "
            f"quality bands on a central {SAMPLE_WINDOW_PX} px window."
        ),
    )
    def blend_observation_counts(
        context: AssetCheckExecutionContext, period_blend: PeriodBlendManifest, store: RasterStoreResource
    ) -> AssetCheckResult:
        merges = period_blend.merges
        raster_store = store.get_store()
        with raster_store.gdal_environment():
            problems = observation_count_problems(period_blend.composites, merges, cube, raster_store)
        return _result(problems, merge_count=len(merges), composites=list(period_blend.composites))

    @asset_check(
        asset=key("catalog_item"),
        name="files_exist",
        blocking=False,
        partitions_def=partitions,
        description="Every file the catalog lists for the partition's images exists in the store.",
    )
    def catalog_files_exist(
        context: AssetCheckExecutionContext, catalog_item: list[dict[str, Any]], store: RasterStoreResource
    ) -> AssetCheckResult:
        missing = missing_files(catalog_item, store.get_store())
        return _result(
            missing,
            image_count=len(catalog_item),
            file_count=sum(len(i["files"]) for i in catalog_item),
        )

    return [
        scene_cogs_valid,
        merge_cogs_valid,
        merge_quality_recorded,
        blend_cogs_valid,
        blend_observation_counts,
        catalog_files_exist,
    ]
