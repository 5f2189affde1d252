"""The app the maps tests serve: the one place to swap for the full service app (``create_app``)."""

from __future__ import annotations

from fastapi import FastAPI

from cube_assets.service.maps import include_map_routes
from cube_assets.service.settings import ServiceSettings


def maps_app(catalog_url: str) -> FastAPI:
    """A FastAPI app with the map routes over the catalog at ``catalog_url``.

    Returns:
        The app.
    """
    app = FastAPI(title="cube-assets maps")
    include_map_routes(app, ServiceSettings(catalog_url=catalog_url))
    return app
