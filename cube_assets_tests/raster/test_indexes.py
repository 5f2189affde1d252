"""Band indexes: whitelist checks before evaluation, masking, rounding and clipping."""

from __future__ import annotations

import numpy as np
import pytest

from cube_assets.errors import InvalidExpression, InvalidRaster
from cube_assets.raster.indexes import compile_expression, evaluate_index, round_into_dtype

BANDS = ["blue", "red", "nir", "swir16"]
NDVI = "10000*(nir-red)/(nir+red)"
EVI = "10000*2.5*(nir-red)/(nir+6*red-7.5*blue+10000)"


def test_ndvi_values():
    compiled = compile_expression(NDVI, BANDS)
    nir = np.array([[3000, 500, 4000]], dtype=np.int16)
    red = np.array([[1000, 1500, 4000]], dtype=np.int16)
    result = evaluate_index(compiled, {"nir": nir, "red": red}, -9999)
    assert result.dtype == np.int16
    assert result.tolist() == [[5000, -5000, 0]]


def test_evi_values():
    compiled = compile_expression(EVI, BANDS)
    bands = {
        "blue": np.array([400], dtype=np.int16),
        "red": np.array([600], dtype=np.int16),
        "nir": np.array([3000], dtype=np.int16),
    }
    # 25000 * 2400 / (3000 + 3600 - 3000 + 10000) = 60_000_000 / 13600 = 4411.76
    assert evaluate_index(compiled, bands, -9999).tolist() == [4412]


def test_band_names_lists_only_used_bands_in_order_of_use():
    assert compile_expression(EVI, BANDS).band_names == ("nir", "red", "blue")


def test_nodata_in_any_used_band_gives_out_nodata():
    compiled = compile_expression(NDVI, BANDS)
    nir = np.array([3000, -9999, 3000], dtype=np.int16)
    red = np.array([1000, 1000, 0], dtype=np.int16)
    result = evaluate_index(compiled, {"nir": nir, "red": red}, {"nir": -9999, "red": 0})
    assert result.tolist() == [5000, -9999, -9999]


def test_division_by_zero_gives_out_nodata():
    compiled = compile_expression(NDVI, BANDS)
    zero = np.array([0, 0], dtype=np.int16)
    result = evaluate_index(compiled, {"nir": zero, "red": zero}, None)
    assert result.tolist() == [-9999, -9999]


def test_non_finite_results_give_out_nodata():
    compiled = compile_expression("log(nir - red) + sqrt(red - 5)", BANDS)
    bands = {"nir": np.array([1.0, 10.0, np.e + 9]), "red": np.array([9.0, 9.0, 9.0])}
    assert evaluate_index(compiled, bands, None).tolist() == [-9999, 2, 3]


def test_results_clip_to_dtype_instead_of_wrapping():
    compiled = compile_expression("nir * 1000", BANDS)
    nir = np.array([100, -100, 5], dtype=np.int16)
    assert evaluate_index(compiled, {"nir": nir}, None).tolist() == [32767, -32768, 5000]


def test_valid_pixel_never_equals_out_nodata_at_dtype_minimum():
    compiled = compile_expression("nir * 1000", BANDS)
    result = evaluate_index(compiled, {"nir": np.array([-100, 0])}, 0, out_nodata=-32768)
    assert result.tolist() == [-32767, -32768]


def test_valid_pixel_never_equals_interior_out_nodata():
    compiled = compile_expression("nir - 10000", BANDS)
    assert evaluate_index(compiled, {"nir": np.array([1.0, 5.0])}, None).tolist() == [-9998, -9995]


def test_rounding_is_to_nearest():
    compiled = compile_expression("nir / 4", BANDS)
    assert evaluate_index(compiled, {"nir": np.array([5, 7, -7])}, None).tolist() == [1, 2, -2]


def test_float_output_keeps_fraction():
    compiled = compile_expression("nir / 4", BANDS)
    result = evaluate_index(compiled, {"nir": np.array([5, 0])}, 0, out_dtype=np.float32, out_nodata=np.nan)
    assert result.dtype == np.float32
    assert result[0] == pytest.approx(1.25)
    assert np.isnan(result[1])


