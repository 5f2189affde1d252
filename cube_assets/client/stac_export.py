"""The catalog's STAC documents, built one way for the static export and for the STAC API.

:func:`product_stac` gives a product's Collection (extent from its images) and the
:class:`ProductStac` context from which :func:`item_document` builds each image's Item; both
:func:`export_static_catalog` and the API (:mod:`cube_assets.service.stac_backend`) use them and
add only their own links (and, in the API, asset hrefs as clients reach them).

:func:`export_static_catalog` writes every product and image as a self-contained static
catalogue (relative links; asset hrefs are the catalogued files) that ``pystac``,
``pystac-client`` and ``odc-stac`` read: ``catalog.json``, ``{product}/collection.json``,
``{product}/{image}/{image}.json``. Collections and items are built by
:mod:`cube_assets.catalog.stac`. It is built in a temporary folder and moved into place.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pystac

from cube_assets.catalog.expressions import properties as p
from cube_assets.catalog.stac import (
    STAC_VERSION,
    Band,
    band_asset_fields,
    composite_function_of,
    image_item_dict,
    product_extent,
    product_to_collection,
    validate_stac,
)
from cube_assets.client.base import NotFoundError
from cube_assets.client.connection import Catalog
from cube_assets.client.image import Image, ImageView
from cube_assets.client.product import Product
from cube_assets.errors import CatalogError


@dataclass(frozen=True)
class ItemContext:
    """What building a product's items needs: its bands by name, its composite function, each band's asset fields.

    ``stac_version`` is pystac's STAC version when the context was made.
    """

    bands: Mapping[str, Band]
    composite_function: str | None
    stac_version: str = field(default_factory=pystac.get_stac_version)
    asset_fields: Mapping[str, Mapping[str, Any]] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "asset_fields", {name: band_asset_fields(band) for name, band in self.bands.items()})


@dataclass(frozen=True)
class ProductStac:
    """A product's STAC Collection, how many images it has, and its :class:`ItemContext`."""

    collection: pystac.Collection
    items: ItemContext
    item_count: int


def item_context(product: Product) -> ItemContext:
    """Return what building the product's items needs (one query: its bands).

    Returns:
        The :class:`ItemContext`.
    """
    return ItemContext({band.name: band for band in product.bands()}, composite_function_of(product))


def product_stac(catalog: Catalog, product: Product) -> ProductStac:
    """Return the product's Collection (extent, CRS codes and datacube dimensions from its images) and item context.

    Returns:
        A :class:`ProductStac`; the collection has no links.

    Raises:
        sqlalchemy.exc.SQLAlchemyError: if the catalog cannot be read.
    """
    bands = product.bands()
    count, bbox, interval, codes = product_extent(catalog, product.id)
    collection = product_to_collection(
        product,
        bands,
        spatial_extent=bbox,
        temporal_extent=interval if count else None,
        crs_codes=codes,
    )
    return ProductStac(
        collection, ItemContext({band.name: band for band in bands}, composite_function_of(product)), count
    )


def item_document(image: Image | ImageView, context: ItemContext) -> dict[str, Any]:
    """Return the image's STAC Item as a dict naming its collection, without links.

    The export writes the Items of ``Image`` objects, the API those of a search's views
    (:meth:`~cube_assets.client.search.ObjectSearch.views`): the same values, the same Items.

    Returns:
        The Item dict (asset hrefs are the catalogued file locations).

    Raises:
        CatalogError: if the image has no footprint or acquisition time.
    """
    document = image_item_dict(
        image,
        context.bands,
        composite_function=context.composite_function,
        asset_fields=context.asset_fields,
        stac_version=context.stac_version,
    )
    document["collection"] = image.product_id
    return document


@dataclass(frozen=True)
class ExportResult:
    """What :func:`export_static_catalog` wrote: the catalogue root and how many collections and items."""

    catalog_path: Path
    collections: int
    items: int


def _safe(name: str) -> str:
    """A file-name-safe form of an id (ids may hold ':' or '/')."""
    return re.sub(r"[^A-Za-z0-9._-]", "_", name).strip(".") or "_"


