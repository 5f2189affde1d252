"""Tests of RGBA PNG quicklooks."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest
import rasterio
from affine import Affine
from rasterio.errors import NotGeoreferencedWarning

from cube_assets.errors import InvalidRaster
from cube_assets.raster.quicklook import (
    default_stretch,
    percentile_stretch,
    quicklook_from_files,
    quicklook_shape,
    thumbnail_png,
    write_quicklook,
)

LANDSAT = "stactools-landsat/tests/data-files/assets3/LC08_L2SP_008059_20191201_20200825_02_T1_{}.TIF"


def read_png(path: Path) -> tuple[str, np.ndarray]:
    """The driver and ``(4, H, W)`` pixels of a PNG."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NotGeoreferencedWarning)
        with rasterio.open(path) as png:
            return png.driver, png.read()


def write_band(path: Path, array: np.ndarray, transform: Affine, nodata: float | None = 0) -> Path:
    """A one-band GeoTIFF in UTM 33N."""
    with rasterio.open(
        path,
        "w",
        driver="GTiff",
        width=array.shape[1],
        height=array.shape[0],
        count=1,
        dtype=array.dtype,
        crs="EPSG:32633",
        transform=transform,
        nodata=nodata,
    ) as dst:
        dst.write(array, 1)
    return path


def test_quicklook_is_an_rgba_png_768_on_the_long_side_keeping_the_aspect(tmp_path: Path) -> None:
    band = np.full((1000, 2000), 5000, dtype=np.uint16)

    path = write_quicklook(band, band, band, tmp_path / "q.png", nodata=0)

    driver, rgba = read_png(path)
    assert driver == "PNG"
    assert rgba.shape == (4, 384, 768)
    assert rgba.dtype == np.uint8
    assert [p.name for p in tmp_path.iterdir()] == ["q.png"]  # no .aux.xml, no temporary file


def test_quicklook_stretches_a_given_range_to_0_255_and_clips(tmp_path: Path) -> None:
    red = np.array([[1, 5000, 10000, 20000]], dtype=np.int32)
    green = np.array([[-50, 2000, 1000, 0 + 4]], dtype=np.int32)
    blue = np.full((1, 4), 10000, dtype=np.int32)

    _, rgba = read_png(write_quicklook(red, green, blue, tmp_path / "q.png", nodata=-9999, value_range=(0.0, 10000.0)))

    np.testing.assert_array_equal(rgba[0, 0], [0, 128, 255, 255])
    np.testing.assert_array_equal(rgba[1, 0], [0, 51, 26, 0])
    np.testing.assert_array_equal(rgba[2, 0], [255, 255, 255, 255])


def test_quicklook_is_transparent_where_any_band_is_nodata(tmp_path: Path) -> None:
    red = np.full((3, 3), 3000, dtype=np.uint16)
    green = red.copy()
    blue = red.copy()
    red[0, 0] = 0
    blue[2, 1] = 0

    _, rgba = read_png(write_quicklook(red, green, blue, tmp_path / "q.png", nodata=0, value_range=(0.0, 10000.0)))

    expected_alpha = np.full((3, 3), 255)
    expected_alpha[0, 0] = expected_alpha[2, 1] = 0
    np.testing.assert_array_equal(rgba[3], expected_alpha)
    assert rgba[1, 0, 0] == 0  # a transparent pixel has no colour either
    assert rgba[1, 1, 1] == 77


def test_quicklook_of_a_small_raster_is_not_enlarged(tmp_path: Path) -> None:
    band = np.full((10, 30), 100, dtype=np.uint16)

    _, rgba = read_png(write_quicklook(band, band, band, tmp_path / "q.png", nodata=0))

    assert rgba.shape == (4, 10, 30)


def test_quicklook_downsampling_keeps_nodata_out_of_colours(tmp_path: Path) -> None:
    band = np.full((1536, 1536), 10000, dtype=np.uint16)
    band[:, ::2] = 0  # every other column missing: an average would give half-bright pixels

    _, rgba = read_png(write_quicklook(band, band, band, tmp_path / "q.png", nodata=0, value_range=(0.0, 10000.0)))

    assert set(np.unique(rgba[0][rgba[3] == 255]).tolist()) == {255}


def test_quicklook_refuses_bands_of_different_shapes(tmp_path: Path) -> None:
    with pytest.raises(InvalidRaster, match="differ in shape"):
        write_quicklook(np.ones((4, 4)), np.ones((4, 4)), np.ones((4, 5)), tmp_path / "q.png", nodata=0)


def test_quicklook_shape_keeps_aspect_ratio() -> None:
    assert quicklook_shape((10980, 10980), 768) == (768, 768)
    assert quicklook_shape((5000, 2000), 768) == (768, 307)
    assert quicklook_shape((100, 50), 768) == (100, 50)


