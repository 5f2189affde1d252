"""Crash safety: a materialization killed with SIGKILL while it writes never leaves a partial product.

Each scenario runs the graph in a subprocess (this module is its ``__main__``) that stops
itself at a chosen point of the write path and tells the test so; the test then SIGKILLs it,
checks what a reader sees, re-runs the partition and compares the pixels with an uninterrupted
run:

* local filesystem, re-run of a built partition killed while it writes a composite (the staged
  COG is finished but not yet moved into place): every final name still holds a complete COG
  with the first run's pixels, and every catalog row points at an existing file;
* S3 (moto's server over HTTP) with the catalog on PostgreSQL, first run killed in the middle of
  a merge's multipart upload (one part sent, the upload not completed): the object is not
  visible at all, the merges already uploaded are complete, and no catalog row exists yet.

The stop points are installed in the subprocess only: ``os.replace`` onto the final name (local)
and a botocore ``after-call`` hook on ``UploadPart`` (S3); nothing in the product code knows
about them. Nothing is mocked: the kill is a real SIGKILL of the process doing the writing.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import rasterio

from cube_assets_tests.conftest import REPO_ROOT, SMALL_CUBE, SMALL_SIMULATOR, write_cube_file

PERIOD, TILE = "2024-01-01", "000000"
ALL_STAGES = ["raw_scene", "surface_reflectance", "scene_cog", "tile_merge", "period_blend", "catalog_item"]
FROM_MERGE = ["tile_merge", "period_blend", "catalog_item"]
#: Where the subprocess stops: a key fragment of the file being written when it is killed.
STOP_IN_MERGE = "/2024-01-09/small_000000_20240109_B04.tif"
STOP_IN_COMPOSITE = "small_000000_20240101_MED_B04.tif"
NOT_PRODUCTS = ("archive", "raw", ".staging")


# ---------------------------------------------------------------------------------------------
# The subprocess: materialize the partition, stopping (to be killed) inside a chosen write.
# ---------------------------------------------------------------------------------------------


def _stop_here(stop_file: Path, details: dict[str, Any]) -> None:
    """Tell the test where we are (atomically), then wait to be killed."""
    tmp = stop_file.with_suffix(".tmp")
    tmp.write_text(json.dumps(details))
    os.replace(tmp, stop_file)
    time.sleep(600)


def _install_stop(stop_key: str, stop_file: Path) -> None:
    from cube_assets.storage.s3_store import S3RasterStore

    # Local: stop at the rename that would put the file under its final name. A publish that
    # wrote the final name any other way (a copy, GDAL writing in place) never gets here, and
    # the run then ends without stopping, which fails the test.
    replace = os.replace

    def stop_before_the_final_rename(source: Any, destination: Any, **kwargs: Any) -> None:
        if str(destination).endswith(stop_key):
            _stop_here(stop_file, {"key": str(destination), "staged": str(source)})
        replace(source, destination, **kwargs)

    os.replace = stop_before_the_final_rename

    # S3: stop after the first part of the file's multipart upload, before it is completed.
    s3_publish = S3RasterStore.publish

    def s3_publish_stopping_mid_upload(
        self: S3RasterStore, local_file: Path, key: str, content_type: str | None = None
    ) -> str:
        if key.endswith(stop_key):
            self.multipart_threshold = 1024  # this file goes up in parts

            def after_first_part(**_kwargs: Any) -> None:
                _stop_here(stop_file, {"key": key, "object_key": self.object_key(key)})

            self.client.meta.events.register("after-call.s3.UploadPart", after_first_part)
        return s3_publish(self, local_file, key, content_type)

    S3RasterStore.publish = s3_publish_stopping_mid_upload  # type: ignore[method-assign]  # the test replaces the method with one that stops mid-upload


def _materialize(config: Path, data_root: Path, stages: list[str]) -> bool:
    """Materialize ``stages`` of the small cube's partition with ``CUBE_ENV`` definitions; return success."""
    from dagster import AssetKey, AssetSelection, DagsterInstance, materialize

    from cube_assets.definitions import build_definitions
    from cube_assets.partitions import partition_key

    defs = build_definitions(config, data_root, env=os.environ.get("CUBE_ENV", "local"))
    assets = [a for a in defs.assets if a.key.path[0] == "small"]  # type: ignore[union-attr]  # these definitions hold assets definitions, which have keys
    with DagsterInstance.ephemeral() as instance:
        result = materialize(
            assets,
            selection=AssetSelection.assets(*(AssetKey(["small", s]) for s in stages)),
            partition_key=partition_key(TILE, PERIOD),
            instance=instance,
            resources=defs.resources,
        )
    return result.success


