"""The app the maps tests serve: the whole service (``create_app``), STAC API and maps together."""

from __future__ import annotations

from fastapi import FastAPI

from cube_assets.service.app import create_app
from cube_assets.service.settings import ServiceSettings


def maps_app(catalog_url: str) -> FastAPI:
    """The service app (STAC API, tiles, viewer, time series) over the catalog at ``catalog_url``.

    Returns:
        The app.
    """
    return create_app(ServiceSettings(catalog_url=catalog_url))
