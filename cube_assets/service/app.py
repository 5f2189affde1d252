"""The web service: one FastAPI app with the STAC API over the catalog (stac-fastapi), ready for more routers.

:func:`create_app` builds ``StacApi`` with :class:`~cube_assets.service.stac_backend.CatalogCoreClient`
and the extensions it implements: sort, fields, query, filter (CQL2 text and JSON, queryables)
and token paging on ``/search`` and ``/collections/{id}/items``, and, with
``settings.allow_writes``, transactions (:mod:`cube_assets.service.transactions`). Other routers
(tiles, viewer, time series) are added with ``app.include_router`` on the returned app.

Errors: a malformed parameter is a 400 whose JSON body names it (``{"code": "InvalidParameter",
"parameter": "bbox", "description": "bbox: ..."}``); an unknown collection or item a 404; a
failure of the database a 503 that names nothing of it (its URL and credentials never reach a
response or a log line).
"""

import logging
from typing import Annotated, Any, Literal

import attr
from fastapi import FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, Field
from sqlalchemy.exc import SQLAlchemyError
from stac_fastapi.api.app import StacApi
from stac_fastapi.api.models import ItemCollectionUri, JSONResponse, create_get_request_model, create_post_request_model
from stac_fastapi.extensions import (
    FieldsExtension,
    FilterExtension,
    QueryExtension,
    SortExtension,
    TokenPaginationExtension,
)
from stac_fastapi.extensions.filter.client import BaseFiltersClient
from stac_fastapi.extensions.filter.filter import FilterConformanceClasses
from stac_fastapi.types.config import ApiSettings
from stac_fastapi.types.extension import ApiExtension
from stac_fastapi.types.requests import get_base_url
from stac_fastapi.types.search import BaseSearchGetRequest, BaseSearchPostRequest

from cube_assets.client.connection import Catalog
from cube_assets.errors import CatalogError
from cube_assets.service.hrefs import AssetHrefs
from cube_assets.service.maps import include_map_routes
from cube_assets.service.queryables import InvalidParameter
from cube_assets.service.settings import ServiceSettings
from cube_assets.service.stac_backend import CatalogCoreClient

LOG = logging.getLogger(__name__)

_LimitQuery = Annotated[int | None, Query(description="Items per page, from 1 to the server's maximum.")]
_DatetimeQuery = Annotated[str | None, Query(description="RFC 3339 instant or interval (a/b, ../b, a/..).")]
_BboxQuery = Annotated[str | None, Query(description="west,south,east,north in degrees.")]


@attr.s
class SearchGetRequest(BaseSearchGetRequest):  # type: ignore[misc]  # stac-fastapi's attrs classes are untyped
    """GET ``/search`` parameters, checked by the backend (so a bad one is a 400 naming it, and no limit is cropped)."""

    bbox: _BboxQuery = attr.ib(default=None)
    datetime: _DatetimeQuery = attr.ib(default=None)
    limit: _LimitQuery = attr.ib(default=None)


@attr.s
class ItemsGetRequest(ItemCollectionUri):  # type: ignore[misc]  # stac-fastapi's attrs classes are untyped
    """GET ``/collections/{id}/items`` parameters, checked by the backend."""

    bbox: _BboxQuery = attr.ib(default=None)
    datetime: _DatetimeQuery = attr.ib(default=None)
    limit: _LimitQuery = attr.ib(default=None)


class SearchPostRequest(BaseSearchPostRequest):
    """POST ``/search`` body; ``limit`` is checked by the backend (no silent cropping)."""

    limit: int | None = Field(None, description="Items per page, from 1 to the server's maximum.")  # type: ignore[assignment]  # widened on purpose: the backend refuses bad values by name


@attr.s
class QueryablesClient(BaseFiltersClient):  # type: ignore[misc]  # stac-fastapi's attrs classes are untyped
    """The filter extension's queryables, from :data:`~cube_assets.service.queryables.QUERYABLES`."""

    core: CatalogCoreClient = attr.ib(default=None)

    def get_queryables(self, collection_id: str | None = None, **kwargs: Any) -> dict[str, Any]:
        """Return the queryables schema (404 for an unknown collection)."""
        return self.core.queryables(get_base_url(kwargs["request"]), collection_id)


class FilterPostRequest(BaseModel):
    """The filter fields of a POST search: CQL2-JSON, or CQL2 text as a string (``filter-lang`` may say which)."""

    filter_expr: dict[str, Any] | str | None = Field(None, alias="filter", description="A CQL2 filter.")
    filter_crs: str | None = Field(None, alias="filter-crs", description="CRS of the filter's geometries (CRS84).")
    filter_lang: Literal["cql2-json", "cql2-text"] | None = Field(
        None, alias="filter-lang", description="The filter's encoding (guessed from its type when absent)."
    )


@attr.s
class CatalogFilterExtension(FilterExtension):  # type: ignore[misc]  # stac-fastapi's attrs classes are untyped
    """The filter extension whose POST body takes CQL2 text too."""

    POST = FilterPostRequest


