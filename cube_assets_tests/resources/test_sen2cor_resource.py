"""The Sen2Cor resource: docker command, version fallback, timeout, validation and reuse of outputs.

No Docker engine runs on these machines, so ``docker`` is a stand-in executable first on PATH
(``standin_docker`` in conftest.py, source in standin_docker.py): it records every call and,
per test, writes a small valid Level-2A product (made by the scene simulator on the grid of the
real L1C), fails, writes an incomplete product or hangs until ``docker stop``. Everything else
is real: the subprocess and its timeout, the mounts of real folders, the product the stand-in
writes, read back and validated with GDAL. ``test_real_sen2cor_image`` runs the real image
where a Docker engine is present and is skipped elsewhere (also in CI).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import rasterio
from dagster import AssetKey, AssetSelection, instance_for_test, materialize
from shapely.geometry import mapping

from cube_assets.assets import build_cube_assets
from cube_assets.cube_config import load_project_config
from cube_assets.definitions import build_definitions
from cube_assets.errors import InvalidScene
from cube_assets.formats.sen2cor import (
    CONTAINER_CCI_DIR,
    CONTAINER_INPUT_DIR,
    CONTAINER_OUTPUT_DIR,
    L2A_BANDS,
    SEN2COR_POOL,
    Sen2CorError,
    Sen2CorTimeout,
    validate_l2a_product,
)
from cube_assets.formats.sentinel2_safe import open_safe, parse_product_metadata
from cube_assets.partitions import partition_key
from cube_assets.resources.sen2cor import Sen2CorResource
from cube_assets.storage.layout import manifest_key
from cube_assets_tests.conftest import SMALL_CUBE, write_cube_file

pytestmark = pytest.mark.real_data

L1C_FOLDER = "S2A_MSIL1C_20210908T042701_N0301_R133_T46RER_20210908T070248.SAFE"
L1C_ID = L1C_FOLDER.removesuffix(".SAFE")


@pytest.fixture
def l1c(real_data: Path, tmp_path: Path) -> Path:
    """The real L1C T46RER product (metadata only), seen through a symbolic link as archives often are."""
    archive = tmp_path / "archive"
    archive.mkdir()
    link = archive / L1C_FOLDER
    link.symlink_to(real_data / "stactools-sentinel2/tests/data-files" / L1C_FOLDER)
    return link


def _resource(tmp_path: Path, **config) -> Sen2CorResource:
    return Sen2CorResource(output_dir=str(tmp_path / "l2a"), **config)


def _volumes(args: list[str]) -> dict[str, str]:
    """container path → ``host:mode`` of every ``--volume`` of a recorded ``docker run``."""
    volumes = [args[i + 1] for i, a in enumerate(args) if a == "--volume"]
    return {v.split(":")[1]: f"{v.split(':')[0]}:{v.split(':')[2]}" for v in volumes}


def test_a_run_mounts_the_product_and_writes_a_validated_l2a(standin_docker, l1c, tmp_path):
    output = _resource(tmp_path).to_l2a(l1c)

    (run,) = standin_docker.runs()
    args = run["args"]
    assert args[:2] == ["--rm", "--name"] and args[2].startswith("sen2cor-T46RER-20210908T042701-2.11.0-")
    assert args[-2:] == ["brazildatacube/sen2cor:2.11.0", L1C_FOLDER]
    volumes = _volumes(args)
    # the symbolic link is resolved: the container sees the real folder, read-only
    assert volumes[CONTAINER_INPUT_DIR] == f"{l1c.resolve().parent}:ro"
    assert volumes[CONTAINER_OUTPUT_DIR].endswith(":rw") and volumes[CONTAINER_OUTPUT_DIR].startswith(
        str(tmp_path / "l2a")
    )
    assert set(volumes) == {CONTAINER_INPUT_DIR, CONTAINER_OUTPUT_DIR}
    assert output.version == "2.11.0" and output.image == "brazildatacube/sen2cor:2.11.0" and not output.reused
    assert output.path.parent == tmp_path / "l2a"
    assert output.path.name.startswith("S2A_MSIL2A_20210908T042701_") and "_T46RER_" in output.path.name
    product = validate_l2a_product(output.path, parse_product_metadata(l1c))
    assert set(L2A_BANDS) | {"SCL"} <= set(product.band_files)
    # only the product is left in the output folder: the hidden work folder is gone
    assert [p.name for p in (tmp_path / "l2a").iterdir()] == [output.path.name]


def test_cci_and_gipp_are_mounted_read_only_where_the_image_expects_them(standin_docker, l1c, tmp_path):
    cci = tmp_path / "CCI4SEN2COR"
    cci.mkdir()
    gipp = tmp_path / "L2A_GIPP.xml"
    gipp.write_text("<Level-2A_Ground_Image_Processing_Parameter/>")

    _resource(tmp_path, cci_dir=str(cci), gipp_path=str(gipp), docker_user="1000:1000").to_l2a(l1c)

    (run,) = standin_docker.runs()
    volumes = _volumes(run["args"])
    assert volumes[CONTAINER_CCI_DIR] == f"{cci}:ro"
    assert volumes["/opt/sen2cor/2.11.0/cfg/L2A_GIPP.xml"] == f"{gipp}:ro"
    assert run["args"][run["args"].index("--user") + 1] == "1000:1000"


def test_versions_are_tried_in_order_until_one_succeeds(standin_docker, l1c, tmp_path):
    standin_docker.missing_images("brazildatacube/sen2cor:2.11.0", "brazildatacube/sen2cor:2.10.0")

    output = _resource(tmp_path).to_l2a(l1c)

    images = [run["args"][-2] for run in standin_docker.runs()]
    assert images == ["brazildatacube/sen2cor:2.11.0", "brazildatacube/sen2cor:2.10.0", "brazildatacube/sen2cor:2.8.0"]
    assert output.version == "2.8.0"


def test_every_version_failing_names_the_scene_and_each_failure(standin_docker, l1c, tmp_path):
    standin_docker.mode("fail")

    with pytest.raises(Sen2CorError) as caught:
        _resource(tmp_path, versions=["2.11.0", "2.5.5"]).to_l2a(l1c)

    message = str(caught.value)
    assert L1C_ID in message
    assert "brazildatacube/sen2cor:2.11.0: exit status 1" in message
    assert "brazildatacube/sen2cor:2.5.5: exit status 1" in message
    assert "stand-in failure" in message  # the container's own output is quoted
    assert len(standin_docker.runs()) == 2
    assert not list((tmp_path / "l2a").iterdir())


def test_an_incomplete_product_is_not_accepted(standin_docker, l1c, tmp_path):
    standin_docker.mode("no-scl")

    with pytest.raises(Sen2CorError, match=r"invalid output: .*band\(s\) SCL missing"):
        _resource(tmp_path, versions=["2.11.0"]).to_l2a(l1c)
    assert not list((tmp_path / "l2a").iterdir())


def test_a_run_that_writes_nothing_is_a_failure(standin_docker, l1c, tmp_path):
    standin_docker.mode("nothing")

    with pytest.raises(Sen2CorError, match=r"exited 0 but wrote no Level-2A product"):
        _resource(tmp_path, versions=["2.10.0"]).to_l2a(l1c)


def test_a_hanging_run_is_stopped_and_names_the_scene(standin_docker, l1c, tmp_path):
    standin_docker.mode("hang")

    with pytest.raises(Sen2CorTimeout) as caught:
        _resource(tmp_path, timeout_seconds=1, stop_grace_seconds=5).to_l2a(l1c)

    assert L1C_ID in str(caught.value) and "longer than 1 s" in str(caught.value)
    calls = standin_docker.calls()
    run_name = calls[0]["args"][calls[0]["args"].index("--name") + 1]
    # stopped by the name it was given; no other version tried after a timeout
    assert [c["command"] for c in calls] == ["run", "stop"]
    assert calls[1]["args"] == ["--time", "5", run_name]
    assert run_name in str(caught.value)
    with pytest.raises(ProcessLookupError):
        os.kill(calls[0]["pid"], 0)  # the "container" process is gone (and was reaped)
    assert not list((tmp_path / "l2a").iterdir())


def test_a_tagged_image_is_run_as_given_once(standin_docker, l1c, tmp_path):
    standin_docker.missing_images("registry.local:5000/sen2cor:2.10.0")

    with pytest.raises(Sen2CorError):
        _resource(tmp_path, image="registry.local:5000/sen2cor:2.10.0").to_l2a(l1c)

    images = [run["args"][-2] for run in standin_docker.runs()]
    assert images == ["registry.local:5000/sen2cor:2.10.0"]


def test_an_existing_product_is_reused_without_running_sen2cor(standin_docker, l1c, tmp_path):
    resource = _resource(tmp_path)
    first = resource.to_l2a(l1c)

    second = resource.to_l2a(l1c)

    assert second.reused and second.path == first.path and second.product_id == first.product_id
    assert len(standin_docker.runs()) == 1


def test_an_invalid_leftover_product_is_replaced(standin_docker, l1c, tmp_path):
    resource = _resource(tmp_path)
    first = resource.to_l2a(l1c)
    next(first.path.rglob("*_B05_*.jp2")).write_bytes(b"truncated")

    second = resource.to_l2a(l1c)

    assert not second.reused and len(standin_docker.runs()) == 2
    validate_l2a_product(second.path, parse_product_metadata(l1c))


def test_a_level_2a_input_is_refused(standin_docker, t29unu_safe, tmp_path):
    with pytest.raises(InvalidScene, match=r"T29UNU.*is L2A; Sen2Cor needs a Level-1C"):
        _resource(tmp_path).to_l2a(t29unu_safe)
    assert standin_docker.runs() == []


def test_missing_docker_executable_is_named(l1c, tmp_path):
    with pytest.raises(Sen2CorError, match=r"docker executable 'no-such-docker' not found"):
        _resource(tmp_path, docker="no-such-docker").to_l2a(l1c)


def test_missing_auxiliary_data_is_named(standin_docker, l1c, tmp_path):
    with pytest.raises(Sen2CorError, match=r"cci_dir .*nowhere: no such folder"):
        _resource(tmp_path, cci_dir=str(tmp_path / "nowhere")).to_l2a(l1c)
    assert standin_docker.runs() == []


# -- through the asset graph -------------------------------------------------------------------

CUBE = {
    **SMALL_CUBE,  # its bands, quality rules, NDVI and temporal schema
    "name": "l1c",
    "collection": "sentinel-2-l1c",
    "providers": ["archive"],
    # one 600 m tile at the upper-left corner of T46RER, where the stand-in's L2A product lies
    "grid": {
        "kind": "user",
        "name": "T46RER10",
        "crs": 32646,
        "origin": [499980, 3100020],
        "tile_size": [60, 60],
        "resolution": 10,
    },
    "start_date": "2021-08-29",
    "end_date": "2021-09-13",
    "composites": ["LCF"],
}
STAGES = ("surface_reflectance", "scene_cog", "tile_merge")
PARTITION = partition_key("000000", "2021-08-29")


def _raw_scene_manifest(data: Path, l1c: Path) -> None:
    """What ``raw_scene`` writes for the L1C (written here: raw_scene's own raw-store checks are
    not what this test is about, and the real L1C sample holds metadata only)."""
    metadata = parse_product_metadata(l1c)
    scene = {
        "scene_id": metadata.product_id,
        "collection": "sentinel-2-l1c",
        "datetime": metadata.sensing_time.isoformat(),
        "provider": "archive",
        "path": str(l1c),
        "cloud_cover": metadata.cloud_cover,
        "footprint": mapping(metadata.footprint),
    }
    manifest = data / manifest_key("l1c", "raw_scene", "000000", "2021-08-29")
    manifest.parent.mkdir(parents=True)
    manifest.write_text(json.dumps({"tile": "000000", "period": "2021-08-29", "scenes": [scene]}))


def test_an_l1c_cube_runs_sen2cor_in_its_pool_and_merges_the_l2a(standin_docker, l1c, tmp_path):
    config = write_cube_file(
        tmp_path, CUBE, [{"name": "archive", "driver": "local", "options": {"root": str(l1c.parent)}}]
    )
    data = tmp_path / "data"
    defs = build_definitions(config, data)
    assets = build_cube_assets(load_project_config(config).cube("l1c"))
    by_stage = {a.key.path[-1]: a for a in assets}
    assert by_stage["surface_reflectance"].op.pool == SEN2COR_POOL
    assert "sen2cor" in by_stage["surface_reflectance"].required_resource_keys
    _raw_scene_manifest(data, l1c)
    (tmp_path / "home").mkdir()
    with instance_for_test(temp_dir=str(tmp_path / "home")) as instance:
        result = materialize(
            assets,
            selection=AssetSelection.assets(*(AssetKey(["l1c", s]) for s in STAGES)),
            partition_key=PARTITION,
            instance=instance,
            resources=defs.resources,
        )
        assert result.success
        metadata = instance.get_latest_materialization_event(
            AssetKey(["l1c", "surface_reflectance"])
        ).asset_materialization.metadata
    (scene,) = json.loads((data / manifest_key("l1c", "surface_reflectance", "000000", "2021-08-29")).read_text())[
        "scenes"
    ]
    assert scene["scene_id"] == L1C_ID
    assert scene["sen2cor"]["version"] == "2.11.0"
    assert metadata["sen2cor"].value[L1C_ID]["l2a_product_id"] == scene["sen2cor"]["l2a_product_id"]
    l2a = open_safe(scene["sen2cor"]["l2a_path"])
    assert Path(scene["sen2cor"]["l2a_path"]).parent == data / "sen2cor"
    # the reflectance is the L2A's DN plus its offset (−1000), not anything from the L1C
    with rasterio.open(l2a.band_path("B04", 10)) as src, rasterio.open(scene["bands"]["B04"]) as sr:
        dn, reflectance = src.read(1).astype(int), sr.read(1).astype(int)
    assert np.array_equal(reflectance[dn > 1000], dn[dn > 1000] - 1000)
    (merge,) = json.loads((data / manifest_key("l1c", "tile_merge", "000000", "2021-08-29")).read_text())["merges"]
    assert merge["date"] == "2021-09-08" and merge["scenes"] == [L1C_ID]
    assert 0 < merge["efficacy"] < 100
    assert len(standin_docker.runs()) == 1


def test_an_l2a_cube_neither_needs_sen2cor_nor_its_pool():
    cube = load_project_config(Path(__file__).parents[2] / "cube_assets/cubes/demo.yaml").cubes[0]
    (asset,) = [a for a in build_cube_assets(cube) if a.key.path[-1] == "surface_reflectance"]

    assert asset.op.pool is None
    assert "sen2cor" not in asset.required_resource_keys


# -- the real image ------------------------------------------------------------------------------


def _docker_engine_available() -> bool:
    docker = shutil.which("docker")
    if docker is None:
        return False
    try:
        return subprocess.run([docker, "info"], capture_output=True, timeout=20, check=False).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


REAL_L1C = os.environ.get("CUBE_ASSETS_SEN2COR_L1C")  # an L1C .SAFE with its rasters (none in ../shared)


@pytest.mark.slow
@pytest.mark.skipif(not REAL_L1C, reason="set CUBE_ASSETS_SEN2COR_L1C to a Level-1C .SAFE with rasters")
@pytest.mark.skipif(
    not _docker_engine_available(), reason="no Docker engine (docker info fails); skipped here and in CI"
)
def test_real_sen2cor_image(tmp_path):
    """Runs ``brazildatacube/sen2cor`` for real (an hour or so), with CCI data from
    ``CUBE_ASSETS_SEN2COR_CCI`` when set, and validates what it wrote."""
    resource = Sen2CorResource(output_dir=str(tmp_path / "l2a"), cci_dir=os.environ.get("CUBE_ASSETS_SEN2COR_CCI"))

    output = resource.to_l2a(REAL_L1C)

    product = validate_l2a_product(output.path, parse_product_metadata(REAL_L1C))
    assert product.metadata.product_type == "L2A" and output.version in resource.versions
