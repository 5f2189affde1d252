"""Tests of the windowed read / write / staging layer.

Nodata checks, tiling, aligned stacks, warped reads, staged outputs and the GDAL cache limit.
"""

from __future__ import annotations

import contextlib
import threading
from pathlib import Path

import numpy as np
import pytest
import rasterio
import rasterio.env
from affine import Affine
from rasterio.crs import CRS
from rasterio.enums import Resampling
from rasterio.windows import Window

from cube_assets.errors import InvalidRaster
from cube_assets.raster.codecs import DEFAULT_COMPRESSION
from cube_assets.raster.windowed_io import (
    block_windows,
    check_nodata_fits,
    gdal_cache_limit,
    nodata_fits,
    open_aligned,
    open_writers,
    output_profile,
    read_warped_band,
    staged_outputs,
    warped_view,
    write_window,
)

UTM33 = CRS.from_epsg(32633)
TRANSFORM = Affine(10, 0, 500_000, 0, -10, 5_001_200)


def _write(path: Path, array: np.ndarray, *, transform: Affine = TRANSFORM, crs: CRS = UTM33) -> Path:
    with rasterio.open(
        path,
        "w",
        driver="GTiff",
        width=array.shape[1],
        height=array.shape[0],
        count=1,
        dtype=array.dtype,
        crs=crs,
        transform=transform,
        nodata=0,
    ) as dst:
        dst.write(array, 1)
    return path


# ----------------------------------------------------------------------------- nodata


@pytest.mark.parametrize(
    ("nodata", "dtype"),
    [
        (0, "uint8"),
        (255, "uint8"),
        (-9999, "int16"),
        (-9999.0, "int16"),
        (float("nan"), "float32"),
        (1e30, "float32"),
        (None, "uint16"),
    ],
)
def test_nodata_fits_accepts_values_the_dtype_stores_exactly(nodata, dtype):
    assert nodata_fits(nodata, dtype)
    check_nodata_fits(nodata, dtype, "band B04")


@pytest.mark.parametrize(
    ("nodata", "dtype"),
    [(-9999, "uint16"), (256, "uint8"), (0.5, "int16"), (float("nan"), "uint8"), (float("inf"), "int32")],
)
def test_nodata_fits_rejects_values_an_integer_dtype_cannot_store(nodata, dtype):
    assert not nodata_fits(nodata, dtype)


def test_check_nodata_fits_names_the_input():
    with pytest.raises(InvalidRaster, match="merge band B04: nodata -9999 cannot be stored in uint16"):
        check_nodata_fits(-9999, np.uint16, "merge band B04")


# ----------------------------------------------------------------------------- tiling


@pytest.mark.parametrize(("width", "height", "block"), [(130, 110, 32), (64, 64, 32), (5, 3, 512), (1, 1, 1)])
def test_block_windows_cover_the_raster_exactly_once(width, height, block):
    covered = np.zeros((height, width), dtype=np.int64)
    for window in block_windows(width, height, block):
        assert window.width <= block and window.height <= block
        covered[window.toslices()] += 1
    assert (covered == 1).all()


def test_block_windows_are_row_major_and_start_on_block_boundaries():
    windows = list(block_windows(70, 40, 32))
    assert [(w.row_off, w.col_off) for w in windows] == [(0, 0), (0, 32), (0, 64), (32, 0), (32, 32), (32, 64)]


def test_block_windows_reject_a_non_positive_block():
    with pytest.raises(ValueError, match="block_size must be positive"):
        list(block_windows(10, 10, 0))


# ----------------------------------------------------------------------------- aligned stacks


def test_open_aligned_opens_files_on_one_grid(tmp_path):
    paths = [_write(tmp_path / f"{i}.tif", np.full((8, 6), i, dtype=np.uint16)) for i in range(3)]
    with contextlib.ExitStack() as stack:
        datasets = open_aligned(stack, paths, None)
        assert [int(d.read(1)[0, 0]) for d in datasets] == [0, 1, 2]
    assert all(d.closed for d in datasets)


def test_open_aligned_names_the_file_whose_grid_differs(tmp_path):
    first = _write(tmp_path / "first.tif", np.ones((8, 6), dtype=np.uint16))
    shifted = _write(
        tmp_path / "shifted.tif", np.ones((8, 6), dtype=np.uint16), transform=TRANSFORM * Affine.translation(1, 0)
    )
    with contextlib.ExitStack() as stack, pytest.raises(InvalidRaster, match="shifted.tif: transform"):
        open_aligned(stack, [first, shifted], None)


def test_open_aligned_names_the_file_whose_dtype_differs(tmp_path):
    first = _write(tmp_path / "first.tif", np.ones((8, 6), dtype=np.uint16))
    other = _write(tmp_path / "other.tif", np.ones((8, 6), dtype=np.int16))
    with contextlib.ExitStack() as stack, pytest.raises(InvalidRaster, match="other.tif: dtype int16 differs"):
        open_aligned(stack, [first, other], None)


