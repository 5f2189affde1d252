import pytest
from pyproj import Transformer
from shapely.geometry import Point, box

from cube_assets.errors import InvalidCubeConfig
from cube_assets.grids import BDC_ALBERS, bdc_grid, user_grid, utm_grid


def test_bdc_grid_sizes_share_origin_and_scale_ground_size():
    sm, md, lg = bdc_grid("SM"), bdc_grid("MD"), bdc_grid("LG")
    assert (sm.tile_width, sm.resolution) == (10560, 10.0)
    assert (md.resolution, lg.resolution) == (20.0, 40.0)
    assert md.tile_size_x == 2 * sm.tile_size_x and lg.tile_size_x == 4 * sm.tile_size_x
    assert (sm.origin_x, sm.origin_y) == (md.origin_x, md.origin_y)


def test_bdc_tile_contains_the_point_it_was_found_for():
    grid = bdc_grid("SM")
    x, y = Transformer.from_crs(4326, grid.crs, always_xy=True).transform(-47.9, -15.8)
    tile = grid.tile_at(x, y)
    assert tile.geometry.contains(Point(x, y))
    assert tile.geometry_4326.contains(Point(-47.9, -15.8))
    assert len(tile.name) == 6 and tile.name == f"{tile.col:03d}{tile.row:03d}"
    assert grid.tile_by_name(tile.name) == tile


def test_bdc_origin_puts_all_of_brazil_at_non_negative_indices():
    grid = bdc_grid("SM")
    to_grid = Transformer.from_crs(4326, grid.crs, always_xy=True)
    for lon, lat in [(-73.9, 5.2), (-34.8, -7.1), (-53.4, -33.7), (-60.0, 5.0)]:
        tile = grid.tile_at(*to_grid.transform(lon, lat))
        assert tile.col >= 0 and tile.row >= 0


def test_tile_transform_and_bounds_follow_origin_and_size():
    grid = user_grid("G", 32723, (100_000, 9_000_000), (100, 50), 30.0)
    tile = grid.tile(2, 3)
    assert tile.bounds == (106_000.0, 8_994_000.0, 109_000.0, 8_995_500.0)
    assert tile.shape == (50, 100) and tile.transform.a == 30.0 and tile.transform.e == -30.0


def test_tiles_intersecting_an_aoi_are_exactly_those_touching_it():
    grid = user_grid("G", 32723, (0, 10_000_000), (100, 100), 10.0)
    aoi = box(1_500, 9_997_500, 2_500, 9_998_500)  # spans cols 1-2, rows 1-2
    names = [t.name for t in grid.tiles_intersecting(aoi, "EPSG:32723")]
    assert names == ["001001", "002001", "001002", "002002"]


def test_utm_grid_names_carry_the_zone_and_round_trip():
    grid = utm_grid(23, "S")
    tile = grid.tile(4, 7)
    assert tile.name == "23S_004007"
    assert grid.tile_by_name("23S_004007") == tile
    assert tile.crs.to_epsg() == 32723


def test_tile_name_with_a_pipe_is_rejected():
    with pytest.raises(InvalidCubeConfig, match=r"'\|'"):
        user_grid("G", 32723, (0, 0), (10, 10), 10.0, name_format="{col}|{row}")


def test_geographic_crs_is_rejected_for_a_grid():
    with pytest.raises(InvalidCubeConfig, match="projected"):
        user_grid("G", 4326, (0, 0), (10, 10), 0.1)


def test_unknown_tile_name_is_rejected_with_the_format():
    with pytest.raises(InvalidCubeConfig, match="not a tile name"):
        user_grid("G", BDC_ALBERS, (0, 0), (10, 10), 10.0).tile_by_name("12x")
