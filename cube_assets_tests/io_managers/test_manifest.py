"""The manifest IO manager on a real local store: typed manifests written as JSON, validated when loaded."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime
from pathlib import Path

import pytest
from dagster import AssetKey, DagsterInstance, build_input_context, build_output_context, build_resources

from cube_assets.errors import InvalidManifest
from cube_assets.io_managers.manifest import ManifestIOManager
from cube_assets.manifests import (
    Composite,
    IndexPixels,
    ManifestModel,
    Merge,
    PeriodBlendManifest,
    RawScene,
    RawSceneManifest,
    ReflectanceManifest,
    ReflectanceScene,
    SceneCog,
    SceneCogManifest,
    Sen2CorRecord,
    TileMergeManifest,
    manifest_json,
)
from cube_assets.partitions import partition_key
from cube_assets.resources.storage import RasterStoreResource
from cube_assets.storage.layout import manifest_key

TILE, PERIOD = "000000", "2024-01-01"
PARTITION = partition_key(TILE, PERIOD)
FOOTPRINT = {"type": "Polygon", "coordinates": [[[-45.0, -12.0], [-44.0, -12.0], [-44.0, -11.0], [-45.0, -12.0]]]}

RAW = RawScene(
    scene_id="S2A_X",
    collection="sentinel-2-l2a",
    datetime=datetime(2024, 1, 4, 13, 32, 29, tzinfo=UTC),
    provider="archive",
    path="/data/raw/S2A_X.SAFE",
    cloud_cover=12.5,
    footprint=FOOTPRINT,
    raw_bands={"B04": "/data/raw/S2A_X.SAFE/B04.jp2"},
    fetched_bands=("B04",),
    provider_failures=("cdse: timeout",),
)
REFLECTANCE = ReflectanceScene(
    **dict(RAW),
    bands={"B04": "/cubes/sr/B04.tif"},
    quality="/cubes/sr/SCL.tif",
    radiometry={"processing_baseline": "05.10", "offsets": {"B04": -1000.0}},
    pvi=None,
    sen2cor=Sen2CorRecord(
        l1c_product_id="L1C",
        l2a_product_id="L2A",
        l2a_path="/sen2cor/L2A.SAFE",
        version="2.11.0",
        image="sen2cor:2.11",
        reused=False,
    ),
)
COG = SceneCog(
    **dict(REFLECTANCE) | {"bands": {"B04": "/cubes/cog/B04.tif"}, "quality": "/cubes/cog/SCL.tif"},
    indexes={"NDVI": "/cubes/cog/NDVI.tif"},
    index_pixels={"NDVI": IndexPixels(nodata_pixels=3, clipped_pixels=0)},
    quicklook="/cubes/cog/quicklook.png",
    quicklook_key="small/scenes/S2A_X/quicklook.png",
    footprint_source="product_metadata",
    footprint_file="/cubes/cog/footprint.geojson",
)
MERGE = Merge(
    date=date(2024, 1, 4),
    item="small_merge_000000_20240104",
    bands={"B04": "/cubes/merge/B04.tif"},
    quality="/cubes/merge/SCL.tif",
    datasource="/cubes/merge/DATASOURCE.tif",
    scenes=("S2A_X",),
    efficacy=61.25,
    cloud_ratio=20.5,
    valid_pixels=900,
    clear_pixels=700,
    total_pixels=1000,
)
BLEND = PeriodBlendManifest(
    tile=TILE,
    period=PERIOD,
    observations=1,
    dates=(date(2024, 1, 4),),
    merges=(MERGE,),
    composites={
        "LCF": Composite(
            item="small_LCF_000000_20240101",
            bands={"B04": "/cubes/LCF/B04.tif", "CLEAROB": "/cubes/LCF/CLEAROB.tif"},
            quicklook=None,
            quicklook_key=None,
            index_pixels={"NDVI": IndexPixels(nodata_pixels=0, clipped_pixels=2)},
        )
    },
)
MANIFESTS: dict[str, ManifestModel] = {
    "raw_scene": RawSceneManifest(tile=TILE, period=PERIOD, scenes=(RAW,)),
    "surface_reflectance": ReflectanceManifest(tile=TILE, period=PERIOD, scenes=(REFLECTANCE,)),
    "scene_cog": SceneCogManifest(tile=TILE, period=PERIOD, scenes=(COG,)),
    "tile_merge": TileMergeManifest(tile=TILE, period=PERIOD, merges=(MERGE,)),
    "period_blend": BLEND,
}


@pytest.fixture
def io_manager(tmp_path: Path) -> ManifestIOManager:
    """The IO manager over a local store under ``tmp_path``, initialized as a run would."""
    with (
        DagsterInstance.ephemeral() as instance,
        build_resources(
            {"manifest_io_manager": ManifestIOManager(store=RasterStoreResource(root=str(tmp_path)))},
            instance=instance,
        ) as resources,
    ):
        yield resources.manifest_io_manager


def _file(tmp_path: Path, stage: str) -> Path:
    return tmp_path / manifest_key("small", stage, TILE, PERIOD)


def _write(io_manager: ManifestIOManager, stage: str, manifest: ManifestModel) -> None:
    io_manager.handle_output(
        build_output_context(asset_key=AssetKey(["small", stage]), partition_key=PARTITION), manifest
    )


def _load(io_manager: ManifestIOManager, stage: str) -> ManifestModel:
    return io_manager.load_input(build_input_context(asset_key=AssetKey(["small", stage]), partition_key=PARTITION))


@pytest.mark.parametrize("stage", list(MANIFESTS))
def test_each_manifest_comes_back_equal_from_its_json_file(io_manager, tmp_path, stage) -> None:
    _write(io_manager, stage, MANIFESTS[stage])

    assert json.loads(_file(tmp_path, stage).read_text()) == manifest_json(MANIFESTS[stage])
    assert _load(io_manager, stage) == MANIFESTS[stage]


def test_times_and_dates_are_written_as_iso_text_and_absent_fields_are_left_out(io_manager, tmp_path) -> None:
    _write(
        io_manager,
        "surface_reflectance",
        ReflectanceManifest(tile=TILE, period=PERIOD, scenes=(REFLECTANCE.model_copy(update={"sen2cor": None}),)),
    )
    _write(
        io_manager,
        "period_blend",
        BLEND.model_copy(update={"composites": {}, "observations": 0, "dates": (), "merges": ()}),
    )

    (scene,) = json.loads(_file(tmp_path, "surface_reflectance").read_text())["scenes"]
    assert scene["datetime"] == "2024-01-04T13:32:29+00:00"
    assert "sen2cor" not in scene and "pvi_key" not in scene
    assert json.loads(_file(tmp_path, "period_blend").read_text()) == {
        "tile": TILE,
        "period": PERIOD,
        "composites": {},
        "observations": 0,
        "merges": [],
    }


def test_a_manifest_written_by_an_earlier_version_still_loads(io_manager, tmp_path) -> None:
    earlier = {  # json.dumps of the plain dict the tile_merge asset used to return
        "tile": TILE,
        "period": PERIOD,
        "merges": [
            {
                "date": "2024-01-04",
                "item": "small_merge_000000_20240104",
                "bands": {"B04": "/cubes/merge/B04.tif"},
                "quality": "/cubes/merge/SCL.tif",
                "datasource": "/cubes/merge/DATASOURCE.tif",
                "scenes": ["S2A_X"],
                "efficacy": 61.25,
                "cloud_ratio": 20.5,
                "valid_pixels": 900,
                "clear_pixels": 700,
                "total_pixels": 1000,
            }
        ],
    }
    _file(tmp_path, "tile_merge").parent.mkdir(parents=True)
    _file(tmp_path, "tile_merge").write_text(json.dumps(earlier, indent=1, sort_keys=True, default=str))

    assert _load(io_manager, "tile_merge") == MANIFESTS["tile_merge"]


def _refused(io_manager: ManifestIOManager, tmp_path: Path, stage: str, document: object) -> str:
    _file(tmp_path, stage).parent.mkdir(parents=True, exist_ok=True)
    _file(tmp_path, stage).write_text(document if isinstance(document, str) else json.dumps(document))
    with pytest.raises(InvalidManifest) as refused:
        _load(io_manager, stage)
    message = str(refused.value)
    assert str(_file(tmp_path, stage)) in message
    assert message.endswith(f"materialize small/{stage} for this partition again")
    return message


def test_a_merge_without_a_field_is_refused_naming_the_file_and_the_field(io_manager, tmp_path) -> None:
    document = manifest_json(MANIFESTS["tile_merge"])
    del document["merges"][0]["total_pixels"]

    assert "field merges.0.total_pixels: Field required" in _refused(io_manager, tmp_path, "tile_merge", document)


def test_a_field_of_the_wrong_type_is_refused_naming_the_file_and_the_field(io_manager, tmp_path) -> None:
    document = manifest_json(MANIFESTS["scene_cog"])
    document["scenes"][0]["bands"]["B04"] = 4

    assert "field scenes.0.bands.B04: Input should be a valid string" in _refused(
        io_manager, tmp_path, "scene_cog", document
    )


def test_a_field_the_manifest_does_not_have_is_refused_naming_the_file_and_the_field(io_manager, tmp_path) -> None:
    document = manifest_json(MANIFESTS["period_blend"])
    document["composites"]["LCF"]["cloud"] = 0.5

    assert "field composites.LCF.cloud: Extra inputs are not permitted" in _refused(
        io_manager, tmp_path, "period_blend", document
    )


def test_another_stages_manifest_is_refused(io_manager, tmp_path) -> None:
    message = _refused(io_manager, tmp_path, "period_blend", manifest_json(MANIFESTS["tile_merge"]))

    assert "is not a PeriodBlendManifest" in message and "field composites: Field required" in message


def test_a_file_that_is_not_json_is_refused(io_manager, tmp_path) -> None:
    assert "not JSON" in _refused(io_manager, tmp_path, "raw_scene", '{"tile": "000000", "sce')


def test_a_missing_manifest_says_which_partition_to_materialize(io_manager) -> None:
    with pytest.raises(FileNotFoundError, match="materialize small/tile_merge for this partition first"):
        _load(io_manager, "tile_merge")


def test_an_asset_returning_another_stages_manifest_is_refused_before_writing(io_manager, tmp_path) -> None:
    with pytest.raises(
        TypeError, match="small/period_blend: returned a TileMergeManifest, expected its manifest PeriodBlendManifest"
    ):
        _write(io_manager, "period_blend", MANIFESTS["tile_merge"])
    assert not _file(tmp_path, "period_blend").exists()


def test_manifests_are_frozen() -> None:
    with pytest.raises(ValueError, match="frozen"):
        MERGE.efficacy = 0.0  # type: ignore[misc]  # assigning to a frozen manifest is the behaviour under test