def main() -> None:
    """``python -m cube_assets_tests.test_crash_safety CONFIG DATA_ROOT STAGES [--stop-at KEY --stop-file FILE]``."""
    parser = argparse.ArgumentParser()
    parser.add_argument("config", type=Path)
    parser.add_argument("data_root", type=Path)
    parser.add_argument("stages")
    parser.add_argument("--stop-at")
    parser.add_argument("--stop-file", type=Path)
    args = parser.parse_args()
    if args.stop_at:
        _install_stop(args.stop_at, args.stop_file)
    sys.exit(0 if _materialize(args.config, args.data_root, args.stages.split(",")) else 1)


# ---------------------------------------------------------------------------------------------
# The test side
# ---------------------------------------------------------------------------------------------


def _run_and_kill(
    config: Path, data_root: Path, stages: list[str], stop_at: str, environment: dict[str, str], tmp: Path
) -> dict[str, Any]:
    """Run the subprocess until it stops at ``stop_at``, SIGKILL it, and return where it stopped."""
    stop_file = tmp / "stopped.json"
    log = tmp / "subprocess.log"
    with log.open("wb") as output:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "cube_assets_tests.test_crash_safety",
                str(config),
                str(data_root),
                ",".join(stages),
                "--stop-at",
                stop_at,
                "--stop-file",
                str(stop_file),
            ],
            cwd=REPO_ROOT,
            env={**os.environ, **environment},
            stdout=output,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + 300
        while not stop_file.exists():
            if process.poll() is not None:
                pytest.fail(
                    f"the run ended (exit {process.returncode}) before reaching {stop_at}:\n{log.read_text()[-3000:]}"
                )
            if time.monotonic() > deadline:
                pytest.fail(f"the run did not reach {stop_at} within 300 s:\n{log.read_text()[-3000:]}")
            time.sleep(0.05)
        os.kill(process.pid, signal.SIGKILL)
    finally:
        if process.poll() is None:
            process.kill()
        process.wait(timeout=60)
    assert process.returncode == -signal.SIGKILL
    return json.loads(stop_file.read_text())


def _pixels_digest(path: str) -> str:
    with rasterio.open(path) as src:
        return hashlib.sha256(src.read().tobytes() + str(src.dtypes).encode()).hexdigest()


def _product_digests(paths: dict[str, str]) -> dict[str, str]:
    """``{relative key: pixel digest}`` of every merge and composite band (``.tif`` outside ``scenes/``)."""
    return {
        key: _pixels_digest(path) for key, path in paths.items() if key.endswith(".tif") and "/scenes/" not in f"/{key}"
    }


def _local_products(data_root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(data_root)): str(p)
        for p in data_root.rglob("*")
        if p.is_file() and p.relative_to(data_root).parts[0] not in NOT_PRODUCTS and "sqlite" not in p.name
    }


def _catalog_files(url: str) -> list[tuple[str, str, int | None]]:
    """``(image id, href, size)`` of every file in the catalog; empty if the catalog was never written."""
    from sqlalchemy import inspect, select

    from cube_assets.catalog.database import create_catalog_engine, session_factory
    from cube_assets.catalog.models import ImageFile

    engine = create_catalog_engine(url)
    try:
        if "image_files" not in inspect(engine).get_table_names():
            return []
        with session_factory(engine)() as session:
            return [(f.image_id, f.href, f.size_bytes) for f in session.scalars(select(ImageFile))]
    finally:
        engine.dispose()


@dataclass(frozen=True)
class Baseline:
    """An uninterrupted local run of the partition: where, and the pixels of every merge and composite."""

    config: Path
    data_root: Path
    digests: dict[str, str]


@pytest.fixture(scope="module")
def baseline(tmp_path_factory: pytest.TempPathFactory) -> Baseline:
    """The whole graph, run once without interruption on the local filesystem (SQLite catalog)."""
    root = tmp_path_factory.mktemp("crash_baseline")
    config = write_cube_file(root, SMALL_CUBE, [SMALL_SIMULATOR])
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("CUBE_ENV", "local")
        assert _materialize(config, root / "data", ALL_STAGES)
    digests = _product_digests(_local_products(root / "data"))
    # 2 merges x (4 bands, SCL, DATASOURCE); 3 composites x (4 bands, CLEAROB, TOTALOB, NDVI); LCF's SCL, PROVENANCE
    assert len(digests) == 2 * 6 + 3 * 7 + 2
    return Baseline(config, root / "data", digests)


