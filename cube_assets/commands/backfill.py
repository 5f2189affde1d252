r"""``cube-assets backfill``: launch a Dagster backfill of a cube's job over a range of periods.

It only turns dates into partition keys: partition keys print as ``{period}|{tile}`` and
Dagster lists them period by period, so the periods from ``--from`` to ``--to`` (every tile)
are one contiguous range ``first key … last key``. It then runs Dagster's own command::

    dagster job backfill -w workspace.yaml -j {cube}_job \
        --from '{first period}|{first tile}' --to '{last period}|{last tile}' --noprompt

which submits one run per partition to the instance under ``$DAGSTER_HOME``; the daemon
(``dagster-daemon run``, or ``dagster dev``) launches them within the instance's run limits,
and the backfill appears on the UI's backfills page.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
from datetime import date
from pathlib import Path

from cube_assets.cube_config import DEMO_CONFIG, load_project_config
from cube_assets.errors import InvalidCubeConfig
from cube_assets.partitions import cube_partitions, split_partition_key


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``backfill`` command."""
    parser = subparsers.add_parser(
        "backfill", help="backfill a cube's job over a range of periods (needs a running daemon)"
    )
    parser.add_argument("--cube", required=True, help="cube name")
    parser.add_argument("--from", dest="start", required=True, type=date.fromisoformat, help="first day (YYYY-MM-DD)")
    parser.add_argument("--to", dest="end", required=True, type=date.fromisoformat, help="last day (YYYY-MM-DD)")
    parser.add_argument(
        "--config", default=os.environ.get("CUBE_ASSETS_CONFIG", str(DEMO_CONFIG)), help="cube YAML file"
    )
    parser.add_argument("--workspace", default="workspace.yaml", help="Dagster workspace file")
    parser.add_argument("--dry-run", action="store_true", help="print the dagster command instead of running it")
    parser.set_defaults(run=run)


def backfill_range(config_file: str, cube_name: str, start: date, end: date) -> tuple[str, str, int]:
    """Return the first and last partition keys of the periods of ``cube_name`` that overlap ``[start, end]``.

    Returns:
        ``(first key, last key, number of partitions in between, both included)``.

    Raises:
        InvalidCubeConfig: when the cube is unknown, ``end`` precedes ``start`` or no period overlaps the range.
    """
    if end < start:
        raise InvalidCubeConfig(f"backfill range: --to {end} precedes --from {start}")
    cube = load_project_config(config_file).cube(cube_name)
    keys = [
        key
        for key in cube_partitions(cube).get_partition_keys()
        if _overlaps(cube.period(split_partition_key(key)[1]), start, end)
    ]
    if not keys:
        first, last = cube.periods[0], cube.periods[-1]
        raise InvalidCubeConfig(
            f"backfill range {start}..{end}: cube {cube_name!r} has no period there (its periods run "
            f"from {first.start} to {last.end})"
        )
    return keys[0], keys[-1], len(keys)


def _overlaps(period, start: date, end: date) -> bool:
    return period.start <= end and period.end > start


def run(args: argparse.Namespace) -> int:
    """Print the range, then run (or with ``--dry-run`` print) ``dagster job backfill``; return its exit status."""
    first, last, count = backfill_range(args.config, args.cube, args.start, args.end)
    dagster = shutil.which("dagster", path=os.path.dirname(sys.executable)) or "dagster"
    command = [
        dagster,
        "job",
        "backfill",
        "-w",
        args.workspace,
        "-j",
        f"{args.cube}_job",
        "--from",
        first,
        "--to",
        last,
        "--noprompt",
    ]
    print(f"{args.cube}: {count} partitions, {first} … {last}")
    if args.dry_run:
        print(" ".join(f"'{part}'" if "|" in part else part for part in command))
        return 0
    # The code location the workspace loads reads the same cube file.
    environment = {**os.environ, "CUBE_ASSETS_CONFIG": str(Path(args.config).resolve())}
    return subprocess.run(command, check=False, env=environment).returncode
