import copy

import pytest

from cube_assets.cube_config import load_project_config
from cube_assets.errors import InvalidCubeConfig
from cube_assets_tests.conftest import SMALL_CUBE, SMALL_SIMULATOR, write_cube_file


def test_demo_cube_declares_two_tiles_and_one_16_day_period():
    cube = load_project_config().cube("s2_demo")
    assert [t.name for t in cube.tile_list] == ["285228", "286228"]
    assert [p.key for p in cube.periods] == ["2024-01-01"]
    assert cube.band_by_common_name("nir").name == "B08"


def test_aoi_selects_the_tiles_it_touches(tmp_path):
    cube = copy.deepcopy(SMALL_CUBE)
    del cube["tiles"]
    # 200500 + 256*10 = 203060: a box around the corner of tiles (0,0), (1,0), (0,1), (1,1) in lon/lat
    from pyproj import Transformer

    to_lonlat = Transformer.from_crs(32723, 4326, always_xy=True)
    (lon0, lat0), (lon1, lat1) = to_lonlat.transform(203000, 8246900), to_lonlat.transform(203100, 8247000)
    cube["aoi"] = {"bbox": [lon0, lat0, lon1, lat1]}
    config = load_project_config(write_cube_file(tmp_path, cube, [SMALL_SIMULATOR]))
    assert [t.name for t in config.cubes[0].tile_list] == ["000000", "001000", "000001", "001001"]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"name": "S2-16D"}, r"cubes\[0\]\.name"),
        ({"providers": ["nowhere"]}, r"cubes\[0\]\.providers\[0\]: unknown provider"),
        ({"composites": ["LCF", "MAXIMUM"]}, "unknown composite functions"),
        ({"end_date": "2023-01-01"}, "precedes start_date"),
        ({"tiles": ["12"]}, "not a tile name"),
        ({"temporal": {"step": "16X"}}, "16X"),
        ({"quality": {"band": "B04"}}, "also listed as a spectral band"),
        ({"unknown_field": 1}, "unknown_field"),
    ],
)
def test_bad_cube_file_names_the_file_and_the_problem(tmp_path, change, message):
    cube = {**copy.deepcopy(SMALL_CUBE), **change}
    path = write_cube_file(tmp_path, cube, [SMALL_SIMULATOR])
    with pytest.raises(InvalidCubeConfig, match=message) as info:
        load_project_config(path)
    assert str(path) in str(info.value)
