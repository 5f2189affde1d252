"""Keys of every file the cube writes, in one place.

``{cube}/{tile}/{date-or-period}/{item}_{band}.tif`` for merges and composites, and
``{cube}/scenes/{scene_id}/…`` for per-scene products (scenes are not tied to one tile).
"""

from __future__ import annotations

from datetime import date


def scene_reflectance_key(cube: str, scene_id: str, band: str) -> str:
    """Key of a scene's surface-reflectance band (a tiled GeoTIFF, the COG stage's input)."""
    return f"{cube}/scenes/{scene_id}/sr/{scene_id}_{band}.tif"


def scene_preview_key(cube: str, scene_id: str, suffix: str) -> str:
    """Key of a copy of a scene's own preview image (a ``.SAFE``'s PVI), beside its surface reflectance."""
    return f"{cube}/scenes/{scene_id}/sr/{scene_id}_PVI{suffix}"


def scene_cog_key(cube: str, scene_id: str, band: str, suffix: str = "tif") -> str:
    """Key of a scene's published file: a COG band, ``quicklook`` (png) or ``footprint`` (geojson)."""
    return f"{cube}/scenes/{scene_id}/{scene_id}_{band}.{suffix}"


def merge_item(cube: str, tile: str, day: date, source: str | None = None) -> str:
    """Item name of the merge of ``tile`` on ``day`` (of ``source`` in a cube with sources: ``…_{date}_{source}``)."""
    item = f"{cube}_{tile}_{day:%Y%m%d}"
    return item if source is None else f"{item}_{source}"


def merge_key(cube: str, tile: str, day: date, band: str, suffix: str = "tif", source: str | None = None) -> str:
    """Key of one band of the merge of ``tile`` on ``day`` (of ``source``, in a cube with sources)."""
    return f"{cube}/{tile}/{day.isoformat()}/{merge_item(cube, tile, day, source)}_{band}.{suffix}"


def composite_item(cube: str, tile: str, period_start: date, function: str) -> str:
    """Item name of the ``function`` composite of ``tile`` for the period starting ``period_start``."""
    return f"{cube}_{tile}_{period_start:%Y%m%d}_{function}"


def composite_key(cube: str, tile: str, period_start: date, function: str, band: str, suffix: str = "tif") -> str:
    """Key of one band of a composite."""
    item = composite_item(cube, tile, period_start, function)
    return f"{cube}/{tile}/{period_start.isoformat()}/{item}_{band}.{suffix}"


def manifest_key(cube: str, asset: str, tile: str, period: str) -> str:
    """Key of the JSON manifest an asset partition writes (what it produced, for downstream steps)."""
    return f"{cube}/_manifests/{asset}/{tile}/{period}.json"
