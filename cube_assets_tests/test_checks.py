"""Asset checks: partitioned, passing on a real built partition, failing on real broken files.

The graph of the small simulated cube is materialized once (all assets and checks) on a
temporary instance; the failure tests then damage copies of the real outputs.
"""

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import rasterio
from dagster import AssetCheckKey, AssetKey, AssetSelection, instance_for_test, materialize

from cube_assets.assets import build_cube_assets
from cube_assets.checks import (
    build_cube_checks,
    invalid_cogs,
    merge_quality_problems,
    missing_files,
    observation_count_problems,
    sample_window,
)
from cube_assets.cube_config import load_project_config
from cube_assets.definitions import build_definitions
from cube_assets.manifests import Composite, Merge
from cube_assets.partitions import cube_partitions, partition_key
from cube_assets.storage.layout import manifest_key
from cube_assets.storage.raster_store import LocalRasterStore
from cube_assets_tests.conftest import SMALL_CUBE, SMALL_SIMULATOR, write_cube_file

# Two tiles, so that a run of one partition can be told apart from the other.
TWO_TILE_CUBE = {**SMALL_CUBE, "tiles": ["000000", "001000"]}
PARTITION = partition_key("000000", "2024-01-01")
OTHER_PARTITION = partition_key("001000", "2024-01-01")


def _key(stage: str) -> AssetKey:
    return AssetKey(["small", stage])


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """Materialize every asset and check of partition 000000 and return what tests need."""
    root = tmp_path_factory.mktemp("checks")
    config = write_cube_file(root, TWO_TILE_CUBE, [SMALL_SIMULATOR])
    cube = load_project_config(config).cube("small")
    defs = build_definitions(config, root / "data")
    definitions = build_cube_assets(cube) + build_cube_checks(cube)
    (root / "home").mkdir()
    with instance_for_test(temp_dir=str(root / "home")) as instance:
        result = materialize(definitions, partition_key=PARTITION, instance=instance, resources=defs.resources)
        assert result.success
        yield {
            "root": root / "data",
            "cube": cube,
            "defs": defs,
            "definitions": definitions,
            "instance": instance,
            "result": result,
            "store": LocalRasterStore(root / "data"),
        }


def _manifest(built, stage: str) -> dict:
    return json.loads((built["root"] / manifest_key("small", stage, "000000", "2024-01-01")).read_text())


def test_every_check_is_partitioned_like_its_asset(built):
    partitions = cube_partitions(built["cube"])
    checks = [spec for definition in build_cube_checks(built["cube"]) for spec in definition.check_specs]
    assert {(spec.asset_key.path[-1], spec.name) for spec in checks} == {
        ("scene_cog", "cogs_valid"),
        ("tile_merge", "cogs_valid"),
        ("tile_merge", "quality_recorded"),
        ("period_blend", "cogs_valid"),
        ("period_blend", "observation_counts"),
        ("catalog_item", "files_exist"),
    }
    assert all(spec.partitions_def == partitions for spec in checks)
    blocking = {(spec.asset_key.path[-1], spec.name) for spec in checks if spec.blocking}
    assert blocking == {
        ("scene_cog", "cogs_valid"),
        ("tile_merge", "cogs_valid"),
        ("period_blend", "cogs_valid"),
        ("period_blend", "observation_counts"),
    }


def test_every_check_passes_on_the_partition_just_built_and_only_there(built):
    evaluations = built["result"].get_asset_check_evaluations()
    assert len(evaluations) == 6
    assert all(e.passed for e in evaluations), [(e.asset_check_key, e.metadata) for e in evaluations if not e.passed]
    assert {e.partition for e in evaluations} == {str(PARTITION)}
    instance = built["instance"]
    history = instance.event_log_storage.get_asset_check_execution_history(
        AssetCheckKey(_key("tile_merge"), "cogs_valid"), limit=10
    )
    assert len(history) == 1  # the other tile's partition was never checked


def test_merge_check_records_nodata_fraction_and_cloud_ratio_per_date(built):
    (evaluation,) = [
        e for e in built["result"].get_asset_check_evaluations() if e.asset_check_key.name == "quality_recorded"
    ]
    merges = {m["date"]: m for m in _manifest(built, "tile_merge")["merges"]}
    nodata = evaluation.metadata["nodata_fraction_by_date"].value
    cloud = evaluation.metadata["cloud_ratio_by_date"].value
    assert set(nodata) == set(cloud) == {"2024-01-04", "2024-01-09"}
    for day, merge in merges.items():
        assert cloud[day] == pytest.approx(merge["cloud_ratio"], abs=1e-3)
        assert nodata[day] == pytest.approx(1 - merge["valid_pixels"] / merge["total_pixels"], abs=1e-4)
    # The simulated products leave part of the tile uncovered, and part of it cloudy.
    assert all(0 < value < 0.5 for value in nodata.values())
    assert all(0 < value < 100 for value in cloud.values())


def _merges(entries: list[dict]) -> list[Merge]:
    """Merge entries of a manifest read as JSON, typed as the checks take them."""
    return [Merge.model_validate(entry) for entry in entries]


def _composites(entries: dict[str, dict]) -> dict[str, Composite]:
    return {function: Composite.model_validate(entry) for function, entry in entries.items()}


def test_merge_quality_check_names_a_merge_whose_recorded_cloud_ratio_is_wrong(built):
    merges = _manifest(built, "tile_merge")["merges"]
    merges[1] = {**merges[1], "cloud_ratio": merges[1]["cloud_ratio"] + 5}
    problems, _ = merge_quality_problems(_merges(merges), built["cube"], built["store"])
    assert len(problems) == 1
    assert problems[0].startswith(f"{merges[1]['item']}: cloud_ratio recorded")


