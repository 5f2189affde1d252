"""The pool of open datasets: reuse, reopening of replaced files, bounds and threads."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import numpy as np
import pytest
import rasterio
from affine import Affine

from cube_assets.errors import InvalidRaster
from cube_assets.raster.dataset_pool import DatasetPool, default_capacity


def _write(path: Path, value: int, size: int = 32) -> Path:
    """A small GeoTIFF whose every pixel is ``value``, written under a temporary name then moved."""
    staging = path.with_suffix(".staging.tif")
    profile = {
        "driver": "GTiff", "width": size, "height": size, "count": 1, "dtype": "int16",
        "crs": "EPSG:32723", "transform": Affine(10, 0, 200_000, 0, -10, 8_250_000),
    }  # fmt: skip
    with rasterio.open(staging, "w", **profile) as dst:
        dst.write(np.full((1, size, size), value, dtype="int16"))
    os.replace(staging, path)
    return path


def test_pool_hands_out_the_same_open_dataset_again(tmp_path: Path) -> None:
    path = str(_write(tmp_path / "a.tif", 7))
    pool = DatasetPool(capacity=4)
    with pool.dataset(path) as first:
        assert int(first.read(1)[0, 0]) == 7
    with pool.dataset(path) as second:
        assert second is first
        assert not second.closed
    assert len(pool) == 1


def test_pool_reopens_a_file_replaced_since_it_was_opened(tmp_path: Path) -> None:
    path = tmp_path / "a.tif"
    _write(path, 7)
    pool = DatasetPool(capacity=4)
    with pool.dataset(str(path)) as old:
        assert int(old.read(1)[0, 0]) == 7
    _write(path, 9)  # an asset materialized again: its COG replaced atomically
    with pool.dataset(str(path)) as new:
        assert int(new.read(1)[0, 0]) == 9
    assert old.closed


def test_pool_closes_the_least_recently_used_beyond_its_capacity(tmp_path: Path) -> None:
    paths = [str(_write(tmp_path / f"{index}.tif", index)) for index in range(3)]
    pool = DatasetPool(capacity=2)
    opened = []
    for path in paths:
        with pool.dataset(path) as dataset:
            opened.append(dataset)
    assert len(pool) == 2
    assert opened[0].closed
    assert not opened[1].closed and not opened[2].closed


def test_pool_refuses_a_missing_file_naming_it(tmp_path: Path) -> None:
    pool = DatasetPool(capacity=2)
    missing = str(tmp_path / "missing.tif")
    with pytest.raises(InvalidRaster, match="missing.tif: cannot be read"), pool.dataset(missing):
        pass
    assert len(pool) == 0


def test_pool_serves_one_thread_at_a_time_per_dataset(tmp_path: Path) -> None:
    path = str(_write(tmp_path / "a.tif", 5, size=256))
    pool = DatasetPool(capacity=2)
    inside = 0
    most_inside = 0
    counter = threading.Lock()
    sums: list[int] = []

    def read() -> None:
        nonlocal inside, most_inside
        for _ in range(20):
            with pool.dataset(path) as dataset:
                with counter:
                    inside += 1
                    most_inside = max(most_inside, inside)
                sums.append(int(dataset.read(1).sum()))
                with counter:
                    inside -= 1

    threads = [threading.Thread(target=read) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert most_inside == 1
    assert sums == [5 * 256 * 256] * 80


def test_pool_capacity_must_be_positive() -> None:
    with pytest.raises(ValueError, match="capacity: must be at least 1, got 0"):
        DatasetPool(capacity=0)
    assert 16 <= default_capacity() <= 4096
