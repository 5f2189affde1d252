"""Assembles every cube's assets, jobs and resources into one ``Definitions``.

Environment (read here, at load time, and nowhere deeper):

* ``CUBE_ASSETS_CONFIG``: the cube YAML (default: the packaged demo cube).
* ``CUBE_ASSETS_DATA_ROOT``: where rasters, raw scenes and the SQLite catalog go (default ``./cube-data``).
* ``CUBE_ASSETS_CATALOG_URL``: the catalog database (default ``sqlite:///{data_root}/catalog.sqlite``).
  It goes to the resources as an ``EnvVar`` in every environment, resolved when a run starts, so
  its password is in no repository or job snapshot.
* ``CUBE_ENV``: ``local`` (the embedded default: files under the data root, SQLite catalog) or
  ``prod``: rasters and manifests in S3, the catalog on PostgreSQL, from these variables (secrets
  and endpoints go through ``EnvVar``, so they are resolved when a run starts and never shown):

  * ``CUBE_ASSETS_S3_BUCKET`` (required), ``CUBE_ASSETS_S3_PREFIX`` (optional key prefix);
  * ``AWS_ENDPOINT_URL`` (an S3-compatible server such as MinIO; unset for AWS), ``AWS_REGION``
    (or ``AWS_DEFAULT_REGION``);
  * ``CUBE_ASSETS_S3_ACCESS_KEY_ID``, ``CUBE_ASSETS_S3_SECRET_ACCESS_KEY`` (and
    ``CUBE_ASSETS_S3_SESSION_TOKEN``), else ``AWS_ACCESS_KEY_ID``, ``AWS_SECRET_ACCESS_KEY``
    and ``AWS_SESSION_TOKEN``; with none of them, boto3's default chain (shared profile,
    instance or pod role). The ``CUBE_ASSETS_`` names are
    cheaper: with ``AWS_ACCESS_KEY_ID`` in the process environment, rasterio builds a boto3
    session (~40 ms) for every GDAL environment it opens (rio-cogeo opens two per COG);
  * ``CUBE_ASSETS_CATALOG_URL`` (required), e.g. ``postgresql://user:password@host:5432/catalog``.

  The data root is then only each process's scratch: its copy of the raw scenes it reads (kept
  in S3 under ``_raw/``, see ``providers/raw_s3.py``) and the staging folder of uploads.
* ``CUBE_ASSETS_EXECUTOR``: how a run executes its steps (``cube_assets.executors.EXECUTORS``):
  ``multiprocess`` (Dagster's default), ``in_process``, ``k8s`` (a Kubernetes pod per step) or
  ``celery`` (a Celery task per step, on workers anywhere; its broker and settings are read by
  ``cube_assets.executors`` from ``CUBE_ASSETS_CELERY_BROKER``, ``CUBE_ASSETS_CELERY_BACKEND`` and
  ``CUBE_ASSETS_CELERY_VISIBILITY_TIMEOUT_S``).
* ``CUBE_ASSETS_SENSOR_INTERVAL_S``, ``CUBE_ASSETS_BLEND_CRON``, ``CUBE_ASSETS_LATE_SCENE_DELAY_HOURS``:
  the new-scene sensors and the blend schedules (``cube_assets.schedules.AutomationSettings``).
"""

from __future__ import annotations

import os
from pathlib import Path

from dagster import AssetSelection, Definitions, EnvVar, define_asset_job

from cube_assets.assets import build_cube_assets
from cube_assets.assets.common import CATALOG_IO_MANAGER, MANIFEST_IO_MANAGER
from cube_assets.catalog.database import default_catalog_url
from cube_assets.checks import build_cube_checks
from cube_assets.cube_config import DEMO_CONFIG, ProjectConfig, load_project_config
from cube_assets.errors import InvalidCubeConfig
from cube_assets.executors import executor_named
from cube_assets.io_managers.catalog import CatalogIOManager
from cube_assets.io_managers.manifest import ManifestIOManager
from cube_assets.resources.providers import ProvidersResource
from cube_assets.resources.sen2cor import Sen2CorResource
from cube_assets.resources.storage import RasterStoreResource
from cube_assets.schedules import AutomationSettings, build_blend_schedule
from cube_assets.sensors import build_new_scenes_sensor


def cube_job_name(cube_name: str) -> str:
    """Name of the job that materializes every stage of one cube."""
    return f"{cube_name}_job"


ENVIRONMENTS = ("local", "prod")
#: Variables ``CUBE_ENV=prod`` cannot run without.
PROD_REQUIRED_VARIABLES = ("CUBE_ASSETS_S3_BUCKET", "CUBE_ASSETS_CATALOG_URL")


def _env_var_if_set(*names: str) -> EnvVar | str:
    """``EnvVar`` of the first of ``names`` set now, or "" (the resource's "not configured") if none is."""
    for name in names:
        if os.environ.get(name):
            return EnvVar(name)
    return ""


def catalog_url_setting(catalog_url: str | None, env: str, data_root: Path) -> EnvVar | str:
    """The catalog URL the resources get: ``catalog_url`` if given, else ``EnvVar("CUBE_ASSETS_CATALOG_URL")``.

    Without either, ``env="local"`` gets the SQLite catalog under ``data_root``. An explicit
    ``catalog_url`` (tests, the command line) is a plain string and so shown in the run's
    snapshots as it is: deployments set the variable instead.

    Returns:
        The URL string, or the ``EnvVar`` a run resolves when it starts.
    """
    if catalog_url:
        return catalog_url
    if os.environ.get("CUBE_ASSETS_CATALOG_URL") or env == "prod":
        return EnvVar("CUBE_ASSETS_CATALOG_URL")
    return default_catalog_url(data_root)


