"""Tests of Cloud-Optimized GeoTIFF writing and validation."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import rasterio
from affine import Affine
from rasterio.crs import CRS
from rio_cogeo.cogeo import cog_validate

from cube_assets.errors import InvalidRaster
from cube_assets.raster import cog
from cube_assets.raster.codecs import DEFAULT_COMPRESSION
from cube_assets.raster.cog import cog_from_file, is_valid_cog, write_cog

UTM33 = CRS.from_epsg(32633)
TRANSFORM = Affine(10.0, 0.0, 500_000.0, 0.0, -10.0, 5_000_000.0)
RGB_BYTE = "rasterio/tests/data/RGB.byte.tif"


def test_write_cog_round_trips_values_and_georeferencing(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    array = rng.integers(0, 10_000, (2, 300, 200), dtype=np.uint16)

    path = write_cog(array, tmp_path / "out.tif", crs=UTM33, transform=TRANSFORM, nodata=0)

    assert path == tmp_path / "out.tif"
    with rasterio.open(path) as src:
        np.testing.assert_array_equal(src.read(), array)
        assert src.crs == UTM33 and src.transform == TRANSFORM and src.nodata == 0
        assert src.dtypes == ("uint16", "uint16")
        assert src.compression.name == DEFAULT_COMPRESSION.lower()
        assert src.tags(ns="IMAGE_STRUCTURE")["PREDICTOR"] == "2"
    assert is_valid_cog(path)


def test_write_cog_of_a_raster_larger_than_a_block_is_tiled_512_with_overviews(tmp_path: Path) -> None:
    array = np.arange(1100 * 1100, dtype=np.uint32).reshape(1100, 1100) % 5000

    path = write_cog(array, tmp_path / "big.tif", crs=UTM33, transform=TRANSFORM, nodata=None)

    with rasterio.open(path) as src:
        assert src.block_shapes == [(512, 512)]
        assert src.overviews(1) == [2, 4]  # halve until the coarsest level fits one block
        np.testing.assert_array_equal(src.read(1), array)
    valid, errors, warnings = cog_validate(path, quiet=True)
    assert valid and not errors and not warnings


def test_write_cog_of_a_raster_smaller_than_a_block_has_a_small_block_and_no_overviews(tmp_path: Path) -> None:
    array = np.arange(40 * 70, dtype=np.int16).reshape(40, 70)

    path = write_cog(array, tmp_path / "small.tif", crs=UTM33, transform=TRANSFORM, nodata=-1)

    with rasterio.open(path) as src:
        assert src.block_shapes == [(128, 128)]  # the smallest power of two covering 70 columns
        assert src.overviews(1) == []
        np.testing.assert_array_equal(src.read(1), array)
    assert is_valid_cog(path)


def test_write_cog_float_uses_zstd_and_the_floating_point_predictor(tmp_path: Path) -> None:
    array = np.linspace(-1, 1, 64 * 64, dtype=np.float32).reshape(64, 64)
    array[0, 0] = np.nan

    path = write_cog(array, tmp_path / "f.tif", crs=UTM33, transform=TRANSFORM, nodata=np.nan, compress="zstd")

    with rasterio.open(path) as src:
        assert src.compression.name == "zstd"
        assert src.tags(ns="IMAGE_STRUCTURE")["PREDICTOR"] == "3"
        np.testing.assert_array_equal(src.read(1), array)  # NaN compares equal here


def test_write_cog_keeps_band_descriptions_and_accepts_a_2d_array(tmp_path: Path) -> None:
    path = write_cog(
        np.ones((20, 20), dtype=np.uint8),
        tmp_path / "d.tif",
        crs=UTM33,
        transform=TRANSFORM,
        nodata=0,
        band_descriptions=["B04"],
    )

    with rasterio.open(path) as src:
        assert src.count == 1
        assert src.descriptions == ("B04",)


def test_write_cog_rounds_floats_cast_to_an_integer_type(tmp_path: Path) -> None:
    array = np.array([[0.4, 1.6], [2.5, 99.5]], dtype=np.float64)

    path = write_cog(array, tmp_path / "r.tif", crs=UTM33, transform=TRANSFORM, nodata=0, dtype="uint16")

    with rasterio.open(path) as src:
        assert src.dtypes[0] == "uint16"
        np.testing.assert_array_equal(src.read(1), [[0, 2], [2, 100]])


def test_write_cog_refuses_values_that_do_not_fit_the_type(tmp_path: Path) -> None:
    with pytest.raises(InvalidRaster, match="do not fit uint8"):
        write_cog(np.array([[300.0]]), tmp_path / "x.tif", crs=UTM33, transform=TRANSFORM, nodata=0, dtype="uint8")
    assert not (tmp_path / "x.tif").exists()


def test_write_cog_refuses_nodata_outside_the_type(tmp_path: Path) -> None:
    with pytest.raises(InvalidRaster, match="nodata -9999"):
        write_cog(np.ones((4, 4), np.uint16), tmp_path / "x.tif", crs=UTM33, transform=TRANSFORM, nodata=-9999)


def test_write_cog_refuses_a_wrong_number_of_band_descriptions(tmp_path: Path) -> None:
    with pytest.raises(InvalidRaster, match="2 band descriptions for 1 bands"):
        write_cog(
            np.ones((4, 4), np.uint8),
            tmp_path / "x.tif",
            crs=UTM33,
            transform=TRANSFORM,
            nodata=0,
            band_descriptions=["a", "b"],
        )


def test_cog_that_fails_validation_is_not_moved_into_place(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    destination = tmp_path / "out.tif"
    destination.write_bytes(b"previous version")
    monkeypatch.setattr(cog, "cog_validate", lambda path, quiet: (False, ["broken IFD"], []))

    with pytest.raises(InvalidRaster, match=r"out\.tif.*broken IFD"):
        write_cog(np.ones((8, 8), np.uint8), destination, crs=UTM33, transform=TRANSFORM, nodata=0)

    assert destination.read_bytes() == b"previous version"
    assert [p.name for p in tmp_path.iterdir()] == ["out.tif"]  # no temporary file left behind


def test_cog_from_unreadable_file_names_it(tmp_path: Path) -> None:
    source = tmp_path / "garbage.tif"
    source.write_text("not a tiff")
    with pytest.raises(InvalidRaster, match="garbage.tif"):
        cog_from_file(source, tmp_path / "out.tif")


def test_is_valid_cog_is_false_for_a_stripped_geotiff_and_a_missing_file(tmp_path: Path) -> None:
    stripped = tmp_path / "stripped.tif"
    with rasterio.open(
        stripped, "w", driver="GTiff", width=700, height=600, count=1, dtype="uint8", crs=UTM33, transform=TRANSFORM
    ) as dst:
        dst.write(np.ones((1, 600, 700), np.uint8))

    assert is_valid_cog(stripped) is False
    assert is_valid_cog(tmp_path / "missing.tif") is False


@pytest.mark.real_data
@pytest.mark.parametrize("driver", cog.DRIVERS)
def test_real_rgb_byte_becomes_a_valid_cog_with_the_same_pixels(real_data: Path, tmp_path: Path, driver: str) -> None:
    source = real_data / RGB_BYTE
    assert is_valid_cog(source) is False  # stripped, 791 x 718: the translation matters

    path = cog_from_file(source, tmp_path / "rgb_cog.tif", overview_resampling="average", driver=driver)

    valid, errors, _warnings = cog_validate(path, quiet=True)
    assert valid, errors
    with rasterio.open(source) as src, rasterio.open(path) as out:
        assert out.block_shapes == [(512, 512)] * 3
        assert out.overviews(1) == [2]
        if driver == "rio-cogeo":  # rio-cogeo records the resampling; GDAL's COG driver does not
            assert out.tags()["OVERVIEW_RESAMPLING"] == "AVERAGE"
        assert out.nodata == src.nodata == 0
        assert out.crs == src.crs and out.transform == src.transform
        np.testing.assert_array_equal(out.read(), src.read())


@pytest.mark.parametrize("driver", cog.DRIVERS)
def test_cog_from_file_keeps_type_nodata_description_and_tags_with_either_driver(tmp_path: Path, driver: str) -> None:
    source = tmp_path / "staging.tif"
    values = (np.arange(1100 * 1300, dtype=np.int32).reshape(1100, 1300) % 30011 - 9999).astype(np.int16)
    with rasterio.open(
        source,
        "w",
        driver="GTiff",
        width=1300,
        height=1100,
        count=1,
        dtype="int16",
        crs=UTM33,
        transform=TRANSFORM,
        nodata=-9999,
        tiled=True,
        blockxsize=256,
        blockysize=256,
    ) as dst:
        dst.write(values, 1)
        dst.set_band_description(1, "PROVENANCE")
        dst.update_tags(PERIOD="2024-01-01")

    path = cog_from_file(source, tmp_path / "out.tif", overview_resampling="nearest", driver=driver)

    assert is_valid_cog(path)
    with rasterio.open(path) as out:
        assert out.dtypes[0] == "int16" and out.nodata == -9999
        assert out.descriptions == ("PROVENANCE",)
        assert out.tags()["PERIOD"] == "2024-01-01"
        assert out.block_shapes == [(512, 512)]
        assert out.overviews(1) == [2, 4]
        assert out.compression.name == DEFAULT_COMPRESSION.lower()
        assert out.tags(ns="IMAGE_STRUCTURE")["PREDICTOR"] == "2"
        np.testing.assert_array_equal(out.read(1), values)
        # nearest overviews take existing pixels, never averages of them
        np.testing.assert_array_equal(out.read(1, out_shape=(275, 325)), values[::4, ::4])


def test_cog_from_file_refuses_an_unknown_driver(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="driver 'pillow'"):
        cog_from_file(tmp_path / "any.tif", tmp_path / "out.tif", driver="pillow")


@pytest.mark.parametrize(
    ("width", "height", "blocksize"),
    [
        (100, 100, 512),
        (1024, 1024, 512),
        (1025, 1025, 512),
        (1025, 3, 512),
        (2049, 2049, 512),
        (3000, 700, 512),
        (1027, 1027, 256),
        (1030, 1030, 256),
    ],
)
def test_cog_overview_factors_are_the_ones_gdal_s_cog_driver_makes(
    tmp_path: Path, width: int, height: int, blocksize: int
) -> None:
    source = tmp_path / "staging.tif"
    with rasterio.open(
        source, "w", driver="GTiff", width=width, height=height, count=1, dtype="uint8", crs=UTM33, transform=TRANSFORM
    ) as dst:
        dst.write(np.zeros((height, width), dtype=np.uint8), 1)

    path = cog_from_file(source, tmp_path / "out.tif", driver="gdal", blocksize=blocksize)

    with rasterio.open(path) as out:
        assert cog.cog_overview_factors(width, height, blocksize) == out.overviews(1)


def test_cog_overview_factors_refuse_a_size_that_is_not_positive() -> None:
    with pytest.raises(ValueError, match="sizes must be positive, not 0 x 10"):
        cog.cog_overview_factors(0, 10)


def _staging_copies(tmp_path: Path, values: np.ndarray, nodata: float) -> tuple[Path, Path]:
    """Two identical uncompressed tiled staging GeoTIFFs of ``values`` (bands, height, width)."""
    count, height, width = values.shape
    paths = (tmp_path / "left.tif", tmp_path / "right.tif")
    for path in paths:
        with rasterio.open(
            path,
            "w",
            driver="GTiff",
            width=width,
            height=height,
            count=count,
            dtype=values.dtype.name,
            crs=UTM33,
            transform=TRANSFORM,
            nodata=nodata,
            tiled=True,
            blockxsize=256,
            blockysize=256,
        ) as dst:
            dst.write(values)
    return paths


def _every_level(path: Path) -> list[np.ndarray]:
    with rasterio.open(path) as dataset:
        levels = [dataset.read()]
        count = len(dataset.overviews(1))
    for level in range(count):
        with rasterio.open(path, overview_level=level) as overview:
            levels.append(overview.read())
    return levels


def _assert_same_cog(left: Path, right: Path) -> None:
    assert is_valid_cog(left) and is_valid_cog(right)
    with rasterio.open(left) as a, rasterio.open(right) as b:
        assert a.overviews(1) == b.overviews(1) != []
        assert {**a.profile, "nodata": None} == {**b.profile, "nodata": None}
        np.testing.assert_array_equal(a.nodata, b.nodata)  # NaN equals NaN here
    for level_a, level_b in zip(_every_level(left), _every_level(right), strict=True):
        np.testing.assert_array_equal(level_a, level_b)


@pytest.mark.parametrize(
    ("dtype", "nodata", "resampling"),
    [("int16", -9999, "average"), ("int16", -9999, "nearest"), ("uint8", 0, "mode"), ("float32", np.nan, "average")],
)
def test_overviews_built_in_the_staging_file_give_the_cog_gdal_s_driver_computes(
    tmp_path: Path, dtype: str, nodata: float, resampling: str
) -> None:
    rng = np.random.default_rng(7)
    values = rng.normal(1200, 400, size=(1, 1100, 1300)).clip(1, 250 if dtype == "uint8" else None).astype(dtype)
    values[:, :, :133] = nodata  # a slanted edge of nodata and a stripe: averages must leave them out
    values[:, 400:437, 200:900] = nodata
    left, right = _staging_copies(tmp_path, values, nodata)

    computed = cog_from_file(left, tmp_path / "computed.tif", overview_resampling=resampling, driver="gdal")
    copied = cog_from_file(
        right, tmp_path / "copied.tif", overview_resampling=resampling, driver="gdal", overviews_in_source=True
    )

    _assert_same_cog(computed, copied)
    with rasterio.open(right) as staging, rasterio.open(left) as untouched:
        assert staging.overviews(1) == [2, 4] and untouched.overviews(1) == []


@pytest.mark.real_data
@pytest.mark.parametrize(("width", "built"), [(790, True), (791, False)])
def test_a_staged_real_rgb_gets_the_cog_gdal_s_driver_computes_with_its_overviews_built_where_sizes_agree(
    real_data: Path, tmp_path: Path, width: int, built: bool
) -> None:
    # 791 x 718: GDAL's overview builder would make level 2 396 wide, the COG driver 395
    with rasterio.open(real_data / RGB_BYTE) as source:
        values, nodata = source.read()[:, :, :width], source.nodata
    left, right = _staging_copies(tmp_path, values, nodata)

    computed = cog_from_file(left, tmp_path / "computed.tif", overview_resampling="average", driver="gdal")
    copied = cog_from_file(
        right, tmp_path / "copied.tif", overview_resampling="average", driver="gdal", overviews_in_source=True
    )

    _assert_same_cog(computed, copied)
    with rasterio.open(right) as staging:
        assert staging.overviews(1) == ([2] if built else [])


def test_overviews_in_source_is_refused_with_rio_cogeo_and_a_bad_resampling(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="overviews_in_source needs driver 'gdal'"):
        cog_from_file(tmp_path / "any.tif", tmp_path / "out.tif", overviews_in_source=True)
    with pytest.raises(ValueError, match="overview_resampling 'lanczos'"):
        cog_from_file(
            tmp_path / "any.tif",
            tmp_path / "out.tif",
            driver="gdal",
            overview_resampling="lanczos",
            overviews_in_source=True,
        )
    assert not (tmp_path / "out.tif").exists()
