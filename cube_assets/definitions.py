"""Assembles every cube's assets, jobs and resources into one ``Definitions``.

Environment (read here, at load time, and nowhere deeper):

* ``CUBE_ASSETS_CONFIG``: the cube YAML (default: the packaged demo cube).
* ``CUBE_ASSETS_DATA_ROOT``: where rasters, raw scenes and the SQLite catalog go (default ``./cube-data``).
* ``CUBE_ASSETS_CATALOG_URL``: the catalog database (default ``sqlite:///{data_root}/catalog.sqlite``).
* ``CUBE_ENV``: ``local`` (the embedded default, the only one so far).
"""

from __future__ import annotations

import os
from pathlib import Path

from dagster import AssetSelection, Definitions, define_asset_job

from cube_assets.assets import build_cube_assets
from cube_assets.assets.common import CATALOG_IO_MANAGER, MANIFEST_IO_MANAGER
from cube_assets.catalog.database import default_catalog_url
from cube_assets.cube_config import DEMO_CONFIG, ProjectConfig, load_project_config
from cube_assets.errors import InvalidCubeConfig
from cube_assets.io_managers.catalog import CatalogIOManager
from cube_assets.io_managers.manifest import ManifestIOManager
from cube_assets.resources.providers import ProvidersResource
from cube_assets.resources.storage import RasterStoreResource


def cube_job_name(cube_name: str) -> str:
    """Name of the job that materializes every stage of one cube."""
    return f"{cube_name}_job"


def build_definitions(config_file: str | Path, data_root: str | Path, catalog_url: str | None = None, env: str = "local") -> Definitions:
    """Return the ``Definitions`` for every cube of ``config_file``, storing under ``data_root``.

    Raises:
        InvalidCubeConfig: when the cube file is invalid or ``env`` is unknown.
    """
    if env != "local":
        raise InvalidCubeConfig(f"CUBE_ENV={env!r}: only 'local' is available in this version")
    project: ProjectConfig = load_project_config(config_file)
    data_root = Path(data_root).resolve()
    store = RasterStoreResource(root=str(data_root))
    assets, jobs = [], []
    for cube in project.cubes:
        assets += build_cube_assets(cube)
        jobs.append(define_asset_job(
            cube_job_name(cube.name), selection=AssetSelection.groups(cube.name),
            description=f"Every stage of cube {cube.name}, for one tile and period.",
        ))
    return Definitions(
        assets=assets,
        jobs=jobs,
        resources={
            "store": store,
            "providers": ProvidersResource(config_file=str(Path(config_file).resolve()), data_root=str(data_root)),
            MANIFEST_IO_MANAGER: ManifestIOManager(store=store),
            CATALOG_IO_MANAGER: CatalogIOManager(url=catalog_url or default_catalog_url(data_root)),
        },
    )


def _from_environment() -> Definitions:
    data_root = os.environ.get("CUBE_ASSETS_DATA_ROOT", "cube-data")
    return build_definitions(
        os.environ.get("CUBE_ASSETS_CONFIG", str(DEMO_CONFIG)),
        data_root,
        os.environ.get("CUBE_ASSETS_CATALOG_URL"),
        os.environ.get("CUBE_ENV", "local"),
    )


defs = _from_environment()
