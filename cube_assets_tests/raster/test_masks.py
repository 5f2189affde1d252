"""Quality masks: value rules, Landsat QA_PIXEL bits and confidence rules, RADSAT, rescaling, statistics."""

from __future__ import annotations

import numpy as np
import pytest

from cube_assets.errors import InvalidQualityRule, InvalidRaster
from cube_assets.raster.masks import (
    CMASK_RULES,
    FMASK4_RULES,
    LANDSAT_C2_QA_PIXEL_RULES,
    SCL_RULES,
    ConfidenceRule,
    LandsatQAPixelRules,
    QualityClass,
    ValueMaskRules,
    classify_quality,
    cloud_ratio,
    efficacy,
    extract_bits,
    parse_confidence_rule,
    propagate_spectral_nodata,
    radsat_saturated,
    rescale_landsat_c2,
    rules_from_config,
)

N, C, X, S = QualityClass.NODATA, QualityClass.CLEAR, QualityClass.NOT_CLEAR, QualityClass.SATURATED


def test_quality_class_codes_are_fixed_uint8_values():
    assert [int(k) for k in (N, C, X, S)] == [0, 1, 2, 3]


def test_scl_classes_every_code():
    scl = np.arange(12, dtype=np.uint8)
    expected = [N, S, X, X, C, C, C, X, X, X, X, X]
    result = classify_quality(scl, SCL_RULES)
    assert result.dtype == np.uint8
    assert result.tolist() == expected


def test_fmask4_classes_every_code():
    fmask = np.array([0, 1, 2, 3, 4, 255], dtype=np.uint8)
    assert classify_quality(fmask, FMASK4_RULES).tolist() == [C, C, X, X, X, N]


def test_cmask_classes_every_code():
    cmask = np.array([[127, 255, 0]], dtype=np.uint8)
    assert classify_quality(cmask, CMASK_RULES).tolist() == [[C, X, N]]


def test_values_not_in_any_list_are_not_clear():
    assert classify_quality(np.array([12, 200], dtype=np.uint8), SCL_RULES).tolist() == [X, X]


def test_value_rules_from_config_accept_single_nodata_and_optional_saturated():
    rules = ValueMaskRules.from_config({"clear": [4, 5], "not_clear": [9], "nodata": 0})
    assert rules == ValueMaskRules(clear=(4, 5), not_clear=(9,), saturated=(), nodata=(0,))
    assert rules.quality_nodata == 0


def test_rules_from_config_builds_value_rules():
    config = {"kind": "values", "clear": [4, 5, 6], "not_clear": [2, 3], "saturated": [1], "nodata": 0}
    rules = rules_from_config(config)
    assert classify_quality(np.array([0, 1, 2, 4, 7]), rules).tolist() == [N, S, X, C, X]


@pytest.mark.parametrize(
    ("preset", "expected"),
    [
        ("scl", SCL_RULES),
        ("fmask4", FMASK4_RULES),
        ("cmask", CMASK_RULES),
        ("landsat_c2_qa_pixel", LANDSAT_C2_QA_PIXEL_RULES),
    ],
)
def test_rules_from_config_presets(preset, expected):
    assert rules_from_config({"preset": preset}) == expected


def test_rules_from_config_builds_landsat_rules_with_confidence():
    rules = rules_from_config({"kind": "landsat_qa_pixel", "confidence": ["cloud >= MEDIUM", "shadow == HIGH"]})
    assert rules == LandsatQAPixelRules(
        confidence=(ConfidenceRule("cloud", ">=", 2), ConfidenceRule("shadow", "==", 3))
    )


@pytest.mark.parametrize(
    ("config", "fragment"),
    [
        ({"preset": "sen2cor"}, "unknown preset 'sen2cor'"),
        ({"preset": "scl", "clear": [1]}, "cannot be combined with ['clear']"),
        ({"kind": "bits"}, "unknown kind 'bits'"),
        ({"kind": "values", "clear": [1], "nodata": 0}, "missing key(s) ['not_clear']"),
        ({"kind": "values", "clear": [1], "not_clear": [2], "nodata": 0, "cloudy": [3]}, "unknown key(s) ['cloudy']"),
        ({"kind": "values", "clear": [1, "2"], "not_clear": [3], "nodata": 0}, "'2' is not an integer"),
        ({"kind": "values", "clear": [1, 2], "not_clear": [2], "nodata": 0}, "quality code 2 is listed both"),
        ({"kind": "values", "clear": [1], "not_clear": [2], "nodata": []}, "at least one nodata code"),
        ({"kind": "landsat_qa_pixel", "confidence": ["haze > LOW"]}, "unknown field 'haze'"),
    ],
)
def test_rules_from_config_rejects_bad_config(config, fragment):
    with pytest.raises(InvalidQualityRule) as error:
        rules_from_config(config)
    assert fragment in str(error.value)


def test_qa_pixel_22080_is_clear_without_rules():
    assert classify_quality(np.array([22080], dtype=np.uint16), LandsatQAPixelRules()).tolist() == [C]


