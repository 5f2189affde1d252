"""The blend step with every kind of function: metrics, MAXNDVI, BAP, GMED and IDT, through the graph."""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path

import numpy as np
import pytest
import rasterio
from dagster import AssetKey, instance_for_test, materialize

from cube_assets.assets import build_cube_assets
from cube_assets.catalog.database import create_catalog_engine, default_catalog_url, session_factory
from cube_assets.catalog.repository import search_images
from cube_assets.cube_config import load_project_config
from cube_assets.definitions import build_definitions
from cube_assets.errors import InvalidCubeConfig
from cube_assets.partitions import partition_key
from cube_assets.raster.cog import is_valid_cog
from cube_assets.raster.masks import QualityClass, classify_quality, rules_from_config
from cube_assets.steps.blend import information_bands
from cube_assets.storage.layout import manifest_key
from cube_assets_tests.conftest import SMALL_CUBE, SMALL_SIMULATOR, write_cube_file

PARTITION = partition_key("000000", "2024-01-01")
FUNCTIONS = ["LCF", "P25", "STD", "IQR", "MAXNDVI", "BAP", "GMED", "IDT"]
OPTIONS = {"BAP": {"target_doy": 9, "doy_sigma": 2, "haze_band": "B02"}, "GMED": {"mads": ["EMAD", "SMAD"]}}


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """The small cube with every kind of composite, materialized through the catalog item."""
    root = tmp_path_factory.mktemp("blend")
    cube = {**SMALL_CUBE, "composites": FUNCTIONS, "composite_options": OPTIONS}
    config = write_cube_file(root, cube, [SMALL_SIMULATOR])
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
        assert instance.get_latest_materialization_event(AssetKey(["small", "catalog_item"])) is not None
    data = root / "data"
    blend = json.loads((data / manifest_key("small", "period_blend", "000000", "2024-01-01")).read_text())
    merges = json.loads((data / manifest_key("small", "tile_merge", "000000", "2024-01-01")).read_text())["merges"]
    return data, blend, merges, load_project_config(config).cube("small")


def read(path) -> np.ndarray:
    with rasterio.open(path) as src:
        return src.read()


def test_every_function_publishes_valid_cogs(built):
    _, blend, _, _ = built
    assert set(blend["composites"]) == set(FUNCTIONS)
    for function, composite in blend["composites"].items():
        assert {"B04", "CLEAROB", "TOTALOB"} <= set(composite["bands"]), function
        assert all(is_valid_cog(path) for path in composite["bands"].values()), function
    assert {"PROVENANCE", "SCORE", "DOY", "DOY_DISTANCE", "NUM"} <= set(blend["composites"]["BAP"]["bands"])
    assert {"EMAD", "SMAD"} <= set(blend["composites"]["GMED"]["bands"])
    assert "BCMAD" not in blend["composites"]["GMED"]["bands"]


def _merge_stack(merges, band):
    return np.stack([read(m["bands"][band])[0] for m in merges])


def _clear(merges, cube):
    scl = np.stack([read(m["quality"])[0] for m in merges])
    classes = classify_quality(scl, rules_from_config(cube.quality.rules))
    bands = np.stack([_merge_stack(merges, b) for b in cube.band_names])
    return (classes == QualityClass.CLEAR) & (bands != cube.nodata).all(axis=0)


def test_maxndvi_takes_every_band_from_the_greenest_clear_observation(built):
    _, blend, merges, cube = built
    red, nir = _merge_stack(merges, "B04").astype(float), _merge_stack(merges, "B08").astype(float)
    clear = _clear(merges, cube)
    with np.errstate(all="ignore"):
        ndvi = np.where(clear, (nir - red) / (nir + red), -np.inf)
    best = np.argmax(ndvi, axis=0)
    both = clear.all(axis=0) & (ndvi[0] != ndvi[1])
    assert both.sum() > 1000
    composite = blend["composites"]["MAXNDVI"]["bands"]
    b08 = read(composite["B08"])[0]
    expected = np.take_along_axis(nir, best[np.newaxis], axis=0)[0]
    np.testing.assert_array_equal(b08[both], expected[both])
    days = np.array([date.fromisoformat(m["date"]).timetuple().tm_yday for m in merges])
    np.testing.assert_array_equal(read(composite["PROVENANCE"])[0][both], days[best][both])


def test_p25_of_two_clear_observations_is_a_quarter_of_the_way_up(built):
    _, blend, merges, cube = built
    values = _merge_stack(merges, "B04").astype(np.int64)
    clear = _clear(merges, cube).all(axis=0)
    low, high = values.min(axis=0), values.max(axis=0)
    total = low * 75 + high * 25
    expected = np.where(total >= 0, total // 100, -((-total) // 100))
    p25 = read(blend["composites"]["P25"]["bands"]["B04"])[0]
    np.testing.assert_array_equal(p25[clear], expected[clear])


def test_idt_is_the_merges_as_a_cube_of_dates(built):
    _, blend, merges, _ = built
    with rasterio.open(blend["composites"]["IDT"]["bands"]["B04"]) as src:
        assert src.count == len(merges)
        assert list(src.descriptions) == sorted(m["date"] for m in merges)
        pixels = src.read()
    by_date = sorted(merges, key=lambda m: m["date"])
    np.testing.assert_array_equal(pixels, _merge_stack(by_date, "B04"))
    assert read(blend["composites"]["IDT"]["bands"]["SCL"]).shape[0] == len(merges)


def test_bap_on_two_dates_prefers_the_one_nearest_its_target_day(built):
    _, blend, merges, cube = built
    clear = _clear(merges, cube)
    doy = read(blend["composites"]["BAP"]["bands"]["DOY"])[0]
    # target day 9, width 2 days: day 4 scores at most 0.044 on DOY (weight 1), which cloud distance
    # (0.4) and haze (0.3) cannot make up, so wherever both dates are clear 2024-01-09 wins
    assert (doy[clear.all(axis=0)] == 9).all()
    assert (doy[clear[0] & ~clear[1]] == 4).all()
    assert (doy[~clear.any(axis=0)] == -1).all()


def test_catalog_lists_each_functions_information_bands(built):
    data, _, _, cube = built
    assert [name for name, _, _ in information_bands(cube, "BAP")] == [
        "PROVENANCE",
        "SCORE",
        "DOY",
        "DOY_DISTANCE",
        "NUM",
    ]
    engine = create_catalog_engine(default_catalog_url(data))
    with session_factory(engine)() as session:
        for function in FUNCTIONS:
            images = search_images(session, product_id=f"small-{function}", tile="000000")
            assert len(images) == 1, function
            assert all(Path(f.href).is_file() for f in images[0].files)
    engine.dispose()


def test_options_of_a_function_the_cube_does_not_use_are_refused(tmp_path):
    cube = {**SMALL_CUBE, "composites": ["LCF"], "composite_options": {"BAP": {"target_doy": 9}}}
    with pytest.raises(InvalidCubeConfig, match="composite_options"):
        load_project_config(write_cube_file(tmp_path, cube, [SMALL_SIMULATOR]))


def test_maxndvi_needs_its_index(tmp_path):
    cube = {**SMALL_CUBE, "composites": ["MAXNDVI"], "indexes": {}}
    with pytest.raises(InvalidCubeConfig, match="index 'NDVI'"):
        load_project_config(write_cube_file(tmp_path, cube, [SMALL_SIMULATOR]))
