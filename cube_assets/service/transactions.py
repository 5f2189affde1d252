"""The Transactions extension (only with ``--allow-writes``): Items and Collections written through the catalog.

Every write needs ``Authorization: Bearer <token>``, the token being the value of the environment
variable named by ``ServiceSettings.write_token_env`` when the app is created (compared in
constant time; a missing or wrong token is a 401). An Item becomes a catalog image
(:func:`item_to_image_fields`, the inverse of the STAC builders) and a Collection a product, and
both are saved with the client's objects, so they pass the catalog's validation and upserts; a
refused value is a 400 naming the field. PATCH is not supported (405); PUT replaces.
"""

from __future__ import annotations

import hmac
import os
from collections.abc import Mapping
from typing import Any
from urllib.parse import unquote, urlsplit

import attr
from fastapi import Depends, HTTPException, Request
from stac_fastapi.extensions.transaction import TransactionExtension
from stac_fastapi.extensions.transaction.client import BaseTransactionsClient
from stac_fastapi.types.config import ApiSettings
from stac_fastapi.types.errors import ConflictError, NotFoundError

from cube_assets.catalog.stac import PREFIX
from cube_assets.client.attributes import File
from cube_assets.client.connection import Catalog
from cube_assets.client.image import Image
from cube_assets.client.product import Product
from cube_assets.errors import CatalogError
from cube_assets.service.queryables import InvalidParameter
from cube_assets.service.settings import ServiceSettings


def _local(href: str) -> str:
    parts = urlsplit(href)
    return unquote(parts.path) if parts.scheme == "file" else href


def item_to_image_fields(item: Mapping[str, Any], collection_id: str) -> dict[str, Any]:
    """Return the catalog image attributes of a STAC Item dict in collection ``collection_id``.

    Returns:
        Keyword arguments of :class:`~cube_assets.client.Image`.

    Raises:
        InvalidParameter: naming ``item`` when its collection differs from the path's or a required field is missing.
    """
    if item.get("collection") not in (None, collection_id):
        raise InvalidParameter(
            "item", f"collection {item.get('collection')!r} differs from the path's {collection_id!r}"
        )
    properties = dict(item.get("properties") or {})
    acquired = properties.get("start_datetime") or properties.get("datetime")
    crs = properties.get("proj:code") or properties.get("proj:wkt2")
    if not acquired or not item.get("geometry") or not crs:
        raise InvalidParameter("item", "needs a geometry, a datetime (or start_datetime) and proj:code")
    fields: dict[str, Any] = {
        "id": item.get("id"),
        "product_id": collection_id,
        "name": properties.get("title") or item.get("id"),
        "acquired": acquired,
        "acquired_end": properties.get("end_datetime"),
        "geometry": item["geometry"],
        "crs": crs,
    }
    transform, shape = properties.get("proj:transform"), properties.get("proj:shape")
    if transform and len(transform) >= 6:
        a, b, c, d, e, f = transform[:6]
        fields["geotransform"] = (c, a, b, f, d, e)
    if shape and len(shape) == 2:
        fields["height"], fields["width"] = shape
    if properties.get("eo:cloud_cover") is not None:
        cover = properties["eo:cloud_cover"]
        fields["cloud_fraction"] = cover / 100 if isinstance(cover, int | float) else cover
    own = {"tile": "tile", "period_start": "period_start", "fill_fraction": "fill_fraction", "provider": "provider",
           "provider_id": "provider_id", "properties": "properties", "tags": "tags"}  # fmt: skip
    for key, attribute in own.items():
        if properties.get(f"{PREFIX}:{key}") is not None:
            fields[attribute] = properties[f"{PREFIX}:{key}"]
    fields["files"] = {
        key: File(_local(str(asset.get("href"))), asset.get("file:size"))
        for key, asset in (item.get("assets") or {}).items()
        if isinstance(asset, Mapping) and asset.get("href")
    }
    return fields


def _plain(model: Any) -> dict[str, Any]:
    if isinstance(model, Mapping):
        return dict(model)
    dumped: dict[str, Any] = model.model_dump(mode="json", by_alias=True, exclude_none=True)
    return dumped


