"""A cube with two sources, materialized end to end: a merge per date and source, DATASOURCE in every composite.

The real Landsat and Sentinel-2 samples lie on different continents, so the two sources are two
simulated Sentinel-2 archives with their own acquisitions (one date has both), each read through
its own source (band names by role, its SCL classified into the cube's quality classes).
"""

import json
from pathlib import Path

import numpy as np
import pytest
import rasterio
from dagster import instance_for_test, materialize
from sqlalchemy import select

from cube_assets.assets import build_cube_assets
from cube_assets.catalog.database import create_catalog_engine, default_catalog_url, session_factory
from cube_assets.catalog.models import Band, Product
from cube_assets.catalog.repository import search_images
from cube_assets.cube_config import load_project_config
from cube_assets.definitions import build_definitions
from cube_assets.partitions import partition_key
from cube_assets.storage.layout import manifest_key
from cube_assets_tests.conftest import SMALL_CUBE, SMALL_SIMULATOR, write_cube_file

PARTITION = partition_key("000000", "2024-01-01")
ROLES = {"blue": "B02", "green": "B03", "red": "B04", "nir": "B08"}
SECOND_SIMULATOR = {
    "name": "simulator_b",
    "driver": "simulator",
    "options": {
        **SMALL_SIMULATOR["options"],
        "archive": "archive_b",
        "acquisitions": [
            {"datetime": "2024-01-06T10:30:00Z", "cloud_fraction": 0.3},
            {"datetime": "2024-01-09T15:45:00Z", "cloud_fraction": 0.5},  # the same date as a first-source scene
        ],
    },
}
CUBE = {
    **{k: v for k, v in SMALL_CUBE.items() if k not in ("collection", "providers", "quality")},
    "sources": [
        {"name": "a", "collection": "sentinel-2-l2a", "providers": ["simulator"], "bands": ROLES},
        {"name": "b", "collection": "sentinel-2-l2a", "providers": ["simulator_b"], "bands": ROLES},
    ],
    "composites": ["LCF", "MED", "MAXNDVI"],
}
DOY = {"2024-01-04": 4, "2024-01-06": 6, "2024-01-09": 9}


def _manifest(root: Path, stage: str) -> dict:
    return json.loads((root / manifest_key("small", stage, "000000", "2024-01-01")).read_text())


def _read(uri: str) -> np.ndarray:
    with rasterio.open(uri) as src:
        return src.read(1)


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    root = tmp_path_factory.mktemp("sources")
    config = write_cube_file(root, CUBE, [SMALL_SIMULATOR, SECOND_SIMULATOR])
    defs = build_definitions(config, root / "data")
    (root / "home").mkdir()
    with instance_for_test(temp_dir=str(root / "home")) as instance:
        result = materialize(
            build_cube_assets(load_project_config(config).cube("small")),
            partition_key=PARTITION,
            instance=instance,
            resources=defs.resources,
        )
        assert result.success
    return root / "data"


def test_each_date_has_one_merge_per_source(built):
    merges = _manifest(built, "tile_merge")["merges"]
    assert [(m["date"], m["source"], m["item"]) for m in merges] == [
        ("2024-01-04", "a", "small_000000_20240104_a"),
        ("2024-01-06", "b", "small_000000_20240106_b"),
        ("2024-01-09", "a", "small_000000_20240109_a"),
        ("2024-01-09", "b", "small_000000_20240109_b"),
    ]
    with rasterio.open(merges[0]["quality"]) as src:  # SCL classified: 0 nodata, 1 clear, 2 not clear, 3 saturated
        assert src.dtypes[0] == "uint8" and set(np.unique(src.read(1))) <= {0, 1, 2, 3}


def test_lcf_datasource_is_the_source_of_the_merge_each_pixel_came_from(built):
    merges = _manifest(built, "tile_merge")["merges"]
    lcf = _manifest(built, "period_blend")["composites"]["LCF"]["bands"]
    red, provenance, datasource = _read(lcf["B04"]), _read(lcf["PROVENANCE"]), _read(lcf["DATASOURCE"])
    assert set(np.unique(datasource)) <= {0, 1, 2} and {1, 2} <= set(np.unique(datasource))
    assert (datasource[provenance == DOY["2024-01-06"]] == 2).all()  # only source b flew on Jan 6
    assert (datasource[provenance == DOY["2024-01-04"]] == 1).all()
    for merge in merges:
        picked = (provenance == DOY[merge["date"]]) & (datasource == {"a": 1, "b": 2}[merge["source"]])
        assert picked.any(), merge["item"]
        np.testing.assert_array_equal(red[picked], _read(merge["bands"]["B04"])[picked])


def test_med_datasource_is_the_or_of_the_sources_with_a_clear_observation(built):
    merges = _manifest(built, "tile_merge")["merges"]
    med = _manifest(built, "period_blend")["composites"]["MED"]["bands"]
    expected = np.zeros_like(_read(med["DATASOURCE"]))
    for merge in merges:
        expected |= np.where(_read(merge["quality"]) == 1, {"a": 1, "b": 2}[merge["source"]], 0).astype(np.uint8)
    np.testing.assert_array_equal(_read(med["DATASOURCE"]), expected)
    assert 3 in expected  # both sources in one pixel
    assert _read(_manifest(built, "period_blend")["composites"]["MAXNDVI"]["bands"]["DATASOURCE"]).max() == 2


def test_the_catalog_describes_the_datasource_bits(built):
    engine = create_catalog_engine(default_catalog_url(built))
    with session_factory(engine)() as session:
        (lcf,) = search_images(session, product_id="small-LCF", tile="000000")
        assert "DATASOURCE" in {f.band for f in lcf.files}
        assert len(search_images(session, product_id="small-merge")) == 4
        band = session.scalars(select(Band).where(Band.product_id == "small-MED", Band.name == "DATASOURCE")).one()
        assert band.data_type == "UInt8" and band.nodata == 0
        assert "1 = a (sentinel-2-l2a), 2 = b (sentinel-2-l2a)" in band.description
        product = session.get(Product, "small-LCF")
        assert product.properties["sources"] == [
            {"name": "a", "collection": "sentinel-2-l2a", "bit": 1},
            {"name": "b", "collection": "sentinel-2-l2a", "bit": 2},
        ]
    engine.dispose()
