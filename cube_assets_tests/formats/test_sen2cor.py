"""The pure side of Sen2Cor in Docker: image references, the docker command, and the validation
of a produced Level-2A product (small products written by the scene simulator, and the real
T29UNU L2A)."""

from __future__ import annotations

import shutil
from datetime import timedelta
from pathlib import Path

import pytest

from cube_assets.errors import InvalidScene
from cube_assets.formats.sen2cor import (
    DEFAULT_IMAGE,
    DEFAULT_TIMEOUT_SECONDS,
    DEFAULT_VERSIONS,
    L2A_BANDS,
    Sen2CorAttempt,
    Sen2CorError,
    attempts,
    build_docker_command,
    container_name,
    find_l2a_product,
    image_has_tag,
    image_reference,
    l2a_name_pattern,
    validate_l2a_product,
)
from cube_assets.formats.sentinel2_safe import parse_product_metadata
from cube_assets.formats.simulator import simulate_l2a_product

DATA_FILES = "stactools-sentinel2/tests/data-files"
T46RER = "S2A_MSIL1C_20210908T042701_N0301_R133_T46RER_20210908T070248.SAFE"
T01LAC = "S2A_MSIL1C_20200717T221941_R029_T01LAC_20200717T234135.SAFE"


# -- images and tags ---------------------------------------------------------------------------


def test_defaults_are_the_documented_versions_and_timeout() -> None:
    assert DEFAULT_IMAGE == "brazildatacube/sen2cor"
    assert DEFAULT_VERSIONS == ("2.11.0", "2.10.0", "2.8.0", "2.5.5")
    assert DEFAULT_TIMEOUT_SECONDS == 5400


def test_an_untagged_image_is_tried_with_every_version_in_order() -> None:
    assert attempts("brazildatacube/sen2cor", DEFAULT_VERSIONS) == [
        Sen2CorAttempt("2.11.0", "brazildatacube/sen2cor:2.11.0"),
        Sen2CorAttempt("2.10.0", "brazildatacube/sen2cor:2.10.0"),
        Sen2CorAttempt("2.8.0", "brazildatacube/sen2cor:2.8.0"),
        Sen2CorAttempt("2.5.5", "brazildatacube/sen2cor:2.5.5"),
    ]


@pytest.mark.parametrize(
    ("image", "expected"),
    [
        ("brazildatacube/sen2cor", "brazildatacube/sen2cor:2.10.0"),
        ("brazildatacube/sen2cor:2.11.0", "brazildatacube/sen2cor:2.11.0"),
        ("localhost:5000/sen2cor", "localhost:5000/sen2cor:2.10.0"),  # the colon is the registry's port
        ("localhost:5000/sen2cor:custom", "localhost:5000/sen2cor:custom"),
        ("sen2cor@sha256:0123abcd", "sen2cor@sha256:0123abcd"),
    ],
)
def test_a_tag_is_appended_only_when_the_reference_has_none(image: str, expected: str) -> None:
    assert image_reference(image, "2.10.0") == expected
    assert image_has_tag(expected)


def test_a_tagged_image_is_one_attempt_with_the_tag_as_version() -> None:
    assert attempts("brazildatacube/sen2cor:2.8.0", DEFAULT_VERSIONS) == [
        Sen2CorAttempt("2.8.0", "brazildatacube/sen2cor:2.8.0")
    ]


def test_a_tag_that_is_no_version_uses_the_first_configured_version() -> None:
    assert attempts("registry.local:5000/sen2cor:latest", ["2.10.0", "2.8.0"]) == [
        Sen2CorAttempt("2.10.0", "registry.local:5000/sen2cor:latest")
    ]


@pytest.mark.parametrize(
    ("image", "versions", "message"),
    [
        ("brazildatacube/sen2cor", [], "no versions configured"),
        ("brazildatacube/sen2cor", ["latest"], "'latest' is not of the form"),
        ("brazildatacube/sen2cor", ["2.11.0", "2.11.0"], "versions repeat"),
        ("", ["2.11.0"], "empty or contains whitespace"),
        ("sen2cor 2.11", ["2.11.0"], "empty or contains whitespace"),
    ],
)
def test_bad_images_and_versions_are_refused(image: str, versions: list[str], message: str) -> None:
    with pytest.raises(Sen2CorError, match=message):
        attempts(image, versions)


# -- the docker command ------------------------------------------------------------------------


