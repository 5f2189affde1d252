"""Shared fixtures: where the real sample data lives, and small georeferenced rasters."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

# Real servers started by the tests: PostgreSQL (``postgresql_server``), an S3 API (``s3_server``)
# and the STAC replay server (``stac_server``, shared by the provider and sensor tests).
pytest_plugins = [
    "cube_assets_tests.fixtures_postgres",
    "cube_assets_tests.fixtures_s3",
    "cube_assets_tests.fixtures_stac",
]

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


def write_cube_file(folder: Path, cube: dict, providers: list[dict]) -> Path:
    """Write a cube YAML file with one cube and the given providers; return its path."""
    import yaml

    path = folder / "cubes.yaml"
    path.write_text(yaml.safe_dump({"providers": providers, "cubes": [cube]}, sort_keys=False))
    return path


# A small simulated cube: one 256 px tile of a 10 m UTM 23S grid, two dates, two overlapping products.
SMALL_SIMULATOR = {
    "name": "simulator",
    "driver": "simulator",
    "options": {
        "archive": "archive",
        "products": [
            {"tile_id": "T23LKC", "epsg": 32723, "ulx": 200000, "uly": 8250000, "size_px": 300},
            {"tile_id": "T23LLC", "epsg": 32723, "ulx": 202000, "uly": 8250000, "size_px": 300},
        ],
        "acquisitions": [
            {"datetime": "2024-01-04T13:12:29Z", "cloud_fraction": 0.4, "swath_edge": ["T23LLC"]},
            {"datetime": "2024-01-09T13:12:29Z", "cloud_fraction": 0.2},
        ],
    },
}

SMALL_CUBE = {
    "name": "small",
    "collection": "sentinel-2-l2a",
    "providers": ["simulator"],
    "grid": {
        "kind": "user",
        "name": "SMALL",
        "crs": 32723,
        "origin": [200500, 8249500],
        "tile_size": [256, 256],
        "resolution": 10,
    },
    "tiles": ["000000"],
    "start_date": "2024-01-01",
    "end_date": "2024-01-16",
    "temporal": {"step": "16D", "restart": "yearly"},
    "bands": [
        {"name": "B02", "common_name": "blue"},
        {"name": "B03", "common_name": "green"},
        {"name": "B04", "common_name": "red"},
        {"name": "B08", "common_name": "nir"},
    ],
    "quality": {"band": "SCL", "rules": {"preset": "scl"}, "nodata": 0},
    "indexes": {"NDVI": "10000 * (nir - red) / (nir + red)"},
    "composites": ["LCF", "MED", "AVG"],
}
