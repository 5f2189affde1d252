"""``cube-assets config check FILE``: validate a cube file and print every problem at once.

::

    cube-assets config check cubes.yaml

Prints one line per problem, ``FILE: cubes[0].temporal.step: what is wrong``, and exits 1; or
one line ``ok: N cubes, M tiles, P periods, K partitions: FILE`` and exits 0. It runs the same
checks as loading the ``Definitions`` (``cube_assets.cube_config.check_project_config``).
"""

from __future__ import annotations

import argparse

MAX_PRINTED_PROBLEMS = 1_000


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``config`` command and its ``check`` sub-command."""
    config = subparsers.add_parser("config", help="the cube file: check it")
    actions = config.add_subparsers(dest="action", required=True)
    check = actions.add_parser("check", help="validate a cube file and print every problem")
    check.add_argument("file", metavar="FILE", help="cube YAML file")
    check.set_defaults(run=run_check)


def run_check(args: argparse.Namespace) -> int:
    """Check ``args.file``; print each problem (at most ``MAX_PRINTED_PROBLEMS``) or a summary.

    Returns:
        1 when the file has problems, 0 when it is valid.
    """
    from cube_assets.cube_config import check_project_config

    check = check_project_config(args.file)
    if check.config is None:
        for line in check.problems[:MAX_PRINTED_PROBLEMS]:
            print(line)
        if len(check.problems) > MAX_PRINTED_PROBLEMS:
            print(f"{check.path}: … and {len(check.problems) - MAX_PRINTED_PROBLEMS:,} more problems")
        return 1
    cubes = check.config.cubes
    tiles = sum(len(cube.tile_list) for cube in cubes)
    periods = sum(len(cube.periods) for cube in cubes)
    partitions = sum(len(cube.tile_list) * len(cube.periods) for cube in cubes)
    print(f"ok: {len(cubes)} cubes, {tiles:,} tiles, {periods:,} periods, {partitions:,} partitions: {check.path}")
    return 0