def test_observation_count_check_recounts_clearob_from_the_merges(built, tmp_path):
    blend = _manifest(built, "period_blend")
    composite = dict(blend["composites"]["LCF"])
    # A CLEAROB off by one on the sample window, still a valid raster and still <= TOTALOB where TOTALOB > CLEAROB.
    damaged = tmp_path / "CLEAROB.tif"
    shutil.copy(composite["bands"]["CLEAROB"], damaged)
    with rasterio.open(damaged, "r+", IGNORE_COG_LAYOUT_BREAK="YES") as dataset:
        window = sample_window(dataset.width, dataset.height)
        values = dataset.read(1, window=window)
        dataset.write(np.where(values > 0, values - 1, values), 1, window=window)
        changed = int(np.count_nonzero(values > 0))
    composite["bands"] = {**composite["bands"], "CLEAROB": str(damaged)}
    assert (
        observation_count_problems(
            _composites({"LCF": blend["composites"]["LCF"]}), _merges(blend["merges"]), built["cube"], built["store"]
        )
        == []
    )
    problems = observation_count_problems(
        _composites({"LCF": composite}), _merges(blend["merges"]), built["cube"], built["store"]
    )
    assert problems == [
        f"{composite['item']}: CLEAROB differs from the merges' quality bands "
        f"at {changed} of {values.size} sampled pixels "
        f"(window {window.col_off},{window.row_off} {window.width}×{window.height})"
    ]


def test_observation_count_check_rejects_totalob_above_the_number_of_merges(built):
    blend = _manifest(built, "period_blend")
    one_merge = blend["merges"][:1]
    problems = observation_count_problems(
        _composites({"MED": blend["composites"]["MED"]}), _merges(one_merge), built["cube"], built["store"]
    )
    assert any("TOTALOB > 1 merges" in p for p in problems)


def _truncate(source: Path, destination: Path) -> None:
    """Write the first half of ``source`` to ``destination``: an interrupted copy."""
    data = source.read_bytes()
    destination.write_bytes(data[: len(data) // 2])


def test_cog_check_reports_striped_truncated_and_missing_files(built, tmp_path):
    merge = _manifest(built, "tile_merge")["merges"][0]
    valid = merge["bands"]["B04"]
    striped = tmp_path / "striped.tif"  # larger than one 512 px block and not tiled: not a COG
    with rasterio.open(valid) as src:
        profile = {**src.profile, "tiled": False, "width": 1024, "height": 1024}
        profile.pop("blockxsize", None), profile.pop("blockysize", None)
        with rasterio.open(striped, "w", **profile) as dst:
            dst.write(np.tile(src.read(1), (4, 4)), 1)
    truncated = tmp_path / "truncated.tif"
    _truncate(Path(valid), truncated)
    absent = tmp_path / "absent.tif"
    problems = invalid_cogs([valid, str(striped), str(truncated), str(absent)], built["store"])
    assert [p.split(": ", 1)[0] for p in problems] == [str(striped), str(truncated), str(absent)]
    assert problems[0].endswith("not a valid COG (or unreadable)")
    assert "truncated: blocks end at byte" in problems[1]


def test_catalog_check_reports_files_that_do_not_exist(built, tmp_path):
    present = _manifest(built, "period_blend")["composites"]["LCF"]["bands"]["B04"]
    images = [{"id": "a", "files": {"B04": present}}, {"id": "b", "files": {"B08": str(tmp_path / "gone.tif")}}]
    assert missing_files(images, built["store"]) == [f"b/B08: {tmp_path / 'gone.tif'} (FileNotFoundError)"]


def test_failing_blocking_check_stops_the_downstream_step(built, tmp_path):
    """A merge file truncated after the merge: its blocking COG check fails and the blend never runs."""
    merge = _manifest(built, "tile_merge")["merges"][0]
    target = Path(merge["bands"]["B08"])
    backup = tmp_path / "backup.tif"
    shutil.copy(target, backup)
    try:
        _truncate(backup, target)
        blend_before = built["instance"].get_latest_materialization_event(_key("period_blend")).run_id
        result = materialize(
            built["definitions"],
            selection=AssetSelection.checks(AssetCheckKey(_key("tile_merge"), "cogs_valid"))
            | AssetSelection.assets(_key("period_blend"), _key("catalog_item")),
            partition_key=PARTITION,
            instance=built["instance"],
            resources=built["defs"].resources,
            raise_on_error=False,
        )
    finally:
        shutil.copy(backup, target)
    assert not result.success
    (evaluation,) = result.get_asset_check_evaluations()
    assert not evaluation.passed
    (problem,) = evaluation.metadata["problems"].value
    assert problem.startswith(f"{target}: truncated")
    assert result.get_asset_materialization_events() == []
    skipped = {event.step_key for event in result.all_events if event.event_type_value == "STEP_SKIPPED"}
    failed = {event.step_key for event in result.all_events if event.event_type_value == "STEP_FAILURE"}
    assert failed == {"small__tile_merge_cogs_valid"}
    assert "small__period_blend" not in {e.step_key for e in result.all_events if e.event_type_value == "STEP_START"}
    assert built["instance"].get_latest_materialization_event(_key("period_blend")).run_id == blend_before
    assert skipped <= {"small__period_blend", "small__catalog_item"}
