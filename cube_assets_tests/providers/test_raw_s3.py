"""Raw scenes mirrored in S3: pushed once fetched, pulled by a process with an empty raw folder.

Against moto's S3 server over HTTP (``s3_server``); scenes are the simulator's ``.SAFE``
products (whole products) and real Items and rasters served by the STAC replay server
(band by band). Each "process" is a raw store on a folder of its own.
"""

from __future__ import annotations

import hashlib
import json
import os
from datetime import UTC, datetime
from pathlib import Path

import pytest
from shapely.geometry import box

from cube_assets.cube_config import load_project_config
from cube_assets.providers.base import SENTINEL2_L2A
from cube_assets.providers.raw_s3 import MirroredRawStore, RawMirrorError, RawSceneMirror
from cube_assets.providers.raw_store import RawStore, SceneNotStored
from cube_assets.providers.simulated import SimulatorProvider, simulated_scenes
from cube_assets.providers.stac import build_stac_provider
from cube_assets.resources.providers import ProvidersResource
from cube_assets.resources.storage import RasterStoreResource
from cube_assets_tests.conftest import SMALL_CUBE, SMALL_SIMULATOR, write_cube_file
from cube_assets_tests.fixtures_s3 import S3Server
from cube_assets_tests.fixtures_stac import REAL_S2_ASSET_FILES, real_sentinel2_items

EVERYWHERE = box(-180, -90, 180, 90)
JANUARY = (datetime(2024, 1, 1, tzinfo=UTC), datetime(2024, 2, 1, tzinfo=UTC))
BANDS = ["B02", "B04", "SCL"]


def _digests(folder: Path) -> dict[str, str]:
    """``{relative path: sha256}`` of every file under ``folder`` (hidden names included)."""
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def _count_calls(store, operation: str) -> list[str]:
    """Record the key of every ``operation`` request the store's client sends from now on."""
    calls: list[str] = []
    store.client.meta.events.register(
        f"before-call.s3.{operation}", lambda params, **_: calls.append(params.get("url_path", ""))
    )
    return calls


@pytest.fixture
def simulator(tmp_path: Path) -> SimulatorProvider:
    return SimulatorProvider(tmp_path / "archive", simulated_scenes(SMALL_SIMULATOR["options"]), name="simulator")


@pytest.fixture
def store(s3_server: S3Server, s3_bucket: str):
    return s3_server.store(s3_bucket, prefix="cubes")


def _mirrored(store, root: Path, **options) -> MirroredRawStore:
    return MirroredRawStore(root, RawSceneMirror(store, root), **options)


def test_a_scene_fetched_in_one_raw_folder_is_pulled_whole_into_another(simulator, store, tmp_path: Path) -> None:
    fetching = _mirrored(store, tmp_path / "a" / "raw")
    scene = simulator.search(SENTINEL2_L2A, EVERYWHERE, *JANUARY)[0]
    stored = fetching.load(scene, BANDS, simulator)

    reading = _mirrored(store, tmp_path / "b" / "raw")
    pulled = reading.mirror.pull(SENTINEL2_L2A, scene.scene_id)

    assert pulled == tmp_path / "b" / "raw" / SENTINEL2_L2A / stored.path.name
    assert _digests(pulled) == _digests(stored.path)
    assert not [p for p in pulled.parent.iterdir() if p.name.startswith(".")], "no staging folder is left"
    # What the second process loads is the pulled copy: no provider is needed any more.
    again = reading.load(scene, BANDS, offline=True)
    assert again.path == pulled and set(again.bands) == set(BANDS)