def test_the_docker_command_mounts_input_output_cci_and_gipp(tmp_path: Path) -> None:
    l1c = tmp_path / "in" / T46RER
    command = build_docker_command(
        docker="/usr/bin/docker",
        reference="brazildatacube/sen2cor:2.10.0",
        version="2.10.0",
        l1c_path=l1c,
        output_dir=tmp_path / "out",
        name="sen2cor-x",
        cci_dir=tmp_path / "CCI4SEN2COR",
        gipp_path=tmp_path / "L2A_GIPP.xml",
    )

    assert command == [
        "/usr/bin/docker", "run", "--rm", "--name", "sen2cor-x",
        "--volume", f"{tmp_path / 'in'}:/mnt/input-dir:ro",
        "--volume", f"{tmp_path / 'out'}:/mnt/output-dir:rw",
        "--volume", f"{tmp_path / 'CCI4SEN2COR'}:/mnt/aux_data:ro",
        "--volume", f"{tmp_path / 'L2A_GIPP.xml'}:/opt/sen2cor/2.10.0/cfg/L2A_GIPP.xml:ro",
        "brazildatacube/sen2cor:2.10.0", T46RER,
    ]  # fmt: skip


def test_without_auxiliary_data_only_input_and_output_are_mounted(tmp_path: Path) -> None:
    command = build_docker_command(
        docker="docker",
        reference="img:2.5.5",
        version="2.5.5",
        l1c_path=tmp_path / T46RER,
        output_dir=tmp_path / "out",
        name="n",
        user="1000:1000",
    )

    assert command.count("--volume") == 2
    assert command[command.index("--user") + 1] == "1000:1000"


@pytest.mark.parametrize(
    ("l1c", "output", "message"),
    [
        (Path("relative") / T46RER, Path("/out"), "absolute host path"),
        (Path("/data/a:b") / T46RER, Path("/out"), "':' or ','"),
        (Path("/in") / T46RER, Path("/out,put"), "':' or ','"),
        (Path("/in/product"), Path("/out"), "needs a Level-1C .SAFE"),
    ],
)
def test_paths_docker_cannot_mount_are_refused(l1c: Path, output: Path, message: str) -> None:
    with pytest.raises(Sen2CorError, match=message):
        build_docker_command(
            docker="docker", reference="i:1.0", version="1.0", l1c_path=l1c, output_dir=output, name="n"
        )


def test_the_container_name_says_which_scene_and_is_docker_safe() -> None:
    name = container_name(T46RER.removesuffix(".SAFE"), "2.11.0", "a1b2c3d4")

    assert name == "sen2cor-T46RER-20210908T042701-2.11.0-a1b2c3d4"
    assert container_name("weird name/with:chars", "2.11.0", "x") == "sen2cor-weird-name-with-chars-2.11.0-x"


# -- finding and validating the produced product ------------------------------------------------


@pytest.fixture(scope="module")
def l1c(real_data: Path):
    return parse_product_metadata(real_data / DATA_FILES / T46RER)


def _l2a_of(l1c, folder: Path, **overrides) -> Path:
    """A small Level-2A product of ``l1c`` (what a Sen2Cor run would write), by the simulator."""
    arguments = dict(
        tile_id=l1c.tile_id,
        epsg=32646,
        ulx=499980,
        uly=3100020,
        size_px=60,
        sensing_time=l1c.sensing_time,
        seed=3,
        bands=L2A_BANDS,
        cloud_fraction=0.2,
        swath_edge=False,
        spacecraft=l1c.spacecraft,
        relative_orbit=133,
    )
    return simulate_l2a_product(folder, **{**arguments, **overrides})


@pytest.fixture(scope="module")
def l2a_template(l1c, tmp_path_factory) -> Path:
    return _l2a_of(l1c, tmp_path_factory.mktemp("l2a"))


@pytest.fixture
def l2a(l2a_template: Path, tmp_path: Path) -> Path:
    """A fresh copy of the small L2A product, free to break."""
    return Path(shutil.copytree(l2a_template, tmp_path / l2a_template.name))


def test_the_l2a_name_is_matched_by_spacecraft_sensing_time_and_tile(real_data: Path, l1c) -> None:
    assert l2a_name_pattern(l1c) == "S2A_MSIL2A_20210908T042701_*_T46RER_*.SAFE"
    # the shortened folder name lacks Nxxxx; the pattern comes from PRODUCT_URI
    assert l2a_name_pattern(parse_product_metadata(real_data / DATA_FILES / T01LAC)) == (
        "S2A_MSIL2A_20200717T221941_*_T01LAC_*.SAFE"
    )