def _filter_extension(core: CatalogCoreClient) -> FilterExtension:
    return CatalogFilterExtension(
        client=QueryablesClient(core=core),
        conformance_classes=[
            FilterConformanceClasses.FILTER,
            FilterConformanceClasses.SEARCH,
            FilterConformanceClasses.ITEMS,
            FilterConformanceClasses.BASIC_CQL2,
            FilterConformanceClasses.CQL2_JSON,
            FilterConformanceClasses.CQL2_TEXT,
        ],
    )


#: Search parameters a whole-body validation message may name.
_PARAMETERS = ("intersects", "bbox", "datetime", "limit", "filter", "sortby", "fields", "query", "ids", "collections")


def _named_in(message: str) -> str:
    """The first search parameter a validation message names, else ``request``."""
    found = [(message.find(name), name) for name in _PARAMETERS if name in message]
    return min(found)[1] if found else "request"


def _error(status: int, code: str, description: str, **extra: Any) -> JSONResponse:
    return JSONResponse(status_code=status, content={"code": code, "description": description, **extra})


def add_error_handlers(app: FastAPI) -> None:
    """Answer bad parameters with 400 (naming them), database failures with 503 (naming nothing of the database).

    Returns:
        None.
    """

    async def invalid_parameter(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, InvalidParameter)
        return _error(400, "InvalidParameter", str(exc), parameter=exc.parameter)

    async def invalid_request(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError)
        first = exc.errors()[0] if exc.errors() else {}
        location = [str(part) for part in first.get("loc", ()) if part not in ("body", "query", "path")]
        parameter = location[0] if location else _named_in(str(first.get("msg", "")))
        message = f"{'.'.join(location) or parameter}: {first.get('msg', 'invalid value')}"
        return _error(400, "InvalidParameter", message, parameter=parameter)

    async def catalog_error(request: Request, exc: Exception) -> JSONResponse:
        return _error(400, "InvalidParameter", str(exc), parameter="request")

    async def database_error(request: Request, exc: Exception) -> JSONResponse:
        LOG.error("catalog database error on %s: %s", request.url.path, type(exc).__name__)
        return _error(503, "CatalogUnavailable", "the catalog database could not answer; try again later")

    app.add_exception_handler(InvalidParameter, invalid_parameter)
    app.add_exception_handler(RequestValidationError, invalid_request)
    app.add_exception_handler(CatalogError, catalog_error)
    app.add_exception_handler(SQLAlchemyError, database_error)


def create_app(settings: ServiceSettings, *, catalog: Catalog | None = None) -> FastAPI:
    """Return the service's FastAPI app over the catalog of ``settings`` (or the open ``catalog``).

    Returns:
        The app; ``app.state.catalog`` is the catalog it reads, ``app.state.stac_api`` the ``StacApi``.

    Raises:
        CatalogError: if the catalog URL is not a SQLite or PostgreSQL URL.
        sqlalchemy.exc.SQLAlchemyError: if the database cannot be reached while migrating.
    """
    catalog = catalog if catalog is not None else Catalog(settings.catalog_url)
    core = CatalogCoreClient(
        catalog=catalog,
        hrefs=AssetHrefs(
            presign=settings.presign,
            endpoint_url=settings.s3_endpoint_url,
            region=settings.s3_region,
            access_key_id=settings.s3_access_key_id,
            secret_access_key=settings.s3_secret_access_key,
        ),
        default_limit=settings.default_limit,
        max_limit=settings.max_limit,
    )
    search_extensions: list[ApiExtension] = [
        SortExtension(),
        FieldsExtension(),
        QueryExtension(),
        _filter_extension(core),
        TokenPaginationExtension(),
    ]
    api_settings = ApiSettings(
        openapi_url="/api",
        docs_url="/api.html",
        stac_fastapi_title="cube-assets STAC API",
        stac_fastapi_description="Data cubes of cube-assets: composites, merges and their source scenes.",
        stac_fastapi_landing_id="cube-assets",
        stac_fastapi_version="1.0.0",
    )
    extensions = list(search_extensions)
    if settings.allow_writes:
        from cube_assets.service.transactions import transaction_extension  # only when writes are allowed

        extensions.append(transaction_extension(catalog, settings, api_settings))
    items_model = create_get_request_model(search_extensions, base_model=ItemsGetRequest)
    api = StacApi(
        app=FastAPI(title="cube-assets", openapi_url="/api", docs_url="/api.html"),
        settings=api_settings,
        title="cube-assets STAC API",
        description="Data cubes of cube-assets: composites, merges and their source scenes.",
        api_version="1.0.0",
        client=core,
        extensions=extensions,
        search_get_request_model=create_get_request_model(search_extensions, base_model=SearchGetRequest),
        search_post_request_model=create_post_request_model(search_extensions, base_model=SearchPostRequest),
        items_get_request_model=items_model,
        response_class=JSONResponse,
    )
    add_error_handlers(api.app)
    api.app.state.catalog = catalog
    api.app.state.stac_api = api
    include_map_routes(api.app, settings, catalog.engine)
    return api.app


__all__ = ["ItemsGetRequest", "SearchGetRequest", "SearchPostRequest", "add_error_handlers", "create_app"]
