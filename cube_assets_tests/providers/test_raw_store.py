"""The raw data store: per-band storage, only missing bands fetched, offline mode, files checked before use.

Scenes come from a real STAC API replacement on loopback (``stac_server``) serving real Items
and real rasters, or from the real T29UNU ``.SAFE`` product through the ``local`` driver.
"""

from __future__ import annotations

import io
import json
import os
import tarfile
import zipfile
from datetime import UTC, datetime
from pathlib import Path

import pytest
from shapely.geometry import box

from cube_assets.providers.base import SENTINEL2_L2A
from cube_assets.providers.local import (
    LocalArchiveProvider,
    ProductManifest,
    read_product_manifest,
    write_product_manifest,
)
from cube_assets.providers.raw_store import (
    CorruptFile,
    RawStore,
    RawStoreError,
    SceneNotStored,
    verify_file,
)
from cube_assets.providers.stac import StacProvider, build_stac_provider
from cube_assets_tests.fixtures_stac import REAL_LANDSAT_ASSET_FILES, REAL_S2_ASSET_FILES, real_sentinel2_items

TILE = box(27.4, -7.8, 27.5, -7.7)
WINDOW = (datetime(2020, 6, 20, tzinfo=UTC), datetime(2020, 6, 22, tzinfo=UTC))
T29UNU_AREA = box(-8.6, 52.6, -8.5, 52.7)


@pytest.fixture
def provider(stac_server, real_data) -> StacProvider:
    items = stac_server.asset_files(real_sentinel2_items(real_data), REAL_S2_ASSET_FILES)
    api = stac_server.add_api("pc", items)
    return build_stac_provider("pc", {"url": api.url, "retries": 1, "backoff_s": 0}, {})


@pytest.fixture
def scene(provider):
    [found] = provider.search(SENTINEL2_L2A, TILE, *WINDOW)
    return found


def _file_requests(server, band: str) -> int:
    return len(server.requests_to(f"/files/{REAL_S2_ASSET_FILES[band]}"))


# --------------------------------------------------------------------------------------------
# Checking files


def test_real_jpeg2000_and_geotiff_pass(real_data) -> None:
    verify_file(real_data / REAL_S2_ASSET_FILES["B04"])
    verify_file(real_data / REAL_LANDSAT_ASSET_FILES["red"])


@pytest.mark.parametrize("band", ["B04", "SCL"])
def test_truncated_jpeg2000_is_corrupt(real_data, tmp_path, band) -> None:
    # GDAL's JPEG 2000 driver still "reads" such a file (OpenJPEG only logs errors), so the
    # box structure and the end-of-codestream marker are what reveal the truncation.
    data = (real_data / REAL_S2_ASSET_FILES[band]).read_bytes()
    path = tmp_path / f"{band}.jp2"
    path.write_bytes(data[: int(len(data) * 0.99)])
    with pytest.raises(CorruptFile, match="truncated"):
        verify_file(path)


def test_truncated_geotiff_is_corrupt(real_data, tmp_path) -> None:
    data = (real_data / REAL_LANDSAT_ASSET_FILES["red"]).read_bytes()
    path = tmp_path / "red.tif"
    path.write_bytes(data[:-1000])
    with pytest.raises(CorruptFile, match="GDAL cannot read it"):
        verify_file(path)


def test_size_other_than_expected_is_corrupt(real_data) -> None:
    path = real_data / REAL_S2_ASSET_FILES["B04"]
    with pytest.raises(CorruptFile, match=f"expected {path.stat().st_size + 1}"):
        verify_file(path, size=path.stat().st_size + 1)


def test_checksum_mismatch_is_corrupt(real_data) -> None:
    with pytest.raises(CorruptFile, match="sha2-256 checksum mismatch"):
        verify_file(real_data / REAL_S2_ASSET_FILES["B04"], checksum="1220" + "00" * 32)


def _zip_of(real_data: Path) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.write(real_data / REAL_S2_ASSET_FILES["SCL"], "SCL.jp2")
        archive.writestr("MTD.xml", "<xml/>")
    return buffer.getvalue()


