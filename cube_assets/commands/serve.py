"""``cube-assets serve``: the web service (STAC API) over the catalog, under uvicorn.

::

    cube-assets serve [--host 127.0.0.1] [--port 8000] [--workers 1] [--catalog URL] [--presign] [--allow-writes]

The catalog is ``--catalog``; else, with ``CUBE_ENV=prod``, ``$CUBE_ASSETS_CATALOG_URL`` (PostgreSQL);
else the demo's SQLite catalog under ``--data-root`` (``$CUBE_ASSETS_DATA_ROOT``, default
``./cube-data``). ``--presign`` gives S3 assets as presigned https URLs, signed with
``$CUBE_ASSETS_S3_ACCESS_KEY_ID``/``$CUBE_ASSETS_S3_SECRET_ACCESS_KEY`` (else boto3's own chain:
``AWS_*`` variables, a profile, an instance role) for ``$AWS_ENDPOINT_URL`` (another S3 service). ``--allow-writes``
adds the Transactions extension, whose requests must carry ``Authorization: Bearer <token>``
with the token in ``$CUBE_ASSETS_API_TOKEN`` (refused to start without it). ``--workers N`` runs N
worker processes (uvicorn's), each with its own catalog connections, on one port: a search is
bound by Python, so one process uses one core.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from fastapi import FastAPI

    from cube_assets.service.settings import ServiceSettings

WORKER_OPTIONS_ENV = "CUBE_ASSETS_SERVE_OPTIONS"
"""Where ``serve --workers N`` hands the catalog URL and flags to its workers (S3 keys stay in their own variables)."""


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``serve`` command."""
    serve = subparsers.add_parser("serve", help="serve the catalog as a STAC API (FastAPI under uvicorn)")
    serve.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    serve.add_argument("--port", type=int, default=8000, help="port to listen on (default 8000)")
    serve.add_argument(
        "--workers", type=_worker_count, default=1, help="worker processes (default 1: one core's worth)"
    )
    serve.add_argument("--catalog", default=None, help="catalog database URL (default: see the module help)")
    serve.add_argument(
        "--data-root",
        default=os.environ.get("CUBE_ASSETS_DATA_ROOT", "cube-data"),
        help="data root whose SQLite catalog is served when no URL is given",
    )
    serve.add_argument("--presign", action="store_true", help="give S3 assets as presigned https URLs")
    serve.add_argument(
        "--allow-writes", action="store_true", help="add the Transactions extension (bearer token from the env)"
    )
    serve.set_defaults(run=run_serve)


def catalog_url(args: argparse.Namespace, environ: dict[str, str] | os._Environ[str] = os.environ) -> str:
    """Return the catalog URL to serve: ``--catalog``, the production URL under ``CUBE_ENV=prod``, or the demo's.

    Raises:
        SystemExit: under ``CUBE_ENV=prod`` without ``CUBE_ASSETS_CATALOG_URL`` or ``--catalog``.
    """
    from cube_assets.catalog.database import default_catalog_url

    if args.catalog:
        return str(args.catalog)
    if environ.get("CUBE_ENV") == "prod":
        url = environ.get("CUBE_ASSETS_CATALOG_URL")
        if not url:
            raise SystemExit("cube-assets serve: CUBE_ENV=prod needs CUBE_ASSETS_CATALOG_URL (or --catalog)")
        return url
    return default_catalog_url(Path(args.data_root))


def _worker_count(value: str) -> int:
    try:
        count = int(value)
    except ValueError:
        count = 0
    if not 1 <= count <= 64:
        raise argparse.ArgumentTypeError(f"{value!r} is not a number of workers from 1 to 64")
    return count


def service_settings(
    catalog: str, presign: bool, allow_writes: bool, environ: dict[str, str] | os._Environ[str] = os.environ
) -> ServiceSettings:
    """Return the service settings for a catalog URL and flags, with the S3 endpoint and keys from ``environ``.

    Returns:
        The :class:`~cube_assets.service.settings.ServiceSettings`.
    """
    from cube_assets.service.settings import ServiceSettings

    return ServiceSettings(
        catalog_url=catalog,
        presign=presign,
        allow_writes=allow_writes,
        s3_endpoint_url=environ.get("AWS_ENDPOINT_URL") or None,
        s3_region=environ.get("AWS_REGION") or None,
        s3_access_key_id=environ.get("CUBE_ASSETS_S3_ACCESS_KEY_ID") or None,
        s3_secret_access_key=environ.get("CUBE_ASSETS_S3_SECRET_ACCESS_KEY") or None,
    )


def worker_app() -> FastAPI:
    """Return the app of one ``serve --workers N`` worker process, from the options its parent set.

    Returns:
        The service's FastAPI app.

    Raises:
        RuntimeError: outside a worker started by ``serve`` (no options in the environment).
    """
    from cube_assets.service.app import create_app

    options = os.environ.get(WORKER_OPTIONS_ENV)
    if not options:
        raise RuntimeError(f"cube-assets serve worker: ${WORKER_OPTIONS_ENV} is not set")
    values = json.loads(options)
    return create_app(service_settings(values["catalog_url"], values["presign"], values["allow_writes"]))


def run_serve(args: argparse.Namespace) -> int:
    """Serve the API until interrupted; return 0 (2 when the catalog cannot be opened or writes lack a token)."""
    import uvicorn

    from cube_assets.errors import CatalogError
    from cube_assets.redaction import redact_url
    from cube_assets.service.app import create_app

    settings = service_settings(catalog_url(args), args.presign, args.allow_writes)
    if settings.allow_writes and not os.environ.get(settings.write_token_env):
        print(f"cube-assets serve: --allow-writes needs a token in ${settings.write_token_env}", file=sys.stderr)
        return 2
    try:
        app = create_app(settings)  # with workers too: the catalog is checked (and migrated) once, here
    except CatalogError as exc:
        print(f"cube-assets serve: {exc}", file=sys.stderr)
        return 2
    workers = getattr(args, "workers", 1)
    where = f"{redact_url(settings.catalog_url)} on http://{args.host}:{args.port}/"
    print(f"cube-assets serve: {where}" + (f" ({workers} workers)" if workers > 1 else ""), flush=True)
    if workers == 1:
        uvicorn.run(app, host=args.host, port=args.port, log_level="info")
        return 0
    app.state.catalog.close()
    os.environ[WORKER_OPTIONS_ENV] = json.dumps(
        {"catalog_url": settings.catalog_url, "presign": settings.presign, "allow_writes": settings.allow_writes}
    )
    uvicorn.run(
        f"{__name__}:worker_app", factory=True, host=args.host, port=args.port, workers=workers, log_level="info"
    )
    return 0
