"""``cube-assets providers``: the provider registry in the catalog database.

::

    cube-assets providers load --from-dir DIR [--update]      register every DIR/*.json
    cube-assets providers set-priority COLLECTION PROVIDER N [--disable]
    cube-assets providers list [--collection COLLECTION]
    cube-assets providers load-provider (-i FILE | --from-dir DIR) [--update] [-v]
    cube-assets providers overview COLLECTION

``load-provider`` and ``overview`` are the Brazil Data Cube collection-builder's commands:
``load-provider`` skips providers already registered unless ``--update`` and, with ``-v``, prints
``Provider NAME created`` (or ``updated``, ``skipped``) per provider; ``overview`` prints a
collection's data collect order (its providers by priority, disabled ones marked).

The catalog is ``--catalog-url``, else ``$CUBE_ASSETS_CATALOG_URL``, else the SQLite catalog
under ``--data-root`` (``$CUBE_ASSETS_DATA_ROOT``, default ``./cube-data``); its schema is
brought up to date first. The packaged examples (Earth Search, Copernicus Data Space, BDC)
are in ``cube_assets/providers/examples``: ``--from-dir examples`` loads them (unless the
working directory has an ``examples`` folder, which is then used).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from cube_assets.redaction import redact_url


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``providers`` command and its sub-commands."""
    providers = subparsers.add_parser("providers", help="the provider registry: load, set priorities, list")
    actions = providers.add_subparsers(dest="action", required=True)

    def common(parser: argparse.ArgumentParser) -> None:
        parser.add_argument(
            "--catalog-url", default=os.environ.get("CUBE_ASSETS_CATALOG_URL"), help="catalog database URL"
        )
        parser.add_argument(
            "--data-root",
            default=os.environ.get("CUBE_ASSETS_DATA_ROOT", "cube-data"),
            help="data root whose SQLite catalog is used when no catalog URL is given",
        )

    load = actions.add_parser("load", help="register every provider JSON file of a folder")
    load.add_argument("--from-dir", required=True, help="folder of provider JSON files ('examples': the packaged ones)")
    load.add_argument("--update", action="store_true", help="update providers already registered (default: skip them)")
    common(load)
    load.set_defaults(run=run_load)

    priority = actions.add_parser("set-priority", help="rank a provider for a collection (0 is tried first)")
    priority.add_argument("collection")
    priority.add_argument("provider")
    priority.add_argument("priority", type=int)
    priority.add_argument("--disable", action="store_true", help="keep the rank but do not use the provider")
    common(priority)
    priority.set_defaults(run=run_set_priority)

    legacy = actions.add_parser("load-provider", help="register providers from one JSON file or a folder of them")
    source = legacy.add_mutually_exclusive_group(required=True)
    source.add_argument("-i", "--ifile", help="one provider JSON file")
    source.add_argument("--from-dir", "--from_dir", dest="from_dir", help="folder of provider JSON files")
    legacy.add_argument("--update", action="store_true", help="update providers already registered")
    legacy.add_argument("-v", "--verbose", action="store_true", help="print what happened to each provider")
    common(legacy)
    legacy.set_defaults(run=run_load_provider)

    overview = actions.add_parser("overview", help="describe a collection: its data collect order")
    overview.add_argument("collection")
    common(overview)
    overview.set_defaults(run=run_overview)

    listing = actions.add_parser("list", help="show registered providers and collection priorities")
    listing.add_argument("--collection", help="only this collection's priorities")
    common(listing)
    listing.set_defaults(run=run_list)


def _sessions(args: argparse.Namespace):  # a sessionmaker and the engine to dispose
    from cube_assets.catalog.database import create_catalog_engine, default_catalog_url, session_factory, upgrade_schema

    engine = create_catalog_engine(args.catalog_url or default_catalog_url(Path(args.data_root)))
    upgrade_schema(engine)
    return session_factory(engine), engine


def _fail(message: str) -> int:
    print(f"cube-assets providers: {message}", file=sys.stderr)
    return 2


