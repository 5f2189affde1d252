"""``cube-assets compile-kernels``: compile (and cache) numba's compositing kernels for a cube file's cubes."""

from __future__ import annotations

import argparse
import os
import sys

from cube_assets.cube_config import DEMO_CONFIG


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``compile-kernels`` command."""
    command = subparsers.add_parser(
        "compile-kernels",
        help="compile numba's compositing kernels for every cube of a cube file, so that no first blend waits for them",
    )
    command.add_argument(
        "--config", default=os.environ.get("CUBE_ASSETS_CONFIG", str(DEMO_CONFIG)), help="cube YAML file"
    )
    command.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """Blend a tiny synthetic period once per cube of ``--config`` (``steps.kernel_warmup.compile_kernels``).

    Returns:
        0 when every cube's kernels are compiled (or were found in numba's cache); 2 with the
        reason on stderr when the cube file is invalid.
    """
    from cube_assets.cube_config import load_project_config
    from cube_assets.errors import InvalidCubeConfig
    from cube_assets.steps.kernel_warmup import compile_kernels

    try:
        project = load_project_config(args.config)
    except InvalidCubeConfig as exc:
        print(f"cube-assets compile-kernels: {exc}", file=sys.stderr)
        return 2
    for cube in project.cubes:
        seconds = compile_kernels(cube)
        print(f"{cube.name}: compositing kernels for {', '.join(cube.composites)} ready in {seconds:.1f} s")
    return 0
