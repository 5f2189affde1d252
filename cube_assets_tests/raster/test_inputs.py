"""JPEG 2000 decoding settings: OpenJPEG's threads inside a tile, GDAL's tile pool never.

On a real Sentinel-2 band cut short: GDAL's multi-threaded mode (``GDAL_NUM_THREADS`` above 1)
returns zeros for the tiles it cannot decode when one read spans several tiles, which is why
``open_input`` decodes JPEG 2000 tiles one after the other; OpenJPEG's own threads
(``OPJ_NUM_THREADS``) still fail the read and give the same pixels on a sound file.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import rasterio

from cube_assets.errors import InvalidRaster
from cube_assets.raster.inputs import OPENJPEG_THREADS_VARIABLE, enable_openjpeg_threads, open_input, reading_from
from cube_assets.raster.product_limits import SENTINEL2
from cube_assets_tests.fixtures_stac import REAL_S2_ASSET_FILES
from cube_assets_tests.hostile.hostile_rasters import cut


def _real_band(real_data: Path) -> Path:
    return real_data / REAL_S2_ASSET_FILES["B04"]


def test_gdal_thread_pool_returns_wrong_pixels_of_an_undecodable_tile_without_error(
    tmp_path: Path, real_data: Path
) -> None:
    # Why GDAL's tile loop stays single-threaded for JPEG 2000: with its thread pool, tiles that fail to
    # decode come back as other values (zeros, or what the buffer held) and the read does not fail.
    truncated = cut(_real_band(real_data), tmp_path / "B04.jp2", 0.9)
    with rasterio.Env(GDAL_NUM_THREADS="ALL_CPUS"), rasterio.open(truncated) as dataset:
        values = dataset.read(1)  # no error: the failed tiles are only logged
    with rasterio.open(_real_band(real_data)) as sound:
        expected = sound.read(1)
    assert (values != expected).any()


def test_a_truncated_jp2_fails_the_read_with_openjpeg_threads(
    tmp_path: Path, real_data: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(OPENJPEG_THREADS_VARIABLE, "2")
    truncated = cut(_real_band(real_data), tmp_path / "B04.jp2", 0.9)
    with pytest.raises(InvalidRaster, match=r"B04\.jp2: band 1 cannot be read"):
        with open_input(truncated, limits=SENTINEL2) as dataset, reading_from(truncated, 1):
            dataset.read(1)


def test_openjpeg_threads_decode_the_same_pixels(real_data: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    band = _real_band(real_data)
    monkeypatch.setenv(OPENJPEG_THREADS_VARIABLE, "1")
    with open_input(band, limits=SENTINEL2) as dataset:
        single = dataset.read(1)
    monkeypatch.setenv(OPENJPEG_THREADS_VARIABLE, "2")
    with open_input(band, limits=SENTINEL2) as dataset:
        threaded = dataset.read(1)
    assert np.array_equal(single, threaded)
    assert single.any()


def test_enable_openjpeg_threads_keeps_an_operators_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(OPENJPEG_THREADS_VARIABLE, "3")
    assert enable_openjpeg_threads() == "3"
    monkeypatch.delenv(OPENJPEG_THREADS_VARIABLE)
    assert enable_openjpeg_threads(2) == "2"


def test_enable_openjpeg_threads_refuses_zero_threads() -> None:
    with pytest.raises(ValueError, match="threads must be at least 1"):
        enable_openjpeg_threads(0)
