"""Tests of scaling_parameters (modes, tuples, percentages, data types) and apply_scaling."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from cube_assets.catalog.repository import BandRecord
from cube_assets.client.scaling import (
    DATA_TYPES,
    BandInfo,
    apply_scaling,
    band_info,
    common_data_type,
    multiproduct_scaling_parameters,
    normalize_data_type,
    numpy_dtype,
    scaling_parameters,
)

REFLECTANCE = {
    "type": "spectral",
    "data_type": "UInt16",
    "data_range": (0, 10000),
    "display_range": (0, 4000),
    "physical_range": (0.0, 1.0),
    "nodata": 0,
}
RGBQ = {
    "red": REFLECTANCE,
    "green": REFLECTANCE,
    "blue": REFLECTANCE,
    "quality": {"type": "class", "data_type": "Byte", "data_range": (0, 11), "nodata": 0},
}


# ---------------------------------------------------------------------------- data types


def test_common_data_type_matches_numpy_promotion_for_every_pair() -> None:
    for first, second in itertools.product(DATA_TYPES, repeat=2):
        expected = np.promote_types(numpy_dtype(first), numpy_dtype(second))
        assert numpy_dtype(common_data_type([first, second])) == expected, (first, second)


@pytest.mark.parametrize(
    ("types", "expected"),
    [
        (["Byte", "UInt16"], "UInt16"),
        (["Byte", "Int16"], "Int16"),
        (["UInt16", "Int16"], "Int32"),
        (["Int32", "Float32"], "Float64"),
        (["Byte", "Byte", "Float32"], "Float32"),
        (["UInt32", "Int8"], "Int64"),
    ],
)
def test_common_data_type_promotes_mixed_bands(types: list[str], expected: str) -> None:
    assert common_data_type(types) == expected


@pytest.mark.parametrize("alias", ["Byte", "UInt8", "uint8", "byte", np.uint8, np.dtype("uint8")])
def test_data_type_aliases_normalize_to_gdal_names(alias: object) -> None:
    assert normalize_data_type(alias) == "Byte"


def test_an_unknown_data_type_is_refused() -> None:
    with pytest.raises(ValueError, match="CFloat32"):
        normalize_data_type("CFloat32")


# ---------------------------------------------------------------------------- modes


def test_no_scaling_keeps_the_promoted_type() -> None:
    assert scaling_parameters(RGBQ) == (None, "UInt16")
    assert scaling_parameters({"quality": RGBQ["quality"], "ndvi": {"data_type": "Int16"}}) == (None, "Int16")


def test_no_scaling_with_a_data_type_only_sets_the_type() -> None:
    assert scaling_parameters(RGBQ, None, "Float32") == (None, "Float32")


def test_raw_mode_scales_nothing() -> None:
    assert scaling_parameters(RGBQ, "raw") == ([None, None, None, None], "UInt16")


def test_display_mode_maps_the_display_range_to_bytes_and_leaves_class_bands() -> None:
    scales, data_type = scaling_parameters(RGBQ, "display")

    assert scales == [(0, 4000, 0, 255)] * 3 + [None]
    assert data_type == "Byte"


def test_display_mode_into_a_float_type_ends_at_255_99() -> None:
    scales, data_type = scaling_parameters(RGBQ, "display", "Float32")

    assert scales[0] == (0, 4000, 0, 255.99)
    assert data_type == "Float32"


def test_auto_mode_defers_to_the_data() -> None:
    assert scaling_parameters(RGBQ, "auto") == ([(), (), (), None], "Byte")


def test_physical_mode_maps_data_range_to_physical_range_as_float64() -> None:
    scales, data_type = scaling_parameters(RGBQ, "physical")

    assert scales == [(0, 10000, 0.0, 1.0)] * 3 + [None]
    assert data_type == "Float64"


def test_a_band_without_display_range_falls_back_on_its_data_range() -> None:
    bands = {"nir": {"data_type": "UInt16", "data_range": (0, 10000)}}

    assert scaling_parameters(bands, "display") == ([(0, 10000, 0, 255)], "Byte")


def test_an_integer_band_without_ranges_uses_its_type_range() -> None:
    assert scaling_parameters({"b": {"data_type": "UInt16"}}, "display") == ([(0, 65535, 0, 255)], "Byte")


def test_a_float_band_without_ranges_cannot_be_display_scaled() -> None:
    with pytest.raises(ValueError, match="band 'ndvi' .*display_range"):
        scaling_parameters({"ndvi": {"data_type": "Float32"}}, "display")


def test_conflicting_explicit_modes_are_refused() -> None:
    with pytest.raises(ValueError, match="mixes the modes 'display' and 'physical'"):
        scaling_parameters(RGBQ, ["display", "physical", None, None])


def test_auto_and_display_combine() -> None:
    scales, data_type = scaling_parameters(RGBQ, ["auto", "display", "display", None])

    assert scales == [(), (0, 4000, 0, 255), (0, 4000, 0, 255), None]
    assert data_type == "Byte"


def test_a_mode_on_a_class_band_does_not_conflict() -> None:
    scales, data_type = scaling_parameters(RGBQ, ["physical", "physical", "physical", "display"])

    assert scales[3] is None
    assert data_type == "Float64"


def test_an_explicit_data_type_decides_the_mode_of_tuples() -> None:
    scales, data_type = scaling_parameters(RGBQ, [(0, 1000), (0, 1000), (0, 1000), None], "UInt16")

    assert scales[0] == (0, 1000, 0, 65535)  # raw mode: the output type's range
    assert data_type == "UInt16"


# ---------------------------------------------------------------------------- tuples


def test_percentages_are_of_the_display_range_in_display_mode() -> None:
    scales, data_type = scaling_parameters(RGBQ, [("25%", "75%"), ("2%", "98%", "2%", "98%"), "display", None])

    assert scales[0] == (1000, 3000, 0, 255)
    assert scales[1] == (80, 3920, 5, 250)  # 2% of 0..255.99 is 5.12, truncated as in the client
    assert data_type == "Byte"


def test_percentages_are_of_data_and_physical_ranges_in_physical_mode() -> None:
    scales, data_type = scaling_parameters(RGBQ, [("2%", "98%", "2%", "98%"), "physical", "physical", None])

    assert scales[0] == (200, 9800, 0.02, 0.98)
    assert data_type == "Float64"


def test_a_four_tuple_with_float_output_implies_physical() -> None:
    assert scaling_parameters(RGBQ, [(0, 10000, 0, 1.0), (0, 4000), (0, 4000), None]) == (
        [(0, 10000, 0, 1.0), (0, 4000, 0.0, 1.0), (0, 4000, 0.0, 1.0), None],
        "Float64",
    )


def test_a_four_tuple_beyond_bytes_implies_raw_and_the_smallest_fitting_type() -> None:
    scales, data_type = scaling_parameters(RGBQ, [(0, 10000, 0, 10000), (0, 4000), (), None])

    assert scales == [(0, 10000, 0, 10000), (0, 4000, 0, 65535), (), None]
    assert data_type == "UInt16"


def test_a_four_tuple_of_output_percentages_alone_cannot_imply_a_type() -> None:
    with pytest.raises(ValueError, match="cannot infer the output data type"):
        scaling_parameters({"red": REFLECTANCE}, [("0%", "100%", "0%", "100%")])


def test_tuples_of_the_wrong_length_or_content_are_refused() -> None:
    with pytest.raises(ValueError, match="0, 2 or 4 values"):
        scaling_parameters({"red": REFLECTANCE}, [(0, 1, 2)])
    with pytest.raises(ValueError, match="'25 %x'"):
        scaling_parameters({"red": REFLECTANCE}, [("25 %x", "75%")])
    with pytest.raises(ValueError, match="is empty"):
        scaling_parameters({"red": REFLECTANCE}, [(100, 100)])


# ---------------------------------------------------------------------------- forms


def test_a_mapping_gives_unlisted_bands_the_default_except_class_bands() -> None:
    scales, data_type = scaling_parameters(RGBQ, {"red": "display", "green": (0, 10000), "default_": "auto"})

    assert scales == [(0, 4000, 0, 255), (0, 10000, 0, 255), (), None]
    assert data_type == "Byte"


def test_a_mapping_without_default_leaves_unlisted_bands_unscaled() -> None:
    scales, data_type = scaling_parameters(RGBQ, {"red": (0, 4000, 0, 255), "default_": "raw"})

    assert scales == [(0, 4000, 0, 255), None, None, None]
    assert data_type == "UInt16"


def test_a_mapping_naming_an_unknown_band_is_refused() -> None:
    with pytest.raises(ValueError, match=r"\['nir'\]"):
        scaling_parameters(RGBQ, {"nir": "display"})


def test_a_sequence_needs_one_entry_per_band() -> None:
    with pytest.raises(ValueError, match="3 entries for 4 bands"):
        scaling_parameters(RGBQ, ["display", "display", "display"])


def test_an_unknown_mode_is_refused() -> None:
    with pytest.raises(ValueError, match="'bright'"):
        scaling_parameters(RGBQ, "bright")


def test_band_records_from_the_catalog_are_accepted() -> None:
    record = BandRecord(
        name="red",
        type="spectral",
        data_type="UInt8",
        resolution=10,
        band_index=0,
        data_range=(0, 200),
        display_range=(10, 190),
    )

    info = band_info("red", record)

    assert info == BandInfo("red", "Byte", "spectral", None, (0, 200), (10, 190), None)
    assert isinstance(info.display_range[0], int)  # the record stores floats; integral ones come back as ints
    assert scaling_parameters({"red": record}, "display") == ([(10, 190, 0, 255)], "Byte")


def test_band_metadata_without_a_data_type_is_refused() -> None:
    with pytest.raises(ValueError, match="band 'red': metadata has no data_type"):
        scaling_parameters({"red": {"type": "spectral"}}, "display")


def test_products_must_scale_a_band_alike() -> None:
    other = {**RGBQ, "red": {**REFLECTANCE, "display_range": (0, 3000)}}

    assert multiproduct_scaling_parameters({"a": RGBQ, "b": RGBQ}, ["red"], "display") == ([(0, 4000, 0, 255)], "Byte")
    with pytest.raises(ValueError, match="band 'red' scales differently in products 'a'"):
        multiproduct_scaling_parameters({"a": RGBQ, "b": other}, ["red"], "display")


def test_products_promote_their_band_types_together() -> None:
    signed = {"red": {**REFLECTANCE, "data_type": "Int16"}}

    assert multiproduct_scaling_parameters({"a": RGBQ, "b": signed}, ["red"]) == (None, "Int32")


# ---------------------------------------------------------------------------- apply_scaling


def test_apply_display_scaling_rounds_and_saturates_to_bytes() -> None:
    array = np.array([[[0, 2000, 4000, 5000]]], dtype=np.uint16)

    scaled = apply_scaling(array, [(0, 4000, 0, 255)], "Byte")

    assert scaled.dtype == np.uint8
    assert scaled.data.tolist() == [[[0, 128, 255, 255]]]  # 127.5 rounds to 128, 318.75 saturates


def test_apply_physical_scaling_gives_floats() -> None:
    array = np.array([[[0, 2500, 10000]]], dtype=np.uint16)

    scaled = apply_scaling(array, [(0, 10000, 0.0, 1.0)], "Float64")

    assert scaled.data.tolist() == [[[0.0, 0.25, 1.0]]]


def test_apply_auto_scaling_uses_each_bands_valid_min_and_max() -> None:
    data = np.array([[[100, 200, 300, 9999]], [[5, 5, 10, 10]]], dtype=np.int16)
    mask = np.array([[[False, False, False, True]], [[False, False, False, False]]])

    scaled = apply_scaling(np.ma.MaskedArray(data, mask=mask), [(), ()], "Byte")

    assert scaled.data[0].tolist() == [[0, 128, 255, 0]]  # 9999 is masked: out of the range, 0 in the data
    assert scaled.mask[0].tolist() == [[False, False, False, True]]
    assert scaled.data[1].tolist() == [[0, 0, 255, 255]]


def test_apply_without_scales_casts_with_saturation_and_keeps_masks() -> None:
    data = np.ma.MaskedArray(np.array([[[-5, 7, 300, 4]]], dtype=np.int16), mask=[[[False, False, False, True]]])

    cast = apply_scaling(data, None, "Byte")

    assert cast.data.tolist() == [[[0, 7, 255, 0]]]
    assert cast.mask.tolist() == [[[False, False, False, True]]]


def test_apply_masks_nan_values() -> None:
    cast = apply_scaling(np.array([[[1.4, np.nan]]]), None, "Int16")

    assert cast.data.tolist() == [[[1, 0]]]
    assert cast.mask.tolist() == [[[False, True]]]


def test_apply_needs_one_scale_per_band() -> None:
    with pytest.raises(ValueError, match="1 scales for 2 bands"):
        apply_scaling(np.zeros((2, 1, 1)), [None], "Byte")
