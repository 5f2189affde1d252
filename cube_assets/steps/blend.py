"""Blend: the temporal composites of one tile and period, from that period's merges."""

from __future__ import annotations

import functools
import shutil
from collections.abc import Mapping, Sequence
from datetime import date
from pathlib import Path

from cube_assets.cube_config import CubeConfig
from cube_assets.errors import InvalidManifest
from cube_assets.grids import Tile
from cube_assets.manifests import Composite, IndexPixels, Merge, PeriodBlendManifest
from cube_assets.raster.cog import COG_CONTENT_TYPE, cog_from_file
from cube_assets.raster.composite import blend_band, blend_cube, blend_quality, identity_cube
from cube_assets.raster.composite_cube_rules import CUBE_FUNCTION_NAMES, CubeContext, cube_rule
from cube_assets.raster.composite_rules import IDENTITY, is_band_function
from cube_assets.raster.datasource import DATASOURCE, DATASOURCE_DTYPE, DATASOURCE_NODATA
from cube_assets.raster.indexes import compile_expression, write_index
from cube_assets.raster.quicklook import REFLECTANCE_DISPLAY_RANGE, quicklook_from_files
from cube_assets.steps.indexes import index_inputs, index_pixel_counts
from cube_assets.storage.layout import composite_item, composite_key
from cube_assets.storage.raster_store import RasterStore
from cube_assets.temporal import Period

QUALITY_OUTPUTS = ("PROVENANCE", "CLEAROB", "TOTALOB")


