"""Shared fixtures: where the real sample data lives, and small georeferenced rasters."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
REAL_DATA = Path(os.environ.get("CUBE_ASSETS_REAL_DATA", REPO_ROOT.parent / "shared" / "data" / "real"))

T29UNU_SAFE = (
    REAL_DATA
    / "stactools-sentinel2/tests/data-files"
    / "S2A_MSIL2A_20221005T115411_N0400_R023_T29UNU_20221005T164454.SAFE"
)


@pytest.fixture(scope="session")
def real_data() -> Path:
    """The folder of real sample data (``../shared/data/real``); fails, never skips, if it is absent."""
    if not REAL_DATA.is_dir():
        pytest.fail(f"real sample data not found at {REAL_DATA}; set CUBE_ASSETS_REAL_DATA")
    return REAL_DATA


@pytest.fixture(scope="session")
def t29unu_safe(real_data: Path) -> Path:
    """The real Sentinel-2 L2A T29UNU 2022-10-05 ``.SAFE`` product folder."""
    assert T29UNU_SAFE.is_dir(), T29UNU_SAFE
    return T29UNU_SAFE
