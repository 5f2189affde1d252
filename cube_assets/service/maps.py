"""The maps of the web service in one call: tiles, the viewer and pixel time series.

``include_map_routes(app, settings)`` mounts on ``app``:

* ``/maps/...`` the tile routes (:mod:`cube_assets.service.tiles`): one image, a mosaic of one
  product and period or date, the products and their layout, and titiler.core's factory under
  ``/maps/titiler/images/{image_id}``;
* ``GET /viewer`` and its files (:mod:`cube_assets.service.viewer`);
* ``GET /timeseries`` (:mod:`cube_assets.service.timeseries_routes`).

All of them read the catalog through one :class:`~cube_assets.service.map_catalog.MapCatalog`.
"""

from __future__ import annotations

from fastapi import FastAPI
from sqlalchemy.engine import Engine

from cube_assets.service.map_catalog import MapCatalog
from cube_assets.service.settings import ServiceSettings
from cube_assets.service.tiles import StretchCache, include_titiler, tile_router
from cube_assets.service.timeseries_routes import timeseries_router
from cube_assets.service.viewer import include_viewer


def include_map_routes(app: FastAPI, settings: ServiceSettings, engine: Engine | None = None) -> None:
    """Mount the tile, viewer and time-series routes on ``app``.

    They read the catalog through ``engine`` when given (the STAC API's own, so both see one catalog), else
    through an engine of their own on ``settings.catalog_url``, disposed when the app shuts down.
    """
    catalog = MapCatalog(engine if engine is not None else settings.catalog_url)
    app.state.map_catalog = catalog
    app.include_router(tile_router(catalog, StretchCache()))
    include_titiler(app, catalog)
    app.include_router(timeseries_router(catalog))
    include_viewer(app)
    if engine is None:
        app.router.add_event_handler("shutdown", catalog.close)
