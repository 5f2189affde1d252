"""Hostile band-index expressions: oversized trees, overflowing constants, look-alike letters, overflow at run time.

Compile-time refusals must be ``InvalidExpression`` naming the expression (its first 200
characters) and the offending part, never a ``RecursionError`` later. Run-time overflow (``exp``
of a reflectance) is measured on real GeoTIFFs written with rasterio, and through a real
materialization of the small simulated cube, whose ``scene_cog`` and ``period_blend`` metadata
must say how many pixels each index turned into nodata.
"""

from __future__ import annotations

import ast
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import rasterio
from dagster import AssetKey, instance_for_test, materialize
from rasterio.transform import from_origin

from cube_assets.assets import build_cube_assets
from cube_assets.cube_config import load_project_config
from cube_assets.definitions import build_definitions
from cube_assets.errors import InvalidExpression
from cube_assets.partitions import partition_key
from cube_assets.raster.indexes import (
    MAX_EXPONENT,
    MAX_EXPRESSION_DEPTH,
    MAX_EXPRESSION_LENGTH,
    MAX_EXPRESSION_NODES,
    compile_expression,
    evaluate_index,
    write_index,
)
from cube_assets.storage.layout import manifest_key
from cube_assets_tests.conftest import SMALL_CUBE, SMALL_SIMULATOR, write_cube_file

BANDS = ("nir", "red", "blue")
NODATA = -9999


def assert_refusal(error: pytest.ExceptionInfo[BaseException], expression: str, *fragments: str) -> str:
    """The refusal is an InvalidExpression quoting the expression's start, short, with each fragment."""
    assert type(error.value) is InvalidExpression
    message = str(error.value)
    assert repr(expression[:40])[:-1] in message
    assert len(message) < 700
    for fragment in fragments:
        assert fragment in message
    return message


def _balanced_sum(leaves: int) -> str:
    terms = ["nir"] * leaves
    while len(terms) > 1:
        terms = [f"({a}+{b})" for a, b in zip(terms[::2], terms[1::2], strict=False)] + (
            [terms[-1]] if len(terms) % 2 else []
        )
    return terms[0]


# --------------------------------------------------------------------------------- size

OVERSIZED = [
    ("1000-term sum", "+".join(["nir"] * 1000), "nested more than"),
    ("33-term sum", "+".join(["nir"] * 33), f"nested more than {MAX_EXPRESSION_DEPTH} deep"),
    ("2000 unary minus", "-" * 2000 + "nir", "nested"),
    ("4000 unary minus, beyond the parser", "-" * 4000 + "nir", "nested"),
    ("250 nested parentheses", "(" * 250 + "nir" + ")" * 250, "syntax error"),
    ("33 nested sqrt", "sqrt(" * 33 + "nir" + ")" * 33, f"nested more than {MAX_EXPRESSION_DEPTH} deep"),
    ("balanced tree of 300 leaves", _balanced_sum(300), f"more than {MAX_EXPRESSION_NODES} nodes"),
    ("source beyond the length limit", "nir" + " " * MAX_EXPRESSION_LENGTH, f"at most {MAX_EXPRESSION_LENGTH}"),
]


@pytest.mark.parametrize(("case", "expression", "fragment"), OVERSIZED, ids=[case for case, _, _ in OVERSIZED])
def test_oversized_expression_is_refused_at_compile_time(case: str, expression: str, fragment: str) -> None:
    with pytest.raises(InvalidExpression) as error:
        compile_expression(expression, BANDS)

    assert_refusal(error, expression, fragment)


def test_sum_at_the_depth_limit_evaluates_exactly() -> None:
    compiled = compile_expression("+".join(["nir"] * MAX_EXPRESSION_DEPTH), BANDS)

    result = evaluate_index(compiled, {"nir": np.array([1, 7, 1000])}, None)

    assert result.tolist() == [MAX_EXPRESSION_DEPTH, 7 * MAX_EXPRESSION_DEPTH, 32000]


def test_tree_at_the_node_limit_evaluates_exactly() -> None:
    leaves = (MAX_EXPRESSION_NODES + 1) // 2  # a sum of n leaves has 2n - 1 nodes
    expression = _balanced_sum(leaves)

    result = evaluate_index(compile_expression(expression, BANDS), {"nir": np.array([3, -2])}, None)

    assert result.tolist() == [3 * leaves, -2 * leaves]


def test_expression_of_the_longest_source_compiles() -> None:
    expression = "nir" + " " * (MAX_EXPRESSION_LENGTH - 3)

    assert compile_expression(expression, BANDS).band_names == ("nir",)


# --------------------------------------------------------------------------- constants