def test_a_complete_product_validates(l1c, l2a: Path) -> None:
    product = validate_l2a_product(l2a, l1c)

    assert product.metadata.product_type == "L2A"
    assert set(L2A_BANDS) | {"SCL"} <= set(product.band_files)


def test_the_product_is_found_among_other_files(l1c, l2a: Path, tmp_path: Path) -> None:
    (tmp_path / "sen2cor.log").write_text("log")
    (tmp_path / f".{l2a.name}.tmp").mkdir()

    assert find_l2a_product(tmp_path, l1c) == l2a
    assert find_l2a_product(tmp_path / "nowhere", l1c) is None


def test_two_products_of_one_scene_are_ambiguous(l1c, l2a: Path, tmp_path: Path) -> None:
    other = tmp_path / l2a.name.replace("N0510", "N9999")
    shutil.copytree(l2a, other)

    with pytest.raises(Sen2CorError, match="several Level-2A products"):
        find_l2a_product(tmp_path, l1c)


def test_a_missing_band_is_named(l1c, l2a: Path) -> None:
    next(l2a.rglob("*_B8A_*.jp2")).unlink()

    with pytest.raises(InvalidScene, match=r"band\(s\) B8A missing"):
        validate_l2a_product(l2a, l1c)


def test_a_missing_scene_classification_is_named(l1c, l2a: Path) -> None:
    for scl in l2a.rglob("*_SCL_*.jp2"):
        scl.unlink()

    with pytest.raises(InvalidScene, match=r"band\(s\) SCL missing"):
        validate_l2a_product(l2a, l1c, expected_bands=["B04"])


def test_a_truncated_band_file_is_caught(l1c, l2a: Path) -> None:
    band = next(l2a.rglob("*_B04_*.jp2"))
    band.write_bytes(band.read_bytes()[:200])

    with pytest.raises(InvalidScene, match=r"band B04 at 10 m .* cannot be read"):
        validate_l2a_product(l2a, l1c)


def test_a_band_off_the_tile_grid_is_caught(l1c, l2a: Path) -> None:
    tile_xml = next(l2a.rglob("MTD_TL.xml"))
    tile_xml.write_text(tile_xml.read_text().replace("<NROWS>60</NROWS>", "<NROWS>64</NROWS>"))

    with pytest.raises(InvalidScene, match=r"is 60×60 px, the tile grid is 64×60"):
        validate_l2a_product(l2a, l1c)


def test_a_product_without_l2a_metadata_is_refused(l1c, l2a: Path) -> None:
    (l2a / "MTD_MSIL2A.xml").unlink()

    with pytest.raises(InvalidScene, match="MTD_MSIL2A.xml missing"):
        validate_l2a_product(l2a, l1c)


def test_a_product_of_another_acquisition_is_refused(l1c, tmp_path: Path) -> None:
    later = _l2a_of(l1c, tmp_path, sensing_time=l1c.sensing_time + timedelta(seconds=5), bands=["B04"])

    with pytest.raises(InvalidScene, match="sensing time .* differs from the L1C's"):
        validate_l2a_product(later, l1c, expected_bands=["B04"])


def test_a_product_of_another_tile_is_refused(l1c, tmp_path: Path) -> None:
    elsewhere = _l2a_of(l1c, tmp_path, tile_id="T46RES", bands=["B04"])

    with pytest.raises(InvalidScene, match="tile T46RES differs from the L1C's T46RER"):
        validate_l2a_product(elsewhere, l1c, expected_bands=["B04"])


def test_the_real_t29unu_product_validates_for_the_bands_it_keeps(t29unu_safe: Path) -> None:
    product = validate_l2a_product(t29unu_safe, expected_bands=["B02", "B03", "B04", "B8A", "B11"])
    assert product.band_files["SCL"].keys() == {20, 60}

    # the sample dropped the 10 m and 20 m bands and most 60 m ones: as a Sen2Cor output it is incomplete
    with pytest.raises(InvalidScene, match=r"band\(s\) B01, B05, B06, B07, B08, B09, B12 missing"):
        validate_l2a_product(t29unu_safe)
