"""StoreManager: DARTS' raw data store interface over the raw store, fed by a local archive (no network)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest
import rasterio
import xarray as xr
from rasterio.transform import from_origin
from shapely.geometry import box

from cube_assets.providers.local import LocalArchiveProvider, ProductManifest, write_product_manifest
from cube_assets.providers.raw_store import RawStoreError, SceneNotStored
from cube_assets.providers.store_manager import StoreManager

SCENE = "S2A_T29UNU_20221005"
BANDS = ["B04", "B08", "SCL"]


def _values(band: str) -> np.ndarray:
    offset = {"B04": 1000, "B08": 3000, "SCL": 0}[band]
    return (offset + np.arange(36).reshape(6, 6)).astype(np.uint8 if band == "SCL" else np.uint16)


@pytest.fixture
def archive(tmp_path: Path) -> LocalArchiveProvider:
    """A local archive holding one COG-per-band scene of three 6 x 6 bands."""
    folder = tmp_path / "archive" / SCENE
    folder.mkdir(parents=True)
    for band in BANDS:
        values = _values(band)
        profile = {"driver": "GTiff", "width": 6, "height": 6, "count": 1, "dtype": values.dtype.name}
        with rasterio.open(
            folder / f"{band}.tif", "w", crs="EPSG:32629", transform=from_origin(500000, 5900000, 60, 60), **profile
        ) as dst:
            dst.write(values, 1)
    write_product_manifest(
        folder,
        ProductManifest(
            id=SCENE,
            collection="sentinel-2-l2a",
            datetime=datetime(2022, 10, 5, 11, 54, tzinfo=UTC),
            footprint=box(-9.0, 53.0, -8.9, 53.1),
            cloud_cover=59.8,
            bands={band: f"{band}.tif" for band in BANDS},
        ),
    )
    return LocalArchiveProvider(tmp_path / "archive", name="archive")


def test_load_returns_a_dataset_of_the_bands_and_stores_them(archive: LocalArchiveProvider, tmp_path: Path) -> None:
    manager = StoreManager(["B04", "B08"], tmp_path / "raw", provider=archive)

    assert manager.missing_bands(SCENE) == ["B04", "B08"] and not manager.exists(SCENE)
    dataset = manager.load(SCENE)

    assert isinstance(dataset, xr.Dataset) and list(dataset.data_vars) == ["B04", "B08"]
    np.testing.assert_array_equal(dataset["B08"].values, _values("B08"))
    assert dataset.rio.crs.to_epsg() == 32629 and "spatial_ref" in dataset.coords
    assert manager.exists(SCENE) and manager.complete(SCENE) and manager.missing_bands(SCENE) == []


def test_open_is_offline_and_needs_a_complete_scene(archive: LocalArchiveProvider, tmp_path: Path) -> None:
    manager = StoreManager(["B04"], tmp_path / "raw", provider=archive)
    manager.download(SCENE)
    for file in archive.root.glob(f"{SCENE}/*.tif"):
        file.unlink()  # the source is gone: only the store can answer

    offline = StoreManager(["B04"], tmp_path / "raw")
    np.testing.assert_array_equal(offline.open(SCENE)["B04"].values, _values("B04"))
    with pytest.raises(SceneNotStored, match="B08"):
        StoreManager(["B04", "B08"], tmp_path / "raw").open(SCENE)


def test_download_fetches_only_missing_bands(archive: LocalArchiveProvider, tmp_path: Path) -> None:
    StoreManager(["B04"], tmp_path / "raw", provider=archive).download(SCENE)
    stored = tmp_path / "raw" / "sentinel-2-l2a" / SCENE / "B04.tif"
    before = stored.stat().st_mtime_ns

    manager = StoreManager(["B04", "SCL"], tmp_path / "raw", provider=archive)
    assert manager.missing_bands(SCENE) == ["SCL"]
    manager.download(SCENE)

    assert stored.stat().st_mtime_ns == before and manager.complete(SCENE)
    assert manager.load(SCENE, bands=["SCL"])["SCL"].dtype == np.uint8


def test_force_fetches_again(archive: LocalArchiveProvider, tmp_path: Path) -> None:
    manager = StoreManager(["B04"], tmp_path / "raw", provider=archive)
    manager.load(SCENE)
    source = archive.root / SCENE / "B04.tif"
    replacement = source.with_name("new.tif")
    with rasterio.open(source) as src:
        profile = src.profile
    with rasterio.open(replacement, "w", **profile) as dst:
        dst.write(_values("B04") + 1, 1)
    replacement.replace(source)  # the provider now serves other pixels (a new file)

    np.testing.assert_array_equal(manager.load(SCENE)["B04"].values, _values("B04"))  # from the store
    np.testing.assert_array_equal(manager.load(SCENE, force=True)["B04"].values, _values("B04") + 1)


def test_without_a_store_scenes_are_loaded_into_memory_only(archive: LocalArchiveProvider, tmp_path: Path) -> None:
    manager = StoreManager(["B04"], provider=archive)

    dataset = manager.load(SCENE)

    np.testing.assert_array_equal(dataset["B04"].values, _values("B04"))
    assert not manager.exists(SCENE) and manager.missing_bands(SCENE) == ["B04"]
    with pytest.raises(RawStoreError, match="a store must be given"):
        manager.download(SCENE)


def test_encodings_name_each_bands_type_and_fill_value() -> None:
    encodings = StoreManager(BANDS).encodings(["B04", "SCL"])

    assert encodings["B04"]["dtype"] == "uint16" and encodings["SCL"]["dtype"] == "uint8"
    assert encodings["B04"]["_FillValue"] == 0


def test_an_unknown_scene_is_named(archive: LocalArchiveProvider, tmp_path: Path) -> None:
    with pytest.raises(RawStoreError, match="S2B_NOWHERE"):
        StoreManager(["B04"], tmp_path / "raw", provider=archive).load("S2B_NOWHERE")


def test_a_real_safe_product_loads_as_a_dataset(t29unu_safe: Path, tmp_path: Path) -> None:
    archive = tmp_path / "safe-archive"
    archive.mkdir()
    (archive / t29unu_safe.name).symlink_to(t29unu_safe)
    local = LocalArchiveProvider(archive, name="archive")
    [scene] = local.scenes()
    manager = StoreManager(["B04", "B8A"], tmp_path / "raw", provider=local)

    assert manager.missing_bands(scene.scene_id) == ["B04", "B8A"]
    dataset = manager.load(scene)

    assert dataset["B04"].shape == (1830, 1830) and dataset.rio.crs.to_epsg() == 32629
    with rasterio.open(next(t29unu_safe.rglob("*_B04_60m.jp2"))) as src:
        np.testing.assert_array_equal(dataset["B04"].values[::200, ::200], src.read(1)[::200, ::200])
    assert manager.complete(scene.scene_id) and manager.exists(scene.scene_id)