def blend_period(
    cube: CubeConfig,
    tile: Tile,
    period: Period,
    merges: Sequence[Merge],
    store: RasterStore,
) -> PeriodBlendManifest:
    """Composite the merges of ``period`` on ``tile`` with each of the cube's functions; publish COGs.

    The band functions (LCF, MED, AVG, STD, MIN, MAX, RANGE, IQR, Pnn) composite each spectral
    band, all of them in one pass per band; the cube functions (MAXNDVI, BAP, GMED) every band at
    once, with their options from ``cube.composite_options``; IDT publishes each band's merges
    as one file with a band per date. LCF also composites the quality band and writes PROVENANCE
    (day of year of the chosen observation); MAXNDVI and BAP write their own PROVENANCE, BAP its
    SCORE, DOY, DOY_DISTANCE and NUM, GMED the deviations it is asked for; every function's item
    carries CLEAROB and TOTALOB. Band indexes are computed from each composite's bands (not for
    IDT). A period without merges produces no composite (an empty ``composites`` mapping).

    In a cube with several sources every composite but IDT also carries DATASOURCE (uint8, bit
    ``1 << i`` for source i): LCF, MAXNDVI and BAP the source of the observation they chose,
    the others the OR of the sources of the clear observations they composited. A cube without
    sources writes none.

    Returns:
        The ``period_blend`` manifest: per function a ``Composite`` (item, bands, quicklook), the
        number of observations, their dates, and ``merges``; each composite's ``index_pixels``
        gives, per index, the pixels with valid inputs it turned into nodata or clipped
        (:func:`~cube_assets.steps.indexes.index_pixel_counts`).

    Raises:
        InvalidRaster: when a merge file is unreadable or on another grid.
        InvalidManifest: in a cube with sources, when a merge names none of them.
    """
    if not merges:
        return PeriodBlendManifest(tile=tile.name, period=period.key, composites={}, observations=0, merges=())
    days = [m.date for m in merges]
    efficacies = [m.efficacy for m in merges]
    quality_paths = [store.gdal_path(m.quality) for m in merges]
    band_paths = {band: [store.gdal_path(m.bands[band]) for m in merges] for band in cube.band_names}
    sources = _merge_sources(cube, merges)
    band_functions = [f for f in cube.composites if is_band_function(f)]
    cube_functions = [f for f in cube.composites if f in CUBE_FUNCTION_NAMES]
    composites: dict[str, Composite] = {}
    with store.staging_dir() as staging:
        local: dict[str, dict[str, Path]] = {f: {} for f in cube.composites}
        if band_functions:
            for band in cube.band_names:
                outs = {f: staging / f"{f}_{band}.tif" for f in band_functions}
                blend_band(
                    band_paths[band],
                    quality_paths,
                    days,
                    efficacies,
                    cube.quality.rules,
                    band_functions,
                    outs,
                    cube.nodata,
                    finalize=functools.partial(_to_cog, compression=cube.compression),
                )
                for function, path in outs.items():
                    local[function][band] = path
        extras: dict[str, dict[str, Path]] = {f: {} for f in cube.composites}
        context = cube_context(cube, period)
        for function in cube_functions:
            rule = cube_rule(function, cube.composite_options.get(function, {}), context)
            names = (*cube.band_names, *rule.outputs, *([DATASOURCE] if sources is not None else []))
            outs = {name: staging / f"{function}_{name}.tif" for name in names}
            blend_cube(
                band_paths,
                quality_paths,
                days,
                efficacies,
                cube.quality.rules,
                rule,
                outs,
                cube.nodata,
                finalize=functools.partial(_to_cog, compression=cube.compression),
                sources=sources,
            )
            local[function] = {band: outs[band] for band in cube.band_names}
            extras[function] = {name: outs[name] for name in names if name not in cube.band_names}
        quality_outs = _blend_quality(cube, quality_paths, days, efficacies, staging, sources)
        if IDENTITY in cube.composites:
            local[IDENTITY] = {
                band: identity_cube(
                    band_paths[band],
                    days,
                    staging / f"IDT_{band}.tif",
                    cube.nodata,
                    finalize=functools.partial(_to_cog, compression=cube.compression),
                )
                for band in cube.band_names
            }
            extras[IDENTITY] = {
                cube.quality.band: identity_cube(
                    quality_paths,
                    days,
                    staging / "IDT_quality.tif",
                    cube.quality.nodata,
                    finalize=functools.partial(_to_cog, compression=cube.compression),
                )
            }
        for function in cube.composites:
            files = {**local[function], **extras[function]}
            files["CLEAROB"] = quality_outs["clearob"]
            files["TOTALOB"] = quality_outs["totalob"]
            if function == "LCF":
                files[cube.quality.band] = quality_outs["quality"]
                files["PROVENANCE"] = quality_outs["provenance"]
            if sources is not None and function in band_functions:
                chosen = function == "LCF"
                files[DATASOURCE] = quality_outs["datasource_chosen" if chosen else "datasource_clear"]
            index_pixels: dict[str, IndexPixels] = {}
            quicklook = None
            if function != IDENTITY:
                for name, expression in cube.indexes.items():
                    compiled = compile_expression(expression, index_inputs(cube, local[function]).keys())
                    written = write_index(
                        compiled,
                        index_inputs(cube, local[function]),
                        staging / f"{function}_{name}_raw.tif",
                        nodata=cube.nodata,
                        out_nodata=cube.index_nodata,
                    )
                    files[name] = _to_cog_now(written.path, staging / f"{function}_{name}.tif", cube.compression)
                    index_pixels[name] = index_pixel_counts(written)
                quicklook = _quicklook(cube, local[function], staging / f"{function}_quicklook.png")
            composites[function] = _publish(cube, tile, period, function, files, quicklook, index_pixels, store)
    return PeriodBlendManifest(
        tile=tile.name,
        period=period.key,
        composites=composites,
        observations=len(merges),
        dates=tuple(days),
        merges=tuple(merges),
    )


def cube_context(cube: CubeConfig, period: Period | None = None) -> CubeContext:
    """What the cube functions of ``cube`` need for ``period``: bands, compiled indexes, the period's middle.

    Without a period the middle is the context's default (enough to name a rule's outputs).

    Returns:
        The ``CubeContext`` (each index with the band every variable of it reads).
    """
    names = {band: band for band in cube.band_names}
    variables = index_inputs(cube, names)
    indexes = {}
    for name, expression in cube.indexes.items():
        compiled = compile_expression(expression, variables.keys())
        indexes[name] = (compiled.evaluate_float, {v: variables[v] for v in compiled.band_names})
    if period is None:
        return CubeContext(band_names=tuple(cube.band_names), indexes=indexes)
    middle = period.start + (period.end - period.start) / 2
    return CubeContext(
        band_names=tuple(cube.band_names),
        indexes=indexes,
        period_middle_doy=middle.timetuple().tm_yday,
        period_middle_year=middle.year,
    )


