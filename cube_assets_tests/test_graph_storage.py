"""The cube's ``dtype`` and ``nodata`` flow through every stage: scenes, merges and composites.

Two cubes over the simulated scenes of ``SMALL_CUBE``, a uint16 one with nodata 65535 and an
int16 one with nodata −32768, are materialized from the raw scenes to the blend on a
temporary instance. Every file each stage writes must carry the cube's type and nodata, no
pixel may hold the −9999 of the default cube, and a pixel that is nodata in a spectral band
of a merge must be nodata (not cloud) in its quality band.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path

import numpy as np
import pytest
import rasterio
from dagster import instance_for_test, materialize

from cube_assets.assets import build_cube_assets
from cube_assets.cube_config import load_project_config
from cube_assets.definitions import build_definitions
from cube_assets.partitions import partition_key
from cube_assets.storage.layout import manifest_key
from cube_assets_tests.conftest import SMALL_CUBE, SMALL_SIMULATOR, write_cube_file

PARTITION = partition_key("000000", "2024-01-01")
STAGES = ["raw_scene", "surface_reflectance", "scene_cog", "tile_merge", "period_blend"]


def _build(root: Path, dtype: str, nodata: float) -> Path:
    cube = copy.deepcopy(SMALL_CUBE)
    cube.update(dtype=dtype, nodata=nodata, composites=["LCF"], indexes={})
    config = write_cube_file(root, cube, [SMALL_SIMULATOR])
    defs = build_definitions(config, root / "data")
    assets = [a for a in build_cube_assets(load_project_config(config).cube("small")) if a.key.path[-1] in STAGES]
    (root / "home").mkdir()
    with instance_for_test(temp_dir=str(root / "home")) as instance:
        assert materialize(assets, partition_key=PARTITION, instance=instance, resources=defs.resources).success
    return root / "data"


def _manifest(data: Path, stage: str) -> dict:
    return json.loads((data / manifest_key("small", stage, "000000", "2024-01-01")).read_text())


@pytest.fixture(scope="module")
def default_cube(tmp_path_factory) -> Path:
    return _build(tmp_path_factory.mktemp("int16_9999"), "int16", -9999)


@pytest.fixture(scope="module", params=[("uint16", 65535), ("int16", -32768)], ids=["uint16_65535", "int16_32768"])
def cube(request, tmp_path_factory) -> tuple[Path, str, float]:
    dtype, nodata = request.param
    return _build(tmp_path_factory.mktemp(f"{dtype}_{nodata}"), dtype, nodata), dtype, nodata


def _read(path: str) -> tuple[np.ndarray, str, float | None]:
    with rasterio.open(path) as src:
        return src.read(1), src.dtypes[0], src.nodata


def test_scene_reflectance_is_written_in_the_cubes_type_and_nodata(cube, default_cube):
    data, dtype, nodata = cube
    reference = {s["scene_id"]: s for s in _manifest(default_cube, "surface_reflectance")["scenes"]}
    scenes = _manifest(data, "surface_reflectance")["scenes"]
    assert len(scenes) == 4
    nodata_pixels = 0
    for scene in scenes:
        for band, uri in scene["bands"].items():
            values, file_dtype, file_nodata = _read(uri)
            assert (file_dtype, file_nodata) == (dtype, nodata)
            expected, _, _ = _read(reference[scene["scene_id"]]["bands"][band])
            # the same pixels are nodata, and the same reflectance elsewhere
            np.testing.assert_array_equal(values == nodata, expected == -9999)
            assert not (values == -9999).any()
            nodata_pixels += int((values == nodata).sum())
            valid = expected != -9999
            np.testing.assert_array_equal(values[valid].astype(np.int64), expected[valid].astype(np.int64))
    assert nodata_pixels > 1000


def test_merges_keep_the_cubes_type_and_turn_spectral_nodata_into_quality_nodata(cube):
    data, dtype, nodata = cube
    merges = _manifest(data, "tile_merge")["merges"]
    assert len(merges) == 2
    for merge in merges:
        scl, _, scl_nodata = _read(merge["quality"])
        missing = np.zeros(scl.shape, dtype=bool)
        for uri in merge["bands"].values():
            values, file_dtype, file_nodata = _read(uri)
            assert (file_dtype, file_nodata) == (dtype, nodata)
            assert not (values == -9999).any()
            missing |= values == nodata
        assert missing.any() and scl_nodata == 0
        assert (scl[missing] == 0).all()  # nodata, not cloud
        assert merge["valid_pixels"] == int((scl != 0).sum())


def test_composites_are_written_in_the_cubes_type_and_nodata(cube):
    data, dtype, nodata = cube
    composites = _manifest(data, "period_blend")["composites"]
    assert set(composites) == {"LCF"}
    for function in ("LCF",):
        values, file_dtype, file_nodata = _read(composites[function]["bands"]["B04"])
        assert (file_dtype, file_nodata) == (dtype, nodata)
        assert not (values == -9999).any()
        assert (values != nodata).sum() > 1000