def prod_store(data_root: Path) -> RasterStoreResource:
    """Return the S3 store resource of ``CUBE_ENV=prod`` (see the module docstring for its variables)."""
    family = "CUBE_ASSETS_S3" if os.environ.get("CUBE_ASSETS_S3_ACCESS_KEY_ID") else "AWS"
    return RasterStoreResource(
        backend="s3",
        bucket=EnvVar("CUBE_ASSETS_S3_BUCKET"),
        prefix=_env_var_if_set("CUBE_ASSETS_S3_PREFIX"),
        endpoint_url=_env_var_if_set("AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL"),
        region=_env_var_if_set("AWS_REGION", "AWS_DEFAULT_REGION"),
        access_key_id=_env_var_if_set(f"{family}_ACCESS_KEY_ID"),
        secret_access_key=_env_var_if_set(f"{family}_SECRET_ACCESS_KEY"),
        session_token=_env_var_if_set(f"{family}_SESSION_TOKEN"),
        staging_root=str(data_root / ".staging"),
    )


def build_definitions(
    config_file: str | Path,
    data_root: str | Path,
    catalog_url: str | None = None,
    env: str = "local",
    automation: AutomationSettings | None = None,
    executor: str = "multiprocess",
) -> Definitions:
    """Return the ``Definitions`` for every cube of ``config_file``, storing under ``data_root``.

    Each cube gets its assets, asset checks, a job, a new-scene sensor and a blend schedule
    (timed by ``automation``); runs execute their steps with the executor named ``executor``.

    ``env="local"`` stores under ``data_root`` with a SQLite catalog (unless ``catalog_url`` or
    ``CUBE_ASSETS_CATALOG_URL``); ``env="prod"`` stores in S3 and catalogs into ``catalog_url``
    or ``CUBE_ASSETS_CATALOG_URL`` (see the module docstring and :func:`catalog_url_setting`).

    Returns:
        The ``Definitions``.

    Raises:
        InvalidCubeConfig: when the cube file is invalid, ``env`` is unknown, or a variable
            ``prod`` needs is not set.
    """
    if env not in ENVIRONMENTS:
        raise InvalidCubeConfig(f"CUBE_ENV={env!r}: must be one of {', '.join(ENVIRONMENTS)}")
    project: ProjectConfig = load_project_config(config_file)
    data_root = Path(data_root).resolve()
    if env == "prod":
        missing = [name for name in PROD_REQUIRED_VARIABLES if not os.environ.get(name)]
        if catalog_url and "CUBE_ASSETS_CATALOG_URL" in missing:
            missing.remove("CUBE_ASSETS_CATALOG_URL")
        if missing:
            raise InvalidCubeConfig(
                f"CUBE_ENV=prod: set {', '.join(missing)} (see docs/operations.md, Production storage)"
            )
        store = prod_store(data_root)
    else:
        store = RasterStoreResource(root=str(data_root))
    catalog = catalog_url_setting(catalog_url, env, data_root)
    automation = automation or AutomationSettings()
    assets, jobs, checks, sensors, schedules = [], [], [], [], []
    for cube in project.cubes:
        assets += build_cube_assets(cube)
        checks += build_cube_checks(cube)
        sensors.append(build_new_scenes_sensor(cube, automation.new_scene_poll_interval_s))
        schedules.append(build_blend_schedule(cube, automation.late_scene_delay, automation.blend_cron))
        jobs.append(
            define_asset_job(
                cube_job_name(cube.name),
                selection=AssetSelection.groups(cube.name),
                description=f"Every stage of cube {cube.name}, for one tile and period.",
            )
        )
    return Definitions(
        assets=assets,
        asset_checks=checks,
        jobs=jobs,
        sensors=sensors,
        schedules=schedules,
        executor=executor_named(executor, os.environ),
        resources={
            "store": store,
            "providers": ProvidersResource(
                config_file=str(Path(config_file).resolve()),
                data_root=str(data_root),
                # The provider registry lives in the catalog database.
                catalog_url=catalog,
                # prod: raw scenes are kept in S3 too, so no step needs the disk of the step that fetched them.
                raw_scenes_in_store=env == "prod",
            ),
            # Level-1C cubes only; the defaults (image, versions, 5400 s timeout) are in formats/sen2cor.py.
            "sen2cor": Sen2CorResource(output_dir=str(data_root / "sen2cor")),
            MANIFEST_IO_MANAGER: ManifestIOManager(store=store),
            CATALOG_IO_MANAGER: CatalogIOManager(url=catalog),
        },
    )


def _from_environment() -> Definitions:
    data_root = os.environ.get("CUBE_ASSETS_DATA_ROOT", "cube-data")
    return build_definitions(
        os.environ.get("CUBE_ASSETS_CONFIG", str(DEMO_CONFIG)),
        data_root,
        None,  # CUBE_ASSETS_CATALOG_URL travels as an EnvVar (catalog_url_setting), never as its value
        os.environ.get("CUBE_ENV", "local"),
        automation=AutomationSettings.from_environment(os.environ),
        executor=os.environ.get("CUBE_ASSETS_EXECUTOR", "multiprocess"),
    )


defs = _from_environment()