def test_offline_search_finds_scenes_another_process_stored(simulator, store, tmp_path: Path) -> None:
    fetching = _mirrored(store, tmp_path / "a" / "raw")
    scenes = simulator.search(SENTINEL2_L2A, EVERYWHERE, *JANUARY)
    for scene in scenes[:3]:
        fetching.load(scene, BANDS, simulator)

    offline = _mirrored(store, tmp_path / "b" / "raw", offline=True)
    found = offline.search(SENTINEL2_L2A, EVERYWHERE, *JANUARY)
    assert sorted(s.scene_id for s in found) == sorted(s.scene_id for s in scenes[:3])
    later = datetime(2024, 1, 5, tzinfo=UTC)
    assert [s.scene_id for s in offline.search(SENTINEL2_L2A, EVERYWHERE, later, JANUARY[1])] == [
        s.scene_id for s in scenes[:3] if s.datetime >= later
    ]
    assert (
        offline.search(SENTINEL2_L2A, EVERYWHERE, datetime(2024, 3, 1, tzinfo=UTC), datetime(2024, 4, 1, tzinfo=UTC))
        == []
    )
    with pytest.raises(SceneNotStored):
        offline.load(scenes[3], BANDS, offline=True)  # never pushed


def test_pushing_again_uploads_only_what_changed(simulator, store, tmp_path: Path) -> None:
    raw = _mirrored(store, tmp_path / "raw")
    scene = simulator.search(SENTINEL2_L2A, EVERYWHERE, *JANUARY)[0]
    stored = raw.load(scene, BANDS, simulator)
    files = json.loads(store.read_bytes(raw.mirror.record_key(SENTINEL2_L2A, scene.scene_id)))["files"]
    assert len(files) == sum(1 for p in stored.path.rglob("*") if p.is_file())

    puts = _count_calls(store, "PutObject")
    raw.mirror.push(scene, stored.path)
    assert puts == [], "an unchanged scene uploads nothing, not even its record"

    band = stored.bands["B04"]
    band.unlink()  # replace, do not write through the simulator archive's hard link
    band.write_bytes(b"other bytes")
    raw.mirror.push(scene, stored.path)
    assert len(puts) == 2 and puts[0].endswith(band.name) and puts[1].endswith(f"{scene.scene_id}.json")


def test_a_scene_is_in_s3_only_once_every_file_and_then_its_record_are_uploaded(
    simulator, store, tmp_path: Path
) -> None:
    raw = RawStore(tmp_path / "a" / "raw")
    scene = simulator.search(SENTINEL2_L2A, EVERYWHERE, *JANUARY)[0]
    stored = raw.load(scene, BANDS, simulator)
    mirror = RawSceneMirror(store, tmp_path / "a" / "raw")
    puts = _count_calls(store, "PutObject")

    def fail_the_fifth_upload(**_: object) -> None:
        if len(puts) == 5:
            raise OSError("connection reset")

    store.client.meta.events.register("before-call.s3.PutObject", fail_the_fifth_upload)
    with pytest.raises(OSError, match="connection reset"):
        mirror.push(scene, stored.path)

    assert len(puts) == 5
    assert mirror.record(SENTINEL2_L2A, scene.scene_id) is None
    assert RawSceneMirror(store, tmp_path / "b" / "raw").pull(SENTINEL2_L2A, scene.scene_id) is None


def test_a_pull_that_fails_leaves_no_partial_product(simulator, store, tmp_path: Path) -> None:
    fetching = _mirrored(store, tmp_path / "a" / "raw")
    scene = simulator.search(SENTINEL2_L2A, EVERYWHERE, *JANUARY)[0]
    fetching.load(scene, BANDS, simulator)
    reader = RawSceneMirror(store, tmp_path / "b" / "raw")
    gets = _count_calls(store, "GetObject")

    def fail_the_fourth_download(**_: object) -> None:
        if len(gets) == 4:
            raise OSError("connection reset")

    store.client.meta.events.register("before-call.s3.GetObject", fail_the_fourth_download)
    with pytest.raises(OSError):
        reader.pull(SENTINEL2_L2A, scene.scene_id)

    collection = tmp_path / "b" / "raw" / SENTINEL2_L2A
    assert list(collection.iterdir()) == [], "neither the product nor its hidden staging folder is left"


