"""Hostile cube files: every bad value is refused when the file is loaded, as ``InvalidCubeConfig``
naming the file and the exact field path, quoting at most about 200 characters of the input,
and within bounds of time and memory whatever a few bytes of YAML ask for."""

from __future__ import annotations

import copy
import math
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import yaml
from shapely.geometry import box

from cube_assets.cube_config import MAX_PARTITIONS_PER_CUBE, check_project_config, load_project_config
from cube_assets.definitions import build_definitions
from cube_assets.errors import InvalidCubeConfig
from cube_assets.grids import MAX_TILES_PER_CUBE, user_grid
from cube_assets_tests.conftest import REPO_ROOT, SMALL_CUBE, SMALL_SIMULATOR

MAX_MESSAGE = 1024


def _cube(**changes: Any) -> dict[str, Any]:
    cube = copy.deepcopy(SMALL_CUBE)
    for key, value in changes.items():
        if value is None:
            cube.pop(key, None)
        else:
            cube[key] = value
    return cube


def _write(folder: Path, cubes: list[dict], providers: list[dict] | None = None) -> Path:
    path = folder / "cubes.yaml"
    document = {"providers": [SMALL_SIMULATOR] if providers is None else providers, "cubes": cubes}
    path.write_text(yaml.safe_dump(document, sort_keys=False))
    return path


def _refusal(path: Path) -> str:
    with pytest.raises(InvalidCubeConfig) as info:
        load_project_config(path)
    return str(info.value)


def _assert_refused_at(path: Path, field: str) -> str:
    message = _refusal(path)
    assert f"{path}: {field}: " in message, message
    return message


def _grid(**changes: Any) -> dict[str, Any]:
    return {**SMALL_CUBE["grid"], **changes}


def _bands(*names: str) -> list[dict[str, Any]]:
    return [{"name": "B04", "common_name": "red"}, {"name": "B08", "common_name": "nir"}] + [{"name": n} for n in names]


# --------------------------------------------------------------------------- names that become keys or paths

BAD_NAMES = ["../../etc", "", "a|b c/d", ".", "..", "-leading", "x" * 65, "B04\n", "tab\there", "naïve"]


@pytest.mark.parametrize("name", BAD_NAMES)
def test_band_name_outside_the_name_rule_is_refused(tmp_path, name):
    message = _assert_refused_at(_write(tmp_path, [_cube(bands=_bands(name))]), "cubes[0].bands[2].name")
    assert "band name" in message


@pytest.mark.parametrize("name", BAD_NAMES)
def test_quality_band_name_outside_the_name_rule_is_refused(tmp_path, name):
    path = _write(tmp_path, [_cube(quality={"band": name, "rules": {"preset": "scl"}, "nodata": 0})])
    _assert_refused_at(path, "cubes[0].quality.band")


@pytest.mark.parametrize(
    ("field", "value"), [("source", "../B04"), ("source", "a b"), ("common_name", "Nir-1"), ("common_name", "")]
)
def test_band_source_and_common_name_outside_their_rules_are_refused(tmp_path, field, value):
    bands = _bands()
    bands[0][field] = value
    _assert_refused_at(_write(tmp_path, [_cube(bands=bands)]), f"cubes[0].bands[0].{field}")


@pytest.mark.parametrize("name", ["quicklook", "footprint", "PVI"])
def test_band_named_like_a_published_scene_file_is_refused(tmp_path, name):
    _assert_refused_at(_write(tmp_path, [_cube(bands=_bands(name))]), "cubes[0].bands[2].name")


