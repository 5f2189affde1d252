"""Landsat 8 and Sentinel-2 in one cube, end to end: the real Landsat C2 L2 scene and simulated L2A products.

The real Sentinel-2 sample (Ireland) does not overlap the real Landsat scene (Colombia), so the
Sentinel-2 source is two simulated L2A products written over the Landsat scene, on its UTM zone,
one of them on the Landsat date. The tile is where about half the Landsat pixels are clear.
"""

import json
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest
import rasterio
from dagster import instance_for_test, materialize

from cube_assets.assets import build_cube_assets
from cube_assets.cube_config import load_project_config
from cube_assets.definitions import build_definitions
from cube_assets.formats.simulator import SimulatedScene, write_simulated_product
from cube_assets.partitions import partition_key
from cube_assets.storage.layout import manifest_key
from cube_assets_tests.conftest import write_cube_file

LANDSAT_FOLDER = "stactools-landsat/tests/data-files/assets3"
PARTITION = partition_key("000000", "2019-12-01")
CUBE = {
    "name": "mixed",
    "grid": {"kind": "user", "name": "U18N150", "crs": 32618, "origin": [542000, 244800], "tile_size": [64, 64],
             "resolution": 150},
    "tiles": ["000000"],
    "start_date": "2019-12-01",
    "end_date": "2019-12-31",
    "temporal": {"step": "1M"},
    "bands": [{"name": n, "common_name": n} for n in ("blue", "green", "red", "nir")],
    "sources": [
        {"name": "s2", "collection": "sentinel-2-l2a", "providers": ["s2_archive"],
         "bands": {"blue": "B02", "green": "B03", "red": "B04", "nir": "B08"}},
        {"name": "landsat", "collection": "landsat-c2-l2", "providers": ["landsat_archive"],
         "bands": {"blue": "SR_B2", "green": "SR_B3", "red": "SR_B4", "nir": "SR_B5"},
         "quality": {"band": "QA_PIXEL", "rules": {"preset": "landsat_c2_qa_pixel"}, "nodata": 1,
                     "radsat": "QA_RADSAT"}},
    ],
    "indexes": {"NDVI": "10000 * (nir - red) / (nir + red)"},
    "composites": ["LCF", "MED"],
}  # fmt: skip
PROVIDERS = [
    {"name": "s2_archive", "driver": "local", "options": {"root": "s2"}},
    {"name": "landsat_archive", "driver": "local", "options": {"root": "landsat"}},
]


def _manifest(root: Path, stage: str) -> dict:
    return json.loads((root / manifest_key("mixed", stage, "000000", "2019-12-01")).read_text())


def _read(uri: str) -> np.ndarray:
    with rasterio.open(uri) as src:
        return src.read(1)


@pytest.fixture(scope="module")
def built(tmp_path_factory, real_data):
    root = tmp_path_factory.mktemp("mixed")
    data = root / "data"
    (data / "landsat").mkdir(parents=True)
    (data / "landsat" / "LC08_008059_20191201").symlink_to(real_data / LANDSAT_FOLDER)
    for when, seed in (("2019-12-01T15:50:00", 3), ("2019-12-03T15:40:00", 4)):
        scene = SimulatedScene(
            tile_id="T18NXJ",
            epsg=32618,
            ulx=541500,
            uly=245400,
            size_px=80,
            resolution=150,
            bands=("B02", "B03", "B04", "B08"),
            sensing_time=datetime.fromisoformat(when).replace(tzinfo=UTC),
            seed=seed,
            cloud_fraction=0.3,
            swath_edge=False,
        )
        write_simulated_product(data / "s2", scene)
    config = write_cube_file(root, CUBE, PROVIDERS)
    defs = build_definitions(config, data)
    (root / "home").mkdir()
    with instance_for_test(temp_dir=str(root / "home")) as instance:
        result = materialize(
            build_cube_assets(load_project_config(config).cube("mixed")),
            partition_key=PARTITION,
            instance=instance,
            resources=defs.resources,
        )
        assert result.success
    return data


def test_the_landsat_date_has_a_merge_of_each_sensor(built):
    merges = _manifest(built, "tile_merge")["merges"]
    assert [(m["date"], m["source"]) for m in merges] == [
        ("2019-12-01", "s2"),
        ("2019-12-01", "landsat"),
        ("2019-12-03", "s2"),
    ]
    landsat = merges[1]
    assert 30 < landsat["efficacy"] < 80  # about half the tile is clear in the real QA_PIXEL


def test_landsat_was_read_with_the_hls_adjustment(built):
    scenes = {s["source"]: s for s in _manifest(built, "surface_reflectance")["scenes"]}
    radiometry = scenes["landsat"]["radiometry"]
    assert radiometry["bandpass_adjustment"] == "hls"
    assert radiometry["scales"]["red"] == pytest.approx(2.75e-5 / 0.9765, rel=1e-12)
    assert radiometry["offsets"]["blue"] == pytest.approx((-0.2 + 0.004) / 0.9778, rel=1e-12)


def test_composites_say_which_sensor_each_pixel_came_from(built):
    merges = _manifest(built, "tile_merge")["merges"]
    composites = _manifest(built, "period_blend")["composites"]
    lcf = {name: _read(uri) for name, uri in composites["LCF"]["bands"].items()}
    assert {1, 2} <= set(np.unique(lcf["DATASOURCE"]))  # s2 = 1, landsat = 2
    assert (lcf["DATASOURCE"][lcf["PROVENANCE"] == 337] == 1).all()  # 3 December: Sentinel-2 only
    landsat = merges[1]
    from_landsat = lcf["DATASOURCE"] == 2
    np.testing.assert_array_equal(lcf["red"][from_landsat], _read(landsat["bands"]["red"])[from_landsat])
    expected = np.zeros(from_landsat.shape, dtype=np.uint8)
    for merge in merges:
        expected |= np.where(_read(merge["quality"]) == 1, {"s2": 1, "landsat": 2}[merge["source"]], 0).astype(np.uint8)
    med = _read(composites["MED"]["bands"]["DATASOURCE"])
    np.testing.assert_array_equal(med, expected)
    assert 3 in med
