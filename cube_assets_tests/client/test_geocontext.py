"""Tests of GeoContext: the destination grid of pixel loads (bounds, CRS, resolution or shape)."""

from __future__ import annotations

import math

import pytest
import shapely.geometry
from affine import Affine
from pyproj import Transformer
from rasterio.crs import CRS

from cube_assets.client.geocontext import GeoContext
from cube_assets.grids import bdc_grid

UTM23S = CRS.from_epsg(32723)


def test_resolution_gives_the_shape_and_a_north_up_transform() -> None:
    context = GeoContext((200_000, 8_240_000, 202_560, 8_250_000), "EPSG:32723", resolution=10)

    assert context.shape == (1000, 256)
    assert context.transform == Affine(10, 0, 200_000, 0, -10, 8_250_000)
    assert context.geotransform == (200_000, 10, 0, 8_250_000, 0, -10)
    assert context.crs == UTM23S


def test_an_extent_that_is_not_whole_pixels_is_covered_by_one_more_pixel() -> None:
    context = GeoContext((0, 0, 25, 10), "EPSG:32723", resolution=10)

    assert context.shape == (1, 3)
    assert context.grid_bounds == (0, 0, 30, 10)
    assert context.bounds == (0, 0, 25, 10)


def test_an_extent_within_rounding_error_of_whole_pixels_is_not_padded() -> None:
    context = GeoContext((0.1, 0, 0.1 + 3 * 0.1, 0.2), "EPSG:32723", resolution=0.1)

    assert context.shape == (2, 3)


def test_shape_gives_the_resolution_and_covers_the_bounds_exactly() -> None:
    context = GeoContext((0, 0, 300, 100), 32723, shape=(4, 6))

    assert context.resolution == (50, 25)
    assert context.grid_bounds == (0, 0, 300, 100)


def test_resolution_may_differ_in_x_and_y() -> None:
    context = GeoContext((0, 0, 300, 100), 32723, resolution=(30, 10))

    assert context.shape == (10, 10)
    assert context.transform.e == -10


def test_from_grid_keeps_the_transform_exactly() -> None:
    transform = Affine(444.78515625, 0.0, 378285.0, 0.0, -453.57421875, 275715.0)

    context = GeoContext.from_grid("EPSG:32618", transform, (512, 512))

    assert context.transform == transform
    assert context.shape == (512, 512)
    assert context.bounds == (378285.0, 275715.0 - 512 * 453.57421875, 378285.0 + 512 * 444.78515625, 275715.0)


def test_from_grid_accepts_a_gdal_geotransform() -> None:
    context = GeoContext.from_grid(32723, (100.0, 10.0, 0.0, 500.0, 0.0, -10.0), (3, 4))

    assert context.transform == Affine(10, 0, 100, 0, -10, 500)


def test_from_grid_refuses_a_rotated_transform() -> None:
    with pytest.raises(ValueError, match="north-up"):
        GeoContext.from_grid(32723, Affine(10, 1, 0, 0, -10, 0), (3, 3))


def test_from_tile_is_exactly_the_tiles_grid() -> None:
    tile = bdc_grid("SM").tile_by_name("028022")

    context = GeoContext.from_tile(tile)

    assert context.transform == tile.transform
    assert context.shape == (10560, 10560)
    assert context.crs == CRS.from_wkt(tile.crs_wkt)


def test_from_tile_at_another_resolution_keeps_the_tile_bounds() -> None:
    tile = bdc_grid("SM").tile_by_name("028022")

    context = GeoContext.from_tile(tile, resolution=100)

    assert context.shape == (1056, 1056)
    assert context.grid_bounds == pytest.approx(tile.bounds)


def test_from_geometry_uses_the_utm_zone_of_a_lon_lat_geometry() -> None:
    geometry = shapely.geometry.box(-47.95, -15.85, -47.85, -15.75)  # Brasília, UTM zone 23 south

    context = GeoContext.from_geometry(geometry, resolution=20)

    assert context.crs == UTM23S
    to_utm = Transformer.from_crs("EPSG:4326", "EPSG:32723", always_xy=True)
    minx, miny, maxx, maxy = context.bounds
    for lon, lat in geometry.exterior.coords:
        x, y = to_utm.transform(lon, lat)
        assert minx - 1e-6 <= x <= maxx + 1e-6 and miny - 1e-6 <= y <= maxy + 1e-6
    assert context.resolution == (20, 20)


