"""Searching and fetching products in a local archive of .SAFE folders and COG-per-band products."""

from __future__ import annotations

import errno
import json
import logging
import os
import shutil
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest
import rasterio
from affine import Affine
from pyproj import Transformer
from shapely.geometry import Point, box

from cube_assets.errors import InvalidScene, ProviderError
from cube_assets.formats.sentinel2_safe import open_safe
from cube_assets.formats.simulator import SimulatedScene, simulate_archive
from cube_assets.providers import local as local_module
from cube_assets.providers.base import SENTINEL2_L1C, SENTINEL2_L2A, SceneRef
from cube_assets.providers.local import (
    PRODUCT_MANIFEST,
    LocalArchiveProvider,
    ProductManifest,
    read_product_manifest,
    write_product_manifest,
)

EPSG = 32723
SIZE = 256  # 2.56 km at 10 m
T29UNU_ID = "S2A_MSIL2A_20221005T115411_N0400_R023_T29UNU_20221005T164454"


def _scene(tile: str, ulx: float, uly: float, day: int, seed: int, cloud: float) -> SimulatedScene:
    return SimulatedScene(
        tile_id=tile,
        epsg=EPSG,
        ulx=ulx,
        uly=uly,
        size_px=SIZE,
        sensing_time=datetime(2024, 1, day, 13, 32, 29, tzinfo=UTC),
        seed=seed,
        cloud_fraction=cloud,
        swath_edge=False,
    )


SCENE_A = _scene("T23LLF", 300000, 8800000, day=5, seed=1, cloud=0.1)
SCENE_B = _scene("T23LLF", 300000, 8800000, day=15, seed=2, cloud=0.7)
SCENE_C = _scene("T23KMA", 600000, 7600000, day=10, seed=3, cloud=0.2)  # ~1100 km south
COG_ID = "S2B_23LLF_20240110_COG"
COG_TIME = datetime(2024, 1, 10, 13, 32, 29, tzinfo=UTC)
JANUARY = (datetime(2024, 1, 1, tzinfo=UTC), datetime(2024, 2, 1, tzinfo=UTC))


def _lonlat(x: float, y: float) -> tuple[float, float]:
    return Transformer.from_crs(EPSG, 4326, always_xy=True).transform(x, y)


def _area_around(scene: SimulatedScene, half_size_deg: float = 0.005):
    """A small lon/lat box around the centre of a simulated scene."""
    lon, lat = _lonlat(scene.ulx + SIZE * 5, scene.uly - SIZE * 5)
    return Point(lon, lat).buffer(half_size_deg).envelope


def _write_cog_product(folder: Path, scene_id: str, when: datetime, footprint, cloud_cover: float | None) -> Path:
    folder.mkdir(parents=True)
    with rasterio.open(
        folder / "B04.tif",
        "w",
        driver="GTiff",
        width=8,
        height=8,
        count=1,
        dtype="uint16",
        crs=f"EPSG:{EPSG}",
        transform=Affine(10.0, 0.0, 300000.0, 0.0, -10.0, 8800000.0),
    ) as dst:
        dst.write(np.full((1, 8, 8), 1500, dtype=np.uint16))
    write_product_manifest(
        folder,
        ProductManifest(
            id=scene_id,
            collection=SENTINEL2_L2A,
            datetime=when,
            footprint=footprint,
            cloud_cover=cloud_cover,
            bands={"B04": "B04.tif"},
            properties={"tile_id": "T23LLF"},
        ),
    )
    return folder


