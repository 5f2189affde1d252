"""Tests of valid-data footprints and their intersection over union."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import rasterio
from affine import Affine
from pyproj import Transformer
from rasterio.crs import CRS
from rasterio.warp import transform_geom
from shapely.geometry import Point, Polygon, box, mapping, shape

from cube_assets.errors import InvalidRaster
from cube_assets.raster.footprint import iou, valid_data_footprint

UTM33 = CRS.from_epsg(32633)
TRANSFORM = Affine(10.0, 0.0, 500_000.0, 0.0, -10.0, 5_000_000.0)
RGB_BYTE = "rasterio/tests/data/RGB.byte.tif"
TO_LONLAT = Transformer.from_crs(UTM33, "EPSG:4326", always_xy=True)


def lonlat_of_pixel(transform: Affine, row: int, col: int, transformer: Transformer = TO_LONLAT) -> Point:
    """The (lon, lat) point at the centre of a pixel."""
    return Point(transformer.transform(*(transform @ (col + 0.5, row + 0.5))))


def utm_to_lonlat(geometry: Polygon) -> Polygon:
    """A UTM 33N geometry in EPSG:4326."""
    return shape(transform_geom(UTM33, "EPSG:4326", mapping(geometry)))


def test_footprint_of_an_array_follows_the_valid_pixels_not_the_bounding_box() -> None:
    array = np.zeros((100, 100), dtype=np.uint16)
    rows, cols = np.indices(array.shape)
    array[np.abs(rows - 49.5) + np.abs(cols - 49.5) < 50] = 7  # a diamond touching all four sides

    footprint = valid_data_footprint(array, transform=TRANSFORM, crs=UTM33, nodata=0)

    diamond = Polygon([(500_500, 5_000_000), (501_000, 4_999_500), (500_500, 4_999_000), (500_000, 4_999_500)])
    assert iou(footprint, utm_to_lonlat(diamond)) > 0.97
    raster_box = utm_to_lonlat(box(500_000, 4_999_000, 501_000, 5_000_000))
    assert footprint.area / raster_box.area == pytest.approx(0.5, abs=0.02)


def test_footprint_is_in_lon_lat_order() -> None:
    array = np.ones((20, 20), dtype=np.uint8)

    footprint = valid_data_footprint(array, transform=TRANSFORM, crs=UTM33, nodata=0)

    lon, lat = footprint.centroid.x, footprint.centroid.y
    assert lon == pytest.approx(15.0013, abs=0.001)  # UTM 33N's central meridian is 15 E
    assert lat == pytest.approx(45.15, abs=0.01)


def test_footprint_fills_pixel_holes_but_keeps_large_ones() -> None:
    array = np.ones((200, 200), dtype=np.uint8)
    array[20, 20] = 0  # one stray nodata pixel
    array[100:130, 100:130] = 0  # a 30 x 30 pixel gap

    footprint = valid_data_footprint(array, transform=TRANSFORM, crs=UTM33, nodata=0)

    assert footprint.geom_type == "Polygon"
    assert len(footprint.interiors) == 1
    assert not footprint.contains(lonlat_of_pixel(TRANSFORM, 115, 115))
    assert footprint.contains(lonlat_of_pixel(TRANSFORM, 20, 20))


def test_footprint_drops_stray_islands_but_keeps_large_separate_areas() -> None:
    array = np.zeros((200, 200), dtype=np.float32)
    array[:, :80] = 1.0
    array[:, 120:] = 2.0
    array[10, 100] = 3.0  # a single valid pixel between the two areas
    array[50, 50] = np.nan

    footprint = valid_data_footprint(array, transform=TRANSFORM, crs=UTM33, nodata=0)

    assert footprint.geom_type == "MultiPolygon"
    assert len(footprint.geoms) == 2
    assert not footprint.contains(lonlat_of_pixel(TRANSFORM, 10, 100))


def test_footprint_of_a_large_array_is_traced_decimated_yet_close() -> None:
    array = np.zeros((3000, 3000), dtype=np.uint8)
    array[500:2500, 700:2900] = 1

    coarse = valid_data_footprint(array, transform=TRANSFORM, crs=UTM33, nodata=0, max_size=300)

    exact = utm_to_lonlat(box(500_000 + 7_000, 5_000_000 - 25_000, 500_000 + 29_000, 5_000_000 - 5_000))
    assert iou(coarse, exact) > 0.99


def test_footprint_of_a_file_uses_its_nodata(tmp_path: Path) -> None:
    array = np.full((2, 50, 60), 9, dtype=np.int16)
    array[:, :, 30:] = -1  # right half missing in both bands
    array[0, 0:10, 30:] = 4  # but band 1 has data on a strip of it
    path = tmp_path / "two_bands.tif"
    with rasterio.open(
        path,
        "w",
        driver="GTiff",
        width=60,
        height=50,
        count=2,
        dtype="int16",
        crs=UTM33,
        transform=TRANSFORM,
        nodata=-1,
    ) as dst:
        dst.write(array)

    footprint = valid_data_footprint(path)

    assert footprint.contains(lonlat_of_pixel(TRANSFORM, 5, 45))  # valid in one band is valid
    assert not footprint.contains(lonlat_of_pixel(TRANSFORM, 30, 45))
    assert footprint.contains(lonlat_of_pixel(TRANSFORM, 30, 15))


def test_footprint_nodata_argument_overrides_a_file_without_nodata(tmp_path: Path) -> None:
    array = np.full((40, 40), 3, dtype=np.uint16)
    array[:, :20] = 0  # fill the file does not declare
    path = tmp_path / "undeclared_fill.tif"
    with rasterio.open(
        path, "w", driver="GTiff", width=40, height=40, count=1, dtype="uint16", crs=UTM33, transform=TRANSFORM
    ) as dst:
        dst.write(array, 1)

    whole = valid_data_footprint(path)
    right_half = valid_data_footprint(path, nodata=0)

    assert right_half.area / whole.area == pytest.approx(0.5, abs=0.01)
    assert not right_half.contains(lonlat_of_pixel(TRANSFORM, 20, 5))


def test_footprint_without_valid_pixels_raises() -> None:
    with pytest.raises(InvalidRaster, match="no valid"):
        valid_data_footprint(np.zeros((10, 10), np.uint8), transform=TRANSFORM, crs=UTM33, nodata=0)


def test_footprint_of_an_array_needs_its_georeferencing() -> None:
    with pytest.raises(InvalidRaster, match="transform and crs"):
        valid_data_footprint(np.ones((10, 10), np.uint8), nodata=0)


def test_iou_of_half_overlapping_squares_is_one_third() -> None:
    assert iou(box(0, 0, 2, 2), box(1, 0, 3, 2)) == pytest.approx(1 / 3)
    assert iou(box(0, 0, 1, 1), box(0, 0, 1, 1)) == 1.0
    assert iou(box(0, 0, 1, 1), box(5, 5, 6, 6)) == 0.0


def test_iou_of_two_empty_areas_is_undefined() -> None:
    with pytest.raises(ValueError, match="zero area"):
        iou(Point(0, 0), Point(1, 1))


@pytest.mark.real_data
def test_real_rgb_byte_footprint_is_the_tilted_scene_not_its_rectangle(real_data: Path) -> None:
    path = real_data / RGB_BYTE
    with rasterio.open(path) as src:
        transform, crs = src.transform, src.crs
        rectangle = shape(transform_geom(crs, "EPSG:4326", mapping(box(*src.bounds))))
        valid_share = (src.dataset_mask() > 0).mean()
        red = src.read(1)
    to_lonlat = Transformer.from_crs(crs, "EPSG:4326", always_xy=True)

    footprint = valid_data_footprint(path)

    ratio = footprint.area / rectangle.area
    assert ratio < 0.9  # measured 0.675: the valid area is a tilted quadrilateral
    assert ratio == pytest.approx(valid_share, abs=0.01)
    assert red[359, 395] != 0
    assert footprint.contains(lonlat_of_pixel(transform, 359, 395, to_lonlat))
    assert red[5, 5] == 0
    assert not footprint.contains(lonlat_of_pixel(transform, 5, 5, to_lonlat))
    lon, lat = footprint.centroid.x, footprint.centroid.y
    assert -80 < lon < -76 and 23 < lat < 26  # the Bahamas, (lon, lat) order
