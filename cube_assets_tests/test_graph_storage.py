"""The cube's ``dtype`` and ``nodata`` flow through every stage: scenes, merges and composites.

Two cubes over the simulated scenes of ``SMALL_CUBE``, a uint16 one with nodata 65535 and an
int16 one with nodata −32768, are materialized from the raw scenes to the blend on a
temporary instance. Every file each stage writes must carry the cube's type and nodata, no
pixel may hold the −9999 of the default cube, both cubes must hold the same reflectance and
nodata at the same pixels, and a pixel that is nodata in a spectral band of a merge must be
nodata (not cloud) in its quality band. A third cube of the int16 file reuses its merges.
"""

from __future__ import annotations

import copy
import json
from datetime import date
from pathlib import Path

import numpy as np
import pytest
import rasterio
import yaml
from dagster import instance_for_test, materialize
from sqlalchemy import select

from cube_assets.assets import build_cube_assets
from cube_assets.catalog.database import create_catalog_engine, default_catalog_url, session_factory
from cube_assets.catalog.models import Band
from cube_assets.cube_config import load_project_config
from cube_assets.definitions import build_definitions
from cube_assets.partitions import partition_key
from cube_assets.storage.layout import manifest_key, merge_key
from cube_assets_tests.conftest import SMALL_CUBE, SMALL_SIMULATOR, write_cube_file

PARTITION = partition_key("000000", "2024-01-01")
STAGES = ["raw_scene", "surface_reflectance", "scene_cog", "tile_merge", "period_blend", "catalog_item"]
INDEX_NODATA = {"uint16": -9999, "int16": -32768}  # indexes are int16: the cube's nodata when it fits


# A cube made from the merges of "small" without merging again: fewer bands, 8-day periods, the median.
REUSING_CUBE = {
    **{key: value for key, value in SMALL_CUBE.items() if key not in ("indexes", "composites", "temporal")},
    "name": "small_8d",
    "reuse_data_cube": "small",
    "temporal": {"step": "8D", "restart": "yearly"},
    "bands": [{"name": "B04", "common_name": "red"}],
    "composites": ["MED"],
}


def _build(root: Path, dtype: str, nodata: float) -> Path:
    cube = copy.deepcopy(SMALL_CUBE)
    cube.update(dtype=dtype, nodata=nodata, composites=["LCF"])
    config = write_cube_file(root, cube, [SMALL_SIMULATOR])
    reusing = {**copy.deepcopy(REUSING_CUBE), "dtype": dtype, "nodata": nodata}
    config.write_text(yaml.safe_dump({"providers": [SMALL_SIMULATOR], "cubes": [cube, reusing]}, sort_keys=False))
    defs = build_definitions(config, root / "data")
    assets = [a for a in build_cube_assets(load_project_config(config).cube("small")) if a.key.path[-1] in STAGES]
    (root / "home").mkdir()
    with instance_for_test(temp_dir=str(root / "home")) as instance:
        assert materialize(assets, partition_key=PARTITION, instance=instance, resources=defs.resources).success
    (root / "data" / "cubes.yaml").write_text(config.read_text())
    return root / "data"


def _manifest(data: Path, stage: str) -> dict:
    return json.loads((data / manifest_key("small", stage, "000000", "2024-01-01")).read_text())


BUILDS = {"uint16_65535": ("uint16", 65535), "int16_32768": ("int16", -32768)}


@pytest.fixture(scope="module")
def builds(tmp_path_factory) -> dict[str, Path]:
    return {name: _build(tmp_path_factory.mktemp(name), *storage) for name, storage in BUILDS.items()}


@pytest.fixture(params=sorted(BUILDS))
def cube(request, builds) -> tuple[Path, str, float]:
    return builds[request.param], *BUILDS[request.param]


def _read(path: str) -> tuple[np.ndarray, str, float | None]:
    with rasterio.open(path) as src:
        return src.read(1), src.dtypes[0], src.nodata


