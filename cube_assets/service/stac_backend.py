"""The STAC API backend: a stac-fastapi core client over the catalog's search.

:class:`CatalogCoreClient` answers the core, collections, features and item-search endpoints
(and, through the extensions the app registers, sort, fields, query, filter and token paging)
from one :class:`~cube_assets.client.Catalog`. Collections and Items are the documents
:mod:`cube_assets.client.stac_export` builds for the static export; this module only adds the
API's links and the hrefs clients reach (:mod:`cube_assets.service.hrefs`). A page is fetched as
``limit + 1`` rows in the search's order; the extra row only says that a ``next`` link is due.

Items and pages are returned as ready responses (:class:`GeoJSONResponse`, JSON encoded once, by
orjson): FastAPI would otherwise walk every value of a page through ``jsonable_encoder`` first,
which took longer than building the page (the documents hold only JSON types already).
"""

from __future__ import annotations

import copy
import functools
import threading
import time
from collections.abc import Mapping
from typing import Any
from urllib.parse import quote, urlencode

import attr
import orjson
from stac_fastapi.types.core import BaseCoreClient
from stac_fastapi.types.errors import NotFoundError
from stac_fastapi.types.requests import get_base_url
from starlette.requests import Request
from starlette.responses import Response

from cube_assets.client.connection import Catalog
from cube_assets.client.image import Image, ImageView
from cube_assets.client.product import Product
from cube_assets.client.stac_export import ItemContext, item_context, item_document, product_stac
from cube_assets.service.hrefs import AssetHrefs
from cube_assets.service.paging import Cursor, encode_token
from cube_assets.service.queryables import queryables_schema
from cube_assets.service.search_request import FieldsSelection, SearchParameters, catalog_search, parse_search

GEOJSON = "application/geo+json"
QUERYABLES_REL = "http://www.opengis.net/def/rel/ogc/1.0/queryables"
JSON = "application/json"
#: Seconds a product's bands and composite function are reused between requests.
ITEM_CONTEXT_TTL_S = 5.0


class GeoJSONResponse(Response):
    """A GeoJSON response encoded by orjson: compact UTF-8, as the standard encoder gives, several times faster."""

    media_type = GEOJSON

    def render(self, content: Any) -> bytes:
        """Return ``content`` as JSON bytes.

        Raises:
            orjson.JSONEncodeError: for a value JSON cannot hold (a non-string key, an integer over 64 bits).
        """
        return orjson.dumps(content, default=_plain)


def _plain(value: Any) -> Any:
    """A number or text of a subclass (a band's ``Resolution``, say) as its plain type, which orjson encodes."""
    for kind in (int, float, str):
        if isinstance(value, kind):
            return kind(value)
    raise TypeError(f"{type(value).__name__} is not a JSON type")


#: Fields an Item keeps whatever the ``fields`` selection says.
_ALWAYS = ("type", "stac_version", "id", "links")


def _url(base_url: str, *parts: str) -> str:
    return base_url.rstrip("/") + "/" + "/".join(quote(part, safe="") for part in parts)


@functools.lru_cache(maxsize=1024)
def _collection_url(base_url: str, collection_id: str) -> str:
    """The URL of a collection (asked for by every Item of a page: kept)."""
    return _url(base_url, "collections", collection_id)


def select_fields(item: dict[str, Any], fields: FieldsSelection) -> dict[str, Any]:
    """Return ``item`` with only the included fields (dotted paths) and without the excluded ones.

    Returns:
        A new dict (``item`` is unchanged).
    """
    if not fields.include and not fields.exclude:
        return item
    if fields.include:
        chosen: dict[str, Any] = {key: item[key] for key in _ALWAYS if key in item}
        for path in fields.include:
            head, _, rest = path.partition(".")
            if head not in item:
                continue
            if rest and isinstance(item[head], dict):
                if rest in item[head]:
                    chosen.setdefault(head, {})[rest] = item[head][rest]
            else:
                chosen[head] = copy.deepcopy(item[head])
    else:
        chosen = copy.deepcopy(item)
    for path in fields.exclude:
        head, _, rest = path.partition(".")
        if head in _ALWAYS and not rest:
            continue
        if rest and isinstance(chosen.get(head), dict):
            chosen[head].pop(rest, None)
        elif not rest:
            chosen.pop(head, None)
    return chosen