OVERFLOWING = [
    ("9**9**9 + nir", "9**9**9", "not a finite float64"),
    ("nir * 1e400", "1e400", "too large for float64"),
    ("nir + 1e308 * 10", "1e308 * 10", "not a finite float64"),
    ("nir + 1/0", "1/0", "not a finite float64"),
    ("nir + log(0)", "log(0)", "not a finite float64"),
    ("sqrt(-1) + nir", "sqrt(-1)", "not a finite float64"),
    ("exp(1000) * nir", "exp(1000)", "not a finite float64"),
    ("nir ** 100", "nir ** 100", "exponent 100"),
    ("nir ** -(2**7)", "nir ** -(2**7)", "exponent -128"),
    ("red ** (3 * 30)", "red ** (3 * 30)", "exponent 90"),
]


@pytest.mark.parametrize(("expression", "part", "fragment"), OVERFLOWING, ids=[e for e, _, _ in OVERFLOWING])
def test_constant_overflow_is_refused_at_compile_time_naming_the_part(
    expression: str, part: str, fragment: str
) -> None:
    with pytest.raises(InvalidExpression) as error:
        compile_expression(expression, BANDS)

    assert_refusal(error, expression, fragment, repr(part))


@pytest.mark.parametrize(
    ("expression", "nir", "expected"),
    [
        (f"nir ** {MAX_EXPONENT:g} / nir ** {MAX_EXPONENT - 1:g}", 3.0, 3),
        ("2**100 / 2**90 * nir", 2.0, 2048),
        ("nir * 2**-10", 4096.0, 4),
        ("where(1 < 2, nir, red) + log(1)", 5.0, 5),
    ],
)
def test_finite_constant_parts_are_folded_and_evaluate_exactly(expression: str, nir: float, expected: int) -> None:
    compiled = compile_expression(expression, BANDS)

    assert evaluate_index(compiled, {"nir": np.array([nir]), "red": np.array([1.0])}, None).tolist() == [expected]


# ----------------------------------------------------------------------- look-alike letters

LOOK_ALIKES = [
    ("full-width letters", "ｎｉｒ + red", "ｎ"),
    ("mathematical bold letters", "𝐧𝐢𝐫 - red", "𝐧"),
    ("full-width band after an ASCII one", "nir + ｒｅｄ", "ｒ"),
    ("superscript two", "nir² + red", "²"),
    ("full-width digit", "nir * ２", "２"),
    ("no-break space", "nir +\u00a0red", "\u00a0"),
]


@pytest.mark.parametrize(("case", "expression", "character"), LOOK_ALIKES, ids=[case for case, _, _ in LOOK_ALIKES])
def test_non_ascii_character_is_refused_instead_of_folded_onto_a_band(
    case: str, expression: str, character: str
) -> None:
    with pytest.raises(InvalidExpression) as error:
        compile_expression(expression, ("nir", "red", "nir2"))

    message = assert_refusal(error, expression, "non-ASCII", f"U+{ord(character):04X}")
    assert f"position {expression.index(character)}" in message


def test_python_itself_folds_full_width_letters_onto_ascii_names() -> None:
    # Why the source is checked before parsing: the parser's NFKC would make this "nir".
    assert ast.parse("ｎｉｒ", mode="eval").body.id == "nir"  # type: ignore[attr-defined]  # the parsed body is a Name


# ------------------------------------------------------------------------ run-time overflow


def _write_band(path: Path, values: np.ndarray) -> Path:
    profile = {"driver": "GTiff", "width": values.shape[1], "height": values.shape[0], "count": 1, "dtype": "int16",
               "nodata": NODATA, "crs": "EPSG:32723", "transform": from_origin(200000, 8250000, 10, 10)}  # fmt: skip
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(values.astype(np.int16), 1)
    return path


@pytest.fixture
def reflectance(tmp_path: Path) -> tuple[Path, np.ndarray]:
    """A 100 x 100 nir band with reflectances 0..9999 (a strip of nodata), and its values."""
    nir = np.arange(100 * 100, dtype=np.int64).reshape(100, 100) % 10_000
    nir[:, :3] = NODATA
    inputs = tmp_path / "inputs"
    inputs.mkdir()
    return _write_band(inputs / "nir.tif", nir), nir


def test_exp_of_reflectance_counts_the_pixels_it_turned_into_nodata(
    reflectance: tuple[Path, np.ndarray], tmp_path: Path
) -> None:
    path, nir = reflectance
    out = tmp_path / "out"
    out.mkdir()

    written = write_index(
        compile_expression("exp(nir)", BANDS), {"nir": path}, out / "exp.tif", nodata=NODATA, block_size=64
    )

    valid = nir != NODATA
    with np.errstate(over="ignore"):
        expected = np.exp(nir.astype(np.float64))
    assert written.nodata_pixels == int((valid & ~np.isfinite(expected)).sum()) > 0
    assert written.clipped_pixels == int((valid & np.isfinite(expected) & (expected > 32767)).sum()) > 0
    with rasterio.open(written.path) as src:
        stored = src.read(1)
    assert int((stored == NODATA).sum()) == int((~valid).sum()) + written.nodata_pixels
    assert sorted(p.name for p in out.iterdir()) == ["exp.tif"]


