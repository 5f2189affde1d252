"""The whole graph on the production backends: rasters and manifests in S3, the catalog on PostgreSQL.

The definitions are built with ``CUBE_ENV=prod`` from environment variables, as a deployment
would: the S3 API is moto's standalone server over HTTP on loopback and the catalog a real
PostgreSQL server, both started by the test fixtures. Rasters are read back with rasterio over
``/vsis3/``.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import rasterio
from dagster import AssetKey, AssetSelection, Definitions, instance_for_test, materialize
from rasterio.windows import Window

from cube_assets.assets import build_cube_assets
from cube_assets.catalog.database import create_catalog_engine, session_factory
from cube_assets.catalog.repository import search_images
from cube_assets.cube_config import load_project_config
from cube_assets.definitions import build_definitions
from cube_assets.partitions import partition_key
from cube_assets.raster.cog import is_valid_cog
from cube_assets.storage.layout import manifest_key
from cube_assets.storage.s3_store import S3RasterStore
from cube_assets_tests.conftest import SMALL_CUBE, SMALL_SIMULATOR, write_cube_file
from cube_assets_tests.fixtures_postgres import PostgresServer
from cube_assets_tests.fixtures_s3 import S3Server

PARTITION = partition_key("000000", "2024-01-01")
UP_TO_MERGE = ["raw_scene", "surface_reflectance", "scene_cog", "tile_merge"]
PREFIX = "cubes"


@dataclass
class Built:
    """What the module fixture built and where."""

    data_root: Path
    config: Path
    bucket: str
    store: S3RasterStore
    catalog_url: str
    defs: Definitions
    environment: dict[str, str]

    def manifest(self, stage: str) -> dict[str, Any]:
        return json.loads(self.store.read_bytes(manifest_key("small", stage, "000000", "2024-01-01")))


def _assets(config: Path, stages: list[str]):
    cube = load_project_config(config).cube("small")
    return [a for a in build_cube_assets(cube) if a.key.path[-1] in stages]


@pytest.fixture(scope="module")
def built(
    tmp_path_factory: pytest.TempPathFactory, s3_server: S3Server, postgresql_server: PostgresServer
) -> Iterator[Built]:
    """Merges in one run, blend and catalog item in a second, both with ``CUBE_ENV=prod``."""
    root = tmp_path_factory.mktemp("graph_s3")
    config = write_cube_file(root, SMALL_CUBE, [SMALL_SIMULATOR])
    bucket = s3_server.create_bucket("graph")
    schema = "graph_s3_catalog"
    postgresql_server.admin(f'CREATE SCHEMA "{schema}"')
    environment = {
        **s3_server.environment(bucket, prefix=PREFIX),
        "CUBE_ASSETS_CATALOG_URL": postgresql_server.schema_url(schema),
    }
    with pytest.MonkeyPatch.context() as patch:
        for name, value in environment.items():
            patch.setenv(name, value)
        defs = build_definitions(config, root / "data", env="prod")
        (root / "home").mkdir()
        with instance_for_test(temp_dir=str(root / "home")) as instance:
            first = materialize(
                _assets(config, UP_TO_MERGE), partition_key=PARTITION, instance=instance, resources=defs.resources
            )
            assert first.success
            second = materialize(
                _assets(config, ["period_blend", "catalog_item"]) + _assets(config, UP_TO_MERGE),
                selection=AssetSelection.assets(
                    AssetKey(["small", "period_blend"]), AssetKey(["small", "catalog_item"])
                ),
                partition_key=PARTITION,
                instance=instance,
                resources=defs.resources,
            )
            assert second.success
        yield Built(
            root / "data",
            config,
            bucket,
            s3_server.store(bucket, PREFIX),
            environment["CUBE_ASSETS_CATALOG_URL"],
            defs,
            environment,
        )
    postgresql_server.admin(f'DROP SCHEMA "{schema}" CASCADE')


def test_prod_definitions_use_the_s3_store_and_the_catalog_url_from_the_environment(built: Built) -> None:
    store = built.defs.resources["store"]
    assert store.backend == "s3"
    with pytest.MonkeyPatch.context() as patch:
        for name, value in built.environment.items():
            patch.setenv(name, value)
        Definitions.validate_loadable(built.defs)


def test_rasters_and_manifests_are_objects_under_the_prefix_and_not_local_files(
    built: Built, s3_server: S3Server
) -> None:
    keys = s3_server.object_keys(built.bucket)
    # The cube's products, and the raw scenes it read (kept in S3 so that no step needs another's disk).
    assert all(key.startswith((f"{PREFIX}/small/", f"{PREFIX}/_raw/sentinel-2-l2a/")) for key in keys)
    assert sum(key.startswith(f"{PREFIX}/_raw/sentinel-2-l2a/_scenes/") for key in keys) == 4
    assert f"{PREFIX}/{manifest_key('small', 'period_blend', '000000', '2024-01-01')}" in keys
    assert sum(key.endswith("_LCF_B04.tif") for key in keys) == 1
    # The simulator's archive and the fetched raw scenes are the only local files.
    local_files = [
        p
        for p in built.data_root.rglob("*")
        if p.is_file() and p.relative_to(built.data_root).parts[0] not in ("archive", "raw")
    ]
    assert local_files == [], "with CUBE_ENV=prod products are never left on the local disk"
    assert s3_server.incomplete_uploads(built.bucket) == []


def test_every_published_raster_is_a_valid_cog_read_over_vsis3(built: Built, s3_server: S3Server) -> None:
    tifs = [k for k in s3_server.object_keys(built.bucket) if k.endswith(".tif") and "/sr/" not in k]
    assert len(tifs) > 40
    with built.store.gdal_environment():
        invalid = [k for k in tifs if not is_valid_cog(f"/vsis3/{built.bucket}/{k}")]
    assert invalid == []


def test_lcf_pixels_read_over_vsis3_come_from_the_merge_their_provenance_names(built: Built) -> None:
    merges = {m["date"]: m for m in built.manifest("tile_merge")["merges"]}
    lcf = built.manifest("period_blend")["composites"]["LCF"]["bands"]
    assert lcf["B04"].startswith(f"s3://{built.bucket}/{PREFIX}/small/000000/2024-01-01/")
    window = Window(64, 32, 128, 160)
    with built.store.gdal_environment():
        with rasterio.open(built.store.gdal_path(lcf["B04"])) as src:
            composite = src.read(1, window=window)
        with rasterio.open(built.store.gdal_path(lcf["PROVENANCE"])) as src:
            provenance = src.read(1, window=window)
        assert set(np.unique(provenance)) <= {-1, 4, 9}
        for day, merge in merges.items():
            with rasterio.open(built.store.gdal_path(merge["bands"]["B04"])) as src:
                values = src.read(1, window=window)
            chosen = provenance == date.fromisoformat(day).timetuple().tm_yday
            assert chosen.any()
            np.testing.assert_array_equal(composite[chosen], values[chosen])


def test_catalog_rows_on_postgresql_point_at_s3_objects_of_the_recorded_size(built: Built) -> None:
    engine = create_catalog_engine(built.catalog_url)
    try:
        assert engine.dialect.name == "postgresql"
        with session_factory(engine)() as session:
            images = search_images(session, tile="000000")
            files = [f for image in images for f in image.files]
    finally:
        engine.dispose()
    assert sorted(i.product_id for i in images) == ["small-AVG", "small-LCF", "small-MED", "small-merge", "small-merge"]
    assert len(files) == 3 * 8 + 2 + 2 * 6  # composites (LCF adds SCL, PROVENANCE), merges
    assert all(f.href.startswith(f"s3://{built.bucket}/{PREFIX}/") for f in files)
    assert all(built.store.size(f.href) == f.size_bytes for f in files)


def test_rematerializing_the_catalog_item_updates_rows_without_duplicating_them(built: Built, tmp_path: Path) -> None:
    with pytest.MonkeyPatch.context() as patch:
        for name, value in built.environment.items():
            patch.setenv(name, value)
        with instance_for_test(temp_dir=str(tmp_path)) as instance:
            result = materialize(
                _assets(built.config, UP_TO_MERGE + ["period_blend", "catalog_item"]),
                selection=AssetSelection.assets(AssetKey(["small", "catalog_item"])),
                partition_key=PARTITION,
                instance=instance,
                resources=built.defs.resources,
            )
    assert result.success
    metadata = result.asset_materializations_for_node("small__catalog_item")[0].metadata
    assert metadata["image_count"].value == 9
    assert metadata["images_changed"].value == 0, "an identical re-run changes no row"
    engine = create_catalog_engine(built.catalog_url)
    try:
        with session_factory(engine)() as session:
            assert len(search_images(session, tile="000000")) == 5
            assert len(search_images(session, product_id="sentinel-2-l2a")) == 4
    finally:
        engine.dispose()


def test_prod_definitions_name_the_variables_they_miss(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from cube_assets.errors import InvalidCubeConfig

    config = write_cube_file(tmp_path, SMALL_CUBE, [SMALL_SIMULATOR])
    monkeypatch.delenv("CUBE_ASSETS_S3_BUCKET", raising=False)
    monkeypatch.delenv("CUBE_ASSETS_CATALOG_URL", raising=False)
    with pytest.raises(InvalidCubeConfig, match="CUBE_ASSETS_S3_BUCKET, CUBE_ASSETS_CATALOG_URL"):
        build_definitions(config, tmp_path / "data", env="prod")


def test_prod_store_reads_secrets_as_env_vars_preferring_the_cube_assets_names(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from dagster import EnvVar

    from cube_assets.definitions import prod_store

    for name in (
        "CUBE_ASSETS_S3_ACCESS_KEY_ID",
        "CUBE_ASSETS_S3_SECRET_ACCESS_KEY",
        "CUBE_ASSETS_S3_SESSION_TOKEN",
        "AWS_ENDPOINT_URL_S3",
    ):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "aws-key")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "aws-secret")
    monkeypatch.setenv("AWS_SESSION_TOKEN", "aws-token")
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")
    from_aws = prod_store(tmp_path)
    assert from_aws.session_token == EnvVar("AWS_SESSION_TOKEN")
    assert (from_aws.access_key_id, from_aws.secret_access_key) == (
        EnvVar("AWS_ACCESS_KEY_ID"),
        EnvVar("AWS_SECRET_ACCESS_KEY"),
    )
    assert from_aws.endpoint_url == EnvVar("AWS_ENDPOINT_URL")
    assert from_aws.bucket == EnvVar("CUBE_ASSETS_S3_BUCKET")

    monkeypatch.setenv("CUBE_ASSETS_S3_ACCESS_KEY_ID", "cube-key")
    monkeypatch.setenv("CUBE_ASSETS_S3_SECRET_ACCESS_KEY", "cube-secret")
    preferred = prod_store(tmp_path)
    assert (preferred.access_key_id, preferred.secret_access_key) == (
        EnvVar("CUBE_ASSETS_S3_ACCESS_KEY_ID"),
        EnvVar("CUBE_ASSETS_S3_SECRET_ACCESS_KEY"),
    )
    assert preferred.session_token == "", "an AWS session token never pairs with the CUBE_ASSETS_ keys"
