"""Tests of loading images onto a GeoContext: reads, stacks, mosaics, flattening and downloads.

Small synthetic COGs (written with ``write_cog``) check exact pixel values; the real Landsat C2
L2 surface-reflectance bands and rasterio's RGB.byte.tif check real files, and a real S3 API
(the session's moto server on 127.0.0.1, ``s3_server``) checks ``s3://`` hrefs read from worker
threads.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import rasterio
from affine import Affine
from pyproj import Transformer
from rasterio.crs import CRS
from rasterio.warp import transform_bounds

from cube_assets.client.geocontext import GeoContext
from cube_assets.client.raster_read import (
    band_meta_from_files,
    download_files,
    download_mosaic_files,
    flatten_keys,
    gdal_path,
    mosaic_files,
    read_band_window,
    stack_files,
)
from cube_assets.errors import InvalidRaster
from cube_assets.raster.cog import is_valid_cog, write_cog

UTM23S = CRS.from_epsg(32723)
ORIGIN = Affine(10, 0, 200_000, 0, -10, 8_250_000)
SIZE = 64
NODATA = -9999
LANDSAT = "stactools-landsat/tests/data-files/assets3/LC08_L2SP_008059_20191201_20200825_02_T1_SR_{}.TIF"
RGB_BYTE = "rasterio/tests/data/RGB.byte.tif"
META = {
    "red": {
        "type": "spectral",
        "data_type": "Int16",
        "nodata": NODATA,
        "data_range": (0, 10000),
        "display_range": (0, 4000),
    },
    "nir": {
        "type": "spectral",
        "data_type": "Int16",
        "nodata": NODATA,
        "data_range": (0, 10000),
        "display_range": (0, 4000),
    },
}


def cog(path: Path, array: np.ndarray, *, nodata: float | None = NODATA, transform: Affine = ORIGIN, **kwargs) -> str:
    """A COG of ``array`` on the test grid; returns its path as a string."""
    write_cog(array, path, crs=UTM23S, transform=transform, nodata=nodata, **kwargs)
    return str(path)


def grid(cols: tuple[int, int] = (0, SIZE), rows: tuple[int, int] = (0, SIZE), resolution: float = 10) -> GeoContext:
    """A GeoContext over columns/rows of the test grid (may reach outside it)."""
    left, top = ORIGIN * (cols[0], rows[0])
    right, bottom = ORIGIN * (cols[1], rows[1])
    return GeoContext((left, bottom, right, top), UTM23S, resolution=resolution)


@pytest.fixture
def reflectance() -> np.ndarray:
    """Random int16 reflectance with a nodata corner."""
    values = np.random.default_rng(42).integers(0, 10000, (SIZE, SIZE)).astype(np.int16)
    values[:5, :7] = NODATA
    return values


@pytest.fixture
def image(tmp_path: Path, reflectance: np.ndarray) -> dict[str, str]:
    """One image with red and nir bands (nir = red // 2, same nodata)."""
    nir = np.where(reflectance == NODATA, NODATA, reflectance // 2).astype(np.int16)
    return {"red": cog(tmp_path / "red.tif", reflectance), "nir": cog(tmp_path / "nir.tif", nir)}


# ---------------------------------------------------------------------------- one band


def test_reading_on_the_source_grid_returns_the_exact_pixels(image: dict, reflectance: np.ndarray) -> None:
    band = read_band_window(image["red"], grid())

    assert band.dtype == np.int16
    np.testing.assert_array_equal(band.data, reflectance)
    np.testing.assert_array_equal(band.mask, reflectance == NODATA)


def test_a_sub_grid_reads_the_matching_slice(image: dict, reflectance: np.ndarray) -> None:
    band = read_band_window(image["red"], grid(cols=(5, 45), rows=(10, 30)))

    np.testing.assert_array_equal(band.data, reflectance[10:30, 5:45])


def test_pixels_the_image_does_not_cover_are_masked_and_hold_nodata(image: dict, reflectance: np.ndarray) -> None:
    band = read_band_window(image["red"], grid(cols=(-16, 48), rows=(8, 72)))

    assert band.shape == (64, 64)
    assert band.mask[:, :16].all() and band.mask[56:, :].all()
    assert (band.data[:, :16] == NODATA).all()
    np.testing.assert_array_equal(band.data[:56, 16:], reflectance[8:, :48])
    assert not band.mask[:56, 16:].any()


def test_pixels_the_image_does_not_cover_are_masked_when_there_is_no_nodata(tmp_path: Path) -> None:
    path = cog(tmp_path / "plain.tif", np.full((SIZE, SIZE), 7, np.uint8), nodata=None)

    band = read_band_window(path, grid(cols=(-8, 56), resolution=5))  # warped: not the file's pixel size

    assert band.mask[:, :16].all()
    assert not band.mask[:, 16:].any()
    assert (band.data[:, 16:] == 7).all()


def test_band_metadata_nodata_overrides_the_file(tmp_path: Path) -> None:
    values = np.arange(SIZE * SIZE, dtype=np.uint16).reshape(SIZE, SIZE) % 5
    path = cog(tmp_path / "undeclared.tif", values, nodata=None)

    assert not read_band_window(path, grid()).mask.any()
    np.testing.assert_array_equal(read_band_window(path, grid(), nodata=0).mask, values == 0)


def test_a_coarser_grid_averages_with_average_resampling(tmp_path: Path) -> None:
    values = np.random.default_rng(1).random((SIZE, SIZE)).astype(np.float32)
    path = cog(tmp_path / "float.tif", values, nodata=None)

    band = read_band_window(path, grid(resolution=20), resampling="average")

    expected = values.reshape(SIZE // 2, 2, SIZE // 2, 2).mean(axis=(1, 3))
    np.testing.assert_allclose(band.data, expected, rtol=1e-5)


def test_overviews_are_read_for_a_grid_much_coarser_than_the_file(tmp_path: Path) -> None:
    checkerboard = (np.indices((1024, 1024)).sum(axis=0) % 2 * 100).astype(np.int16)
    path = cog(tmp_path / "checker.tif", checkerboard, nodata=None, overview_resampling="average")
    coarse = grid(cols=(0, 1024), rows=(0, 1024), resolution=40)

    from_overview = read_band_window(path, coarse)
    from_full_resolution = read_band_window(path, coarse, use_overviews=False)

    assert (from_overview.data == 50).all()  # the average overview of a 0/100 checkerboard
    assert set(np.unique(from_full_resolution.data)) <= {0, 100}


def test_a_reprojected_read_takes_the_nearest_source_pixel(real_data: Path) -> None:
    path = real_data / LANDSAT.format("B4")
    with rasterio.open(path) as src:
        source, src_transform, src_crs = src.read(1), src.transform, src.crs
        west, south, east, north = transform_bounds(src.crs, "EPSG:4326", *src.bounds)
    context = GeoContext((west, south, east, north), "EPSG:4326", resolution=0.005)

    band = read_band_window(path, context)

    rows, cols = np.indices(context.shape)
    lon, lat = context.transform * (cols + 0.5, rows + 0.5)
    x, y = Transformer.from_crs("EPSG:4326", src_crs, always_xy=True).transform(lon, lat)
    src_col, src_row = ~src_transform * (x, y)
    inside = (src_col >= 0) & (src_col < source.shape[1]) & (src_row >= 0) & (src_row < source.shape[0])
    # Only pixels whose centre falls well inside a source pixel: GDAL's approximate transformer may
    # be off by up to 0.125 pixel.
    clear = inside & (np.abs(src_col % 1 - 0.5) < 0.3) & (np.abs(src_row % 1 - 0.5) < 0.3)
    expected = source[src_row[clear].astype(int), src_col[clear].astype(int)]
    valid = expected != 0
    assert valid.sum() > 10_000
    np.testing.assert_array_equal(band.data[clear][valid], expected[valid])
    assert band.mask[clear][~valid].all()
    assert band.mask[~inside].all()


def test_s3_uris_become_gdal_paths() -> None:
    assert gdal_path("s3://bucket/a/b.tif") == "/vsis3/bucket/a/b.tif"
    assert gdal_path("https://host/b.tif") == "/vsicurl/https://host/b.tif"
    assert gdal_path("/data/b.tif") == "/data/b.tif"


def test_an_unreadable_file_is_reported_with_its_image_and_band(tmp_path: Path, image: dict) -> None:
    broken = tmp_path / "broken.tif"
    broken.write_bytes(b"not a tiff")

    with pytest.raises(InvalidRaster, match=r"image 1 band 'nir': .*broken.tif"):
        stack_files([image, {**image, "nir": str(broken)}], ["red", "nir"], grid(), META)


# ---------------------------------------------------------------------------- stacks and mosaics


def test_stack_is_image_band_y_x_and_masks_nodata(tmp_path: Path, image: dict, reflectance: np.ndarray) -> None:
    other = {"red": cog(tmp_path / "red2.tif", reflectance[::-1].copy()), "nir": image["nir"]}

    stack = stack_files([image, other], "red nir", grid(), META)

    assert isinstance(stack, np.ma.MaskedArray)
    assert stack.shape == (2, 2, SIZE, SIZE) and stack.dtype == np.int16
    np.testing.assert_array_equal(stack.data[0, 0], reflectance)
    np.testing.assert_array_equal(stack.data[1, 0], reflectance[::-1])
    np.testing.assert_array_equal(stack.mask[1, 0], reflectance[::-1] == NODATA)


def test_bands_axis_moves_the_band_axis(image: dict) -> None:
    stack = stack_files([image], ["red", "nir"], grid(), META)

    last = stack_files([image], ["red", "nir"], grid(), META, bands_axis=-1)

    assert last.shape == (1, SIZE, SIZE, 2)
    np.testing.assert_array_equal(last.data, np.moveaxis(stack.data, 1, -1))
    np.testing.assert_array_equal(last.mask, np.moveaxis(stack.mask, 1, -1))
    with pytest.raises(ValueError, match="bands_axis 0 is not supported"):
        stack_files([image], ["red"], grid(), META, bands_axis=0)


def test_without_masking_nodata_pixels_hold_the_bands_nodata(image: dict, reflectance: np.ndarray) -> None:
    stack = stack_files([image], ["red"], grid(cols=(-4, 60)), META, mask_nodata=False)

    assert not isinstance(stack, np.ma.MaskedArray)
    assert (stack[0, 0, :, :4] == NODATA).all()
    np.testing.assert_array_equal(stack[0, 0, :, 4:], reflectance[:, :60])


def test_stack_applies_display_scaling(image: dict, reflectance: np.ndarray) -> None:
    stack = stack_files([image], ["red"], grid(), META, scaling="display")

    valid = reflectance != NODATA
    expected = np.clip(np.rint(reflectance.astype(float) * 255 / 4000), 0, 255)
    assert stack.dtype == np.uint8
    np.testing.assert_array_equal(stack.data[0, 0][valid], expected[valid])
    np.testing.assert_array_equal(stack.mask[0, 0], ~valid)


def test_mosaic_takes_the_last_valid_image(tmp_path: Path) -> None:
    ones = np.ones((SIZE, SIZE), np.int16)
    ones[:, :32] = NODATA  # left half empty
    twos = np.full((SIZE, SIZE), 2, np.int16)
    twos[:32, :] = NODATA  # top half empty
    first = {"red": cog(tmp_path / "one.tif", ones)}
    second = {"red": cog(tmp_path / "two.tif", twos)}

    mosaic = mosaic_files([first, second], ["red"], grid(), META)
    reversed_mosaic = mosaic_files([second, first], ["red"], grid(), META)

    assert mosaic.shape == (1, SIZE, SIZE)
    assert (mosaic[0, 32:, :] == 2).all()
    assert (mosaic[0, :32, 32:] == 1).all()
    assert mosaic.mask[0, :32, :32].all()
    assert (reversed_mosaic[0, :, 32:] == 1).all()
    assert (reversed_mosaic[0, 32:, :32] == 2).all()


def test_flatten_mosaics_each_group_and_sorts_groups_by_key(tmp_path: Path) -> None:
    def image_of(value: int, empty_rows: slice) -> dict[str, str]:
        values = np.full((SIZE, SIZE), value, np.int16)
        values[empty_rows] = NODATA
        return {"red": cog(tmp_path / f"{value}.tif", values)}

    images = [image_of(1, slice(0, 0)), image_of(2, slice(0, 0)), image_of(3, slice(0, 32))]
    acquired = [
        dt.datetime(2024, 1, 9, 13, 0, tzinfo=dt.UTC),
        dt.datetime(2024, 1, 4, 13, 0, tzinfo=dt.UTC),
        dt.datetime(2024, 1, 9, 13, 5, tzinfo=dt.UTC),
    ]
    keys = flatten_keys([{"acquired": when} for when in acquired], ["acquired.date"])

    stack, info = stack_files(images, ["red"], grid(), META, flatten=keys, raster_info=True)

    assert keys == [(dt.date(2024, 1, 9),), (dt.date(2024, 1, 4),), (dt.date(2024, 1, 9),)]
    assert stack.shape == (2, 1, SIZE, SIZE)
    assert (stack[0] == 2).all()  # 4 January first
    assert (stack[1, 0, :32] == 1).all() and (stack[1, 0, 32:] == 3).all()  # image 2 wins where it has data
    assert [layer["images"] for layer in info] == [[1], [0, 2]]
    assert info[0]["geotransform"] == list(grid().geotransform)


def test_flatten_keys_read_attributes_and_call_methods() -> None:
    items = [SimpleNamespace(acquired=dt.datetime(2024, 1, 9, 23, tzinfo=dt.UTC), tile="A")]

    assert flatten_keys(items, "acquired.date") == [(dt.date(2024, 1, 9),)]
    assert flatten_keys(items, ["tile", lambda item: item.acquired.year]) == [("A", 2024)]
    with pytest.raises(ValueError, match="item 0 has no 'when'"):
        flatten_keys(items, "when")


def test_flatten_needs_one_key_per_image(image: dict) -> None:
    with pytest.raises(ValueError, match="1 keys for 2 images"):
        stack_files([image, image], ["red"], grid(), META, flatten=["2024-01-01"])


def test_a_missing_band_is_refused_naming_the_image(image: dict) -> None:
    with pytest.raises(ValueError, match=r"image 1 has no file for bands \['nir'\]"):
        stack_files([image, {"red": image["red"]}], ["red", "nir"], grid(), META)


def test_progress_bar_writes_to_stderr(image: dict, capsys: pytest.CaptureFixture[str]) -> None:
    stack_files([image, image], ["red"], grid(), META, progress=True, max_workers=2)

    err = capsys.readouterr().err
    assert "stack" in err and "2/2" in err


# ---------------------------------------------------------------------------- real files


def test_landsat_bands_stack_on_their_own_grid_unchanged(real_data: Path) -> None:
    paths = {band: str(real_data / LANDSAT.format(band)) for band in ("B2", "B3", "B4")}
    with rasterio.open(paths["B2"]) as src:
        context = GeoContext.from_grid(src.crs, src.transform, src.shape)
    meta = band_meta_from_files(paths)

    stack = stack_files([paths], ["B2", "B3", "B4"], context, meta)

    assert meta["B4"].data_type == "UInt16" and meta["B4"].nodata == 0
    for index, band in enumerate(("B2", "B3", "B4")):
        with rasterio.open(paths[band]) as src:
            expected = src.read(1, masked=True)
        np.testing.assert_array_equal(stack.data[0, index], expected.data)
        np.testing.assert_array_equal(stack.mask[0, index], expected.mask)


def test_bands_of_a_multi_band_file_are_addressed_by_number(real_data: Path) -> None:
    path = str(real_data / RGB_BYTE)
    image = {"red": (path, 1), "green": (path, 2), "blue": (path, 3)}
    with rasterio.open(path) as src:
        context = GeoContext.from_grid(src.crs, src.transform, src.shape)
        expected = src.read(masked=True)

    mosaic = mosaic_files([image], ["blue", "red"], context, band_meta_from_files(image))

    np.testing.assert_array_equal(mosaic.data, expected.data[[2, 0]])
    np.testing.assert_array_equal(mosaic.mask, expected.mask[[2, 0]])


# ---------------------------------------------------------------------------- downloads


def test_download_writes_a_geotiff_gdal_reads_back(tmp_path: Path, image: dict, reflectance: np.ndarray) -> None:
    [path] = download_files([image], ["red", "nir"], grid(), META, tmp_path / "out", names=["scene"])

    assert path == tmp_path / "out" / "scene-red-nir.tif"
    with rasterio.open(path) as written:
        assert (written.driver, written.count, written.dtypes, written.nodata) == (
            "GTiff",
            2,
            ("int16", "int16"),
            NODATA,
        )
        assert written.descriptions == ("red", "nir")
        assert written.transform == ORIGIN and written.crs == UTM23S
        np.testing.assert_array_equal(written.read(1), reflectance)


def test_download_as_cog_is_a_valid_cog_with_a_mask_when_scaled(tmp_path: Path, image: dict) -> None:
    path = download_mosaic_files([image], ["red"], grid(), META, tmp_path / "mosaic.tif", cog=True, scaling="display")

    assert is_valid_cog(path)
    with rasterio.open(path) as written:
        assert written.dtypes == ("uint8",) and written.nodata is None
        assert (written.read_masks(1)[:5, :7] == 0).all() and (written.read_masks(1)[5:, :] == 255).all()


def test_png_and_jpeg_downloads_are_display_scaled_bytes(tmp_path: Path, image: dict, reflectance: np.ndarray) -> None:
    png, jpeg = download_files([image, image], ["red"], grid(), META, [tmp_path / "a.png", tmp_path / "b.jpg"])

    expected = np.clip(np.rint(reflectance.astype(float) * 255 / 4000), 0, 255)
    with rasterio.open(png) as written:
        assert (written.driver, written.dtypes, written.shape) == ("PNG", ("uint8",), (SIZE, SIZE))
        assert written.crs == UTM23S and written.transform == ORIGIN  # from the .aux.xml sidecar
        valid = reflectance != NODATA
        np.testing.assert_array_equal(written.read(1)[valid], expected[valid])
    with rasterio.open(jpeg) as written:
        assert (written.driver, written.dtypes, written.shape) == ("JPEG", ("uint8",), (SIZE, SIZE))
        assert np.abs(written.read(1).astype(int) - expected).mean() < 8  # lossy


def test_jpeg_refuses_data_that_is_not_bytes(tmp_path: Path, image: dict) -> None:
    with pytest.raises(ValueError, match="JPEG holds Byte data, but the bands load as Int16"):
        download_mosaic_files([image], ["red"], grid(), META, tmp_path / "raw.jpg", scaling="raw")
    assert not (tmp_path / "raw.jpg").exists()


def test_download_mosaic_into_a_folder_names_the_file_by_bands(tmp_path: Path, image: dict) -> None:
    path = download_mosaic_files([image], ["nir", "red"], grid(), META, tmp_path, format="png")

    assert path == tmp_path / "mosaic-nir-red.png"
    with rasterio.open(path) as written:
        assert written.count == 2


def test_download_refuses_repeated_destinations(tmp_path: Path, image: dict) -> None:
    with pytest.raises(ValueError, match="repeat"):
        download_files([image, image], ["red"], grid(), META, [tmp_path / "a.tif", tmp_path / "a.tif"])


# ---------------------------------------------------------------------------- S3


def test_s3_hrefs_load_in_worker_threads(s3_server, s3_bucket: str, image: dict, reflectance: np.ndarray) -> None:
    """``s3://`` hrefs of a real S3 API (the shared moto server fixture) read from three threads at once."""
    store = s3_server.store(s3_bucket)
    uri = store.publish(Path(image["red"]), "scenes/red.tif")
    remote = {"red": uri}

    with store.gdal_environment():
        stack = stack_files([remote, remote, remote], ["red"], grid(), META, max_workers=3)

    assert uri.startswith("s3://")
    for layer in range(3):
        np.testing.assert_array_equal(stack.data[layer, 0], reflectance)
