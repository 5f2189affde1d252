"""Cubes with several sources: ``sources``, bands by role, per-source quality and ``bandpass_adjustment``."""

import copy

import pytest

from cube_assets.cube_config import SOURCES_QUALITY_BAND, load_project_config
from cube_assets.errors import InvalidCubeConfig
from cube_assets.raster.masks import QUALITY_CLASS_RULES, rules_from_config
from cube_assets_tests.conftest import SMALL_CUBE, SMALL_SIMULATOR, write_cube_file

SENTINEL2 = {
    "name": "s2",
    "collection": "sentinel-2-l2a",
    "providers": ["simulator"],
    "bands": {"blue": "B02", "green": "B03", "red": "B04", "nir": "B8A"},
}
LANDSAT = {
    "name": "landsat",
    "collection": "landsat-c2-l2",
    "providers": ["simulator"],
    "bands": {"blue": "SR_B2", "green": "SR_B3", "red": "SR_B4", "nir": "SR_B5"},
}


def _two_source_cube(**changes):
    cube = {k: v for k, v in copy.deepcopy(SMALL_CUBE).items() if k not in ("collection", "providers", "quality")}
    cube["sources"] = [copy.deepcopy(SENTINEL2), copy.deepcopy(LANDSAT)]
    cube.update(changes)
    return cube


def _load(tmp_path, cube):
    return load_project_config(write_cube_file(tmp_path, cube, [SMALL_SIMULATOR])).cubes[0]


def test_a_two_source_cube_classifies_quality_and_adjusts_landsat_with_hls_by_default(tmp_path):
    cube = _load(tmp_path, _two_source_cube())

    assert cube.source_names == ["s2", "landsat"]
    assert cube.landsat_bandpass == "hls"
    assert cube.quality.band == SOURCES_QUALITY_BAND
    assert rules_from_config(cube.quality.rules) == QUALITY_CLASS_RULES
    assert cube.collection == "sentinel-2-l2a"  # the first source's


def test_a_source_view_reads_the_source_products_by_role(tmp_path):
    landsat = _load(tmp_path, _two_source_cube()).source_view("landsat")

    assert landsat.collection == "landsat-c2-l2"
    assert [band.source_band for band in landsat.bands] == ["SR_B2", "SR_B3", "SR_B4", "SR_B5"]
    assert landsat.band_names == ["B02", "B03", "B04", "B08"]  # the cube's names stay
    assert landsat.quality.band == "QA_PIXEL" and landsat.quality.nodata == 1  # the Landsat default
    assert landsat.quality.rules == {"preset": "landsat_c2_qa_pixel"}
    assert landsat.sources is None and landsat.bandpass_adjustment == "hls"


def test_bandpass_none_and_two_sentinel2_sources_do_not_adjust(tmp_path):
    assert _load(tmp_path, _two_source_cube(bandpass_adjustment="none")).landsat_bandpass == "none"
    other = {**copy.deepcopy(SENTINEL2), "name": "s2b"}
    assert _load(tmp_path, _two_source_cube(sources=[SENTINEL2, other])).landsat_bandpass == "none"


def test_a_single_collection_cube_has_no_sources_and_keeps_its_quality(tmp_path):
    cube = _load(tmp_path, copy.deepcopy(SMALL_CUBE))
    assert cube.sources is None and cube.source_names == [] and cube.quality.band == "SCL"
    assert cube.landsat_bandpass == "none"


def _landsat_without(role):
    return {**copy.deepcopy(LANDSAT), "bands": {k: v for k, v in LANDSAT["bands"].items() if k != role}}


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            {"sources": [SENTINEL2, _landsat_without("red")]},
            r"cubes\[0\]\.sources\[1\]\.bands: band role 'red' \(bands\[2\], B04\) is missing",
        ),
        ({"sources": [SENTINEL2, {**LANDSAT, "name": "s2"}]}, r"cubes\[0\]\.sources\[1\]\.name: source 's2' repeats"),
        ({"sources": [{**SENTINEL2, "name": f"s{i}"} for i in range(9)]}, r"9 sources, more than 8"),
        ({"sources": []}, r"cubes\[0\]\.sources: .*at least one source"),
        ({"collection": "sentinel-2-l2a"}, r"cubes\[0\]\.collection: a cube with sources takes collection"),
        ({"quality": {"band": "SCL"}}, r"cubes\[0\]\.quality: a cube with sources takes quality"),
        (
            {"sources": [SENTINEL2, {**LANDSAT, "providers": ["nowhere"]}]},
            r"cubes\[0\]\.sources\[1\]\.providers\[0\]: unknown provider 'nowhere'",
        ),
        (
            {"sources": [SENTINEL2, {**LANDSAT, "bands": {**LANDSAT["bands"], "coastal": "SR_B1"}}]},
            r"cubes\[0\]\.sources\[1\]\.bands\.coastal: 'coastal' is not the common_name of a cube band",
        ),
        (
            {"sources": [SENTINEL2, {**LANDSAT, "collection": "cbers-4"}]},
            r"cubes\[0\]\.sources\[1\]\.quality: Field required",
        ),
        ({"sources": [{**SENTINEL2, "collection": "sentinel-2-l1c"}]}, r"sources\[0\]\.collection: .*Level-2"),
        ({"bandpass_adjustment": "force"}, r"cubes\[0\]\.bandpass_adjustment"),
    ],
)
def test_bad_sources_name_the_field(tmp_path, change, message):
    path = write_cube_file(tmp_path, _two_source_cube(**change), [SMALL_SIMULATOR])
    with pytest.raises(InvalidCubeConfig, match=message):
        load_project_config(path)


def test_a_band_without_a_role_is_refused_in_a_cube_with_sources(tmp_path):
    cube = _two_source_cube()
    cube["bands"][0] = {"name": "B02"}
    with pytest.raises(InvalidCubeConfig, match=r"cubes\[0\]\.bands\[0\]\.common_name: .*give band B02 one"):
        _load(tmp_path, cube)


def test_a_band_source_is_refused_in_a_cube_with_sources(tmp_path):
    cube = _two_source_cube()
    cube["bands"][2] = {"name": "B04", "common_name": "red", "source": "B04"}
    with pytest.raises(InvalidCubeConfig, match=r"cubes\[0\]\.bands\[2\]\.source: in a cube with sources each source"):
        _load(tmp_path, cube)


def test_hls_refuses_a_role_it_has_no_coefficients_for(tmp_path):
    cube = _two_source_cube()
    cube["bands"].append({"name": "B05", "common_name": "rededge"})
    for source, name in zip(cube["sources"], ("B05", "SR_B5"), strict=True):
        source["bands"]["rededge"] = name
    with pytest.raises(InvalidCubeConfig, match=r"bands\[4\]\.common_name: bandpass_adjustment hls has no .*'rededge'"):
        _load(tmp_path, cube)