@pytest.mark.parametrize(
    ("name", "field"),
    [
        ("../x", "cubes[0].indexes['../x']"),
        ("B04", "cubes[0].indexes.B04"),
        ("SCL", "cubes[0].indexes.SCL"),
        ("quicklook", "cubes[0].indexes.quicklook"),
    ],
)
def test_index_name_that_is_unsafe_or_taken_is_refused(tmp_path, name, field):
    _assert_refused_at(_write(tmp_path, [_cube(indexes={name: "nir - red"})]), field)


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"collection": "../sentinel"}, "cubes[0].collection"),
        ({"name": "Small"}, "cubes[0].name"),
        ({"grid": _grid(name="a/b")}, "cubes[0].grid.name"),
        ({"providers": ["sim/../x"]}, "cubes[0].providers[0]"),
    ],
)
def test_cube_collection_grid_and_provider_names_outside_the_rule_are_refused(tmp_path, changes, field):
    _assert_refused_at(_write(tmp_path, [_cube(**changes)]), field)


def test_declared_provider_name_outside_the_rule_is_refused(tmp_path):
    path = _write(tmp_path, [_cube(providers=[])], providers=[{**SMALL_SIMULATOR, "name": "../simulator"}])
    _assert_refused_at(path, "providers[0].name")


# --------------------------------------------------------------------------- values refused at load, not mid-run


@pytest.mark.parametrize(
    "expression",
    [
        "__import__('os').system('id')",
        "nir.real",
        "swir + red",
        "(nir - red",
        "[nir][0]",
        "nir if red else 0",
        "'text'",
    ],
)
def test_index_expression_the_evaluator_refuses_fails_at_load(tmp_path, expression):
    message = _assert_refused_at(_write(tmp_path, [_cube(indexes={"NDVI": expression})]), "cubes[0].indexes.NDVI")
    assert "expression" in message


@pytest.mark.parametrize(
    "rules",
    [
        {"preset": "sen2cor"},
        {"preset": "scl", "clear": [4]},
        {"kind": "bits"},
        {"kind": "values", "clear": [4]},
        {"kind": "landsat_qa_pixel", "confidence": ["cloud >= VERY"]},
    ],
)
def test_unknown_or_malformed_quality_rules_are_refused(tmp_path, rules):
    path = _write(tmp_path, [_cube(quality={"band": "SCL", "rules": rules, "nodata": 0})])
    _assert_refused_at(path, "cubes[0].quality.rules")


@pytest.mark.parametrize("resampling", ["foo", "gauss", "Bilinear", ""])
def test_resampling_not_supported_by_warping_is_refused(tmp_path, resampling):
    bands = _bands()
    bands[1]["resampling"] = resampling
    message = _assert_refused_at(_write(tmp_path, [_cube(bands=bands)]), "cubes[0].bands[1].resampling")
    assert "bilinear" in message  # the message lists the names that are accepted


@pytest.mark.parametrize(
    ("dtype", "nodata"),
    [
        ("int16", 99999),
        ("int16", -32769),
        ("uint8", -1),
        ("uint8", 256),
        ("uint16", 1.5),
        ("int16", math.nan),
        ("int32", math.inf),
        ("float32", 1e39),
    ],
)
def test_nodata_that_does_not_fit_the_dtype_is_refused(tmp_path, dtype, nodata):
    message = _assert_refused_at(_write(tmp_path, [_cube(dtype=dtype, nodata=nodata)]), "cubes[0].nodata")
    assert dtype in message