def test_index_without_overflow_counts_no_lost_pixels(reflectance: tuple[Path, np.ndarray], tmp_path: Path) -> None:
    path, _ = reflectance

    written = write_index(compile_expression("nir / 2", BANDS), {"nir": path}, tmp_path / "half.tif", nodata=NODATA)

    assert (written.nodata_pixels, written.clipped_pixels) == (0, 0)


# ------------------------------------------------------------------------- materialization

PARTITION = partition_key("000000", "2024-01-01")
STAGES = ("raw_scene", "surface_reflectance", "scene_cog", "tile_merge", "period_blend")


@pytest.fixture(scope="module")
def materialized(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    """The small simulated cube with an ``exp(nir)`` index, materialized up to ``period_blend``."""
    root = tmp_path_factory.mktemp("overflowing_index")
    cube = {**SMALL_CUBE, "indexes": {**SMALL_CUBE["indexes"], "EXPNIR": "exp(nir)"}}
    config = write_cube_file(root, cube, [SMALL_SIMULATOR])
    assets = [a for a in build_cube_assets(load_project_config(config).cube("small")) if a.key.path[-1] in STAGES]
    (root / "home").mkdir()
    with instance_for_test(temp_dir=str(root / "home")) as instance:
        result = materialize(
            assets,
            partition_key=PARTITION,
            instance=instance,
            resources=build_definitions(config, root / "data").resources,
        )
        assert result.success
        metadata = {
            stage: instance.get_latest_materialization_event(AssetKey(["small", stage])).asset_materialization.metadata
            for stage in ("scene_cog", "period_blend")
        }
    return root / "data", metadata


def _manifest(data: Path, stage: str) -> dict[str, Any]:
    return json.loads((data / manifest_key("small", stage, "000000", "2024-01-01")).read_text())


#: The bands each index of the test cube reads (B08 is nir, B04 red).
INDEX_BANDS = {"NDVI": ("B08", "B04"), "EXPNIR": ("B08",)}


def _nodata_where_inputs_are_valid(bands: dict[str, str], index_path: str, index: str) -> int:
    """Pixels of the written index that are nodata although every band it reads has data there."""
    with rasterio.open(index_path) as src:
        lost = src.read(1) == NODATA
    for band in INDEX_BANDS[index]:
        with rasterio.open(bands[band]) as src:
            lost &= src.read(1) != NODATA
    return int(lost.sum())


def test_scene_cog_metadata_counts_the_pixels_each_index_turned_into_nodata(
    materialized: tuple[Path, dict[str, Any]],
) -> None:
    data, metadata = materialized
    scenes = _manifest(data, "scene_cog")["scenes"]
    recorded = metadata["scene_cog"]["index_pixels"].value

    for scene in scenes:
        for index in ("NDVI", "EXPNIR"):
            expected = _nodata_where_inputs_are_valid(scene["bands"], scene["indexes"][index], index)
            assert recorded[scene["scene_id"]][index]["nodata_pixels"] == expected
    assert all(recorded[s["scene_id"]]["EXPNIR"]["nodata_pixels"] > 0 for s in scenes)
    total = sum(counts["nodata_pixels"] for entry in recorded.values() for counts in entry.values())
    assert metadata["scene_cog"]["index_nodata_pixels"].value == total


def test_period_blend_metadata_counts_the_pixels_each_index_turned_into_nodata(
    materialized: tuple[Path, dict[str, Any]],
) -> None:
    data, metadata = materialized
    composites = _manifest(data, "period_blend")["composites"]
    recorded = metadata["period_blend"]["index_pixels"].value

    assert set(recorded) == set(composites) == {"LCF", "MED", "AVG"}
    for function, composite in composites.items():
        for index in ("NDVI", "EXPNIR"):
            expected = _nodata_where_inputs_are_valid(composite["bands"], composite["bands"][index], index)
            assert recorded[function][index]["nodata_pixels"] == expected
        assert recorded[function]["EXPNIR"]["nodata_pixels"] > 0
    total = sum(counts["nodata_pixels"] for entry in recorded.values() for counts in entry.values())
    assert metadata["period_blend"]["index_nodata_pixels"].value == total


def test_long_sum_is_refused_the_same_way_from_a_deep_call_stack() -> None:
    # How deep Python's parser may go depends on how deep the caller already is: the refusal must
    # not change with it.
    def from_depth(levels: int) -> InvalidExpression:
        if levels:
            return from_depth(levels - 1)
        with pytest.raises(InvalidExpression) as error:
            compile_expression("+".join(["nir"] * 1000), BANDS)
        return error.value

    for levels in (0, sys.getrecursionlimit() - 200):
        assert f"nested more than {MAX_EXPRESSION_DEPTH} deep" in str(from_depth(levels))