def _write_json(path: Path, document: Mapping[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8") as stream:
        json.dump(document, stream, indent=1, ensure_ascii=False)
        stream.write("\n")


def _link(
    rel: str, href: str, media_type: str = str(pystac.MediaType.JSON), title: str | None = None
) -> dict[str, Any]:
    link = {"rel": rel, "href": href, "type": media_type}
    if title:
        link["title"] = title
    return link


def export_static_catalog(
    catalog: Catalog,
    dest: str | os.PathLike[str],
    *,
    catalog_id: str = "cube-assets",
    title: str = "cube-assets catalog",
    description: str = "Data cubes and source collections catalogued by cube-assets.",
    product_ids: Sequence[str] | None = None,
    validate: bool = True,
) -> ExportResult:
    """Write the catalog (or the products ``product_ids``) as a static STAC catalogue in folder ``dest``.

    Layout: ``dest/catalog.json``; per product ``dest/{product}/collection.json`` with the extent
    of its images; per image ``dest/{product}/{image}/{image}.json``. Links are relative (a
    self-contained catalogue that can be moved or served as is); asset hrefs are the catalogued
    file locations. Images are streamed from the database in batches, so memory does not grow
    with their number. With ``validate`` every object is checked with :func:`validate_stac`
    before it is written.

    The catalogue is written into a temporary sibling folder and then moved to ``dest``; a
    previous export at ``dest`` (a folder holding ``catalog.json``) is replaced, an empty folder
    is reused, any other existing ``dest`` is refused.

    Returns:
        An :class:`ExportResult`.

    Raises:
        CatalogError: if ``dest`` exists and is neither empty nor an earlier export, or a product
            in ``product_ids`` is not in the catalog.
        StacValidationError: if ``validate`` and an object is not valid STAC.
        OSError: if the files cannot be written (``dest`` is then unchanged).
    """
    destination = Path(dest).absolute()
    if destination.exists() and not (
        destination.is_dir() and ((destination / "catalog.json").is_file() or not any(destination.iterdir()))
    ):
        raise CatalogError(f"{destination} exists and is not an earlier STAC export or an empty folder; choose another")
    if product_ids is None:
        products = list(Product.search(catalog=catalog).sort("id"))
    else:
        try:
            products = Product.get_many(list(product_ids), catalog=catalog)
        except NotFoundError as exc:
            raise CatalogError(f"export_static_catalog: {exc}") from None
    destination.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{destination.name}.tmp-", dir=destination.parent))
    try:
        root_links = [_link("root", "./catalog.json", title=title)]
        folders: set[str] = set()
        item_total = 0
        for product in products:
            folder = _safe(product.id)
            if folder in folders:
                raise CatalogError(f"products {product.id!r} and another map to the same folder {folder!r}")
            folders.add(folder)
            item_total += _export_product(catalog, product, staging / folder, validate)
            root_links.append(_link("child", f"./{folder}/collection.json", title=product.name))
        root = {
            "type": "Catalog",
            "stac_version": STAC_VERSION,
            "id": catalog_id,
            "title": title,
            "description": description,
            "links": root_links,
        }
        if validate:
            validate_stac(root)
        _write_json(staging / "catalog.json", root)
        _swap_into_place(staging, destination)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return ExportResult(destination / "catalog.json", len(products), item_total)


def _export_product(catalog: Catalog, product: Product, folder: Path, validate: bool) -> int:
    """Write the product's collection and every image's item under ``folder``; return the item count."""
    context = product_stac(catalog, product)
    links = [
        _link("root", "../catalog.json"),
        _link("parent", "../catalog.json"),
    ]
    written = 0
    used: set[str] = set()
    for image in Image.search(catalog=catalog).filter(p.product_id == product.id).sort("id"):
        name = _safe(image.id)
        if name in used:
            raise CatalogError(f"images {image.id!r} and another of product {product.id!r} map to the same file name")
        used.add(name)
        document = item_document(image, context.items)
        document["links"] = [
            _link("root", "../../catalog.json"),
            _link("parent", "../collection.json"),
            _link("collection", "../collection.json"),
        ]
        if validate:
            validate_stac(document)
        _write_json(folder / name / f"{name}.json", document)
        links.append(_link("item", f"./{name}/{name}.json", str(pystac.MediaType.GEOJSON)))
        written += 1
    document = context.collection.to_dict(include_self_link=False, transform_hrefs=False)
    document["links"] = links
    if validate:
        validate_stac(document)
    _write_json(folder / "collection.json", document)
    return written


def _swap_into_place(staging: Path, destination: Path) -> None:
    """Move the finished export onto ``destination``, replacing an earlier export."""
    if not destination.exists():
        os.replace(staging, destination)
        return
    if not any(destination.iterdir()):
        destination.rmdir()
        os.replace(staging, destination)
        return
    old = destination.with_name(f".{destination.name}.old-{os.getpid()}")
    os.replace(destination, old)
    try:
        os.replace(staging, destination)
    except OSError:
        os.replace(old, destination)
        raise
    shutil.rmtree(old, ignore_errors=True)


__all__ = [
    "ExportResult",
    "ItemContext",
    "ProductStac",
    "export_static_catalog",
    "item_context",
    "item_document",
    "product_stac",
]