@attr.s
class CatalogCoreClient(BaseCoreClient):  # type: ignore[misc]  # stac-fastapi's attrs classes are untyped
    """The core client of the API over one catalog: ``InvalidParameter`` becomes a 400, ``NotFoundError`` a 404."""

    catalog: Catalog = attr.ib(default=None)
    hrefs: AssetHrefs = attr.ib(factory=AssetHrefs)
    default_limit: int = attr.ib(default=10)
    max_limit: int = attr.ib(default=10_000)
    title: str = attr.ib(default="cube-assets")
    description: str = attr.ib(default="Data cubes of cube-assets: composites, merges and their source scenes.")
    _contexts: dict[str, tuple[float, ItemContext]] = attr.ib(factory=dict, init=False)
    _lock: threading.Lock = attr.ib(factory=threading.Lock, init=False)

    # ------------------------------------------------------------------ landing page

    def landing_page(self, **kwargs: Any) -> dict[str, Any]:
        """Return the landing page of stac-fastapi with this catalog's title and a child link per collection."""
        page: dict[str, Any] = dict(super().landing_page(**kwargs))
        page["id"], page["title"], page["description"] = "cube-assets", self.title, self.description
        base_url = get_base_url(kwargs["request"])
        if not any(link.get("rel") == QUERYABLES_REL for link in page["links"]):
            # stac-fastapi adds it only for extensions named exactly FilterExtension.
            page["links"].append(
                {"rel": QUERYABLES_REL, "type": "application/schema+json", "href": _url(base_url, "queryables")}
            )
        for product in Product.search(catalog=self.catalog).sort("id"):
            page["links"].append(
                {"rel": "child", "type": JSON, "title": product.name, "href": _url(base_url, "collections", product.id)}
            )
        return page

    # ------------------------------------------------------------------ collections

    def _collection_document(self, product: Product, base_url: str) -> dict[str, Any]:
        built = product_stac(self.catalog, product)
        document: dict[str, Any] = built.collection.to_dict(include_self_link=False, transform_hrefs=False)
        document["links"] = [
            {"rel": "self", "type": JSON, "href": _url(base_url, "collections", product.id)},
            {"rel": "parent", "type": JSON, "href": base_url},
            {"rel": "root", "type": JSON, "href": base_url},
            {"rel": "items", "type": GEOJSON, "href": _url(base_url, "collections", product.id, "items")},
            {
                "rel": QUERYABLES_REL,
                "type": "application/schema+json",
                "href": _url(base_url, "collections", product.id, "queryables"),
            },
        ]
        return document

    def all_collections(self, **kwargs: Any) -> dict[str, Any]:
        """Return every product as a Collection (``GET /collections``)."""
        base_url = get_base_url(kwargs["request"])
        products = list(Product.search(catalog=self.catalog).sort("id"))
        collections = [self._collection_document(product, base_url) for product in products]
        return {
            "collections": collections,
            "links": [
                {"rel": "root", "type": JSON, "href": base_url},
                {"rel": "parent", "type": JSON, "href": base_url},
                {"rel": "self", "type": JSON, "href": _url(base_url, "collections")},
            ],
            "numberMatched": len(collections),
            "numberReturned": len(collections),
        }

    def _product(self, collection_id: str) -> Product:
        product = Product.get(collection_id, catalog=self.catalog)
        if product is None:
            raise NotFoundError(f"collection {collection_id[:100]!r} not found")
        return product

    def get_collection(self, collection_id: str, **kwargs: Any) -> dict[str, Any]:
        """Return the product ``collection_id`` as a Collection (404 if unknown)."""
        return self._collection_document(self._product(collection_id), get_base_url(kwargs["request"]))

    # ------------------------------------------------------------------ items

    def _context(self, product_id: str) -> ItemContext:
        now = time.monotonic()
        with self._lock:
            cached = self._contexts.get(product_id)
        if cached is not None and now - cached[0] < ITEM_CONTEXT_TTL_S:
            return cached[1]
        product = Product.get(product_id, catalog=self.catalog)
        context = item_context(product) if product is not None else ItemContext({}, None)
        with self._lock:
            self._contexts[product_id] = (now, context)
        return context

    def _item_document(
        self, image: Image | ImageView, base_url: str, context: ItemContext | None = None
    ) -> dict[str, Any]:
        context = context if context is not None else self._context(image.product_id)
        document = self.hrefs.rewrite(item_document(image, context))
        collection_url = _collection_url(base_url, image.product_id)
        document["links"] = [
            {"rel": "self", "type": GEOJSON, "href": collection_url + "/items/" + quote(image.id, safe="")},
            {"rel": "parent", "type": JSON, "href": collection_url},
            {"rel": "collection", "type": JSON, "href": collection_url},
            {"rel": "root", "type": JSON, "href": base_url},
        ]
        return document

    def get_item(self, item_id: str, collection_id: str, **kwargs: Any) -> Response:
        """Return image ``item_id`` of product ``collection_id`` as an Item response (404 if either is unknown)."""
        self._product(collection_id)
        image = Image.get(item_id, catalog=self.catalog)
        if image is None or image.product_id != collection_id:
            raise NotFoundError(f"item {item_id[:100]!r} not found in collection {collection_id[:100]!r}")
        return GeoJSONResponse(self._item_document(image, get_base_url(kwargs["request"])))

    def _page(self, search: SearchParameters, request: Request, next_link: Mapping[str, Any]) -> Response:
        """Run one page of ``search``; return it as an ItemCollection response with a ``next`` link if more follow."""
        base_url = get_base_url(request)
        images = list(catalog_search(self.catalog, search).limit(search.limit + 1).views())
        more, images = len(images) > search.limit, images[: search.limit]
        contexts = {product_id: self._context(product_id) for product_id in {image.product_id for image in images}}
        features = [
            select_fields(self._item_document(image, base_url, contexts[image.product_id]), search.fields)
            for image in images
        ]
        links: list[dict[str, Any]] = [
            {"rel": "root", "type": JSON, "href": base_url},
            {"rel": "self", "type": GEOJSON, "href": str(request.url)},
        ]
        if more:
            last = images[-1]
            token = encode_token(Cursor(search.order.label, getattr(last, search.order.property_name), last.id))
            links.append(_with_token(dict(next_link), token))
        page = {"type": "FeatureCollection", "features": features, "links": links, "numberReturned": len(features)}
        return GeoJSONResponse(page)

    def _get_page(self, request: Request, collection_id: str | None = None, **values: Any) -> Response:
        search = parse_search(
            values, default_limit=self.default_limit, max_limit=self.max_limit, collection_id=collection_id
        )
        query = [(key, value) for key, value in request.query_params.multi_items() if key != "token"]
        next_link = {"rel": "next", "type": GEOJSON, "method": "GET", "href": str(request.url), "_query": query}
        return self._page(search, request, next_link)

    def item_collection(self, collection_id: str, **kwargs: Any) -> Response:
        """Return a page of the collection's items (``GET /collections/{id}/items``; 404 if unknown)."""
        self._product(collection_id)
        request = kwargs.pop("request")
        return self._get_page(request, collection_id, **_stac_names(kwargs))

    def get_search(self, **kwargs: Any) -> Response:
        """Return a page of ``GET /search``."""
        request = kwargs.pop("request")
        return self._get_page(request, **_stac_names(kwargs))

    def post_search(self, search_request: Any, **kwargs: Any) -> Response:
        """Return a page of ``POST /search``."""
        request: Request = kwargs["request"]
        body = search_request.model_dump(by_alias=True, exclude_none=True, mode="json")
        search = parse_search(body, default_limit=self.default_limit, max_limit=self.max_limit)
        next_body = {key: value for key, value in body.items() if key != "token"}
        next_link = {"rel": "next", "type": GEOJSON, "method": "POST", "href": str(request.url), "body": next_body}
        return self._page(search, request, next_link)

    # ------------------------------------------------------------------ queryables

    def queryables(self, base_url: str, collection_id: str | None = None) -> dict[str, Any]:
        """Return the queryables schema (404 for an unknown collection)."""
        if collection_id is not None:
            self._product(collection_id)
        return queryables_schema(base_url, collection_id)


def _stac_names(values: Mapping[str, Any]) -> dict[str, Any]:
    """GET keyword arguments of stac-fastapi (``filter_expr``, ``filter_lang``) under their STAC names."""
    renamed = {"filter_expr": "filter", "filter_lang": "filter-lang"}
    return {renamed.get(key, key): value for key, value in values.items()}


def _with_token(link: dict[str, Any], token: str) -> dict[str, Any]:
    query = link.pop("_query", None)
    if link["method"] == "POST":
        link["body"] = {**link["body"], "token": token}
        link["merge"] = False
        return link
    href = str(link["href"]).split("?", 1)[0]
    link["href"] = f"{href}?{urlencode([*(query or []), ('token', token)])}"
    return link


__all__ = ["ITEM_CONTEXT_TTL_S", "CatalogCoreClient", "select_fields"]