def test_qa_pixel_22080_is_masked_with_cloud_equal_medium():
    rules = LandsatQAPixelRules(confidence=("cloud == MEDIUM",))
    assert classify_quality(np.array([22080], dtype=np.uint16), rules).tolist() == [X]


def test_qa_pixel_22080_stays_clear_when_confidence_rule_does_not_match():
    rules = LandsatQAPixelRules(confidence=("cloud == HIGH", "snow >= MEDIUM"))
    assert classify_quality(np.array([22080], dtype=np.uint16), rules).tolist() == [C]


def test_qa_pixel_fill_value_is_nodata():
    assert classify_quality(np.array([1], dtype=np.uint16), LandsatQAPixelRules()).tolist() == [N]


@pytest.mark.parametrize("bit", [1, 2, 3, 4])
def test_qa_pixel_not_clear_bits_win_over_clear_bit(bit):
    value = (1 << 6) | (1 << bit)
    assert classify_quality(np.array([value], dtype=np.uint16), LandsatQAPixelRules()).tolist() == [X]


def test_qa_pixel_water_bit_is_clear():
    assert classify_quality(np.array([1 << 7], dtype=np.uint16), LandsatQAPixelRules()).tolist() == [C]


def test_qa_pixel_without_clear_or_cloud_bits_is_not_clear():
    snow_only = 1 << 5
    assert classify_quality(np.array([0, snow_only], dtype=np.uint16), LandsatQAPixelRules()).tolist() == [X, X]


def test_qa_pixel_fill_wins_over_confidence_rules():
    rules = LandsatQAPixelRules(confidence=("cloud < LOW",))  # matches value 1 (cloud confidence 0)
    assert classify_quality(np.array([1], dtype=np.uint16), rules).tolist() == [N]


@pytest.mark.parametrize(("rule", "first_bit"), [("cloud", 8), ("shadow", 10), ("snow", 12), ("cirrus", 14)])
def test_confidence_rules_read_their_own_bit_pair(rule, first_bit):
    clear_high = (1 << 6) | (3 << first_bit)
    clear_low = (1 << 6) | (1 << first_bit)
    rules = LandsatQAPixelRules(confidence=(f"{rule} > MEDIUM",))
    quality = np.array([clear_high, clear_low], dtype=np.uint16)
    assert classify_quality(quality, rules).tolist() == [X, C]


@pytest.mark.parametrize(
    ("op", "expected"),
    [
        ("==", [C, C, X, C]),
        ("!=", [X, X, C, X]),
        ("<", [X, X, C, C]),
        ("<=", [X, X, X, C]),
        (">", [C, C, C, X]),
        (">=", [C, C, X, X]),
    ],
)
def test_confidence_operators(op, expected):
    quality = np.array([(1 << 6) | (level << 8) for level in range(4)], dtype=np.uint16)
    rules = LandsatQAPixelRules(confidence=(f"cloud {op} MEDIUM",))
    assert classify_quality(quality, rules).tolist() == expected


def test_confidence_rule_parses_without_spaces_and_in_lower_case():
    assert parse_confidence_rule("Cirrus>=high") == ConfidenceRule("cirrus", ">=", 3)
    assert parse_confidence_rule("cloud != 1") == ConfidenceRule("cloud", "!=", 1)


@pytest.mark.parametrize(
    ("rule", "fragment"),
    [
        ("clouds >= MEDIUM", "unknown field 'clouds'"),
        ("cloud => MEDIUM", "unknown operator '='"),
        ("cloud = MEDIUM", "unknown operator '='"),
        ("cloud >= SEVERE", "unknown level 'SEVERE'"),
        ("cloud >= 4", "unknown level '4'"),
        ("cloud >=", "missing level"),
        ("cloud", "missing operator"),
        ("", "empty"),
        ("cloud >= MEDIUM or 1", "unexpected trailing part 'or 1'"),
        ("__import__('os').system('x')", "unknown field '__import__'"),
    ],
)
def test_bad_confidence_rules_name_rule_and_bad_part(rule, fragment):
    with pytest.raises(InvalidQualityRule) as error:
        parse_confidence_rule(rule)
    assert repr(rule) in str(error.value)
    assert fragment in str(error.value)


def test_confidence_rule_is_never_evaluated(monkeypatch):
    import builtins

    def forbidden(*args, **kwargs):
        raise AssertionError("eval called")

    monkeypatch.setattr(builtins, "eval", forbidden)
    assert parse_confidence_rule("snow <= LOW") == ConfidenceRule("snow", "<=", 1)


def test_qa_pixel_rejects_float_quality():
    with pytest.raises(InvalidRaster, match="float64"):
        classify_quality(np.array([22080.0]), LandsatQAPixelRules())


def test_extract_bits_1_to_7_of_1026_is_1():
    assert extract_bits(np.array([1026], dtype=np.uint16), 1, 7).tolist() == [1]


def test_extract_bits_reads_signed_values_by_bit_pattern():
    assert extract_bits(np.array([-1], dtype=np.int16), 14, 15).tolist() == [3]


