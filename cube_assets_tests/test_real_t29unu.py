"""The real Sentinel-2 L2A product T29UNU (2022-10-05, baseline 04.00) through the whole graph.

Archive → surface reflectance → COG → merge onto a user-defined 60 m grid in the Irish
Transverse Mercator (EPSG:2157, not the product's UTM 29N) → blend of that single date →
catalog item. One 2100 × 2100 px tile covers the product's whole footprint.
"""

import json
from pathlib import Path

import numpy as np
import pytest
import rasterio
from dagster import instance_for_test, materialize
from pyproj import Transformer

from cube_assets.assets import build_cube_assets
from cube_assets.catalog.database import create_catalog_engine, default_catalog_url, session_factory
from cube_assets.catalog.repository import search_images
from cube_assets.cube_config import load_project_config
from cube_assets.definitions import build_definitions
from cube_assets.formats.sentinel2_safe import open_safe
from cube_assets.partitions import partition_key
from cube_assets.storage.layout import manifest_key
from cube_assets_tests.conftest import write_cube_file

pytestmark = pytest.mark.real_data

CUBE = {
    "name": "ireland",
    "collection": "sentinel-2-l2a",
    "providers": ["archive"],
    "grid": {
        "kind": "user",
        "name": "ITM60",
        "crs": 2157,
        "origin": [529980, 728280],
        "tile_size": [2100, 2100],
        "resolution": 60,
    },
    "tiles": ["000000"],
    "start_date": "2022-10-01",
    "end_date": "2022-10-10",
    "temporal": {"step": "16D", "restart": "yearly"},
    # nearest everywhere, so merged pixels can be compared with source pixels exactly
    "bands": [
        {"name": "B02", "common_name": "blue", "resampling": "nearest"},
        {"name": "B03", "common_name": "green", "resampling": "nearest"},
        {"name": "B04", "common_name": "red", "resampling": "nearest"},
        {"name": "B8A", "common_name": "nir", "resampling": "nearest"},
    ],
    "quality": {"band": "SCL", "rules": {"preset": "scl"}, "nodata": 0},
    "indexes": {"NDVI": "10000 * (nir - red) / (nir + red)"},
    "composites": ["LCF"],
}
PERIOD = "2022-09-30"  # the 16-day period (restarting on 1 January) that holds 2022-10-05
CLOUD_CLASSES = [8, 9, 10]


@pytest.fixture(scope="module")
def run(tmp_path_factory, t29unu_safe):
    root = tmp_path_factory.mktemp("t29unu")
    archive = root / "archive"
    archive.mkdir()
    (archive / t29unu_safe.name).symlink_to(t29unu_safe)  # read in place, never copied into the repo
    config = write_cube_file(root, CUBE, [{"name": "archive", "driver": "local", "options": {"root": str(archive)}}])
    data = root / "data"
    defs = build_definitions(config, data)
    (root / "home").mkdir()
    with instance_for_test(temp_dir=str(root / "home")) as instance:
        result = materialize(
            build_cube_assets(load_project_config(config).cube("ireland")),
            partition_key=partition_key("000000", PERIOD),
            instance=instance,
            resources=defs.resources,
        )
        assert result.success
    manifests = {
        stage: json.loads((data / manifest_key("ireland", stage, "000000", PERIOD)).read_text())
        for stage in ("raw_scene", "scene_cog", "tile_merge", "period_blend")
    }
    return data, manifests


def _source(safe: Path, band: str) -> rasterio.DatasetReader:
    return rasterio.open(open_safe(safe).band_path(band, 60))


def _sample_pixels(merged: np.ndarray, merged_transform, source, nodata, count=200):
    """Merged pixels whose centre falls well inside a source pixel (nearest is then unambiguous)."""
    to_utm = Transformer.from_crs(2157, source.crs.to_epsg(), always_xy=True)
    rows, cols = np.nonzero(merged != nodata)
    pick = np.random.default_rng(5).choice(rows.size, size=count * 4, replace=False)
    samples = []
    for r, c in zip(rows[pick], cols[pick], strict=True):
        x, y = merged_transform @ (c + 0.5, r + 0.5)
        col_f, row_f = ~source.transform @ to_utm.transform(x, y)
        if min(col_f % 1, 1 - col_f % 1, row_f % 1, 1 - row_f % 1) > 0.25:
            samples.append((r, c, int(row_f), int(col_f)))
    return samples[:count]


