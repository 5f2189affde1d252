"""The new-scene sensor over a real local archive: the test adds simulated products between ticks."""

from datetime import UTC, datetime
from pathlib import Path

import pytest
from dagster import AssetKey, SensorResult, SkipReason, build_sensor_context, instance_for_test

from cube_assets.cube_config import load_project_config
from cube_assets.definitions import build_definitions
from cube_assets.formats.simulator import SimulatedScene, write_simulated_product
from cube_assets.providers.local import LocalArchiveProvider
from cube_assets.resources.providers import ProvidersResource
from cube_assets.sensors import (
    STAGES_UP_TO_MERGE,
    SceneCursor,
    build_new_scenes_sensor,
    new_scenes_sensor_name,
    partitions_of_scenes,
    search_new_scenes,
)
from cube_assets_tests.conftest import SMALL_CUBE, write_cube_file
from cube_assets_tests.fixtures_stac import real_sentinel2_items

ARCHIVE_PROVIDER = {"name": "archive", "driver": "local", "options": {"root": "archive"}}
# Two tiles side by side (x 200500–203060 and 203060–205620 in UTM 23S), two 16-day periods.
CUBE = {**SMALL_CUBE, "providers": ["archive"], "tiles": ["000000", "001000"], "end_date": "2024-01-31"}
# Footprints of the simulated products: T23LKC covers x 200000–203000 (tile 000000 only),
# T23LLC covers x 202000–205000 (both tiles); T23LMC is east of both tiles.
PRODUCTS = {"T23LKC": 200000, "T23LLC": 202000, "T23LMC": 230000}


def _add_product(archive: Path, tile_id: str, when: str) -> str:
    scene = SimulatedScene(
        tile_id=tile_id,
        epsg=32723,
        ulx=PRODUCTS[tile_id],
        uly=8250000,
        size_px=300,
        sensing_time=datetime.fromisoformat(when),
        seed=7,
        cloud_fraction=0.2,
        swath_edge=False,
    )
    write_simulated_product(archive, scene)
    return scene.product_id


@pytest.fixture
def setup(tmp_path):
    config = write_cube_file(tmp_path, CUBE, [ARCHIVE_PROVIDER])
    archive = tmp_path / "data" / "archive"
    archive.mkdir(parents=True)
    cube = load_project_config(config).cube("small")
    providers = ProvidersResource(config_file=str(config), data_root=str(tmp_path / "data"))
    return {"config": config, "archive": archive, "cube": cube, "providers": providers, "data": tmp_path / "data"}


def _tick(setup, instance, cursor):
    sensor = build_new_scenes_sensor(setup["cube"])
    context = build_sensor_context(instance=instance, cursor=cursor, resources={"providers": setup["providers"]})
    return sensor(context)


def test_sensor_requests_the_partitions_of_new_scenes_then_nothing_on_a_quiet_tick(setup):
    archive = setup["archive"]
    first = _add_product(archive, "T23LKC", "2024-01-04T13:12:29+00:00")
    with instance_for_test() as instance:
        tick1 = _tick(setup, instance, None)
        assert isinstance(tick1, SensorResult)
        assert [(r.partition_key, r.tags["cube_assets/new_scene_count"]) for r in tick1.run_requests] == [
            ("2024-01-01|000000", "1")
        ]
        assert SceneCursor.parse(tick1.cursor) == SceneCursor(
            datetime(2024, 1, 4, 13, 12, 29, tzinfo=UTC), frozenset({first})
        )

        # Between ticks, the archive receives a product of the next period, over both tiles.
        second = _add_product(archive, "T23LLC", "2024-01-20T13:12:29+00:00")
        tick2 = _tick(setup, instance, tick1.cursor)
        assert sorted(r.partition_key for r in tick2.run_requests) == ["2024-01-17|000000", "2024-01-17|001000"]
        assert SceneCursor.parse(tick2.cursor).scene_ids == frozenset({second})

        tick3 = _tick(setup, instance, tick2.cursor)
        assert isinstance(tick3, SkipReason)
        assert "2024-01-20 13:12:29" in tick3.skip_message


def test_requested_runs_cover_the_stages_up_to_the_merge(setup):
    _add_product(setup["archive"], "T23LKC", "2024-01-04T13:12:29+00:00")
    with instance_for_test() as instance:
        (request,) = _tick(setup, instance, None).run_requests
    assert request.asset_selection == [AssetKey(["small", stage]) for stage in STAGES_UP_TO_MERGE]
    assert STAGES_UP_TO_MERGE[-1] == "tile_merge"
    assert request.run_key.startswith("2024-01-01|000000:")


def test_a_scene_published_later_with_the_latest_acquisition_time_is_still_found(setup):
    """Adjacent products of one orbit share an acquisition time and may be published on different ticks."""
    _add_product(setup["archive"], "T23LKC", "2024-01-04T13:12:29+00:00")
    with instance_for_test() as instance:
        tick1 = _tick(setup, instance, None)
        _add_product(setup["archive"], "T23LLC", "2024-01-04T13:12:29+00:00")
        tick2 = _tick(setup, instance, tick1.cursor)
    assert sorted(r.partition_key for r in tick2.run_requests) == ["2024-01-01|000000", "2024-01-01|001000"]
    # The same partition is requested again with a different run key: a new scene re-merges it.
    assert tick2.run_requests[0].run_key != tick1.run_requests[0].run_key
    assert len(SceneCursor.parse(tick2.cursor).scene_ids) == 2