def test_from_geometry_accepts_geojson_and_aligns_pixels() -> None:
    geojson = shapely.geometry.mapping(shapely.geometry.box(200_003, 8_240_007, 200_997, 8_240_995))

    context = GeoContext.from_geometry(geojson, resolution=10, geometry_crs="EPSG:32723", align_pixels=True)

    assert context.crs == UTM23S
    assert context.bounds == (200_000, 8_240_000, 201_000, 8_241_000)
    assert context.shape == (100, 100)


def test_from_geometry_refuses_an_empty_geometry() -> None:
    with pytest.raises(ValueError, match="empty"):
        GeoContext.from_geometry(shapely.geometry.Polygon(), resolution=10)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({}, "exactly one of resolution and shape"),
        ({"resolution": 10, "shape": (2, 2)}, "exactly one of resolution and shape"),
        ({"resolution": 0}, "positive"),
        ({"resolution": math.nan}, "positive"),
        ({"shape": (0, 3)}, "positive integers"),
        ({"shape": (2.5, 3)}, "positive integers"),
    ],
)
def test_bad_resolution_or_shape_is_refused(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        GeoContext((0, 0, 100, 100), 32723, **kwargs)


@pytest.mark.parametrize("bounds", [(0, 0, 0, 10), (5, 0, 1, 10), (0, 0, math.inf, 10), (0, 0, 1)])
def test_bad_bounds_are_refused(bounds: tuple) -> None:
    with pytest.raises(ValueError, match="bounds"):
        GeoContext(bounds, 32723, resolution=1)


def test_an_unparseable_crs_is_refused() -> None:
    with pytest.raises(ValueError, match="crs 'not a crs'"):
        GeoContext((0, 0, 1, 1), "not a crs", resolution=1)


def test_assign_to_another_crs_reprojects_the_bounds_and_needs_a_resolution() -> None:
    context = GeoContext((200_000, 8_240_000, 202_000, 8_242_000), 32723, resolution=10)

    with pytest.raises(ValueError, match="needs a new resolution"):
        context.assign(crs=4326)
    geographic = context.assign(crs=4326, resolution=0.001)

    assert geographic.crs == CRS.from_epsg(4326)
    assert geographic.bounds == pytest.approx(context.bbox_4326)
    assert context.assign(resolution=20).shape == (100, 100)


def test_bbox_4326_encloses_the_grid() -> None:
    context = GeoContext((200_000, 8_240_000, 202_000, 8_242_000), 32723, resolution=10)
    to_lonlat = Transformer.from_crs("EPSG:32723", "EPSG:4326", always_xy=True)

    min_lon, min_lat, max_lon, max_lat = context.bbox_4326

    for x, y in [(200_000, 8_240_000), (202_000, 8_242_000), (200_000, 8_242_000), (202_000, 8_240_000)]:
        lon, lat = to_lonlat.transform(x, y)
        assert min_lon <= lon <= max_lon and min_lat <= lat <= max_lat


def test_equal_contexts_are_equal_and_hash_alike() -> None:
    first = GeoContext((0, 0, 100, 100), "EPSG:32723", resolution=10)
    second = GeoContext((0, 0, 100, 100), 32723, shape=(10, 10))

    assert first == second
    assert hash(first) == hash(second)
    assert first != GeoContext((0, 0, 100, 100), 32723, resolution=20)


def test_raster_info_describes_the_grid() -> None:
    context = GeoContext((0, 0, 100, 50), 32723, resolution=10)

    info = context.raster_info()

    assert info["geotransform"] == [0, 10, 0, 50, 0, -10]
    assert info["shape"] == [5, 10]
    assert CRS.from_wkt(info["crs"]) == UTM23S
