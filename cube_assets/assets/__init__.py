"""The asset graph of a cube: raw_scene → surface_reflectance → scene_cog → tile_merge → period_blend → catalog_item."""

from __future__ import annotations

from dagster import AssetsDefinition

from cube_assets.assets.blend import build_period_blend
from cube_assets.assets.catalog import build_catalog_item
from cube_assets.assets.merge import build_tile_merge
from cube_assets.assets.scenes import build_raw_scene, build_scene_cog, build_surface_reflectance
from cube_assets.cube_config import CubeConfig

STAGES = ("raw_scene", "surface_reflectance", "scene_cog", "tile_merge", "period_blend", "catalog_item")


def build_cube_assets(cube: CubeConfig) -> list[AssetsDefinition]:
    """Return the six assets of ``cube``, keyed ``[cube.name, stage]`` and grouped under ``cube.name``.

    A cube that reuses another cube's merges (``reuse_data_cube``) keeps the six stages: its
    scene stages find no scene, and its ``tile_merge`` takes the other cube's stored merges.
    """
    return [
        build_raw_scene(cube),
        build_surface_reflectance(cube),
        build_scene_cog(cube),
        build_tile_merge(cube, cube.reused_cube),
        build_period_blend(cube),
        build_catalog_item(cube),
    ]
