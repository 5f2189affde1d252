"""The whole graph on the embedded default (local files, SQLite), materialized on a temporary instance."""

import json
from datetime import date
from pathlib import Path

import numpy as np
import pytest
import rasterio
from dagster import AssetKey, AssetSelection, instance_for_test, materialize

from cube_assets.assets import build_cube_assets
from cube_assets.catalog.database import create_catalog_engine, default_catalog_url, session_factory
from cube_assets.catalog.repository import search_images
from cube_assets.cube_config import load_project_config
from cube_assets.definitions import build_definitions
from cube_assets.partitions import partition_key
from cube_assets.raster.cog import is_valid_cog
from cube_assets.storage.layout import manifest_key
from cube_assets_tests.conftest import SMALL_CUBE, SMALL_SIMULATOR, write_cube_file

PARTITION = partition_key("000000", "2024-01-01")
UP_TO_MERGE = ["raw_scene", "surface_reflectance", "scene_cog", "tile_merge"]


def _assets(config: Path, stages):
    cube = load_project_config(config).cube("small")
    return [a for a in build_cube_assets(cube) if a.key.path[-1] in stages]


def _manifest(root: Path, stage: str) -> dict:
    return json.loads((root / manifest_key("small", stage, "000000", "2024-01-01")).read_text())


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """Materialize up to the merges in one run, then the blend and catalog item in a second run."""
    root = tmp_path_factory.mktemp("graph")
    config = write_cube_file(root, SMALL_CUBE, [SMALL_SIMULATOR])
    defs = build_definitions(config, root / "data")
    resources = defs.resources
    (root / "home").mkdir()
    with instance_for_test(temp_dir=str(root / "home")) as instance:
        first = materialize(
            _assets(config, UP_TO_MERGE), partition_key=PARTITION, instance=instance, resources=resources
        )
        assert first.success
        # The blend's run contains no merge step: its input comes from the stored merge partition.
        second = materialize(
            _assets(config, ["period_blend", "catalog_item"]) + _assets(config, UP_TO_MERGE),
            selection=AssetSelection.assets(AssetKey(["small", "period_blend"]), AssetKey(["small", "catalog_item"])),
            partition_key=PARTITION,
            instance=instance,
            resources=resources,
        )
        assert second.success
        materializations = {
            stage: instance.get_latest_materialization_event(AssetKey(["small", stage])).asset_materialization
            for stage in UP_TO_MERGE + ["period_blend", "catalog_item"]
        }
    yield root / "data", materializations, second


def test_blend_partition_materializes_from_its_stored_merges(built):
    root, _, second = built
    planned = {event.asset_key.path[-1] for event in second.get_asset_materialization_events()}
    assert planned == {"period_blend", "catalog_item"}
    blend = _manifest(root, "period_blend")
    assert blend["dates"] == ["2024-01-04", "2024-01-09"]
    assert set(blend["composites"]) == {"LCF", "MED", "AVG"}


def test_lcf_takes_each_pixel_from_the_merge_its_provenance_names(built):
    root, _, _ = built
    merges = {m["date"]: m for m in _manifest(root, "tile_merge")["merges"]}
    lcf = _manifest(root, "period_blend")["composites"]["LCF"]["bands"]
    with rasterio.open(lcf["B04"]) as src:
        composite = src.read(1)
    with rasterio.open(lcf["PROVENANCE"]) as src:
        provenance = src.read(1)
    assert set(np.unique(provenance)) <= {-1, 4, 9}  # day of year of 2024-01-04 and 2024-01-09
    for day, merge in merges.items():
        with rasterio.open(merge["bands"]["B04"]) as src:
            values = src.read(1)
        chosen = provenance == date.fromisoformat(day).timetuple().tm_yday
        assert chosen.any()
        np.testing.assert_array_equal(composite[chosen], values[chosen])


def test_every_published_raster_is_a_valid_cog(built):
    root, _, _ = built
    tifs = [p for p in root.glob("small/**/*.tif") if "/sr/" not in str(p)]
    assert len(tifs) > 40
    assert all(is_valid_cog(p) for p in tifs)
    assert not list(root.glob("**/*.tmp*")), "temporary files left behind"


