"""compile-kernels: a cube's compositing kernels compiled into numba's cache before its first blend."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from cube_assets.raster.masks import LandsatQAPixelRules, ValueMaskRules, rules_from_config
from cube_assets.steps.kernel_warmup import quality_dtype

pytest.importorskip("numba")

# Blends what compile-kernels blends, then reports numba's cache hits and misses per kernel.
_PROBE = """
import json, sys
from cube_assets.cube_config import load_project_config
from cube_assets.raster import composite_kernels
from cube_assets.steps.kernel_warmup import compile_kernels
cube = load_project_config().cubes[0]
compile_kernels(cube)
stats = {}
for name in dir(composite_kernels):
    kernel = getattr(composite_kernels, name)
    if hasattr(kernel, "stats") and kernel.signatures:
        stats[name] = [sum(kernel.stats.cache_hits.values()), sum(kernel.stats.cache_misses.values())]
print(json.dumps(stats))
"""


def _blend_in_a_new_process(cache_dir) -> dict[str, list[int]]:
    environment = {**os.environ, "NUMBA_CACHE_DIR": str(cache_dir)}
    done = subprocess.run([sys.executable, "-c", _PROBE], env=environment, capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_a_second_process_loads_every_kernel_the_first_compiled(tmp_path):
    first = _blend_in_a_new_process(tmp_path / "numba")
    assert first and all(misses > 0 and hits == 0 for hits, misses in first.values()), first
    assert {"quality_window"} <= set(first)
    second = _blend_in_a_new_process(tmp_path / "numba")
    assert set(second) == set(first)
    assert all(hits > 0 and misses == 0 for hits, misses in second.values()), second


def test_the_command_compiles_each_cube_of_the_file(capsys):
    from cube_assets.cli import main

    assert main(["compile-kernels"]) == 0
    assert capsys.readouterr().out.startswith("s2_demo: compositing kernels for LCF, MED ready in ")


def test_an_invalid_cube_file_is_named(tmp_path, capsys):
    from cube_assets.cli import main

    bad = tmp_path / "cubes.yaml"
    bad.write_text("cubes: []\n")
    assert main(["compile-kernels", "--config", str(bad)]) == 2
    assert f"cube-assets compile-kernels: {bad}" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("rules", "dtype"),
    [
        ({"preset": "scl"}, np.uint8),
        ({"preset": "quality_class"}, np.uint8),
        ({"preset": "landsat_c2_qa_pixel"}, np.uint16),
    ],
)
def test_the_quality_type_is_the_one_the_rules_read(rules, dtype):
    parsed = rules_from_config(rules)
    assert isinstance(parsed, (ValueMaskRules, LandsatQAPixelRules))
    assert quality_dtype(parsed) == np.dtype(dtype)
