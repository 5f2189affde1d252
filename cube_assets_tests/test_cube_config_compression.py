"""The cube's ``compression``: the codec of its merges' and composites' COGs, checked when the file loads."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest

from cube_assets.cube_config import load_project_config
from cube_assets.errors import InvalidCubeConfig
from cube_assets.raster.codecs import DEFAULT_COMPRESSION
from cube_assets_tests.conftest import SMALL_CUBE, SMALL_SIMULATOR, write_cube_file


def test_a_cube_without_compression_gets_the_measured_default(tmp_path: Path) -> None:
    config = load_project_config(write_cube_file(tmp_path, copy.deepcopy(SMALL_CUBE), [SMALL_SIMULATOR]))

    assert config.cubes[0].compression == DEFAULT_COMPRESSION


def test_compression_is_read_in_any_case(tmp_path: Path) -> None:
    cube = {**copy.deepcopy(SMALL_CUBE), "compression": "lerc_zstd"}

    config = load_project_config(write_cube_file(tmp_path, cube, [SMALL_SIMULATOR]))

    assert config.cubes[0].compression == "LERC_ZSTD"


def test_an_unknown_compression_names_the_file_the_field_and_the_choices(tmp_path: Path) -> None:
    cube = {**copy.deepcopy(SMALL_CUBE), "compression": "JPEG"}
    path = write_cube_file(tmp_path, cube, [SMALL_SIMULATOR])

    with pytest.raises(
        InvalidCubeConfig, match=r"cubes\[0\]\.compression: .*'JPEG' is not one of DEFLATE, ZSTD"
    ) as info:
        load_project_config(path)
    assert str(path) in str(info.value)