def information_bands(cube: CubeConfig, function: str) -> list[tuple[str, str, float | None]]:
    """The information outputs of ``function`` besides the bands, CLEAROB, TOTALOB and indexes.

    Returns:
        ``(name, numpy dtype name, nodata)`` of each: LCF's PROVENANCE, MAXNDVI's and BAP's
        outputs, GMED's deviations, and in a cube with sources DATASOURCE (every function but IDT).
    """
    datasource = (
        [(DATASOURCE, DATASOURCE_DTYPE, float(DATASOURCE_NODATA))] if cube.sources and function != IDENTITY else []
    )
    if function == "LCF":
        return [("PROVENANCE", "int16", -1.0), *datasource]
    if function in CUBE_FUNCTION_NAMES:
        rule = cube_rule(function, cube.composite_options.get(function, {}), cube_context(cube))
        return [*((name, spec.dtype, spec.nodata) for name, spec in rule.outputs.items()), *datasource]
    return datasource


def _merge_sources(cube: CubeConfig, merges: Sequence[Merge]) -> list[int] | None:
    """Each merge's source index in the cube's ``sources``; None for a cube without sources."""
    if not cube.sources:
        return None
    positions = {name: i for i, name in enumerate(cube.source_names)}
    unknown = sorted({m.item for m in merges if m.source not in positions})
    if unknown:
        raise InvalidManifest(f"cube {cube.name}: merges {unknown} name no source of the cube ({cube.source_names})")
    return [positions[m.source or ""] for m in merges]


def _blend_quality(
    cube: CubeConfig,
    quality_paths: Sequence[str],
    days: Sequence[date],
    efficacies: Sequence[float],
    staging: Path,
    sources: Sequence[int] | None,
) -> dict[str, Path]:
    quality_outs = {
        "quality": staging / "quality.tif",
        "provenance": staging / "PROVENANCE.tif",
        "clearob": staging / "CLEAROB.tif",
        "totalob": staging / "TOTALOB.tif",
    }
    datasource = {
        "datasource_chosen": staging / "DATASOURCE_chosen.tif",
        "datasource_clear": staging / "DATASOURCE_clear.tif",
    }
    if sources is not None:
        quality_outs |= datasource
    blend_quality(
        quality_paths,
        days,
        efficacies,
        cube.quality.rules,
        quality_outs["quality"],
        quality_outs["provenance"],
        quality_outs["clearob"],
        quality_outs["totalob"],
        finalize=functools.partial(_to_cog, compression=cube.compression),
        sources=sources,
        datasource_paths=datasource if sources is not None else None,
    )
    return quality_outs


def _publish(
    cube: CubeConfig,
    tile: Tile,
    period: Period,
    function: str,
    files: Mapping[str, Path],
    quicklook: Path | None,
    index_pixels: Mapping[str, IndexPixels],
    store: RasterStore,
) -> Composite:
    uris = {}
    for band, path in files.items():
        key = composite_key(cube.name, tile.name, period.start, function, band)
        # Shared outputs (CLEAROB, TOTALOB) feed several functions: copy, do not move.
        uris[band] = store.publish(_private_copy(path), key, content_type=COG_CONTENT_TYPE)
    quicklook_uri = quicklook_key = None
    if quicklook is not None:
        quicklook_key = composite_key(cube.name, tile.name, period.start, function, "quicklook", suffix="png")
        quicklook_uri = store.publish(quicklook, quicklook_key, content_type="image/png")
    return Composite(
        item=composite_item(cube.name, tile.name, period.start, function),
        bands=uris,
        quicklook=quicklook_uri,
        quicklook_key=quicklook_key,
        index_pixels=dict(index_pixels),
    )


def _private_copy(path: Path) -> Path:
    copy = path.with_name(f".{path.stem}.{id(path)}.publish{path.suffix}")
    shutil.copyfile(path, copy)
    return copy


def _to_cog(tmp_tiff: Path, final_path: Path, compression: str) -> None:
    # Whole-tile composites: GDAL's COG driver streams them through a bounded cache; the staging
    # file is ours, so its overviews are built in it and copied, not computed and compressed twice.
    cog_from_file(
        tmp_tiff,
        final_path,
        compress=compression,
        overview_resampling="nearest",
        driver="gdal",
        overviews_in_source=True,
    )


def _to_cog_now(tiff: Path, final_path: Path, compression: str) -> Path:
    _to_cog(tiff, final_path, compression)
    return final_path


def _quicklook(cube: CubeConfig, bands: Mapping[str, Path], destination: Path) -> Path | None:
    rgb = [cube.band_by_common_name(c) for c in ("red", "green", "blue")]
    if any(b is None for b in rgb):
        return None
    return quicklook_from_files(*(bands[b.name] for b in rgb), destination, value_range=REFLECTANCE_DISPLAY_RANGE)  # type: ignore[union-attr]  # called only when the cube has quicklook bands