@pytest.mark.parametrize(("dtype", "nodata"), [("float32", math.nan), ("uint8", 0), ("int16", -32768)])
def test_nodata_that_fits_the_dtype_is_accepted(tmp_path, dtype, nodata):
    config = load_project_config(_write(tmp_path, [_cube(dtype=dtype, nodata=nodata)]))
    assert config.cubes[0].dtype == dtype


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"source_resolution": -10}, "cubes[0].source_resolution"),
        ({"source_resolution": 0}, "cubes[0].source_resolution"),
        ({"source_resolution": math.inf}, "cubes[0].source_resolution"),
        ({"max_cloud_cover": 101}, "cubes[0].max_cloud_cover"),
        ({"max_cloud_cover": math.nan}, "cubes[0].max_cloud_cover"),
        ({"grid": _grid(origin=[math.inf, 8249500])}, "cubes[0].grid.origin[0]"),
        ({"grid": _grid(origin=[200500, math.nan])}, "cubes[0].grid.origin[1]"),
        ({"grid": _grid(resolution=0)}, "cubes[0].grid.resolution"),
        ({"grid": _grid(resolution=-10)}, "cubes[0].grid.resolution"),
        ({"grid": _grid(resolution=1e308)}, "cubes[0].grid"),
        ({"grid": _grid(tile_size=[0, 256])}, "cubes[0].grid.tile_size"),
        ({"grid": _grid(tile_size=[10**9, 256])}, "cubes[0].grid.tile_size"),
        ({"grid": _grid(tile_size=[256.5, 256])}, "cubes[0].grid.tile_size[0]"),
        ({"grid": _grid(crs=4326)}, "cubes[0].grid"),
        ({"grid": _grid(crs=[32723])}, "cubes[0].grid.crs"),
        ({"grid": {"kind": "utm", "zone": 61}}, "cubes[0].grid"),
        ({"grid": {"kind": "utm"}}, "cubes[0].grid.zone"),
        ({"quality": {"band": "SCL", "nodata": -1}}, "cubes[0].quality.nodata"),
        ({"quality": {"band": "SCL", "nodata": True}}, "cubes[0].quality.nodata"),
    ],
)
def test_number_that_is_not_finite_or_out_of_range_is_refused(tmp_path, changes, field):
    _assert_refused_at(_write(tmp_path, [_cube(**changes)]), field)


# --------------------------------------------------------------------------- raw exceptions become InvalidCubeConfig


@pytest.mark.parametrize(
    ("temporal", "field"),
    [
        ({"step": "16D", "foo": 1}, "cubes[0].temporal.foo"),
        ({"step": "16X"}, "cubes[0].temporal.step"),
        ({"step": 16}, "cubes[0].temporal.step"),
        ({"step": "99999999999D"}, "cubes[0].temporal.step"),
        ({"step": "400D", "restart": "none"}, "cubes[0].temporal.step"),
        ({"step": "5M"}, "cubes[0].temporal.step"),
        ({"step": "16D", "restart": "weekly"}, "cubes[0].temporal.restart"),
        (5, "cubes[0].temporal"),
        (["16D"], "cubes[0].temporal"),
    ],
)
def test_malformed_temporal_schema_is_refused_at_its_field(tmp_path, temporal, field):
    _assert_refused_at(_write(tmp_path, [_cube(temporal=temporal)]), field)


@pytest.mark.parametrize(
    "name_format",
    [
        "{x}",
        "{",
        "}",
        "{col}",
        "{col}{col}",
        "{col!r}{row}",
        "{col:>1000000000}{row}",
        "{col:0100d}{row:03d}",
        "{col:x}{row}",
        "{col}|{row}",
        "{col} {row}",
        "{col}/{row}",
        "{0}{1}",
        "{col.real}{row}",
        "{col[0]}{row}",
        "{col:{row}}",
        "{{col}}{row}",
        "a" * 200 + "{col}{row}",
        123,
    ],
)
def test_malformed_or_unbounded_name_format_is_refused(tmp_path, name_format):
    message = _assert_refused_at(
        _write(tmp_path, [_cube(grid=_grid(name_format=name_format))]), "cubes[0].grid.name_format"
    )
    assert len(message) <= MAX_MESSAGE


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"end_date": "9999-12-31"}, "cubes[0].end_date"),
        ({"start_date": "1900-01-01"}, "cubes[0].start_date"),
        ({"start_date": "0000-01-01"}, "cubes[0].start_date"),
        ({"end_date": "2101-01-01"}, "cubes[0].end_date"),
        ({"end_date": "2023-12-31"}, "cubes[0].end_date"),
        ({"start_date": "yesterday"}, "cubes[0].start_date"),
    ],
)
def test_date_outside_the_year_range_or_before_the_start_is_refused(tmp_path, changes, field):
    _assert_refused_at(_write(tmp_path, [_cube(**changes)]), field)


