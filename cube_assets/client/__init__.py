"""The Python client of the catalog: products, bands and images as objects, searched, loaded and uploaded.

Its public names, importable from here::

    from cube_assets.client import Catalog, Image, Product, SpectralBand, connect

Modules, from the bottom up: :mod:`~cube_assets.client.connection` (a catalog database and the
one default catalog), :mod:`~cube_assets.client.attributes` and
:mod:`~cube_assets.client.coercers` (declared attributes and the checks of their values),
:mod:`~cube_assets.client.search` (searches that also collect and summarize),
:mod:`~cube_assets.client.base` (the active-record base, states and errors),
:mod:`~cube_assets.client.bands`, :mod:`~cube_assets.client.collection` (collections and pixel
loading through :mod:`~cube_assets.client.raster_read`, on a
:mod:`~cube_assets.client.geocontext` grid, with :mod:`~cube_assets.client.scaling`),
:mod:`~cube_assets.client.upload`, :mod:`~cube_assets.client.image`,
:mod:`~cube_assets.client.product` and :mod:`~cube_assets.client.stac_export`. The client is
built on the catalog core (:mod:`cube_assets.catalog`), which imports nothing of it.
"""

from cube_assets.client.attributes import File
from cube_assets.client.bands import Band, ClassBand, GenericBand, MaskBand, SpectralBand
from cube_assets.client.base import CatalogObject, ConflictError, InvalidAttributeError, NotFoundError, ObjectState
from cube_assets.client.connection import Catalog, connect, default_catalog, disconnect
from cube_assets.client.image import Image
from cube_assets.client.product import Product

__all__ = [
    "Band",
    "Catalog",
    "CatalogObject",
    "ClassBand",
    "ConflictError",
    "File",
    "GenericBand",
    "Image",
    "InvalidAttributeError",
    "MaskBand",
    "NotFoundError",
    "ObjectState",
    "Product",
    "SpectralBand",
    "connect",
    "default_catalog",
    "disconnect",
]
