import copy

from cube_assets.cube_config import load_project_config
from cube_assets.resources.providers import raw_bands
from cube_assets_tests.conftest import SMALL_CUBE, SMALL_SIMULATOR, write_cube_file


def _cube(tmp_path, **changes):
    cube = {**copy.deepcopy(SMALL_CUBE), **changes}
    return load_project_config(write_cube_file(tmp_path, cube, [SMALL_SIMULATOR])).cubes[0]


def test_level_2a_raw_scenes_need_the_quality_band(tmp_path):
    assert raw_bands(_cube(tmp_path)) == ["B02", "B03", "B04", "B08", "SCL"]


def test_level_1c_raw_scenes_do_not_need_scl_which_sen2cor_makes(tmp_path):
    assert raw_bands(_cube(tmp_path, collection="sentinel-2-l1c")) == ["B02", "B03", "B04", "B08"]