def test_band_by_band_scenes_push_only_their_manifest_item_and_bands(
    stac_server, real_data, store, tmp_path: Path
) -> None:
    items = stac_server.asset_files(real_sentinel2_items(real_data), REAL_S2_ASSET_FILES)
    provider = build_stac_provider(
        "pc", {"url": stac_server.add_api("pc", items).url, "retries": 1, "backoff_s": 0}, {}
    )
    [scene] = provider.search(
        SENTINEL2_L2A, box(27.4, -7.8, 27.5, -7.7), datetime(2020, 6, 20, tzinfo=UTC), datetime(2020, 6, 22, tzinfo=UTC)
    )
    raw = RawStore(tmp_path / "a" / "raw")
    stored = raw.load(scene, ["B04"], provider)
    (stored.path / "extracted").mkdir()
    (stored.path / "extracted" / "not-a-band.txt").write_text("a later step's scratch")

    record = RawSceneMirror(store, tmp_path / "a" / "raw").push(scene, stored.path)

    root = stored.path.name
    assert sorted(record["files"]) == sorted(
        f"{root}/{name}" for name in ("product.json", "item.json", stored.bands["B04"].name)
    )
    pulled = RawSceneMirror(store, tmp_path / "b" / "raw").pull(SENTINEL2_L2A, scene.scene_id)
    offline = RawStore(tmp_path / "b" / "raw").load(scene, ["B04"], offline=True)
    assert offline.path == pulled
    assert offline.bands["B04"].read_bytes() == stored.bands["B04"].read_bytes()


def test_record_keys_refuse_names_that_climb_out_of_the_prefix(store, tmp_path: Path) -> None:
    mirror = RawSceneMirror(store, tmp_path)
    assert mirror.record_key(SENTINEL2_L2A, "S2A_X.SAFE") == "_raw/sentinel-2-l2a/_scenes/S2A_X.SAFE.json"
    for collection, scene_id in [
        (SENTINEL2_L2A, ".."),
        ("../other", "x"),
        (SENTINEL2_L2A, "a/b"),
        (SENTINEL2_L2A, ".hidden"),
    ]:
        with pytest.raises(RawMirrorError, match="cannot be a key component"):
            mirror.record_key(collection, scene_id)
    with pytest.raises(RawMirrorError, match="needs an S3 store"):
        RawSceneMirror(object(), tmp_path)  # type: ignore[arg-type]  # the wrong store type is the refused input under test


def test_local_scene_points_a_later_step_at_its_own_copy(s3_server: S3Server, s3_bucket: str, tmp_path: Path) -> None:
    config = write_cube_file(tmp_path, SMALL_CUBE, [SMALL_SIMULATOR])
    cube = load_project_config(config).cube("small")
    store = RasterStoreResource(
        backend="s3",
        bucket=s3_bucket,
        prefix="cubes",
        endpoint_url=s3_server.endpoint_url,
        region=s3_server.region,
        access_key_id=s3_server.access_key_id,
        secret_access_key=s3_server.secret_access_key,
    ).get_store()
    fetching = ProvidersResource(config_file=str(config), data_root=str(tmp_path / "step-a"), raw_scenes_in_store=True)
    [first, *_] = fetching.fetch_scenes(cube, cube.tile("000000"), cube.period("2024-01-01"), store=store)

    reading = ProvidersResource(config_file=str(config), data_root=str(tmp_path / "step-b"), raw_scenes_in_store=True)
    local = reading.local_scene(first, store)

    assert Path(local["path"]).parent == tmp_path / "step-b" / "raw" / SENTINEL2_L2A
    assert Path(local["path"]).name == Path(first["path"]).name
    for band, path in local["raw_bands"].items():
        assert path.startswith(local["path"] + os.sep)
        assert Path(path).read_bytes() == Path(first["raw_bands"][band]).read_bytes()
    # Without raw_scenes_in_store, steps share the data root and entries are used as they are.
    assert (
        ProvidersResource(config_file=str(config), data_root=str(tmp_path / "step-b")).local_scene(first, store)
        is first
    )
    with pytest.raises(RawMirrorError, match="S2X_UNKNOWN: not in the raw scenes in S3"):
        reading.local_scene({**first, "scene_id": "S2X_UNKNOWN"}, store)
    with pytest.raises(RawMirrorError, match="no raster store was given"):
        reading.local_scene(first)
