"""``cube-assets demo``: materialize every partition of the demo cube and show the outputs."""

from __future__ import annotations

import argparse
import os
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
    demo.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """Run the demo on the instance under ``$DAGSTER_HOME`` (default ``./.dagster_home``); return 0."""
    from dagster import DagsterInstance

    from cube_assets.demo import run_demo

    home = Path(os.environ.setdefault("DAGSTER_HOME", str(Path(".dagster_home").resolve())))
    home.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    with DagsterInstance.get() as instance:
        counts = run_demo(args.config, args.data_root, instance)
    print(
        f"\n{counts['runs']} runs, {counts['merges']} merges, {counts['composites']} composites, "
        f"{counts['catalog_images']} catalog images in {time.monotonic() - started:.0f} s; "
        f"Dagster instance: {home} (open it with `make dev`)"
    )
    return 0
