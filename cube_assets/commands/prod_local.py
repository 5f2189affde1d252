"""``cube-assets prod-local start | stop``: the local rehearsal of production (``make prod-local``).

``start`` runs PostgreSQL with PostGIS and moto's S3 server on loopback under ``--root`` (see
``cube_assets/prod_local.py``), writes ``{root}/env.sh`` and prints its exports (secrets
masked; ``. {root}/env.sh`` sets them). ``stop`` stops what ``start`` started.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from cube_assets.prod_local import (
    ProdLocalError,
    env_path,
    exports_text,
    read_state,
    start_prod_local,
    stop_prod_local,
)

#: The repository's production instance, beside the package in a checkout.
DEFAULT_INSTANCE_YAML = Path(__file__).resolve().parents[2] / "deploy" / "dagster.yaml"


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``prod-local`` command and its ``start`` and ``stop`` sub-commands."""
    parser = subparsers.add_parser(
        "prod-local", help="start or stop PostgreSQL + S3 on loopback: the local rehearsal of production"
    )
    actions = parser.add_subparsers(dest="action", required=True)
    start = actions.add_parser("start", help="start the servers, create the databases and the bucket, write env.sh")
    stop = actions.add_parser("stop", help="stop the servers that start started")
    for action in (start, stop):
        action.add_argument(
            "--root", default=os.environ.get("CUBE_ASSETS_PROD_LOCAL_ROOT", ".dagster_prod"), help="the data folder"
        )
    start.add_argument(
        "--instance-yaml", default=str(DEFAULT_INSTANCE_YAML), help="the production dagster.yaml to install"
    )
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """Start or stop the rehearsal under ``--root``; return 0, or 1 with the reason on stderr."""
    try:
        if args.action == "start":
            variables = start_prod_local(args.root, args.instance_yaml)
            state = read_state(Path(args.root).resolve())
            postgis = "with PostGIS" if state is not None and state.postgis else "without PostGIS (not installed)"
            print(
                f"PostgreSQL on 127.0.0.1:{variables['DAGSTER_PG_PORT']} {postgis}, databases catalog and dagster\n"
                f"S3 (moto, in memory) on {variables['AWS_ENDPOINT_URL']}, "
                f"bucket {variables['CUBE_ASSETS_S3_BUCKET']}\n"
                f"Dagster instance {variables['DAGSTER_HOME']}/dagster.yaml\n\n"
                f"{exports_text(variables, mask_secrets=True)}\n"
                f"set them (secrets included) with:  . {env_path(Path(args.root).resolve())}"
            )
        else:
            stopped = stop_prod_local(args.root)
            print(f"stopped: {', '.join(stopped)}" if stopped else "nothing was running")
    except ProdLocalError as exc:
        print(f"cube-assets prod-local {args.action}: {exc}", file=sys.stderr)
        return 1
    return 0