def test_unquoted_year_zero_date_in_yaml_is_refused_at_its_field(tmp_path):
    path = _write(tmp_path, [_cube()])
    path.write_text(path.read_text().replace("start_date: '2024-01-01'", "start_date: 0000-01-01"))
    _assert_refused_at(path, "cubes[0].start_date")


@pytest.mark.parametrize(
    ("aoi", "field"),
    [
        ({"bbox": [-47.0, -15.0, -47.0, -15.0]}, "cubes[0].aoi.bbox"),
        ({"bbox": [-47.0, -15.0, -47.0, -14.0]}, "cubes[0].aoi.bbox"),
        ({"bbox": [-46.0, -15.0, -47.0, -14.0]}, "cubes[0].aoi.bbox"),
        ({"bbox": [-190.0, -15.0, -47.0, -14.0]}, "cubes[0].aoi.bbox"),
        ({"bbox": [-47.0, -15.0, math.inf, -14.0]}, "cubes[0].aoi.bbox[2]"),
        ({"geometry": {"type": "Polygon", "coordinates": "x"}}, "cubes[0].aoi.geometry"),
        ({"geometry": {"type": "Nonsense"}}, "cubes[0].aoi.geometry"),
        ({"geometry": {"type": "Point", "coordinates": [-47.0, -15.0]}}, "cubes[0].aoi.geometry"),
        (
            {
                "geometry": {
                    "type": "Polygon",
                    "coordinates": [[[-47, -15], [-46, -14], [-46, -15], [-47, -14], [-47, -15]]],
                }
            },
            "cubes[0].aoi.geometry",
        ),
        (
            {"geometry": {"type": "Polygon", "coordinates": [[[0, 0], [500, 0], [500, 1], [0, 0]]]}},
            "cubes[0].aoi.geometry",
        ),
        ({}, "cubes[0].aoi"),
    ],
)
def test_degenerate_or_malformed_area_of_interest_is_refused(tmp_path, aoi, field):
    _assert_refused_at(_write(tmp_path, [_cube(tiles=None, aoi=aoi)]), field)


def test_area_of_interest_the_grid_cannot_project_is_refused(tmp_path):
    # An orthographic grid centred on Brazil: the far side of the Earth has no coordinates in it.
    grid = _grid(crs="+proj=ortho +lat_0=-15 +lon_0=-47 +ellps=WGS84 +units=m +no_defs", origin=[0, 0])
    path = _write(tmp_path, [_cube(grid=grid, tiles=None, aoi={"bbox": [130.0, 15.0, 131.0, 16.0]})])
    message = _assert_refused_at(path, "cubes[0].aoi")
    assert "no finite bounds" in message


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"tiles": ["000000", "000000"]}, "cubes[0].tiles[1]"),
        ({"tiles": ["000000", "../x"]}, "cubes[0].tiles[1]"),
        ({"tiles": ["000000", "x" * 10_000]}, "cubes[0].tiles[1]"),
        ({"bands": [{"name": "B04"}, {"name": "B04"}]}, "cubes[0].bands[1].name"),
        (
            {"bands": [{"name": "B04", "common_name": "red"}, {"name": "B05", "common_name": "red"}]},
            "cubes[0].bands[1].common_name",
        ),
        ({"bands": [{"name": "red"}, {"name": "B05", "common_name": "red"}]}, "cubes[0].bands[1].common_name"),
        ({"composites": ["LCF", "LCF"]}, "cubes[0].composites[1]"),
    ],
)
def test_repeated_or_unknown_tiles_bands_and_composites_are_refused(tmp_path, changes, field):
    _assert_refused_at(_write(tmp_path, [_cube(**changes)]), field)


def test_repeated_cube_names_are_refused_at_the_second_cube(tmp_path):
    _assert_refused_at(_write(tmp_path, [_cube(), _cube()]), "cubes[1].name")


def test_repeated_provider_names_are_refused_at_the_second_provider(tmp_path):
    _assert_refused_at(_write(tmp_path, [_cube()], providers=[SMALL_SIMULATOR, SMALL_SIMULATOR]), "providers[1].name")