def test_scene_reflectance_is_written_in_the_cubes_type_and_nodata(cube, builds):
    data, dtype, nodata = cube
    other = next(name for name, path in builds.items() if path != data)
    other_nodata = BUILDS[other][1]
    reference = {s["scene_id"]: s for s in _manifest(builds[other], "surface_reflectance")["scenes"]}
    scenes = _manifest(data, "surface_reflectance")["scenes"]
    assert len(scenes) == 4
    nodata_pixels = 0
    for scene in scenes:
        for band, uri in scene["bands"].items():
            values, file_dtype, file_nodata = _read(uri)
            assert (file_dtype, file_nodata) == (dtype, nodata)
            expected, _, _ = _read(reference[scene["scene_id"]]["bands"][band])
            # the same pixels are nodata in the other cube, and the same reflectance elsewhere
            np.testing.assert_array_equal(values == nodata, expected == other_nodata)
            assert not (values.astype(np.int64) == -9999).any()
            nodata_pixels += int((values == nodata).sum())
            valid = expected != other_nodata
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


def test_a_cube_that_reuses_another_cubes_merges_blends_them_without_merging(builds, tmp_path):
    data = builds["int16_32768"]
    config = data / "cubes.yaml"
    defs = build_definitions(config, data)
    cube = load_project_config(config).cube("small_8d")
    assets = [a for a in build_cube_assets(cube) if a.key.path[-1] in STAGES]
    key = partition_key("000000", "2024-01-09")
    with instance_for_test(temp_dir=str(tmp_path)) as instance:
        result = materialize(assets, partition_key=key, instance=instance, resources=defs.resources)
        assert result.success
    manifest = lambda stage: json.loads(  # noqa: E731  # a local reader of this cube's manifests
        (data / manifest_key("small_8d", stage, "000000", "2024-01-09")).read_text()
    )
    assert manifest("raw_scene")["scenes"] == []  # nothing fetched, nothing merged again
    source = {m["date"]: m for m in _manifest(data, "tile_merge")["merges"]}
    merges = manifest("tile_merge")["merges"]
    assert [m["date"] for m in merges] == ["2024-01-09"]
    assert merges[0]["bands"] == {"B04": source["2024-01-09"]["bands"]["B04"]}
    assert merges[0]["quality"] == source["2024-01-09"]["quality"]
    assert not (data / merge_key("small_8d", "000000", date(2024, 1, 9), "B04")).exists()
    median, dtype, nodata = _read(manifest("period_blend")["composites"]["MED"]["bands"]["B04"])
    merged, _, _ = _read(source["2024-01-09"]["bands"]["B04"])
    scl, _, _ = _read(source["2024-01-09"]["quality"])
    clear = np.isin(scl, [4, 5, 6])
    assert clear.sum() > 1000 and (dtype, nodata) == ("int16", -32768)
    np.testing.assert_array_equal(median[clear], merged[clear])  # the median of one clear observation is itself


def test_index_bands_and_catalog_bands_carry_the_nodata_of_their_files(cube):
    data, dtype, nodata = cube
    lcf = _manifest(data, "period_blend")["composites"]["LCF"]["bands"]
    scene = _manifest(data, "scene_cog")["scenes"][0]
    for uri in (lcf["NDVI"], scene["indexes"]["NDVI"]):
        values, file_dtype, file_nodata = _read(uri)
        assert (file_dtype, file_nodata) == ("int16", INDEX_NODATA[dtype])
        assert (values != file_nodata).sum() > 1000
    engine = create_catalog_engine(default_catalog_url(data))
    with session_factory(engine)() as session:
        bands = {band.name: band for band in session.scalars(select(Band).where(Band.product_id == "small-LCF"))}
        bands = {name: (band.nodata, band.data_type) for name, band in bands.items()}
    engine.dispose()
    assert bands["B04"] == (nodata, {"uint16": "UInt16", "int16": "Int16"}[dtype])
    assert bands["NDVI"] == (INDEX_NODATA[dtype], "Int16")