def test_quicklook_from_files_equals_quicklook_of_the_arrays(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    transform = Affine(10.0, 0.0, 500_000.0, 0.0, -10.0, 5_000_000.0)
    bands = [rng.integers(0, 10_000, (1000, 1300), dtype=np.uint16) for _ in range(3)]
    paths = [write_band(tmp_path / f"{name}.tif", band, transform) for name, band in zip("rgb", bands, strict=True)]

    from_files = quicklook_from_files(*paths, tmp_path / "files.png", max_size=200)
    from_arrays = write_quicklook(*bands, tmp_path / "arrays.png", nodata=0, max_size=200)

    files_rgba, arrays_rgba = read_png(from_files)[1], read_png(from_arrays)[1]
    assert files_rgba.shape == (4, 154, 200)
    assert (files_rgba[3] == 0).sum() > 0  # some random zeros are nodata
    np.testing.assert_array_equal(files_rgba, arrays_rgba)


def test_quicklook_from_files_refuses_bands_of_different_extents(tmp_path: Path) -> None:
    band = np.ones((20, 20), dtype=np.uint16)
    here = Affine(10.0, 0.0, 500_000.0, 0.0, -10.0, 5_000_000.0)
    elsewhere = Affine(10.0, 0.0, 600_000.0, 0.0, -10.0, 5_000_000.0)
    red = write_band(tmp_path / "red.tif", band, here)
    green = write_band(tmp_path / "green.tif", band, here)
    blue = write_band(tmp_path / "blue.tif", band, elsewhere)

    with pytest.raises(InvalidRaster, match="blue.tif"):
        quicklook_from_files(red, green, blue, tmp_path / "q.png")


def test_quicklook_without_a_range_stretches_the_2nd_to_98th_percentile_of_valid_pixels(tmp_path: Path) -> None:
    # Reflectance mostly below 3000: a 0-10000 stretch would leave it nearly black.
    values = np.arange(1, 1001, dtype=np.int16).reshape(10, 100) * 3  # 3 .. 3000
    values[0, 0] = -9999  # nodata: not part of the percentiles

    _, rgba = read_png(write_quicklook(values, values, values, tmp_path / "q.png", nodata=-9999))

    low, high = np.percentile(np.tile(values[values != -9999].astype(float), 3), [2, 98])  # the 3 bands together
    stretched = np.clip(np.floor((values.astype(float) - low) * 255 / (high - low) + 0.5), 0, 255)
    valid = values != -9999
    np.testing.assert_array_equal(rgba[0][valid], stretched[valid])
    assert rgba[0][valid].max() == 255 and rgba[0][valid].min() == 0
    assert rgba[:3][:, valid].mean() > 100  # readable, not nearly black


def test_percentile_stretch_is_one_range_over_the_three_bands() -> None:
    dark = np.zeros((10, 10)) + np.arange(100).reshape(10, 10)
    bright = dark + 1000
    valid = np.ones((10, 10), dtype=bool)

    low, high = percentile_stretch([dark, dark, bright], valid)

    assert low == pytest.approx(np.percentile(np.concatenate([dark.ravel()] * 2 + [bright.ravel()]), 2))
    assert high == pytest.approx(np.percentile(np.concatenate([dark.ravel()] * 2 + [bright.ravel()]), 98))


def test_percentile_stretch_of_no_valid_or_constant_pixels_is_still_increasing() -> None:
    band = np.full((3, 3), 7.0)
    assert percentile_stretch([band], np.zeros((3, 3), dtype=bool)) == (0.0, 1.0)
    assert percentile_stretch([band], np.ones((3, 3), dtype=bool)) == (7.0, 8.0)


def test_default_stretch_prefers_the_display_ranges_and_falls_back_to_percentiles() -> None:
    band = np.arange(100, dtype=float).reshape(10, 10)
    valid = np.ones((10, 10), dtype=bool)

    assert default_stretch([(0, 3000), (0, 4000), (100, 3500)], [band] * 3, valid) == (0.0, 4000.0)
    assert default_stretch([(0, 3000), None, (0, 3000)], [band] * 3, valid) == pytest.approx((1.98, 97.02))


def test_thumbnail_is_a_png_of_at_most_256_px_stretched_like_the_quicklook(tmp_path: Path) -> None:
    transform = Affine(10.0, 0.0, 500_000.0, 0.0, -10.0, 5_000_000.0)
    gradient = (np.add.outer(np.arange(1200), np.arange(600)) + 1).astype(np.uint16)  # smooth: compresses well
    paths = [write_band(tmp_path / f"{name}.tif", gradient, transform) for name in "rgb"]

    png = thumbnail_png(*paths)

    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    (tmp_path / "t.png").write_bytes(png)
    _, rgba = read_png(tmp_path / "t.png")
    assert rgba.shape == (4, 256, 128)
    quicklook = read_png(quicklook_from_files(*paths, tmp_path / "q.png", max_size=256))[1]
    np.testing.assert_array_equal(rgba, quicklook)


def test_thumbnail_of_noise_shrinks_until_it_fits_the_byte_budget(tmp_path: Path) -> None:
    rng = np.random.default_rng(5)
    transform = Affine(10.0, 0.0, 500_000.0, 0.0, -10.0, 5_000_000.0)
    paths = [
        write_band(tmp_path / f"{name}.tif", rng.integers(1, 3000, (1000, 1000), dtype=np.uint16), transform)
        for name in "rgb"
    ]

    png = thumbnail_png(*paths, max_bytes=40_000)

    assert len(png) <= 40_000
    (tmp_path / "t.png").write_bytes(png)
    _, rgba = read_png(tmp_path / "t.png")
    assert 16 <= rgba.shape[1] < 256 and rgba.shape[1] == rgba.shape[2]


@pytest.mark.real_data
def test_real_landsat_quicklook_is_transparent_exactly_outside_the_scene(real_data: Path, tmp_path: Path) -> None:
    red, green, blue = (real_data / LANDSAT.format(band) for band in ("SR_B4", "SR_B3", "SR_B2"))
    with rasterio.open(red) as src:
        full_nodata_share = (src.read(1) == 0).mean()

    path = quicklook_from_files(red, green, blue, tmp_path / "landsat.png", max_size=256)

    _, rgba = read_png(path)
    assert rgba.shape == (4, 256, 256)
    transparent_share = (rgba[3] == 0).mean()
    assert abs(transparent_share - full_nodata_share) < 0.02
    assert rgba[:3, rgba[3] == 255].mean() > 20  # the scene is not black
