"""``cube-assets catalog``: the image catalog from the command line.

::

    cube-assets catalog export-stac DIR [--url URL] [--product ID ...] [--no-validate]

``export-stac`` writes every product (or the ``--product`` ones) and its images as a static STAC
1.1 catalogue in ``DIR`` (``DIR/catalog.json``, one folder per product), which pystac,
pystac-client and odc-stac read. The catalog is ``--url``, else ``$CUBE_ASSETS_CATALOG_URL``,
else the SQLite catalog under ``--data-root`` (``$CUBE_ASSETS_DATA_ROOT``, default
``./cube-data``).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``catalog`` command and its sub-commands."""
    catalog = subparsers.add_parser("catalog", help="the image catalog: export it as STAC")
    actions = catalog.add_subparsers(dest="action", required=True)
    export = actions.add_parser("export-stac", help="write the catalog as a static STAC catalogue in DIR")
    export.add_argument("dir", metavar="DIR", help="folder to write (replaced if it holds an earlier export)")
    export.add_argument("--url", default=os.environ.get("CUBE_ASSETS_CATALOG_URL"), help="catalog database URL")
    export.add_argument(
        "--data-root",
        default=os.environ.get("CUBE_ASSETS_DATA_ROOT", "cube-data"),
        help="data root whose SQLite catalog is used when no URL is given",
    )
    export.add_argument("--product", action="append", dest="products", help="export only this product (repeatable)")
    export.add_argument("--no-validate", action="store_true", help="skip checking each object against the STAC schemas")
    export.set_defaults(run=run_export_stac)


def run_export_stac(args: argparse.Namespace) -> int:
    """Export the catalog as static STAC; print what was written; return 0 (2 on a catalog error)."""
    from cube_assets.catalog.database import default_catalog_url
    from cube_assets.client import Catalog
    from cube_assets.client.stac_export import export_static_catalog
    from cube_assets.errors import CatalogError

    url = args.url or default_catalog_url(Path(args.data_root))
    started = time.monotonic()
    try:
        with Catalog(url) as catalog:
            result = export_static_catalog(catalog, args.dir, product_ids=args.products, validate=not args.no_validate)
    except CatalogError as exc:
        print(f"cube-assets catalog export-stac: {exc}", file=sys.stderr)
        return 2
    print(
        f"{result.collections} collections, {result.items} items in {time.monotonic() - started:.1f} s:"
        f" {result.catalog_path}"
    )
    return 0
