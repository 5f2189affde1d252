"""What every cube asset shares: its partition, its tile and period, and UI metadata helpers."""

from __future__ import annotations

import base64
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from dagster import AssetExecutionContext, AssetIn, MetadataValue

from cube_assets.cube_config import CubeConfig
from cube_assets.grids import Tile
from cube_assets.manifests import IndexPixels
from cube_assets.partitions import cube_partitions, split_partition_key
from cube_assets.temporal import Period

MANIFEST_IO_MANAGER = "manifest_io_manager"
CATALOG_IO_MANAGER = "catalog_io_manager"
# Larger quicklooks are linked by path instead of embedded in the event log.
MAX_EMBEDDED_QUICKLOOK_BYTES = 400_000


@dataclass(frozen=True)
class CubePartition:
    """The tile and period one asset partition covers."""

    cube: CubeConfig
    tile: Tile
    period: Period


def cube_partition(context: AssetExecutionContext, cube: CubeConfig) -> CubePartition:
    """Return the tile and period of the partition being materialized.

    Raises:
        InvalidCubeConfig: if the key names a tile or period the cube does not have.
    """
    tile_name, period_key = split_partition_key(context.partition_key)
    return CubePartition(cube, cube.tile(tile_name), cube.period(period_key))


def quicklook_markdown(png: bytes | None, where: str | None) -> MetadataValue:
    """Return Markdown that shows a quicklook PNG in the Dagster UI (embedded as a data URI).

    Quicklooks above ``MAX_EMBEDDED_QUICKLOOK_BYTES`` are named by ``where`` instead, to keep
    the event log small.
    """
    if png is None:
        return MetadataValue.md("_no quicklook (no valid pixels)_")
    if len(png) > MAX_EMBEDDED_QUICKLOOK_BYTES:
        return MetadataValue.md(f"quicklook: `{where}`")
    return MetadataValue.md(f"![quicklook](data:image/png;base64,{base64.b64encode(png).decode()})")


def thumbnail_markdown(thumbnails: Mapping[str, bytes | None]) -> MetadataValue:
    """Return Markdown that shows each labelled PNG thumbnail inline in the Dagster UI (data URIs).

    ``thumbnails`` maps a label (a date, a composite function) to PNG bytes, None when there is
    none; thumbnails are small (at most 256 px), so they are always embedded.
    """
    parts = [
        f"**{label}** ![{label}](data:image/png;base64,{base64.b64encode(png).decode()})"
        for label, png in thumbnails.items()
        if png is not None
    ]
    return MetadataValue.md("\n\n".join(parts) if parts else "_no thumbnail_")


def index_pixels_json(index_pixels: Mapping[str, IndexPixels | None]) -> dict[str, dict[str, int] | None]:
    """Return an entry's ``index_pixels`` as JSON for asset metadata (None: counts unknown).

    Returns:
        Per index, ``{"nodata_pixels": n, "clipped_pixels": m}`` or None.
    """
    return {name: counts.model_dump() if counts is not None else None for name, counts in index_pixels.items()}


def stage_asset_arguments(
    cube: CubeConfig,
    stage: str,
    description: str,
    upstream: tuple[str, ...] = (),
    io_manager_key: str = MANIFEST_IO_MANAGER,
) -> dict[str, Any]:
    """Return the ``@asset`` arguments every stage of ``cube`` shares: key, group, partitions, inputs.

    Returns:
        Keyword arguments for ``dagster.asset``; ``upstream`` stages become inputs of the same name.
    """
    return {
        "name": stage,
        "key_prefix": [cube.name],
        "group_name": cube.name,
        "partitions_def": cube_partitions(cube),
        "io_manager_key": io_manager_key,
        "ins": {name: AssetIn(key=[cube.name, name]) for name in upstream},
        "description": description,
    }