def test_zip_with_a_damaged_member_fails_its_crc(real_data, tmp_path) -> None:
    data = bytearray(_zip_of(real_data))
    (tmp_path / "ok.zip").write_bytes(bytes(data))
    verify_file(tmp_path / "ok.zip")
    data[len(data) // 3] ^= 0xFF  # inside SCL.jp2's compressed bytes
    (tmp_path / "bad.zip").write_bytes(bytes(data))
    with pytest.raises(CorruptFile, match="bad.zip"):
        verify_file(tmp_path / "bad.zip")


def test_truncated_zip_is_corrupt(real_data, tmp_path) -> None:
    (tmp_path / "cut.zip").write_bytes(_zip_of(real_data)[:-100])
    with pytest.raises(CorruptFile, match="not a readable zip archive"):
        verify_file(tmp_path / "cut.zip")


def test_truncated_tar_gz_is_corrupt(real_data, tmp_path) -> None:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        archive.add(real_data / REAL_S2_ASSET_FILES["SCL"], "SCL.jp2")
    (tmp_path / "ok.tar.gz").write_bytes(buffer.getvalue())
    verify_file(tmp_path / "ok.tar.gz")
    (tmp_path / "cut.tar.gz").write_bytes(buffer.getvalue()[: len(buffer.getvalue()) // 2])
    with pytest.raises(CorruptFile, match="not a readable tar archive"):
        verify_file(tmp_path / "cut.tar.gz")


# --------------------------------------------------------------------------------------------
# Loading band by band


def test_load_stores_each_band_once_with_a_manifest(stac_server, provider, scene, real_data, tmp_path) -> None:
    store = RawStore(tmp_path)

    stored = store.load(scene, ["B04", "SCL"], provider)

    folder = tmp_path / SENTINEL2_L2A / scene.scene_id
    assert stored.path == folder and stored.fetched == ("B04", "SCL") and stored.provider == "pc"
    assert stored.bands == {"B04": folder / "B04.jp2", "SCL": folder / "SCL.jp2"}
    assert (folder / "B04.jp2").read_bytes() == (real_data / REAL_S2_ASSET_FILES["B04"]).read_bytes()
    manifest = read_product_manifest(folder)
    assert dict(manifest.bands) == {"B04": "B04.jp2", "SCL": "SCL.jp2"}
    assert (
        manifest.properties["raw_store"]["bands"]["B04"]["checksum"]
        == stac_server.file_size_and_checksum(REAL_S2_ASSET_FILES["B04"])[1]
    )
    assert json.loads((folder / "item.json").read_text())["id"] == scene.properties["stac_item_id"]


def test_second_load_fetches_nothing(stac_server, provider, scene, tmp_path) -> None:
    store = RawStore(tmp_path)
    store.load(scene, ["B04", "SCL"], provider)

    again = store.load(scene, ["SCL", "B04"], provider)

    assert again.fetched == ()
    assert _file_requests(stac_server, "B04") == 1 and _file_requests(stac_server, "SCL") == 1


def test_band_added_later_is_appended_without_touching_the_others(stac_server, provider, scene, tmp_path) -> None:
    store = RawStore(tmp_path)
    first = store.load(scene, ["B04"], provider)
    before = os.stat(first.bands["B04"])

    second = store.load(scene, ["B04", "B8A"], provider)

    after = os.stat(second.bands["B04"])
    assert second.fetched == ("B8A",)
    assert (before.st_ino, before.st_mtime_ns) == (after.st_ino, after.st_mtime_ns)
    assert _file_requests(stac_server, "B04") == 1
    assert set(read_product_manifest(second.path).bands) == {"B04", "B8A"}


def test_force_downloads_again(stac_server, provider, scene, tmp_path) -> None:
    store = RawStore(tmp_path)
    store.load(scene, ["B04"], provider)
    forced = store.load(scene, ["B04"], provider, force=True)
    assert forced.fetched == ("B04",) and _file_requests(stac_server, "B04") == 2


def test_offline_opens_a_complete_scene_without_any_request(stac_server, provider, scene, tmp_path) -> None:
    RawStore(tmp_path).load(scene, ["B04", "SCL"], provider)
    before = len(stac_server.requests)

    stored = RawStore(tmp_path, offline=True).load(scene, ["B04", "SCL"])

    assert stored.bands["SCL"].is_file() and len(stac_server.requests) == before


def test_offline_names_the_missing_bands(provider, scene, tmp_path) -> None:
    RawStore(tmp_path).load(scene, ["B04"], provider)
    with pytest.raises(SceneNotStored, match=r"bands \['B8A', 'SCL'\] are not in the raw store") as raised:
        RawStore(tmp_path, offline=True).load(scene, ["B04", "B8A", "SCL"], provider)
    assert raised.value.missing == ("B8A", "SCL")


def test_offline_scene_never_stored_is_named(scene, tmp_path) -> None:
    with pytest.raises(SceneNotStored, match=scene.scene_id):
        RawStore(tmp_path, offline=True).load(scene, ["B04"])


def test_corrupt_stored_band_is_removed_and_fetched_again(stac_server, provider, scene, real_data, tmp_path) -> None:
    store = RawStore(tmp_path)
    path = store.load(scene, ["B04"], provider).bands["B04"]
    path.write_bytes(path.read_bytes()[:-5000])  # e.g. a disk that filled up behind our back

    with pytest.raises(SceneNotStored, match=r"\['B04'\]"):
        RawStore(tmp_path, offline=True).load(scene, ["B04"])
    assert not path.exists()  # the corrupt file was removed, never handed out

    again = store.load(scene, ["B04"], provider)
    assert again.fetched == ("B04",)
    assert path.read_bytes() == (real_data / REAL_S2_ASSET_FILES["B04"]).read_bytes()


def test_file_that_fails_its_check_twice_is_never_stored(stac_server, real_data, tmp_path) -> None:
    """An asset without size or checksum whose bytes are a truncated JPEG 2000: only the check can tell."""
    item = real_sentinel2_items(real_data)[0]
    data = (real_data / REAL_S2_ASSET_FILES["B04"]).read_bytes()
    item["assets"] = {
        "B04": {"href": stac_server.serve_file(data[: len(data) - 4000], "cut/B04.jp2"), "type": "image/jp2"}
    }
    api = stac_server.add_api("cut", [item])
    provider = build_stac_provider("cut", {"url": api.url, "retries": 0}, {})
    scene = provider.scene_from_item(api.items[0], SENTINEL2_L2A)

    with pytest.raises(RawStoreError, match="B04 is corrupt twice: B04.jp2: JPEG 2000 codestream has no end marker"):
        RawStore(tmp_path).load(scene, ["B04"], provider)

    folder = tmp_path / SENTINEL2_L2A / scene.scene_id
    assert len(stac_server.requests_to("/files/cut/B04.jp2")) == 2
    assert [p.name for p in folder.iterdir() if not p.name.startswith(".")] == ["item.json"]
    assert not (folder / "product.json").exists()


def test_band_the_provider_does_not_have_is_named(provider, scene, tmp_path) -> None:
    with pytest.raises(RawStoreError, match=r"has no file for bands \['B99'\]"):
        RawStore(tmp_path).load(scene, ["B04", "B99"], provider)


def test_stored_scenes_are_found_offline_by_area_and_time(provider, scene, tmp_path) -> None:
    store = RawStore(tmp_path, offline=True)
    RawStore(tmp_path).load(scene, ["B04"], provider)

    assert [s.scene_id for s in store.search(SENTINEL2_L2A, TILE, *WINDOW)] == [scene.scene_id]
    assert store.search(SENTINEL2_L2A, box(0, 0, 1, 1), *WINDOW) == []


# --------------------------------------------------------------------------------------------
# Whole products and local COG-per-band products


def test_safe_product_is_fetched_whole_and_its_bands_checked(t29unu_safe, tmp_path) -> None:
    archive = tmp_path / "archive"
    archive.mkdir()
    (archive / t29unu_safe.name).symlink_to(t29unu_safe)
    local = LocalArchiveProvider(archive, name="archive")
    [scene] = local.search(
        SENTINEL2_L2A, T29UNU_AREA, datetime(2022, 10, 5, tzinfo=UTC), datetime(2022, 10, 6, tzinfo=UTC)
    )
    store = RawStore(tmp_path / "raw")

    stored = store.load(scene, ["B04", "SCL"], local)

    assert stored.path == tmp_path / "raw" / SENTINEL2_L2A / t29unu_safe.name
    assert stored.bands["SCL"].name == "T29UNU_20221005T115411_SCL_20m.jp2"
    offline = RawStore(tmp_path / "raw", offline=True)
    [found] = offline.search(
        SENTINEL2_L2A, T29UNU_AREA, datetime(2022, 10, 5, tzinfo=UTC), datetime(2022, 10, 6, tzinfo=UTC)
    )
    assert offline.load(found, ["B04"]).path == stored.path
    with pytest.raises(SceneNotStored, match=r"\['B08'\]"):
        offline.load(found, ["B04", "B08"])


def test_local_cog_product_is_copied_band_by_band(real_data, tmp_path) -> None:
    source = tmp_path / "archive" / "product"
    source.mkdir(parents=True)
    for band in ("red", "qa_pixel", "blue"):
        (source / f"{band}.tif").write_bytes((real_data / REAL_LANDSAT_ASSET_FILES[band]).read_bytes())
    write_product_manifest(
        source,
        ProductManifest(
            id="LC08_008059_20191201",
            collection="landsat-c2-l2",
            datetime=datetime(2019, 12, 1, 15, tzinfo=UTC),
            footprint=box(-74, 4, -72, 6),
            cloud_cover=81.0,
            bands={"red": "red.tif", "qa_pixel": "qa_pixel.tif", "blue": "blue.tif"},
        ),
    )
    local = LocalArchiveProvider(tmp_path / "archive", name="usgs-mirror")
    [scene] = local.search(
        "landsat-c2-l2", box(-73, 5, -72.9, 5.1), datetime(2019, 12, 1, tzinfo=UTC), datetime(2019, 12, 2, tzinfo=UTC)
    )

    stored = RawStore(tmp_path / "raw").load(scene, ["red", "qa_pixel"], local)

    assert sorted(p.name for p in stored.path.iterdir() if not p.name.startswith(".")) == [
        "product.json",
        "qa_pixel.tif",
        "red.tif",
    ]
    assert stored.provider == "usgs-mirror"


def test_landsat_product_is_fetched_whole_under_its_product_id(real_data, tmp_path) -> None:
    archive = tmp_path / "archive"
    archive.mkdir()
    (archive / "some-folder-name").symlink_to(real_data / "stactools-landsat/tests/data-files/assets3")
    local = LocalArchiveProvider(archive, name="usgs")
    when = (datetime(2019, 12, 1, tzinfo=UTC), datetime(2019, 12, 2, tzinfo=UTC))
    [scene] = local.search("landsat-c2-l2", box(-75.2, 1.2, -75.1, 1.3), *when)

    stored = RawStore(tmp_path / "raw").load(scene, ["SR_B4", "QA_PIXEL"], local)

    assert stored.path == tmp_path / "raw" / "landsat-c2-l2" / "LC08_L2SP_008059_20191201_20200825_02_T1"
    assert stored.bands["QA_PIXEL"].name.endswith("_QA_PIXEL.TIF") and stored.fetched == ("SR_B4", "QA_PIXEL")
    with pytest.raises(RawStoreError, match=r"lacks bands \['ST_B11'\]"):
        RawStore(tmp_path / "raw").load(scene, ["SR_B4", "ST_B11"], local)