def test_scenes_outside_the_cubes_tiles_or_periods_request_nothing(setup):
    archive = setup["archive"]
    _add_product(archive, "T23LMC", "2024-01-04T13:12:29+00:00")  # east of both tiles
    _add_product(archive, "T23LKC", "2023-12-30T13:12:29+00:00")  # before the cube starts
    provider = LocalArchiveProvider(archive, name="archive")
    every_scene = provider.scenes()
    assert len(every_scene) == 2
    assert partitions_of_scenes(setup["cube"], every_scene) == {}  # no tile, and no period, for them
    assert search_new_scenes(setup["cube"], [provider], SceneCursor()) == []


def test_cursor_rejects_text_it_did_not_write():
    with pytest.raises(ValueError, match="not a scene cursor"):
        SceneCursor.parse('{"latest": 3}')


def test_every_cube_has_a_stopped_new_scene_sensor(setup):
    defs = build_definitions(setup["config"], setup["data"])
    sensor = defs.resolve_sensor_def(new_scenes_sensor_name("small"))
    assert sensor.default_status.value == "STOPPED"
    assert sensor.minimum_interval_seconds == 3600


def test_sensor_over_a_stac_api_finds_items_added_between_ticks(stac_server, real_data, tmp_path):
    """The real Planetary Computer Items of MGRS 35MNM (June–July 2020) on the loopback STAC server."""
    items = sorted(real_sentinel2_items(real_data), key=lambda item: item["properties"]["datetime"])
    api = stac_server.add_api("pc", items[:5])  # 2020-06-01 … 2020-06-21
    cube = {
        **SMALL_CUBE,
        "providers": ["pc"],
        "grid": {"kind": "utm", "zone": 35, "hemisphere": "S"},
        "tiles": ["35S_004007"],
        "start_date": "2020-06-01",
        "end_date": "2020-07-31",
        "max_cloud_cover": 20,
    }
    config = write_cube_file(tmp_path, cube, [{"name": "pc", "driver": "stac", "options": {"url": api.url}}])
    setup = {
        "cube": load_project_config(config).cube("small"),
        "providers": ProvidersResource(config_file=str(config), data_root=str(tmp_path / "data")),
    }
    with instance_for_test() as instance:
        tick1 = _tick(setup, instance, None)
        # 16-day periods restart on 1 January: 2020-05-24 holds 06-01 and 06-06, 2020-06-09 the next three.
        assert [(r.partition_key, r.tags["cube_assets/new_scene_count"]) for r in tick1.run_requests] == [
            ("2020-05-24|35S_004007", "2"),
            ("2020-06-09|35S_004007", "3"),
        ]
        api.add_items(items[5:8])  # 06-26, 07-01 (29 % cloud: above the cube's max_cloud_cover), 07-06
        tick2 = _tick(setup, instance, tick1.cursor)
        assert [(r.partition_key, r.tags["cube_assets/new_scene_count"]) for r in tick2.run_requests] == [
            ("2020-06-25|35S_004007", "2"),
        ]
        assert SceneCursor.parse(tick2.cursor).latest_acquisition == datetime(2020, 7, 6, 8, 6, 9, 24000, tzinfo=UTC)
        assert isinstance(_tick(setup, instance, tick2.cursor), SkipReason)


def test_a_cube_with_sources_searches_every_sources_providers(tmp_path):
    sources_cube = {k: v for k, v in CUBE.items() if k not in ("collection", "providers", "quality")}
    roles = {"blue": "B02", "green": "B03", "red": "B04", "nir": "B08"}
    sources_cube["sources"] = [
        {"name": "first", "collection": "sentinel-2-l2a", "providers": ["archive"], "bands": roles},
        {"name": "second", "collection": "sentinel-2-l2a", "providers": ["other"], "bands": roles},
    ]
    other = {"name": "other", "driver": "local", "options": {"root": "other"}}
    config = write_cube_file(tmp_path, sources_cube, [ARCHIVE_PROVIDER, other])
    for folder in ("archive", "other"):
        (tmp_path / "data" / folder).mkdir(parents=True)
    only_second = _add_product(tmp_path / "data" / "other", "T23LLC", "2024-01-20T13:12:29+00:00")
    setup = {
        "cube": load_project_config(config).cube("small"),
        "providers": ProvidersResource(config_file=str(config), data_root=str(tmp_path / "data")),
    }
    with instance_for_test() as instance:
        tick = _tick(setup, instance, None)
    assert sorted(r.partition_key for r in tick.run_requests) == ["2024-01-17|000000", "2024-01-17|001000"]
    assert SceneCursor.parse(tick.cursor).scene_ids == frozenset({only_second})
