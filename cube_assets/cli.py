"""``cube-assets``: the project's command line."""

from __future__ import annotations

import argparse
import importlib
import sys

# Each module in cube_assets.commands adds its sub-commands.
COMMAND_MODULES = ("demo", "providers", "backfill", "catalog", "config", "serve", "prod_local", "kernels")


def build_parser() -> argparse.ArgumentParser:
    """Return the argument parser with every sub-command registered."""
    parser = argparse.ArgumentParser(prog="cube-assets", description="Data cubes from satellite scenes, with Dagster.")
    subparsers = parser.add_subparsers(dest="command", required=True)
    for name in COMMAND_MODULES:
        importlib.import_module(f"cube_assets.commands.{name}").register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the command line; return the exit status."""
    args = build_parser().parse_args(argv)
    return args.run(args)


if __name__ == "__main__":
    sys.exit(main())
