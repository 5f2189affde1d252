"""Reflectance rules: the valid range and the cube's type, and cube-builder's documented ``rescale``."""

from __future__ import annotations

import numpy as np
import pytest
import rasterio
from rasterio.transform import from_origin

from cube_assets.errors import InvalidRaster
from cube_assets.raster.masks import rescale_landsat_c2
from cube_assets.raster.reflectance import (
    BandStorage,
    copy_band,
    rescale,
    scale_landsat_to_reflectance,
    scale_to_reflectance,
    write_reflectance,
)


def test_rescale_gives_floats_without_clipping_as_cube_builder_documents():
    dn = np.array([[1, 7273, 65535], [10000, 20000, 40000]], dtype=np.uint16)
    result = rescale(dn, 0.0000275, new_scale=0.0001, origin_additive=-0.2)
    assert result.dtype == np.float64
    expected = (dn.astype(float) * 0.0000275 - 0.2) / 0.0001
    np.testing.assert_allclose(result, expected)
    assert result[0, 0] == pytest.approx(-1999.725) and result[0, 2] == pytest.approx(16022.125)


def test_rescale_to_a_type_saturates_at_its_limits_instead_of_wrapping():
    dn = np.array([1, 7273, 65535], dtype=np.uint16)
    assert rescale(dn, 0.0000275, 0.0001, -0.2, dtype=np.int16).tolist() == [-2000, 0, 16022]
    assert rescale(dn, 1.0, 0.01, dtype=np.int16).tolist() == [100, 32767, 32767]


def test_rescale_keeps_a_masked_arrays_mask():
    dn = np.ma.masked_equal(np.array([0, 10000], dtype=np.uint16), 0)
    result = rescale(dn, 0.0000275, 0.0001, -0.2)
    assert result.mask.tolist() == [True, False] and result[1] == pytest.approx(750.0)


def test_rescale_refuses_a_zero_scale():
    with pytest.raises(InvalidRaster, match="new_scale 0"):
        rescale(np.ones(2), 1.0, 0.0)


def test_the_clipped_integer_form_is_the_cubes_landsat_rule():
    dn = np.array([1, 7273, 65535, 0], dtype=np.uint16)
    assert scale_landsat_to_reflectance(dn, scale=2.75e-5, offset=-0.2).tolist() == [0, 0, 10000, -9999]
    np.testing.assert_array_equal(
        scale_landsat_to_reflectance(dn, scale=2.75e-5, offset=-0.2),
        rescale_landsat_c2(dn, nodata_out=-9999),
    )


def test_default_reflectance_rule_negative_is_nodata_and_saturation_is_clipped():
    dn = np.array([0, 500, 1000, 1500, 65535], dtype=np.uint16)
    out = scale_to_reflectance(dn, add_offset=-1000, quantification=10000, nodata_in=0)
    assert out.tolist() == [-9999, -9999, 0, 500, 32767]


@pytest.mark.parametrize(
    ("dtype", "nodata", "expected"),
    [("uint16", 65535, [65535, 65535, 0, 500, 64535]), ("int16", -32768, [-32768, -32768, 0, 500, 32767])],
)
def test_the_cubes_type_and_nodata_are_written(dtype, nodata, expected):
    dn = np.array([0, 500, 1000, 1500, 65535], dtype=np.uint16)
    out = scale_to_reflectance(
        dn, add_offset=-1000, quantification=10000, nodata_in=0, storage=BandStorage(dtype, nodata)
    )
    assert out.dtype == np.dtype(dtype) and out.tolist() == expected


def test_a_valid_range_keeps_negative_values_and_apply_valid_range_drops_the_outside():
    ndvi = np.array([-12000, -3000, 0, 4000, 9000, 11000], dtype=np.int16)
    kept = scale_to_reflectance(
        ndvi, add_offset=0, quantification=10000, storage=BandStorage("int16", -32768, (-10000, 10000))
    )
    assert kept.tolist() == [-32768, -3000, 0, 4000, 9000, 10000]
    dropped = scale_to_reflectance(
        ndvi, add_offset=0, quantification=10000, storage=BandStorage("int16", -32768, (-10000, 10000), True)
    )
    assert dropped.tolist() == [-32768, -3000, 0, 4000, 9000, -32768]


def test_landsat_with_apply_valid_range_makes_out_of_range_reflectance_nodata():
    dn = np.array([1, 7273, 20000, 65535], dtype=np.uint16)
    storage = BandStorage("int16", -9999, None, True)
    assert scale_landsat_to_reflectance(dn, scale=2.75e-5, offset=-0.2, storage=storage).tolist() == [
        -9999,
        0,
        3500,
        -9999,
    ]


def test_a_written_band_is_tiled_zstd_with_a_predictor_and_holds_the_rule_values(tmp_path):
    dn = np.random.default_rng(3).integers(0, 12000, size=(600, 700), dtype=np.uint16)
    source = tmp_path / "B04.tif"
    profile = {"driver": "GTiff", "width": 700, "height": 600, "count": 1, "dtype": "uint16", "nodata": 0}
    with rasterio.open(source, "w", crs="EPSG:32723", transform=from_origin(200000, 8250000, 10, 10), **profile) as dst:
        dst.write(dn, 1)
    out = write_reflectance(source, tmp_path / "sr.tif", add_offset=-1000, quantification=10000, tile_size=256)
    with rasterio.open(out) as written:
        assert (written.compression.name, written.tags(ns="IMAGE_STRUCTURE").get("PREDICTOR")) == ("zstd", "2")
        assert written.block_shapes == [(256, 256)] and written.nodata == -9999
        expected = scale_to_reflectance(dn, add_offset=-1000, quantification=10000, nodata_in=0)
        assert np.array_equal(written.read(1), expected)


def test_a_jpeg2000_band_written_block_by_block_on_every_cpu_keeps_every_pixel(tmp_path) -> None:
    """The JP2 is read in 1024 px windows and written in 512 px blocks compressed on all CPUs.

    The sizes are not multiples of either, so a block written to the wrong place, or a
    window the threads dropped, changes pixels.
    """
    rng = np.random.default_rng(7)
    dn = rng.integers(0, 12000, size=(1300, 1100), dtype=np.uint16)
    dn[:40] = 0  # the product's nodata
    source = tmp_path / "B04.jp2"
    profile = {"driver": "JP2OpenJPEG", "width": 1100, "height": 1300, "count": 1, "dtype": "uint16"}
    with rasterio.open(
        source, "w", **profile, crs="EPSG:32723", transform=from_origin(500000, 8800000, 10, 10), nodata=0,
        QUALITY="100", REVERSIBLE="YES", YCC="NO",
    ) as dst:  # fmt: skip
        dst.write(dn, 1)
    written = write_reflectance(source, tmp_path / "B04.tif", add_offset=-1000, quantification=10000, nodata_in=0)
    copied = copy_band(source, tmp_path / "copy.tif")
    expected = scale_to_reflectance(dn, add_offset=-1000, quantification=10000, nodata_in=0)
    with rasterio.open(written) as out, rasterio.open(copied) as copy:
        assert out.block_shapes == [(512, 512)] and out.compression.name == "zstd"
        assert np.array_equal(out.read(1), expected)
        assert np.array_equal(copy.read(1), dn)