def run_load(args: argparse.Namespace) -> int:
    """Register the providers of ``--from-dir``; print what was added, updated and skipped; return 0 (2 on error)."""
    from cube_assets.errors import ProviderError
    from cube_assets.providers.registry import EXAMPLES_DIR, load_providers, read_provider_directory

    directory = Path(args.from_dir)
    if args.from_dir == "examples" and not directory.is_dir():  # a folder of that name here wins
        directory = EXAMPLES_DIR
    try:
        definitions = read_provider_directory(directory)
    except ProviderError as exc:
        return _fail(str(exc))
    sessions, engine = _sessions(args)
    try:
        with sessions.begin() as session:
            report = load_providers(session, definitions, update=args.update)
    finally:
        engine.dispose()
    for label, names in (("added", report.added), ("updated", report.updated), ("skipped", report.skipped)):
        for name in names:
            print(f"{label}: {name}")
    if report.skipped and not args.update:
        print("(existing providers were skipped; --update replaces them)")
    return 0


def run_load_provider(args: argparse.Namespace) -> int:
    """Register the providers of ``--ifile`` or ``--from-dir``; with ``-v`` print each outcome; return 0 (2: error)."""
    from cube_assets.errors import ProviderError
    from cube_assets.providers.registry import load_providers, read_provider_directory, read_provider_file

    try:
        definitions = (
            [read_provider_file(Path(args.ifile))]
            if args.ifile is not None
            else read_provider_directory(Path(args.from_dir))
        )
    except ProviderError as exc:
        return _fail(str(exc))
    sessions, engine = _sessions(args)
    try:
        with sessions.begin() as session:
            report = load_providers(session, definitions, update=args.update)
    finally:
        engine.dispose()
    if args.verbose:
        for label, names in (("created", report.added), ("updated", report.updated), ("skipped", report.skipped)):
            for name in names:
                print(f"Provider {name} {label}")
    return 0


def run_overview(args: argparse.Namespace) -> int:
    """Print a collection's data collect order (providers by priority); return 0 (2 if it has none)."""
    from cube_assets.providers.registry import collection_providers

    sessions, engine = _sessions(args)
    try:
        with sessions() as session:
            ranked = collection_providers(session, args.collection, include_disabled=True)
    finally:
        engine.dispose()
    if not ranked:
        return _fail(f"collection {args.collection!r} has no providers; set one with set-priority")
    print(f"Collection: {args.collection}")
    print("Data collect order:")
    for entry in ranked:
        state = "" if entry.enabled else "  (disabled)"
        print(f"  {entry.priority:3d}  {entry.provider.name}  [{entry.provider.driver}]{state}")
    return 0


def run_set_priority(args: argparse.Namespace) -> int:
    """Set a provider's priority for a collection; print the collection's order; return 0 (2 on error)."""
    from cube_assets.errors import ProviderError
    from cube_assets.providers.registry import collection_providers, set_priority

    sessions, engine = _sessions(args)
    try:
        with sessions.begin() as session:
            set_priority(session, args.collection, args.provider, args.priority, enabled=not args.disable)
            ranked = collection_providers(session, args.collection, include_disabled=True)
    except ProviderError as exc:
        return _fail(str(exc))
    finally:
        engine.dispose()
    print(f"{args.collection}:")
    for entry in ranked:
        state = "" if entry.enabled else "  (disabled)"
        print(f"  {entry.priority:3d}  {entry.provider.name}{state}")
    return 0


def run_list(args: argparse.Namespace) -> int:
    """Print the registered providers and the collection priorities; return 0."""
    from cube_assets.providers.registry import all_priorities, list_providers

    sessions, engine = _sessions(args)
    try:
        with sessions() as session:
            definitions = list_providers(session)
            priorities = [p for p in all_priorities(session) if args.collection in (None, p.collection)]
    finally:
        engine.dispose()
    for definition in definitions:
        secured = f", credentials: {definition.credentials['type']}" if definition.credentials else ""
        print(f"{definition.name}  [{definition.driver}]  {redact_url(definition.url or '')}{secured}")
    for entry in priorities:
        state = "" if entry.enabled else "  (disabled)"
        print(f"{entry.collection}  {entry.priority:3d}  {entry.provider.name}{state}")
    return 0