def test_the_real_scene_is_found_fetched_and_published(run, t29unu_safe):
    _, manifests = run
    (scene,) = manifests["raw_scene"]["scenes"]
    assert scene["scene_id"] == "S2A_MSIL2A_20221005T115411_N0400_R023_T29UNU_20221005T164454"
    assert scene["cloud_cover"] == pytest.approx(59.769726)
    (published,) = manifests["scene_cog"]["scenes"]
    assert published["radiometry"]["offsets"] == {"B02": -1000.0, "B03": -1000.0, "B04": -1000.0, "B8A": -1000.0}


def test_merged_pixels_equal_the_source_pixel_minus_the_offset(run, t29unu_safe):
    _, manifests = run
    (merge,) = manifests["tile_merge"]["merges"]
    assert merge["date"] == "2022-10-05"
    for band in ("B04", "B8A"):
        with rasterio.open(merge["bands"][band]) as merged_file, _source(t29unu_safe, band) as source:
            assert merged_file.crs.to_epsg() == 2157
            merged = merged_file.read(1)
            dn = source.read(1)
            samples = _sample_pixels(merged, merged_file.transform, source, -9999)
            assert len(samples) >= 100
            for r, c, sr, sc in samples:
                assert merged[r, c] == dn[sr, sc] - 1000, (band, r, c)


def test_scl_classes_survive_nearest_resampling(run, t29unu_safe):
    _, manifests = run
    (merge,) = manifests["tile_merge"]["merges"]
    with rasterio.open(merge["quality"]) as merged_file, _source(t29unu_safe, "SCL") as source:
        merged, scl = merged_file.read(1), source.read(1)
        assert set(np.unique(merged)) <= set(np.unique(scl))
        assert {3, 4, 5, 6, 8, 9, 10} <= set(np.unique(merged))
        for r, c, sr, sc in _sample_pixels(merged, merged_file.transform, source, 0):
            assert merged[r, c] == scl[sr, sc]


def test_cloud_fraction_from_scl_matches_the_products_cloud_cover(run):
    """ESA's Cloud_Coverage_Assessment is the share of SCL 8, 9 and 10 among valid pixels.

    Our merge's ``cloud_ratio`` (not clear / (clear + not clear)) also counts cloud shadow (3)
    and unclassified (7) pixels as not clear, so it is about 11 points higher here (70.9 %).
    """
    _, manifests = run
    (merge,) = manifests["tile_merge"]["merges"]
    with rasterio.open(merge["quality"]) as src:
        scl = src.read(1)
    valid = scl != 0
    cloud_share = 100 * np.isin(scl, CLOUD_CLASSES).sum() / valid.sum()
    assert abs(cloud_share - 59.769726) < 5
    shadow_and_unclassified = 100 * np.isin(scl, [3, 7]).sum() / valid.sum()
    assert merge["cloud_ratio"] == pytest.approx(cloud_share + shadow_and_unclassified, abs=0.5)


def test_single_date_blend_keeps_every_observed_pixel_and_dates_it(run):
    _, manifests = run
    (merge,) = manifests["tile_merge"]["merges"]
    lcf = manifests["period_blend"]["composites"]["LCF"]["bands"]
    with (
        rasterio.open(merge["bands"]["B04"]) as a,
        rasterio.open(lcf["B04"]) as b,
        rasterio.open(lcf["PROVENANCE"]) as p,
    ):
        merged, composite, provenance = a.read(1), b.read(1), p.read(1)
    with rasterio.open(merge["quality"]) as q:
        observed = (q.read(1) != 0) & (merged != -9999)
    # one observation: clear or not, LCF falls back to it wherever its quality is not nodata
    np.testing.assert_array_equal(composite[observed], merged[observed])
    assert set(np.unique(provenance[observed])) == {278}  # 2022-10-05 is day 278
    assert (provenance[~observed] == -1).all()


def test_catalog_holds_the_scene_merge_and_composite(run):
    data, _ = run
    engine = create_catalog_engine(default_catalog_url(data))
    with session_factory(engine)() as session:
        ids = {i.product_id: i for i in search_images(session, bbox=(-8.7, 52.7, -8.5, 52.9))}
        assert set(ids) == {"sentinel-2-l2a", "ireland-merge", "ireland-LCF"}
        assert ids["sentinel-2-l2a"].cloud_fraction == pytest.approx(0.59769726)
        assert ids["ireland-merge"].crs == "EPSG:2157"
        assert search_images(session, bbox=(-6.0, 52.7, -5.9, 52.9)) == []
    engine.dispose()
