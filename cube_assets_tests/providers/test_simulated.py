"""The ``simulator`` driver's options: the bands its products hold, and bad options refused when the cube file loads."""

from __future__ import annotations

import copy

import pytest

from cube_assets.cube_config import load_project_config
from cube_assets.errors import InvalidCubeConfig, ProviderError
from cube_assets.formats.simulator import DEFAULT_BANDS
from cube_assets.providers.simulated import SimulatorProvider, simulated_scenes
from cube_assets_tests.conftest import SMALL_CUBE, SMALL_SIMULATOR, write_cube_file


def _options(**changes: object) -> dict:
    options = copy.deepcopy(SMALL_SIMULATOR["options"])
    options.update(changes)
    return options


def test_products_hold_the_listed_bands_and_scl_only(tmp_path):
    scenes = simulated_scenes(_options(bands=["B04", "B08"]))
    assert [scene.bands for scene in scenes] == [("B04", "B08")] * 4
    SimulatorProvider(tmp_path / "archive", scenes[:1])._ensure_archive()
    product = next((tmp_path / "archive").glob("*.SAFE"))
    images = sorted(p.name.split("_")[-2] for p in product.rglob("IMG_DATA/*/*.jp2"))
    assert images == ["B04", "B08", "SCL"]
    # Without red, green and blue there is no preview to render.
    assert not list(product.rglob("QI_DATA/*_PVI.jp2"))


def test_products_hold_the_six_default_bands_without_the_option():
    assert simulated_scenes(_options())[0].bands == DEFAULT_BANDS == ("B02", "B03", "B04", "B08", "B8A", "B11")


@pytest.mark.parametrize(
    ("bands", "message"),
    [
        ("B04", r"simulator option 'bands': expected a list of band names"),
        ([], r"simulator option 'bands': give at least one band"),
        (["B04", 8], r"simulator option 'bands': expected a list"),
        (["B04", "B99"], r"cannot simulate bands \['B99'\]"),
    ],
)
def test_bad_bands_are_refused(bands, message):
    with pytest.raises(ProviderError, match=message):
        simulated_scenes(_options(bands=bands))


def test_bad_simulator_options_are_refused_when_the_cube_file_loads(tmp_path):
    simulator = {**SMALL_SIMULATOR, "options": _options(bands=["B04", "B99"])}
    path = write_cube_file(tmp_path, SMALL_CUBE, [simulator])
    with pytest.raises(InvalidCubeConfig, match=r"providers\[0\]\.options: .*cannot simulate bands \['B99'\]"):
        load_project_config(path)


def test_an_acquisition_without_a_datetime_is_named(tmp_path):
    options = _options(acquisitions=[{"cloud_fraction": 0.2}])
    path = write_cube_file(tmp_path, SMALL_CUBE, [{**SMALL_SIMULATOR, "options": options}])
    message = r"providers\[0\]\.options: simulator acquisition \{'cloud_fraction': 0\.2\}"
    with pytest.raises(InvalidCubeConfig, match=message):
        load_project_config(path)