def test_name_format_whose_names_repeat_over_the_area_is_refused(tmp_path):
    # Without widths, tile (1, 11) and tile (11, 1) are both "111": an area over columns and rows 1..11.
    from pyproj import Transformer

    to_lonlat = Transformer.from_crs(32723, 4326, always_xy=True)
    x, y = 200_000, 8_250_000
    (lon0, lat0), (lon1, lat1) = to_lonlat.transform(x + 150, y - 1150), to_lonlat.transform(x + 1150, y - 150)
    grid = _grid(origin=[x, y], tile_size=[10, 10], resolution=10, name_format="{col}{row}")
    path = _write(tmp_path, [_cube(grid=grid, tiles=None, aoi={"bbox": [lon0, lat0, lon1, lat1]})])
    message = _assert_refused_at(path, "cubes[0].grid.name_format")
    assert "'111'" in message


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"colour": "red"}, "cubes[0].colour"),
        ({"grid": _grid(foo=1)}, "cubes[0].grid.foo"),
        ({"bands": [{"name": "B04", "wavelength": 665}]}, "cubes[0].bands[0].wavelength"),
    ],
)
def test_unknown_field_is_refused_at_its_path(tmp_path, changes, field):
    _assert_refused_at(_write(tmp_path, [_cube(**changes)]), field)


# --------------------------------------------------------------------------- every problem at once


def test_every_problem_of_a_file_is_listed_each_with_its_file_and_path(tmp_path):
    second = _cube(name="second", temporal={"step": "16D", "foo": 1}, nodata=99999)
    path = _write(tmp_path, [_cube(bands=_bands("../../etc"), end_date="9999-12-31"), second])
    lines = _refusal(path).splitlines()
    fields = ["cubes[0].bands[2].name", "cubes[0].end_date", "cubes[1].temporal.foo", "cubes[1].nodata"]
    assert sorted(line.split(": ")[1] for line in lines) == sorted(fields)
    assert all(line.startswith(f"{path}: ") for line in lines)


def test_a_thousand_problems_are_reported_in_a_bounded_message(tmp_path):
    path = _write(tmp_path, [_cube(name=f"c{i}", bands=_bands("../x")) for i in range(100)])
    check = check_project_config(path)
    message = _refusal(path)
    assert len(check.problems) == 100
    assert len(message.splitlines()) == 21 and "80 more problems" in message
    assert len(message) < 20 * 400


# --------------------------------------------------------------------------- resource bounds


def test_one_pixel_tiles_over_half_a_degree_are_refused_quickly_with_the_count_and_the_limit(tmp_path):
    grid = _grid(tile_size=[1, 1], resolution=10)
    path = _write(tmp_path, [_cube(grid=grid, tiles=None, aoi={"bbox": [-48.0, -16.0, -47.5, -15.5]})])
    started = time.monotonic()
    message = _assert_refused_at(path, "cubes[0].aoi")
    assert time.monotonic() - started < 30  # it used to run for minutes
    assert f"{MAX_TILES_PER_CUBE:,}" in message and "tiles" in message
    assert len(message) <= MAX_MESSAGE


def test_huge_format_width_is_refused_without_building_the_name(tmp_path):
    path = _write(tmp_path, [_cube(grid=_grid(name_format="{col:>1000000000}{row}"))])
    started = time.monotonic()
    message = _assert_refused_at(path, "cubes[0].grid.name_format")
    assert time.monotonic() - started < 30
    assert len(message) <= MAX_MESSAGE


def test_too_many_partitions_are_refused_with_the_count_and_the_limit(tmp_path):
    # About 94,000 tiles of 100 m and 366 daily periods: 34 million partitions.
    grid = _grid(tile_size=[10, 10], resolution=10)
    cube = _cube(
        grid=grid,
        tiles=None,
        aoi={"bbox": [-47.28, -15.58, -47.0, -15.3]},
        temporal={"step": "1D", "restart": "none"},
        end_date="2024-12-31",
    )
    message = _assert_refused_at(_write(tmp_path, [cube]), "cubes[0]")
    assert f"{MAX_PARTITIONS_PER_CUBE:,}" in message and "partitions" in message