def test_extract_bits_rejects_range_outside_dtype():
    with pytest.raises(InvalidQualityRule, match="8..9 is not within 0..7"):
        extract_bits(np.array([1], dtype=np.uint8), 8, 9)


def test_radsat_saturated_when_any_bit_1_to_7_set():
    qa = np.array([0, 1, 2, 128, 256, 1026], dtype=np.uint16)
    assert radsat_saturated(qa).tolist() == [False, False, True, True, False, True]


def test_rescale_landsat_c2_gives_reflectance_times_10000():
    dn = np.array([7273, 10000, 43636, 0], dtype=np.uint16)
    # 7273*2.75e-5-0.2 = 0.0000075 -> 0; 10000 -> 0.075 -> 750; 43636 -> 1.0 -> 9999.9 -> 10000; 0 is nodata
    assert rescale_landsat_c2(dn).tolist() == [0, 750, 10000, -9999]


def test_rescale_landsat_c2_clips_to_0_10000():
    # DN 1 -> -0.19997 -> -2000 below 0; DN 65535 -> 1.602 -> 16022 above 10000.
    dn = np.array([1, 65535, 7273, 43636], dtype=np.uint16)
    assert rescale_landsat_c2(dn).tolist() == [0, 10000, 0, 10000]


def test_rescale_landsat_c2_with_nodata_0_stores_clipped_zero_as_1():
    dn = np.array([1, 0, 10000], dtype=np.uint16)
    assert rescale_landsat_c2(dn, nodata_out=0).tolist() == [1, 0, 750]


def test_rescale_landsat_c2_without_range_clips_to_dtype_instead_of_wrapping():
    dn = np.array([65535, 1], dtype=np.uint16)
    out = rescale_landsat_c2(dn, scale=1.0, offset=0.0, valid_range=None)
    assert out.tolist() == [32767, 10000]


def test_rescale_landsat_c2_never_produces_nodata_at_dtype_minimum():
    dn = np.array([1, 0], dtype=np.uint16)
    out = rescale_landsat_c2(dn, scale=1.0, offset=-100.0, nodata_out=-32768, valid_range=None)
    assert out.tolist() == [-32767, -32768]


def test_rescale_landsat_c2_moves_valid_pixel_off_interior_nodata():
    out = rescale_landsat_c2(np.array([1, 0], dtype=np.uint16), scale=0.0, offset=-0.9999, valid_range=None)
    assert out.tolist() == [-9998, -9999]


def test_rescale_landsat_c2_rejects_inverted_range():
    with pytest.raises(InvalidRaster, match=r"valid_range \(10000, 0\) has low above high"):
        rescale_landsat_c2(np.array([1], dtype=np.uint16), valid_range=(10000, 0))


def test_rescale_landsat_c2_rejects_nodata_outside_dtype():
    with pytest.raises(InvalidRaster, match="nodata -9999 cannot be stored in uint16"):
        rescale_landsat_c2(np.array([1], dtype=np.uint16), dtype=np.uint16)


def test_propagate_spectral_nodata_vector():
    quality = np.array([[0, 0, 2, 4], [0, 0, 0, 0], [0, 2, 2, 4]], dtype=np.uint8)
    nir = np.array([[702, 876, 7000, 9000], [687, 987, 1022, 1029], [-9999, 7100, 7322, 9564]], dtype=np.int16)
    result = propagate_spectral_nodata(quality, [nir], -9999, 255)
    assert result.tolist() == [[0, 0, 2, 4], [0, 0, 0, 0], [255, 2, 2, 4]]
    assert quality[2, 0] == 0  # input untouched


def test_propagate_spectral_nodata_uses_any_band_with_its_own_nodata():
    quality = np.zeros((1, 3), dtype=np.uint8)
    red = np.array([[0, 5, 5]], dtype=np.uint16)
    nir = np.array([[5, 5, -1]], dtype=np.int16)
    assert propagate_spectral_nodata(quality, [red, nir], [0, -1], 255).tolist() == [[255, 0, 255]]


def test_propagate_spectral_nodata_rejects_shape_mismatch():
    with pytest.raises(InvalidRaster, match="spectral band 1 has shape"):
        propagate_spectral_nodata(np.zeros((2, 2)), [np.zeros((2, 2)), np.zeros((2, 3))], 0, 255)


def test_efficacy_is_percentage_of_clear_pixels():
    classes = np.array([[C, C, X, N], [S, C, X, N]], dtype=np.uint8)
    assert efficacy(classes) == pytest.approx(37.5)


def test_cloud_ratio_is_not_clear_over_clear_plus_not_clear():
    classes = np.array([[C, C, X, N], [S, C, X, N]], dtype=np.uint8)
    assert cloud_ratio(classes) == pytest.approx(40.0)


def test_cloud_ratio_is_zero_without_clear_or_not_clear_pixels():
    assert cloud_ratio(np.array([N, S], dtype=np.uint8)) == 0.0
