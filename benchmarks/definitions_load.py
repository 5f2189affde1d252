"""Loading the code location of a country-sized cube: 1,000 tiles × 2 years of 16-day periods.

Run::

    .venv/bin/python benchmarks/definitions_load.py [--tiles 1000] [--years 2]

It writes a cube file with one cube of ``--tiles`` tiles (a 40 × 25 block of the BDC SM grid over
central Brazil) and ``--years`` years of ``16D`` periods (23 a year), so 1,000 × 46 = 46,000
partitions per asset, the most Dagster advises (about 100k) for one asset being 100,000.

Cases, each timed in the same way for this project and for the reference:

* ``cold load``: a fresh Python process that imports the definitions module (as a code server
  does: here ``cube_assets.definitions`` with ``CUBE_ASSETS_CONFIG`` pointing at the cube file),
  lists every asset's partition keys, and builds the repository snapshot that the code server
  sends to the webserver and the daemon. Its wall time is ``definitions_load_s``.
* ``build``: ``build_definitions`` alone, in this process (imports already done).
* ``partition keys``: listing the 46,000 keys of one asset.
* ``snapshot``: ``RepositorySnap`` of the definitions (assets, checks, jobs, sensors,
  schedules, partition sets).

The reference is bare Dagster with the same partitions: six no-op assets in a chain sharing one
``MultiPartitionsDefinition`` of the same tile and period keys, and one job; it measures what
Dagster itself costs at this size, so the ratio shows what the project adds on top (a ratio
below 1 means the project is slower than bare Dagster; it also builds checks, sensors and
schedules, and reads and validates the cube file).

Prints a table (seconds, peak RSS of the process during the case), then
``partitions_per_asset: N`` and ``definitions_load_s: X``. Target: under 10 s.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from _common import CaseResult, format_bytes, machine_summary, measure, peak_rss_method, print_table

DAGSTER_PARTITION_ADVICE = 100_000
_CHILD_PROJECT = "project"
_CHILD_REFERENCE = "reference"


def write_cube_file(folder: Path, tiles: int, years: int) -> Path:
    """Write a cube file of ``tiles`` BDC SM tiles (40 columns wide) and ``years`` years of 16-day periods."""
    import yaml

    columns = 40
    names = [f"{10 + i % columns:03d}{10 + i // columns:03d}" for i in range(tiles)]
    cube = {
        "name": "country",
        "title": "1,000 tiles × 2 years",
        "collection": "sentinel-2-l2a",
        "providers": ["archive"],
        "grid": {"kind": "bdc", "size": "SM"},
        "tiles": names,
        "start_date": "2023-01-01",
        "end_date": f"{2022 + years}-12-31",
        "temporal": {"step": "16D", "restart": "yearly"},
        "bands": [
            {"name": b, "common_name": c}
            for b, c in (("B02", "blue"), ("B03", "green"), ("B04", "red"), ("B08", "nir"))
        ],
        "quality": {"band": "SCL", "rules": {"preset": "scl"}, "nodata": 0},
        "indexes": {"NDVI": "10000 * (nir - red) / (nir + red)"},
        "composites": ["LCF", "MED"],
    }
    path = folder / "country.yaml"
    providers = [{"name": "archive", "driver": "local", "options": {"root": "archive"}}]
    path.write_text(yaml.safe_dump({"providers": providers, "cubes": [cube]}, sort_keys=False))
    return path


def reference_definitions(tile_names: list[str], period_keys: list[str]):
    """Bare Dagster at the same size: six chained no-op assets on one tile × period partitioning, one job."""
    from dagster import (
        AssetIn,
        AssetSelection,
        Definitions,
        MultiPartitionsDefinition,
        StaticPartitionsDefinition,
        asset,
        define_asset_job,
    )

    partitions = MultiPartitionsDefinition(
        {
            "tile": StaticPartitionsDefinition(tile_names),
            "period": StaticPartitionsDefinition(period_keys),
        }
    )
    stages = ["raw_scene", "surface_reflectance", "scene_cog", "tile_merge", "period_blend", "catalog_item"]
    assets = []
    for index, stage in enumerate(stages):
        ins = {"upstream": AssetIn(key=["reference", stages[index - 1]])} if index else {}

        @asset(name=stage, key_prefix=["reference"], partitions_def=partitions, ins=ins)
        def _stage(**kwargs) -> None:
            return None

        assets.append(_stage)
    return Definitions(assets=assets, jobs=[define_asset_job("reference_job", selection=AssetSelection.all())])


def _snapshot(defs) -> int:
    from dagster._core.remote_representation.external_data import RepositorySnap

    snap = RepositorySnap.from_def(defs.get_repository_def())
    return len(snap.asset_nodes)


def _keys(defs) -> int:
    graph = defs.resolve_asset_graph()
    key = next(iter(sorted(graph.get_all_asset_keys(), key=lambda k: k.path)))
    return len(graph.get(key).partitions_def.get_partition_keys())


def _child(kind: str, config: str, tiles: int, years: int) -> None:
    """The cold load, in a fresh process: import, build, list keys, snapshot; print JSON timings."""
    started = time.perf_counter()
    if kind == _CHILD_PROJECT:
        os.environ["CUBE_ASSETS_CONFIG"] = config
        from cube_assets.definitions import defs
    else:
        import dagster  # noqa: F401  - the import a reference code location pays too

        from cube_assets.cube_config import load_project_config

        cube = load_project_config(config).cubes[0]
        defs = reference_definitions([t.name for t in cube.tile_list], [p.key for p in cube.periods])
    keys = _keys(defs)
    _snapshot(defs)
    print(json.dumps({"seconds": time.perf_counter() - started, "keys": keys}))


def _cold(kind: str, config: Path, tiles: int, years: int, data_root: Path) -> dict:
    env = {**os.environ, "CUBE_ASSETS_DATA_ROOT": str(data_root), "CUBE_ENV": "local"}
    result = subprocess.run(
        [
            sys.executable,
            __file__,
            "--child",
            kind,
            "--config",
            str(config),
            "--tiles",
            str(tiles),
            "--years",
            str(years),
        ],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    if result.returncode != 0:
        raise RuntimeError(f"cold load ({kind}) failed:\n{result.stderr[-3000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def main() -> None:
    """Run the cases and print the table, ``partitions_per_asset`` and ``definitions_load_s``."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tiles", type=int, default=1000)
    parser.add_argument("--years", type=int, default=2)
    parser.add_argument("--child", choices=[_CHILD_PROJECT, _CHILD_REFERENCE], help=argparse.SUPPRESS)
    parser.add_argument("--config", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        _child(args.child, args.config, args.tiles, args.years)
        return

    print(f"# {machine_summary()}; peak RSS: {peak_rss_method()}")
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        config = write_cube_file(folder, args.tiles, args.years)
        cold_project = _cold(_CHILD_PROJECT, config, args.tiles, args.years, folder / "data")
        cold_reference = _cold(_CHILD_REFERENCE, config, args.tiles, args.years, folder / "data")

        from cube_assets.cube_config import load_project_config
        from cube_assets.definitions import build_definitions

        cube = load_project_config(config).cubes[0]
        tile_names, period_keys = [t.name for t in cube.tile_list], [p.key for p in cube.periods]
        build = measure(lambda: build_definitions(config, folder / "data"))
        reference_build = measure(lambda: reference_definitions(tile_names, period_keys))
        defs, reference = build.result, reference_build.result
        keys, reference_keys = measure(lambda: _keys(defs)), measure(lambda: _keys(reference))
        snapshot, reference_snapshot = measure(lambda: _snapshot(defs)), measure(lambda: _snapshot(reference))

    results = [
        CaseResult("cold load (fresh process)", cold_project["seconds"], cold_reference["seconds"], 0, 0),
        CaseResult("build", build.seconds, reference_build.seconds, build.peak_rss, reference_build.peak_rss),
        CaseResult("partition keys", keys.seconds, reference_keys.seconds, keys.peak_rss, reference_keys.peak_rss),
        CaseResult(
            "snapshot", snapshot.seconds, reference_snapshot.seconds, snapshot.peak_rss, reference_snapshot.peak_rss
        ),
    ]
    rows = [
        (
            r.case,
            f"{r.seconds:.2f}",
            f"{r.reference_seconds:.2f}",
            f"{r.ratio:.2f}",
            format_bytes(r.peak_rss) if r.peak_rss else "-",
            format_bytes(r.reference_peak_rss) if r.reference_peak_rss else "-",
        )
        for r in results
    ]
    print_table(rows, ("case", "seconds", "reference_s", "ratio", "peak_rss", "reference_peak_rss"))
    partitions = keys.result
    if partitions != cold_project["keys"] or partitions != len(tile_names) * len(period_keys):
        raise RuntimeError(
            f"partition counts disagree: {partitions}, {cold_project['keys']}, {len(tile_names)} × {len(period_keys)}"
        )
    print(f"tiles: {len(tile_names)}  periods: {len(period_keys)}")
    print(f"partitions_per_asset: {partitions} (Dagster advises at most about {DAGSTER_PARTITION_ADVICE:,})")
    print(f"definitions_load_s: {cold_project['seconds']:.2f}")


if __name__ == "__main__":
    main()