def test_open_aligned_names_a_file_that_is_not_a_raster(tmp_path):
    broken = tmp_path / "broken.tif"
    broken.write_bytes(b"not a tiff")
    with contextlib.ExitStack() as stack, pytest.raises(InvalidRaster, match="broken.tif: cannot be opened"):
        open_aligned(stack, [broken], None)


# ----------------------------------------------------------------------------- warped reads

# A grid of the source's pixels widened by 2 pixels on every side.
WIDE_TRANSFORM = TRANSFORM * Affine.translation(-2, -2)
WIDE_SHAPE = (12, 10)


def _write_without_nodata(path: Path, array: np.ndarray) -> Path:
    with rasterio.open(
        path,
        "w",
        driver="GTiff",
        width=array.shape[1],
        height=array.shape[0],
        count=1,
        dtype=array.dtype,
        crs=UTM33,
        transform=TRANSFORM,
    ) as dst:
        dst.write(array, 1)
    return path


def _read_wide(path: Path, **options):
    with rasterio.open(path) as src:
        return read_warped_band(
            src,
            1,
            dst_crs=UTM33,
            dst_transform=WIDE_TRANSFORM,
            dst_shape=WIDE_SHAPE,
            resampling=Resampling.nearest,
            dtype=src.dtypes[0],
            **options,
        )


def test_read_warped_band_fills_pixels_the_source_does_not_cover_with_the_destination_nodata(tmp_path):
    array = np.arange(1, 49, dtype=np.uint16).reshape(8, 6)
    values, alpha = _read_wide(_write(tmp_path / "band.tif", array), dst_nodata=0)
    assert alpha is None
    assert values.shape == WIDE_SHAPE
    np.testing.assert_array_equal(values[2:10, 2:8], array)
    assert (values[:2] == 0).all() and (values[:, :2] == 0).all()


def test_read_warped_band_adds_an_alpha_band_for_a_source_without_nodata(tmp_path):
    array = np.full((8, 6), 7, dtype=np.uint16)
    values, alpha = _read_wide(_write_without_nodata(tmp_path / "band.tif", array), add_alpha=True)
    assert alpha is not None
    expected = np.zeros(WIDE_SHAPE, dtype=bool)
    expected[2:10, 2:8] = True
    np.testing.assert_array_equal(alpha != 0, expected)
    assert (values[expected] == 7).all()


def test_read_warped_band_reads_a_window_of_the_grid_as_the_whole_grid_read_has_it(tmp_path):
    path = _write(tmp_path / "band.tif", np.arange(1, 49, dtype=np.uint16).reshape(8, 6))
    whole, _ = _read_wide(path, dst_nodata=0)
    part, _ = _read_wide(path, dst_nodata=0, window=Window(3, 1, 5, 7))
    np.testing.assert_array_equal(part, whole[1:8, 3:8])


@pytest.mark.filterwarnings("ignore::rasterio.errors.NotGeoreferencedWarning")
def test_warped_view_names_a_file_without_a_crs(tmp_path):
    path = tmp_path / "nocrs.tif"
    with rasterio.open(path, "w", driver="GTiff", width=4, height=4, count=1, dtype="uint8") as dst:
        dst.write(np.ones((4, 4), dtype=np.uint8), 1)
    with (
        rasterio.open(path) as src,
        pytest.raises(InvalidRaster, match="nocrs.tif: no CRS"),
        warped_view(
            src,
            dst_crs=UTM33,
            dst_transform=TRANSFORM,
            dst_shape=(4, 4),
            resampling=Resampling.nearest,
            dtype="uint8",
        ),
    ):
        pass


# ----------------------------------------------------------------------------- profiles and staged outputs


def test_output_profile_is_a_tiled_geotiff_of_the_default_codec_with_the_dtypes_predictor():
    integer = output_profile("int16", -9999, crs="EPSG:32633", transform=TRANSFORM, shape=(110, 130), compress=True)
    assert (integer["height"], integer["width"], integer["nodata"]) == (110, 130, -9999)
    assert (integer["tiled"], integer["blockxsize"], integer["compress"], integer["predictor"]) == (
        True,
        512,
        DEFAULT_COMPRESSION.lower(),
        2,
    )
    deflate = output_profile("int16", -9999, crs=UTM33, transform=TRANSFORM, shape=(4, 4), compress="DEFLATE")
    assert (deflate["compress"], deflate["zlevel"]) == ("deflate", 6)
    assert (
        output_profile("float32", None, crs=UTM33, transform=TRANSFORM, shape=(4, 4), compress=True)["predictor"] == 3
    )
    assert "predictor" not in output_profile(
        "uint8", 0, crs=UTM33, transform=TRANSFORM, shape=(4, 4), compress=True, predictor=False
    )
    assert "compress" not in output_profile("uint8", 0, crs=UTM33, transform=TRANSFORM, shape=(4, 4), compress=False)


