"""The table of compositing rules: names, and numpy rules and compiled twins that give the same pixels."""

from __future__ import annotations

import numpy as np
import pytest

from cube_assets.raster import composite_kernels
from cube_assets.raster.composite_rules import (
    COMPOSITE_FUNCTIONS,
    FUNCTIONS,
    QUALITY_OUTPUTS,
    KernelWindow,
    composite_quality_kernel,
    composite_quality_window,
)
from cube_assets.raster.masks import QualityClass, ValueMaskRules, classify_quality, propagate_spectral_nodata

RULES = ValueMaskRules(clear=(0, 1), not_clear=(2, 3, 4), saturated=(5,), nodata=(255,))
CODES = np.array([0, 1, 1, 0, 2, 3, 4, 5, 255], dtype=np.uint8)
NODATA = -9999
ORDER = [3, 1, 0, 4, 2]


def _stack(seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    values = rng.integers(-3000, 12000, size=(5, 20, 24), dtype=np.int16)
    values[rng.random(values.shape) < 0.1] = NODATA
    return values, rng.choice(CODES, size=values.shape).astype(np.uint8)


def _kernel_window(values: np.ndarray, quality: np.ndarray) -> KernelWindow:
    table = classify_quality(np.arange(256, dtype=np.uint8), RULES)
    return KernelWindow(
        values=values,
        quality=quality,
        table=table,
        offset=0,
        loaded=np.ones(len(values), dtype=np.bool_),
        order=np.asarray(ORDER, dtype=np.int64),
        fill=values.dtype.type(NODATA),
        nodata_is_nan=False,
        sentinel=values.dtype.type(np.iinfo(values.dtype).max),
        network=composite_kernels.sorting_network(len(values)),
    )


def test_the_table_names_the_band_functions():
    assert FUNCTIONS == ("LCF", "MED", "AVG", "STD", "MIN", "MAX", "RANGE", "IQR")
    assert all(COMPOSITE_FUNCTIONS[name].name == name for name in FUNCTIONS)
    assert {name: rule.reads for name, rule in COMPOSITE_FUNCTIONS.items()} == {
        "LCF": "chosen",
        **dict.fromkeys(FUNCTIONS[1:], "clear"),
    }


@pytest.mark.parametrize("name", FUNCTIONS)
def test_each_rules_compiled_twin_gives_the_numpy_pixels(name):
    values, quality = _stack(seed=len(name))
    rule = COMPOSITE_FUNCTIONS[name]
    classes = propagate_spectral_nodata(classify_quality(quality, RULES), [values], NODATA, QualityClass.NODATA)
    wanted = np.zeros(len(values), dtype=np.bool_)
    compiled = rule.kernel(_kernel_window(values, quality), wanted)
    assert not wanted.any()  # every observation was loaded, so nothing more is asked for
    assert np.array_equal(compiled, rule.numpy(values, classes, ORDER, NODATA))


def test_lcf_twin_asks_for_the_unread_observations_it_chooses():
    values, quality = _stack(seed=1)
    window = _kernel_window(values, quality)
    window.loaded[:] = False
    wanted = np.zeros(len(values), dtype=np.bool_)
    COMPOSITE_FUNCTIONS["LCF"].kernel(window, wanted)
    assert wanted[ORDER[0]]  # the best-ranked observation holds clear pixels, so it is asked for


def test_quality_window_and_its_compiled_twin_agree():
    _, quality = _stack(seed=5)
    days = [5, 9, 13, 5, 21]
    table = classify_quality(np.arange(256, dtype=np.uint8), RULES)
    expected = composite_quality_window(quality, classify_quality(quality, RULES), ORDER, days, 255)
    compiled = composite_quality_kernel(
        quality, table, 0, np.asarray(ORDER, dtype=np.int64), np.asarray(days, dtype=np.int16), np.uint8(255)
    )
    assert tuple(expected) == tuple(compiled) == QUALITY_OUTPUTS
    for name in QUALITY_OUTPUTS:
        assert np.array_equal(compiled[name], expected[name]), name
