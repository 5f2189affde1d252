"""The cube every scale-out test and benchmark backfills: 3 tiles × 8 periods of simulated scenes, small.

One simulated Sentinel-2 product (240 px at 10 m) covers the three 64 px tiles; it is acquired
once in each 16-day period. The simulator writes its archive into each worker's own data root
on first use (the same bytes everywhere: seeds derive from tile and time).
"""

from __future__ import annotations

from datetime import date, timedelta
from pathlib import Path

from cube_assets_tests.conftest import SMALL_CUBE, write_cube_file

TILES = ("000000", "001000", "002000")
JOB = "scale_job"


def periods(count: int) -> tuple[str, ...]:
    """The first ``count`` 16-day periods of 2024, as period keys."""
    return tuple((date(2024, 1, 1) + timedelta(days=16 * k)).isoformat() for k in range(count))


def partition_keys(period_count: int) -> tuple[str, ...]:
    """Every partition key of the job with ``period_count`` periods, as Dagster spells them (``period|tile``)."""
    return tuple(f"{period}|{tile}" for period in periods(period_count) for tile in TILES)


def scale_cube_file(period_count: int) -> dict:
    """The cube file's content: the cube over ``period_count`` periods and its simulator, one acquisition per period."""
    keys = periods(period_count)
    simulator = {
        "name": "simulator",
        "driver": "simulator",
        "options": {
            "archive": "archive",
            "products": [{"tile_id": "T23LKC", "epsg": 32723, "ulx": 200000, "uly": 8250000, "size_px": 240}],
            "acquisitions": [
                {"datetime": f"{date.fromisoformat(p) + timedelta(days=3)}T13:12:29Z", "cloud_fraction": 0.3}
                for p in keys
            ],
        },
    }
    cube = {
        **SMALL_CUBE,
        "name": "scale",
        "grid": {**SMALL_CUBE["grid"], "tile_size": [64, 64]},
        "tiles": list(TILES),
        "start_date": keys[0],
        "end_date": (date.fromisoformat(keys[-1]) + timedelta(days=15)).isoformat(),
        "composites": ["LCF", "MED"],
    }
    return {"cube": cube, "providers": [simulator]}


#: The tests' size: 3 tiles × 8 periods.
PERIODS = periods(8)
PARTITION_KEYS = partition_keys(8)


def write_scale_cube_file(folder: Path, period_count: int = len(PERIODS)) -> Path:
    """Write the cube file into ``folder`` (readable by every worker); return its path."""
    content = scale_cube_file(period_count)
    path = write_cube_file(folder, content["cube"], content["providers"])
    path.chmod(0o644)
    return path
