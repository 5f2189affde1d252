"""``cube-assets demo``: materialize every partition of the demo cube and show the outputs."""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

from cube_assets.cube_config import DEMO_CONFIG


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``demo`` command."""
    demo = subparsers.add_parser("demo", help="materialize the demo cube end to end and show the outputs")
    demo.add_argument("--config", default=os.environ.get("CUBE_ASSETS_CONFIG", str(DEMO_CONFIG)), help="cube YAML file")
    demo.add_argument(
        "--data-root", default=os.environ.get("CUBE_ASSETS_DATA_ROOT", "cube-data"), help="where outputs go"
    )
    demo.add_argument(
        "--env",
        default=os.environ.get("CUBE_ENV", "local"),
        choices=("local", "prod"),
        help="local: files and SQLite under the data root; prod: the S3 bucket and PostgreSQL catalog of the "
        "CUBE_ASSETS_* variables (default: $CUBE_ENV, else local)",
    )
    demo.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """Run the demo on the instance under ``$DAGSTER_HOME`` (default ``./.dagster_home``, local only).

    Returns:
        0 once every partition is built; 2 (with the reason on stderr) when ``--env prod`` lacks
        ``DAGSTER_HOME`` or a variable the production resources need.
    """
    from cube_assets.errors import InvalidCubeConfig

    if args.env == "prod" and not os.environ.get("DAGSTER_HOME"):
        # The runs of production data belong in the production instance, not a local SQLite one.
        print(
            "cube-assets demo: CUBE_ENV=prod needs DAGSTER_HOME, the folder of the production instance "
            "(deploy/dagster.yaml); `cube-assets prod-local start` writes one and `. .dagster_prod/env.sh` sets it",
            file=sys.stderr,
        )
        return 2
    home = Path(os.environ.setdefault("DAGSTER_HOME", str(Path(".dagster_home").resolve())))
    home.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    try:
        from dagster import DagsterInstance

        # cube_assets.definitions builds its module-level Definitions from the environment on import.
        from cube_assets.demo import run_demo

        with DagsterInstance.get() as instance:
            counts = run_demo(args.config, args.data_root, instance, env=args.env)
    except InvalidCubeConfig as exc:
        print(f"cube-assets demo: {exc}", file=sys.stderr)
        return 2
    print(
        f"\n{counts['runs']} runs, {counts['merges']} merges, {counts['composites']} composites, "
        f"{counts['catalog_images']} catalog images in {time.monotonic() - started:.0f} s; "
        f"Dagster instance: {home} (open it with `make dev`)"
    )
    return 0