@attr.s
class CatalogTransactionsClient(BaseTransactionsClient):  # type: ignore[misc]  # stac-fastapi's attrs classes are untyped
    """Writes Items as images and Collections as products through the client's objects."""

    catalog: Catalog = attr.ib(default=None)

    def _save_image(self, collection_id: str, item: Mapping[str, Any], *, replace: bool) -> dict[str, Any]:
        if Product.get(collection_id, catalog=self.catalog) is None:
            raise NotFoundError(f"collection {collection_id[:100]!r} not found")
        fields = item_to_image_fields(item, collection_id)
        existing = Image.get(str(fields["id"]), catalog=self.catalog)
        if existing is not None and not replace:
            raise ConflictError(f"item {str(fields['id'])[:100]!r} exists; use PUT to replace it")
        if existing is not None and existing.product_id != collection_id:
            raise ConflictError(f"item {str(fields['id'])[:100]!r} belongs to another collection")
        try:
            if existing is None:
                image = Image(catalog=self.catalog, **fields)
            else:
                image = existing
                for key, value in fields.items():
                    if key not in ("id", "product_id"):
                        setattr(image, key, value)
            image.save()
        except CatalogError as exc:
            raise InvalidParameter("item", str(exc)) from None
        return dict(item)

    def create_item(self, collection_id: str, item: Any, **kwargs: Any) -> dict[str, Any] | None:
        """Create an image (or every image of an ItemCollection) in product ``collection_id``."""
        document = _plain(item)
        if document.get("type") == "FeatureCollection":
            for feature in document.get("features") or []:
                self._save_image(collection_id, feature, replace=False)
            return None
        return self._save_image(collection_id, document, replace=False)

    def update_item(self, collection_id: str, item_id: str, item: Any, **kwargs: Any) -> dict[str, Any]:
        """Replace image ``item_id`` of product ``collection_id`` with ``item``."""
        document = _plain(item)
        if document.get("id") != item_id:
            raise InvalidParameter("item", f"id {document.get('id')!r} differs from the path's {item_id!r}")
        if Image.get(item_id, catalog=self.catalog) is None:
            raise NotFoundError(f"item {item_id[:100]!r} not found")
        return self._save_image(collection_id, document, replace=True)

    def delete_item(self, item_id: str, collection_id: str, **kwargs: Any) -> None:
        """Delete image ``item_id`` of product ``collection_id`` (its catalog rows, not its files)."""
        image = Image.get(item_id, catalog=self.catalog)
        if image is None or image.product_id != collection_id:
            raise NotFoundError(f"item {item_id[:100]!r} not found in collection {collection_id[:100]!r}")
        image.delete()

    def _save_product(self, collection: Mapping[str, Any], *, replace: bool) -> dict[str, Any]:
        collection_id = str(collection.get("id"))
        existing = Product.get(collection_id, catalog=self.catalog)
        if existing is not None and not replace:
            raise ConflictError(f"collection {collection_id[:100]!r} exists; use PUT to replace it")
        fields = {
            "name": collection.get("title") or collection_id,
            "description": collection.get("description") or "",
            "tags": list(collection.get("keywords") or []),
            "properties": dict(collection.get(f"{PREFIX}:properties") or {}),
        }
        try:
            product = existing or Product(catalog=self.catalog, id=collection_id)
            for key, value in fields.items():
                setattr(product, key, value)
            product.save()
        except CatalogError as exc:
            raise InvalidParameter("collection", str(exc)) from None
        return dict(collection)

    def create_collection(self, collection: Any, **kwargs: Any) -> dict[str, Any]:
        """Create a product from a Collection."""
        return self._save_product(_plain(collection), replace=False)

    def update_collection(self, collection_id: str, collection: Any, **kwargs: Any) -> dict[str, Any]:
        """Replace product ``collection_id``'s name, description, keywords and properties."""
        document = _plain(collection)
        if document.get("id") != collection_id:
            raise InvalidParameter("collection", f"id {document.get('id')!r} differs from the path's")
        if Product.get(collection_id, catalog=self.catalog) is None:
            raise NotFoundError(f"collection {collection_id[:100]!r} not found")
        return self._save_product(document, replace=True)

    def delete_collection(self, collection_id: str, **kwargs: Any) -> None:
        """Delete product ``collection_id`` (refused while it has images)."""
        product = Product.get(collection_id, catalog=self.catalog)
        if product is None:
            raise NotFoundError(f"collection {collection_id[:100]!r} not found")
        try:
            product.delete()
        except CatalogError as exc:
            raise ConflictError(str(exc)) from None

    def patch_item(self, *args: Any, **kwargs: Any) -> None:
        """PATCH is not supported: 405."""
        raise HTTPException(status_code=405, detail="PATCH is not supported; PUT the whole item")

    def patch_collection(self, *args: Any, **kwargs: Any) -> None:
        """PATCH is not supported: 405."""
        raise HTTPException(status_code=405, detail="PATCH is not supported; PUT the whole collection")


def bearer_dependency(token: str) -> Any:
    """Return a FastAPI dependency that lets a request through only with ``Authorization: Bearer <token>``.

    Raises:
        ValueError: if ``token`` is empty.
    """
    if not token:
        raise ValueError("the write token is empty")
    expected = f"Bearer {token}".encode()

    def require_token(request: Request) -> None:
        given = request.headers.get("authorization", "").encode()
        if not hmac.compare_digest(given, expected):
            raise HTTPException(
                status_code=401, detail="a valid bearer token is required", headers={"WWW-Authenticate": "Bearer"}
            )

    return Depends(require_token)


def transaction_extension(
    catalog: Catalog, settings: ServiceSettings, api_settings: ApiSettings
) -> TransactionExtension:
    """Return the Transactions extension over ``catalog``, guarded by the token in ``settings.write_token_env``.

    Raises:
        CatalogError: if the environment variable is unset or empty (writes would be open to anyone).
    """
    token = os.environ.get(settings.write_token_env, "")
    if not token:
        raise CatalogError(f"writes need a bearer token in ${settings.write_token_env}; it is unset or empty")
    return TransactionExtension(
        client=CatalogTransactionsClient(catalog=catalog),
        settings=api_settings,
        route_dependencies=[bearer_dependency(token)],
    )


__all__ = [
    "CatalogTransactionsClient",
    "bearer_dependency",
    "item_to_image_fields",
    "transaction_extension",
]