def test_local_rerun_killed_while_writing_a_composite_leaves_complete_files_and_valid_rows(
    baseline: Baseline, tmp_path: Path
) -> None:
    from cube_assets.catalog.database import default_catalog_url
    from cube_assets.raster.cog import is_valid_cog

    stopped = _run_and_kill(
        baseline.config, baseline.data_root, FROM_MERGE, STOP_IN_COMPOSITE, {"CUBE_ENV": "local"}, tmp_path
    )

    # The killed run had finished the COG in the staging folder; it never reached its final name.
    assert Path(stopped["staged"]).is_file()
    assert Path(stopped["staged"]).is_relative_to(baseline.data_root / ".staging")
    products = _local_products(baseline.data_root)
    assert not [key for key in products if ".tmp" in key], "temporary files under product folders"
    assert all(is_valid_cog(path) for key, path in products.items() if key.endswith(".tif") and "/sr/" not in key)
    assert _product_digests(products) == baseline.digests, "a final name holds other pixels than a complete run's"
    catalog = _catalog_files(default_catalog_url(baseline.data_root))
    assert len(catalog) > 40
    assert [href for _, href, _ in catalog if not Path(href).is_file()] == []

    assert _materialize(baseline.config, baseline.data_root, FROM_MERGE)

    assert _product_digests(_local_products(baseline.data_root)) == baseline.digests
    rows = _catalog_files(default_catalog_url(baseline.data_root))
    assert sorted(rows) == sorted(catalog), "the re-run updates the same rows and adds none"


@pytest.fixture
def prod_environment(
    s3_server, s3_bucket: str, postgresql_schema_url: str, monkeypatch: pytest.MonkeyPatch
) -> dict[str, str]:
    """``CUBE_ENV=prod`` variables: a new bucket on the S3 test server and a new schema on the PostgreSQL one."""
    environment = {**s3_server.environment(s3_bucket, prefix="cubes"), "CUBE_ASSETS_CATALOG_URL": postgresql_schema_url}
    for name, value in environment.items():
        monkeypatch.setenv(name, value)
    return environment


def test_s3_first_run_killed_mid_multipart_upload_of_a_merge_shows_no_partial_object(
    baseline: Baseline,
    s3_server,
    s3_bucket: str,
    prod_environment: dict[str, str],
    tmp_path: Path,
) -> None:
    from cube_assets.raster.cog import is_valid_cog

    root = tmp_path / "prod"
    root.mkdir()
    config = write_cube_file(root, SMALL_CUBE, [SMALL_SIMULATOR])
    store = s3_server.store(s3_bucket, prefix="cubes")

    stopped = _run_and_kill(config, root / "data", ALL_STAGES, STOP_IN_MERGE, prod_environment, tmp_path)

    # One part of the merge band was uploaded, the upload was never completed: nothing is visible.
    assert s3_server.incomplete_uploads(s3_bucket) == [stopped["object_key"]]
    keys = s3_server.object_keys(s3_bucket)
    assert stopped["object_key"] not in keys
    assert not store.exists(stopped["key"])
    merge_keys = [k for k in keys if ("/2024-01-04/" in k or "/2024-01-09/" in k) and k.endswith(".tif")]
    assert len(merge_keys) == 6 + 2, "the first date's merge and two bands of the second were published"
    with store.gdal_environment():
        assert all(
            is_valid_cog(f"/vsis3/{s3_bucket}/{key}") for key in keys if key.endswith(".tif") and "/sr/" not in key
        )
        published = {k.removeprefix("cubes/"): f"/vsis3/{s3_bucket}/{k}" for k in merge_keys}
        assert _product_digests(published) == {k: baseline.digests[k] for k in published}
    assert _catalog_files(prod_environment["CUBE_ASSETS_CATALOG_URL"]) == []

    # The scene stages had finished (their manifests are stored); re-run from the merge on.
    assert _materialize(config, root / "data", FROM_MERGE)

    products = {k.removeprefix("cubes/"): f"/vsis3/{s3_bucket}/{k}" for k in s3_server.object_keys(s3_bucket)}
    with store.gdal_environment():
        assert _product_digests(products) == baseline.digests, "the re-run gives the uninterrupted run's pixels"
    catalog = _catalog_files(prod_environment["CUBE_ASSETS_CATALOG_URL"])
    assert len(catalog) > 40
    assert all(store.size(href) == size for _, href, size in catalog)


if __name__ == "__main__":
    main()
