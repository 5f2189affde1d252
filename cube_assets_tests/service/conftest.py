"""Service fixtures: the synthetic cube, and the maps app over it (as an in-process HTTP client)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from cube_assets_tests.service.maps_app import maps_app
from cube_assets_tests.service.synthetic_cube import SyntheticCube, build_synthetic_cube


@pytest.fixture(scope="session")
def synthetic_cube(tmp_path_factory: pytest.TempPathFactory) -> SyntheticCube:
    """Two tiles side by side, three periods of two merges each, and their LCF, MED and AVG composites."""
    return build_synthetic_cube(tmp_path_factory.mktemp("synthetic-cube"), tiles=2, periods=3, merges_per_period=2)


@pytest.fixture(scope="module")
def maps_client(synthetic_cube: SyntheticCube) -> Iterator[TestClient]:
    """An HTTP client of the maps app over the synthetic cube's catalog."""
    with TestClient(maps_app(synthetic_cube.catalog_url)) as client:
        yield client