@pytest.fixture(scope="module")
def archive(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("archive")
    simulate_archive(root / "T23LLF", [SCENE_A, SCENE_B])
    simulate_archive(root / "T23KMA", [SCENE_C])
    footprint = box(*_area_around(SCENE_A, 0.01).bounds)
    _write_cog_product(root / "cogs" / "2024" / COG_ID, COG_ID, COG_TIME, footprint, cloud_cover=5.0)
    return root


@pytest.fixture()
def provider(archive: Path) -> LocalArchiveProvider:
    return LocalArchiveProvider(archive)


def _ids(scenes: list[SceneRef]) -> list[str]:
    return [scene.scene_id for scene in scenes]


# -- search ----------------------------------------------------------------------------------


def test_search_finds_the_products_over_the_area_sorted_by_time(provider: LocalArchiveProvider) -> None:
    found = provider.search(SENTINEL2_L2A, _area_around(SCENE_A), *JANUARY)

    assert _ids(found) == [SCENE_A.product_id, COG_ID, SCENE_B.product_id]


def test_search_window_includes_start_and_excludes_end(provider: LocalArchiveProvider) -> None:
    found = provider.search(SENTINEL2_L2A, _area_around(SCENE_A), SCENE_A.sensing_time, SCENE_B.sensing_time)

    assert _ids(found) == [SCENE_A.product_id, COG_ID]


def test_search_drops_scenes_above_the_cloud_limit(provider: LocalArchiveProvider) -> None:
    found = provider.search(SENTINEL2_L2A, _area_around(SCENE_A), *JANUARY, max_cloud_cover=50.0)

    assert _ids(found) == [SCENE_A.product_id, COG_ID]


def test_search_elsewhere_finds_only_what_is_there(provider: LocalArchiveProvider) -> None:
    assert _ids(provider.search(SENTINEL2_L2A, _area_around(SCENE_C), *JANUARY)) == [SCENE_C.product_id]
    assert provider.search(SENTINEL2_L2A, Point(2.35, 48.85).buffer(0.1), *JANUARY) == []


def test_search_filters_by_collection(provider: LocalArchiveProvider) -> None:
    assert provider.search(SENTINEL2_L1C, _area_around(SCENE_A), *JANUARY) == []


def test_safe_scene_refs_carry_the_product_metadata(provider: LocalArchiveProvider, archive: Path) -> None:
    scene = provider.search(SENTINEL2_L2A, _area_around(SCENE_A), *JANUARY)[0]
    metadata = open_safe(archive / "T23LLF" / SCENE_A.product_name).metadata

    assert scene.scene_id == SCENE_A.product_id
    assert scene.provider == "local"
    assert scene.collection == SENTINEL2_L2A
    assert scene.datetime == SCENE_A.sensing_time
    assert scene.cloud_cover == metadata.cloud_cover
    assert 5.0 < scene.cloud_cover < 15.0
    assert scene.href == str(archive / "T23LLF" / SCENE_A.product_name)
    assert scene.properties["tile_id"] == "T23LLF"
    assert scene.properties["processing_baseline"] == "05.10"
    assert scene.properties["format"] == "SAFE"


def test_cog_scene_refs_come_from_the_manifest(provider: LocalArchiveProvider, archive: Path) -> None:
    [scene] = [s for s in provider.scenes() if s.scene_id == COG_ID]

    assert scene.datetime == COG_TIME
    assert scene.cloud_cover == 5.0
    assert scene.href == str(archive / "cogs" / "2024" / COG_ID)
    assert scene.properties["bands"] == {"B04": "B04.tif"}
    assert scene.properties["tile_id"] == "T23LLF"


def test_naive_datetimes_are_refused(provider: LocalArchiveProvider) -> None:
    with pytest.raises(ProviderError, match=r"search start .* timezone-aware"):
        provider.search(SENTINEL2_L2A, _area_around(SCENE_A), datetime(2024, 1, 1), JANUARY[1])


def test_projected_geometries_are_refused(provider: LocalArchiveProvider) -> None:
    with pytest.raises(ProviderError, match=r"not lon/lat degrees"):
        provider.search(SENTINEL2_L2A, box(300000, 8790000, 301000, 8800000), *JANUARY)


def test_end_before_start_is_refused(provider: LocalArchiveProvider) -> None:
    with pytest.raises(ProviderError, match=r"search end .* is before start"):
        provider.search(SENTINEL2_L2A, _area_around(SCENE_A), JANUARY[1], JANUARY[0])


def test_missing_archive_root_is_a_provider_error(tmp_path: Path) -> None:
    with pytest.raises(ProviderError, match=r"archive root .*nowhere is not a folder"):
        LocalArchiveProvider(tmp_path / "nowhere").search(SENTINEL2_L2A, Point(0, 0).buffer(1), *JANUARY)


# -- scanning --------------------------------------------------------------------------------


def _small_archive(root: Path, *scenes: SimulatedScene) -> Path:
    simulate_archive(root, [replace(scene, size_px=64) for scene in scenes])
    return root


def test_unreadable_products_are_skipped_with_a_warning(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    _small_archive(tmp_path, SCENE_A)
    broken = tmp_path / "S2A_MSIL2A_BROKEN.SAFE"
    broken.mkdir()
    (broken / "MTD_MSIL2A.xml").write_text("not xml")

    with caplog.at_level(logging.WARNING, logger="cube_assets.providers.local"):
        scenes = LocalArchiveProvider(tmp_path).scenes()

    assert _ids(scenes) == [SCENE_A.product_id]
    assert "S2A_MSIL2A_BROKEN.SAFE" in caplog.text and "cannot parse XML" in caplog.text


def test_hidden_temporary_folders_are_ignored(tmp_path: Path) -> None:
    _small_archive(tmp_path, SCENE_A)
    shutil.copytree(tmp_path / SCENE_A.product_name, tmp_path / f".{SCENE_B.product_name}.abc.tmp")

    assert _ids(LocalArchiveProvider(tmp_path).scenes()) == [SCENE_A.product_id]


def test_unchanged_products_are_not_parsed_again(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _small_archive(tmp_path, SCENE_A, SCENE_B)
    parsed: list[Path] = []
    real_parse = local_module.parse_product_metadata
    monkeypatch.setattr(local_module, "parse_product_metadata", lambda p: parsed.append(Path(p)) or real_parse(p))
    provider = LocalArchiveProvider(tmp_path)

    provider.scenes()
    provider.scenes()
    assert sorted(p.name for p in parsed) == sorted([SCENE_A.product_name, SCENE_B.product_name])

    mtd = tmp_path / SCENE_B.product_name / "MTD_MSIL2A.xml"
    later = mtd.stat().st_mtime_ns + 5_000_000_000
    os.utime(mtd, ns=(later, later))
    provider.scenes()
    assert [p.name for p in parsed[2:]] == [SCENE_B.product_name]


def test_products_added_later_appear_in_the_next_search(tmp_path: Path) -> None:
    _small_archive(tmp_path, SCENE_A)
    provider = LocalArchiveProvider(tmp_path)
    assert _ids(provider.scenes()) == [SCENE_A.product_id]

    _small_archive(tmp_path / "more", SCENE_B)
    shutil.rmtree(tmp_path / SCENE_A.product_name)

    assert _ids(provider.scenes()) == [SCENE_B.product_id]


# -- fetch -----------------------------------------------------------------------------------


@pytest.fixture()
def small_provider(tmp_path: Path) -> LocalArchiveProvider:
    return LocalArchiveProvider(_small_archive(tmp_path / "archive", SCENE_A), name="lab")


def test_fetch_links_the_product_into_the_destination(small_provider: LocalArchiveProvider, tmp_path: Path) -> None:
    [scene] = small_provider.scenes()

    fetched = small_provider.fetch(scene, tmp_path / "work")

    assert fetched == tmp_path / "work" / SCENE_A.product_name
    assert open_safe(fetched).metadata.product_id == SCENE_A.product_id
    source_b04 = open_safe(Path(scene.href)).band_path("B04")
    assert open_safe(fetched).band_path("B04").stat().st_ino == source_b04.stat().st_ino
    assert [p.name for p in (tmp_path / "work").iterdir()] == [SCENE_A.product_name]


def test_fetch_copies_when_linking_fails(
    small_provider: LocalArchiveProvider, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    [scene] = small_provider.scenes()

    def cross_device(src: str, dst: str) -> None:
        raise OSError(errno.EXDEV, "Invalid cross-device link")

    monkeypatch.setattr(local_module.os, "link", cross_device)
    fetched = small_provider.fetch(scene, tmp_path / "work")

    source_b04 = open_safe(Path(scene.href)).band_path("B04")
    copy_b04 = open_safe(fetched).band_path("B04")
    assert copy_b04.stat().st_ino != source_b04.stat().st_ino
    assert copy_b04.read_bytes() == source_b04.read_bytes()


def test_fetch_reuses_a_complete_copy(small_provider: LocalArchiveProvider, tmp_path: Path) -> None:
    [scene] = small_provider.scenes()
    first = small_provider.fetch(scene, tmp_path / "work")
    marker = first / "kept.txt"
    marker.write_text("still here")

    second = small_provider.fetch(scene, tmp_path / "work")

    assert second == first
    assert marker.read_text() == "still here"


def test_fetch_replaces_an_incomplete_copy(small_provider: LocalArchiveProvider, tmp_path: Path) -> None:
    [scene] = small_provider.scenes()
    partial = tmp_path / "work" / SCENE_A.product_name
    partial.mkdir(parents=True)
    (partial / "half-copied.jp2").write_bytes(b"\x00")

    fetched = small_provider.fetch(scene, tmp_path / "work")

    assert not (fetched / "half-copied.jp2").exists()
    assert (fetched / "MTD_MSIL2A.xml").is_file()


def test_fetch_refuses_another_providers_scene(small_provider: LocalArchiveProvider, tmp_path: Path) -> None:
    [scene] = small_provider.scenes()
    stranger = LocalArchiveProvider(tmp_path, name="other")

    with pytest.raises(ProviderError, match=r"other: scene .* belongs to provider 'lab'"):
        stranger.fetch(scene, tmp_path / "work")


def test_fetch_of_a_vanished_product_is_a_provider_error(small_provider: LocalArchiveProvider, tmp_path: Path) -> None:
    [scene] = small_provider.scenes()
    shutil.rmtree(scene.href)

    with pytest.raises(ProviderError, match=r"no longer exists"):
        small_provider.fetch(scene, tmp_path / "work")


def test_fetch_copies_a_cog_product(provider: LocalArchiveProvider, tmp_path: Path) -> None:
    [scene] = [s for s in provider.scenes() if s.scene_id == COG_ID]

    fetched = provider.fetch(scene, tmp_path / "work")

    assert read_product_manifest(fetched).bands == {"B04": "B04.tif"}
    with rasterio.open(fetched / "B04.tif") as src:
        assert int(src.read(1)[0, 0]) == 1500


# -- the COG-per-band manifest ---------------------------------------------------------------


def test_manifest_round_trips(tmp_path: Path) -> None:
    footprint = box(-46.9, -10.9, -46.8, -10.8)
    folder = _write_cog_product(tmp_path / "p", "P1", COG_TIME + timedelta(hours=1), footprint, None)

    manifest = read_product_manifest(folder)

    assert manifest.id == "P1"
    assert manifest.datetime == datetime(2024, 1, 10, 14, 32, 29, tzinfo=UTC)
    assert manifest.footprint.equals(footprint)
    assert manifest.cloud_cover is None
    assert '"datetime": "2024-01-10T14:32:29Z"' in (folder / PRODUCT_MANIFEST).read_text()


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda d: d.pop("footprint"), r"missing keys \['footprint'\]"),
        (lambda d: d.update(datetime="2024-01-10T13:32:29"), r"has no timezone"),
        (lambda d: d.update(bands={"B08": "B08.tif"}), r"band B08 file B08.tif missing in archive"),
        (lambda d: d.update(bands={"B04": "../B04.tif"}), r"must be relative to the product folder"),
        (lambda d: d.update(cloud_cover=140), r"'cloud_cover' must be a percentage"),
        (lambda d: d.update(footprint={"type": "Point", "coordinates": [300000, 8800000]}), r"not lon/lat"),
    ],
)
def test_invalid_manifests_are_refused(tmp_path: Path, edit, message: str) -> None:
    folder = _write_cog_product(tmp_path / "P2", "P2", COG_TIME, box(0, 0, 1, 1), 1.0)
    document = json.loads((folder / PRODUCT_MANIFEST).read_text())
    edit(document)
    (folder / PRODUCT_MANIFEST).write_text(json.dumps(document))

    with pytest.raises(InvalidScene, match=r"P2/product\.json: .*" + message):
        read_product_manifest(folder)


# -- the real T29UNU product -----------------------------------------------------------------


@pytest.fixture()
def real_archive(tmp_path: Path, t29unu_safe: Path) -> LocalArchiveProvider:
    (tmp_path / "ireland").mkdir()
    (tmp_path / "ireland" / t29unu_safe.name).symlink_to(t29unu_safe, target_is_directory=True)
    return LocalArchiveProvider(tmp_path)


OCTOBER_5 = (datetime(2022, 10, 5, tzinfo=UTC), datetime(2022, 10, 6, tzinfo=UTC))


def test_real_product_is_found_over_its_swath(real_archive: LocalArchiveProvider) -> None:
    [scene] = real_archive.search(SENTINEL2_L2A, Point(-8.6, 52.8).buffer(0.05), *OCTOBER_5)

    assert scene.scene_id == T29UNU_ID
    assert scene.cloud_cover == 59.769726
    assert scene.datetime == datetime(2022, 10, 5, 11, 54, 11, 24000, tzinfo=UTC)
    assert scene.properties["tile_id"] == "T29UNU"


def test_real_product_is_not_found_elsewhere_or_another_day(real_archive: LocalArchiveProvider) -> None:
    assert real_archive.search(SENTINEL2_L2A, Point(2.35, 48.85).buffer(0.05), *OCTOBER_5) == []
    # Inside the tile but east of the swath edge, where the product has no data.
    assert real_archive.search(SENTINEL2_L2A, Point(-7.0, 52.8).buffer(0.05), *OCTOBER_5) == []
    next_day = (OCTOBER_5[1], OCTOBER_5[1] + timedelta(days=1))
    assert real_archive.search(SENTINEL2_L2A, Point(-8.6, 52.8).buffer(0.05), *next_day) == []


def test_real_product_is_fetched_through_its_symlink(real_archive: LocalArchiveProvider, tmp_path: Path) -> None:
    [scene] = real_archive.search(SENTINEL2_L2A, Point(-8.6, 52.8).buffer(0.05), *OCTOBER_5)

    fetched = real_archive.fetch(scene, tmp_path / "work")

    assert not fetched.is_symlink()
    assert open_safe(fetched).band_path("SCL", 20).stat().st_size == 1112540