def test_long_input_is_quoted_in_at_most_about_200_characters(tmp_path):
    name = "../" + "x" * 100_000
    message = _assert_refused_at(
        _write(tmp_path, [_cube(bands=_bands(name), indexes={"NDVI": "nir +" * 1900 + " red)"})]),
        "cubes[0].bands[2].name",
    )
    assert len(message) <= 2 * MAX_MESSAGE
    assert "x" * 201 not in message and "nir +" * 100 not in message


@pytest.mark.parametrize(
    ("provider", "field"),
    [
        ({**SMALL_SIMULATOR, "options": "token-s3cr3t-value"}, "providers[0].options"),
        ({**SMALL_SIMULATOR, "password": "token-s3cr3t-value"}, "providers[0].password"),
        ({**SMALL_SIMULATOR, "driver": "token-s3cr3t-value"}, "providers[0].driver"),
    ],
)
def test_secret_in_a_malformed_provider_is_not_echoed(tmp_path, provider, field):
    message = _assert_refused_at(_write(tmp_path, [_cube()], providers=[provider]), field)
    assert "s3cr3t" not in message


def test_value_of_an_unknown_key_is_not_echoed(tmp_path):
    message = _assert_refused_at(
        _write(tmp_path, [_cube(aws_secret_access_key="token-s3cr3t-value")]), "cubes[0].aws_secret_access_key"
    )
    assert "s3cr3t" not in message


# --------------------------------------------------------------------------- the YAML itself

BILLION_LAUGHS = "\n".join(
    ["a: &a [lol, lol, lol, lol, lol, lol, lol, lol, lol, lol]"]
    + [f"{chr(98 + i)}: &{chr(98 + i)} [{', '.join([f'*{chr(97 + i)}'] * 10)}]" for i in range(8)]
    + ["cubes: [*i]"]
)


@pytest.mark.parametrize(
    ("text", "said"),
    [
        ("cubes: [\n", "not valid YAML: line 2"),
        ("cubes: []\ncubes: []\n", "key 'cubes' repeats"),
        (BILLION_LAUGHS, "200,000 values"),
        ("cubes: &x [*x]\n", "nested more than 32 levels"),
        ("cubes: " + "[" * 100 + "]" * 100 + "\n", "nested"),
        ("cubes: " + "[" * 20_000 + "]" * 20_000 + "\n", "nested too deeply"),
        ("- cubes\n", "the top level must be a mapping"),
        ("just text\n", "the top level must be a mapping"),
        ("", "got nothing"),
        ("# only a comment\n", "got nothing"),
        ("cubes: !!python/object/apply:os.system [touch pwned]\n", "not valid YAML"),
        ("---\ncubes: []\n---\ncubes: []\n", "not valid YAML"),
        (b"\xff\xfe\x00cubes".decode("latin-1"), "not valid YAML"),
    ],
)
def test_malformed_or_explosive_yaml_is_refused_quickly_naming_the_file(tmp_path, text, said):
    path = tmp_path / "cubes.yaml"
    path.write_text(text)
    started = time.monotonic()
    message = _refusal(path)
    assert time.monotonic() - started < 30
    assert message.startswith(f"{path}: ") and said in message, message
    assert len(message) <= MAX_MESSAGE
    assert not (tmp_path / "pwned").exists() and not Path("pwned").exists()


def test_missing_cube_file_is_refused_naming_it(tmp_path):
    message = _refusal(tmp_path / "absent.yaml")
    assert message == f"{tmp_path / 'absent.yaml'}: cannot read cube file: no such file"


def test_folder_given_as_cube_file_is_refused_naming_it(tmp_path):
    assert _refusal(tmp_path) == f"{tmp_path}: cannot read cube file: not a regular file"