def test_whitelisted_functions_and_comparisons():
    expression = (
        "where(nir > red, maximum(nir, red), minimum(nir, red)) + clip(abs(-red), 0, 5) + exp(0*nir) - (0 < red < 3)"
    )
    compiled = compile_expression(expression, BANDS)
    bands = {"nir": np.array([10.0, 1.0]), "red": np.array([2.0, 7.0])}
    # [10 + 2 + 1 - 1, 1 + 5 + 1 - 0]
    assert evaluate_index(compiled, bands, None).tolist() == [12, 7]


def test_unary_minus_and_power():
    compiled = compile_expression("-nir ** 2 + (-red) ** 2", BANDS)
    assert evaluate_index(compiled, {"nir": np.array([3]), "red": np.array([4])}, None).tolist() == [7]


@pytest.mark.parametrize(
    ("expression", "fragment"),
    [
        ("__import__('os')", "call of __import__ is not allowed"),
        ("nir.__class__", "attribute access is not allowed: 'nir.__class__'"),
        ("red[0]", "subscript is not allowed: 'red[0]'"),
        ("lambda: 1", "lambda is not allowed"),
        ("foo + 1", "unknown name (bands: blue, nir, red, swir16): 'foo'"),
        ("__builtins__", "dunder name is not allowed: '__builtins__'"),
        ("np.sqrt(nir)", "only plain function names may be called: 'np.sqrt'"),
        ("open('x')", "call of open is not allowed"),
        ("sqrt(x=nir)", "keyword arguments are not allowed"),
        ("maximum(*nir)", "starred arguments are not allowed"),
        ("sqrt(nir, red)", "sqrt takes 1 argument(s), got 2"),
        ("[n for n in nir]", "comprehension is not allowed"),
        ("'nir' + red", "string is not allowed: \"'nir'\""),
        ("nir and red", "boolean operator"),
        ("nir // red", "operator FloorDiv is not allowed"),
        ("nir if red else 1", "conditional expression"),
        ("(x := nir)", "assignment expression"),
        ("sqrt + nir", "function sqrt must be called"),
        ("nir in red", "comparison In is not allowed"),
        ("True * nir", "constant of type bool is not allowed"),
        ("nir +", "syntax error"),
        ("import os", "syntax error"),
        ("2 + 3", "uses no band"),
        ("nir * 1" + "0" * 400, "constant is too large"),
    ],
)
def test_forbidden_expressions_are_rejected_naming_the_part(expression, fragment):
    with pytest.raises(InvalidExpression) as error:
        compile_expression(expression, BANDS)
    message = str(error.value)
    assert repr(expression) in message or expression[:20] in message
    assert fragment in message


def test_whole_tree_is_checked_even_after_an_allowed_part():
    with pytest.raises(InvalidExpression, match="attribute access is not allowed: 'red.real'"):
        compile_expression("sqrt(nir) + red.real", BANDS)


def test_evaluate_rejects_missing_band():
    compiled = compile_expression(NDVI, BANDS)
    with pytest.raises(InvalidRaster, match="band 'red' is missing"):
        evaluate_index(compiled, {"nir": np.ones(3)}, None)


def test_evaluate_rejects_shape_mismatch():
    compiled = compile_expression(NDVI, BANDS)
    with pytest.raises(InvalidRaster, match=r"band 'red' has shape \(2,\), expected \(3,\)"):
        evaluate_index(compiled, {"nir": np.ones(3), "red": np.ones(2)}, None)


def test_evaluate_rejects_nodata_mapping_without_used_band():
    compiled = compile_expression(NDVI, BANDS)
    with pytest.raises(InvalidRaster, match="no nodata entry for band 'red'"):
        evaluate_index(compiled, {"nir": np.ones(3), "red": np.ones(3)}, {"nir": 0})


def test_round_into_dtype_rejects_nodata_outside_dtype():
    with pytest.raises(InvalidRaster, match="nodata 300 cannot be stored in uint8"):
        round_into_dtype(np.ones(2), np.ones(2, dtype=bool), np.uint8, 300)