def _write_staged(staged: dict[str, Path], values: dict[str, np.ndarray]) -> None:
    profiles = {
        name: output_profile(array.dtype, 0, crs=UTM33, transform=TRANSFORM, shape=array.shape, compress=True)
        for name, array in values.items()
    }
    with contextlib.ExitStack() as stack:
        writers = open_writers(stack, staged, profiles)
        for window in block_windows(values["a"].shape[1], values["a"].shape[0], 16):
            write_window(writers, window, {name: array[window.toslices()] for name, array in values.items()})


def test_staged_outputs_move_every_output_into_place(tmp_path):
    values = {"a": np.arange(40 * 30, dtype=np.uint16).reshape(40, 30), "b": np.ones((40, 30), dtype=np.uint8)}
    destinations = {name: tmp_path / "out" / f"{name}.tif" for name in values}
    with staged_outputs(destinations) as staged:
        assert all(path.parent == tmp_path / "out" and path.name.startswith(".") for path in staged.values())
        _write_staged(staged, values)
        assert not any(path.exists() for path in destinations.values())
    for name, destination in destinations.items():
        with rasterio.open(destination) as dataset:
            assert np.array_equal(dataset.read(1), values[name])
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["a.tif", "b.tif"]


def test_staged_outputs_leave_nothing_when_the_block_fails(tmp_path):
    destinations = {"a": tmp_path / "out" / "a.tif"}
    with pytest.raises(RuntimeError, match="window failed"), staged_outputs(destinations) as staged:
        _write_staged(staged, {"a": np.ones((20, 20), dtype=np.uint16)})
        raise RuntimeError("window failed")
    assert list((tmp_path / "out").iterdir()) == []


def test_staged_outputs_hand_each_staging_file_to_finalize_then_remove_it(tmp_path):
    values = {"a": np.full((20, 20), 7, dtype=np.uint16)}
    seen = []

    def finalize(tmp: Path, destination: Path) -> None:
        seen.append((tmp.parent, destination))
        destination.write_bytes(tmp.read_bytes())

    with staged_outputs({"a": tmp_path / "a.tif"}, finalize) as staged:
        _write_staged(staged, values)
    assert seen == [(tmp_path, tmp_path / "a.tif")]
    assert [p.name for p in tmp_path.iterdir()] == ["a.tif"]


def test_staged_outputs_remove_finalized_outputs_when_a_later_finalize_fails(tmp_path):
    def finalize(tmp: Path, destination: Path) -> None:
        if destination.stem == "b":
            raise OSError("disk full")
        destination.write_bytes(tmp.read_bytes())

    destinations = {name: tmp_path / f"{name}.tif" for name in ("a", "b")}
    with pytest.raises(OSError, match="disk full"), staged_outputs(destinations, finalize) as staged:
        _write_staged(staged, {"a": np.ones((20, 20), dtype=np.uint16), "b": np.ones((20, 20), dtype=np.uint16)})
    assert list(tmp_path.iterdir()) == []


def test_staged_outputs_finalize_in_named_threads_when_asked(tmp_path):
    threads = {}

    def finalize(tmp: Path, destination: Path) -> None:
        threads[destination.stem] = threading.current_thread().name
        tmp.rename(destination)

    destinations = {name: tmp_path / f"{name}.tif" for name in ("a", "b")}
    with staged_outputs(destinations, finalize, finalize_threads=2, thread_name_prefix="test-cog") as staged:
        _write_staged(staged, {"a": np.ones((20, 20), dtype=np.uint16), "b": np.ones((20, 20), dtype=np.uint16)})
    assert set(threads) == {"a", "b"} and all(name.startswith("test-cog") for name in threads.values())
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.tif", "b.tif"]


def test_gdal_cache_limit_gives_the_cache_size_back_inside_another_environment() -> None:
    before = int(rasterio.env.get_gdal_config("GDAL_CACHEMAX"))
    limit = 48 * 1024 * 1024
    assert before != limit
    # The S3 store reads through its own rasterio.Env; a bare nested Env would leave the limit set.
    with rasterio.Env(AWS_NO_SIGN_REQUEST="YES"):
        with gdal_cache_limit(limit):
            assert int(rasterio.env.get_gdal_config("GDAL_CACHEMAX")) == limit
        assert int(rasterio.env.get_gdal_config("GDAL_CACHEMAX")) == before
    assert int(rasterio.env.get_gdal_config("GDAL_CACHEMAX")) == before


def test_gdal_cache_limit_held_by_several_threads_is_given_back_when_the_last_leaves() -> None:
    before = int(rasterio.env.get_gdal_config("GDAL_CACHEMAX"))
    limit = 40 * 1024 * 1024
    inside = threading.Barrier(3)

    def hold() -> None:
        with rasterio.Env(AWS_NO_SIGN_REQUEST="YES"), gdal_cache_limit(limit):
            inside.wait(timeout=30)

    threads = [threading.Thread(target=hold) for _ in range(2)]
    for thread in threads:
        thread.start()
    inside.wait(timeout=30)
    for thread in threads:
        thread.join(timeout=30)
    assert int(rasterio.env.get_gdal_config("GDAL_CACHEMAX")) == before