def test_fifo_given_as_cube_file_is_refused_without_blocking(tmp_path):
    fifo = tmp_path / "cubes.yaml"
    os.mkfifo(fifo)
    assert _refusal(fifo) == f"{fifo}: cannot read cube file: not a regular file"


def test_cube_file_over_one_mebibyte_is_refused_before_parsing(tmp_path):
    path = _write(tmp_path, [_cube()])
    path.write_text(path.read_text() + "#" * (1 << 20) + "\n")
    message = _refusal(path)
    assert message.startswith(f"{path}: cube file is larger than the limit of 1,048,576 bytes")


# --------------------------------------------------------------------------- the grid boundary, used from code


@pytest.mark.parametrize(
    ("origin", "resolution", "tile_size"),
    [
        ((math.inf, 0), 10.0, (10, 10)),
        ((0, math.nan), 10.0, (10, 10)),
        ((0, 0), 1e308, (10, 10)),
        ((0, 0), 10.0, (0, 10)),
    ],
)
def test_user_grid_with_infinite_origin_resolution_or_empty_tiles_is_refused(origin, resolution, tile_size):
    with pytest.raises(InvalidCubeConfig, match="grid 'G'"):
        user_grid("G", 32723, origin, tile_size, resolution)


def test_tiles_of_an_area_are_counted_before_any_is_made():
    grid = user_grid("G", 32723, (0, 10_000_000), (1, 1), 1.0)
    started = time.monotonic()
    with pytest.raises(
        InvalidCubeConfig,
        match=r"1,000,001 columns × 1,000,001 rows = 1,000,002,000,001 tiles, more than the limit of 100,000",
    ):
        grid.tiles_intersecting(box(0, 9_000_000, 1_000_000, 10_000_000), "EPSG:32723")
    assert time.monotonic() - started < 30


@pytest.mark.parametrize("bounds", [(math.inf, 0, 1, 1), (0, -math.inf, 1, 1), (1e300, 0, 1e300, 1)])
def test_area_with_infinite_or_far_bounds_is_refused_as_invalid_config(bounds):
    grid = user_grid("G", 32723, (0, 10_000_000), (10, 10), 1e-290)
    with pytest.raises(InvalidCubeConfig, match="grid 'G'"):
        grid.tile_span(bounds)


def test_point_at_infinity_has_no_tile():
    grid = user_grid("G", 32723, (0, 10_000_000), (10, 10), 10.0)
    with pytest.raises(InvalidCubeConfig, match="no finite bounds"):
        grid.tile_at(math.inf, 0.0)


# --------------------------------------------------------------------------- where the file is loaded


def test_definitions_are_not_built_from_a_bad_cube_file_and_nothing_is_written(tmp_path):
    path = _write(tmp_path, [_cube(indexes={"NDVI": "__import__('os')"})])
    data_root = tmp_path / "data"
    with pytest.raises(InvalidCubeConfig) as info:
        build_definitions(path, data_root)
    assert f"{path}: cubes[0].indexes.NDVI: " in str(info.value)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cubes.yaml"]


def test_dagster_definitions_validate_fails_with_the_cube_file_problem(tmp_path):
    path = _write(tmp_path, [_cube(temporal={"step": "16D", "foo": 1})])
    result = subprocess.run(
        [sys.executable, "-m", "dagster", "definitions", "validate", "-w", "workspace.yaml"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        env={
            "CUBE_ASSETS_CONFIG": str(path),
            "CUBE_ASSETS_DATA_ROOT": str(tmp_path / "data"),
            "PATH": "/usr/bin:/bin",
            "DAGSTER_HOME": str(tmp_path),
            "PYTHONPATH": str(REPO_ROOT),
        },
    )
    output = result.stdout + result.stderr
    assert result.returncode != 0
    assert "InvalidCubeConfig" in output and f"{path}: cubes[0].temporal.foo: " in output
    assert not (tmp_path / "data").exists()