def test_merges_record_quality_statistics_that_match_their_scl(built):
    root, _, _ = built
    for merge in _manifest(root, "tile_merge")["merges"]:
        with rasterio.open(merge["quality"]) as src:
            scl = src.read(1)
        clear = np.isin(scl, [4, 5, 6]).sum()
        not_clear = np.isin(scl, [2, 3, 7, 8, 9, 10, 11]).sum()
        assert merge["efficacy"] == pytest.approx(100 * clear / scl.size, abs=1e-3)
        assert merge["cloud_ratio"] == pytest.approx(100 * not_clear / (clear + not_clear), abs=1e-3)
        assert merge["total_pixels"] == 256 * 256


def test_materializations_carry_paths_counts_cloud_ratio_and_a_quicklook(built):
    _, materializations, _ = built
    merge_meta = materializations["tile_merge"].metadata
    assert merge_meta["merge_count"].value == 2
    assert set(merge_meta["cloud_ratio_by_date"].value) == {"2024-01-04", "2024-01-09"}
    assert merge_meta["valid_pixels"].value > 0
    blend_meta = materializations["period_blend"].metadata
    assert blend_meta["quicklook"].value.startswith("![quicklook](data:image/png;base64,")
    for meta, labels in ((merge_meta, ("2024-01-04", "2024-01-09")), (blend_meta, ("LCF", "MED", "AVG"))):
        thumbnails = meta["thumbnail"].value
        for label in labels:
            assert f"**{label}** ![{label}](data:image/png;base64," in thumbnails
        assert len(thumbnails) < 70_000 * len(labels)  # small enough to embed: tens of KB each
    assert materializations["scene_cog"].metadata["scene_count"].value == 4
    catalog_meta = materializations["catalog_item"].metadata
    assert catalog_meta["image_count"].value == 3 + 2 + 4  # composites, merges, scenes


def test_catalog_rows_point_at_files_that_exist(built):
    root, _, _ = built
    engine = create_catalog_engine(default_catalog_url(root))
    with session_factory(engine)() as session:
        composites = search_images(session, product_id="small-LCF", tile="000000")
        assert [i.id for i in composites] == ["small_000000_20240101_LCF"]
        files = {f.band: f.href for f in composites[0].files}
        assert {"B04", "SCL", "PROVENANCE", "CLEAROB", "TOTALOB", "NDVI", "quicklook"} <= set(files)
        assert all(Path(href).is_file() for href in files.values())
        assert len(search_images(session, product_id="small-merge")) == 2
    engine.dispose()


def test_rerunning_a_partition_gives_the_same_pixels_and_no_duplicate_rows(built, tmp_path):
    root, _, _ = built
    lcf = _manifest(root, "period_blend")["composites"]["LCF"]["bands"]["B04"]
    before = rasterio.open(lcf).read(1)
    config = root.parent / "cubes.yaml"
    defs = build_definitions(config, root)
    with instance_for_test(temp_dir=str(tmp_path)) as instance:
        assert materialize(
            _assets(config, UP_TO_MERGE + ["period_blend", "catalog_item"]),
            partition_key=PARTITION,
            instance=instance,
            resources=defs.resources,
        ).success
    np.testing.assert_array_equal(rasterio.open(lcf).read(1), before)
    engine = create_catalog_engine(default_catalog_url(root))
    with session_factory(engine)() as session:
        assert len(search_images(session, tile="000000")) == 5
    engine.dispose()


def test_catalog_io_manager_loads_the_partitions_images_back(built):
    from dagster import build_input_context

    from cube_assets.io_managers.catalog import CatalogIOManager

    root, _, _ = built
    context = build_input_context(asset_key=AssetKey(["small", "catalog_item"]), partition_key=PARTITION)
    images = CatalogIOManager(url=default_catalog_url(root)).load_input(context)
    assert sorted(i["product_id"] for i in images) == [
        "small-AVG",
        "small-LCF",
        "small-MED",
        "small-merge",
        "small-merge",
    ]
    assert all(Path(href).is_file() for image in images for href in image["files"].values())
