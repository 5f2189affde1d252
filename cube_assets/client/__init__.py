"""The Python client of the catalog: products, bands and images as objects, searched, loaded and uploaded.

Its public names, importable from here::

    from cube_assets.client import Catalog, Image, Product, SpectralBand, connect
    from cube_assets.client import BandType, DataType, ImageUpload, properties as p   # the catalog guide's names

Modules, from the bottom up: :mod:`~cube_assets.client.connection` (a catalog database and the
one default catalog), :mod:`~cube_assets.client.attributes` and
:mod:`~cube_assets.client.coercers` (declared attributes and the checks of their values),
:mod:`~cube_assets.client.enums` (the catalog guide's enumerations and ``Resolution``),
:mod:`~cube_assets.client.search` (searches that also collect and summarize),
:mod:`~cube_assets.client.base` (the active-record base, states and errors),
:mod:`~cube_assets.client.bands`, :mod:`~cube_assets.client.collection` (collections and pixel
loading through :mod:`~cube_assets.client.raster_read` with the arguments of
:mod:`~cube_assets.client.load_options`, filtered in memory by
:mod:`~cube_assets.client.expression_match`, on a
:mod:`~cube_assets.client.geocontext` grid, with :mod:`~cube_assets.client.scaling`),
:mod:`~cube_assets.client.upload` and :mod:`~cube_assets.client.image_upload` (uploads as
catalog records, run in the background), :mod:`~cube_assets.client.image`,
:mod:`~cube_assets.client.product` and :mod:`~cube_assets.client.stac_export`. The client is
built on the catalog core (:mod:`cube_assets.catalog`), which imports nothing of it.
"""

from cube_assets.catalog.expressions import properties
from cube_assets.client.attributes import File
from cube_assets.client.bands import (
    Band,
    ClassBand,
    DerivedBand,
    GenericBand,
    MaskBand,
    MicrowaveBand,
    SpectralBand,
)
from cube_assets.client.base import CatalogObject, ConflictError, InvalidAttributeError, NotFoundError, ObjectState
from cube_assets.client.collection import ImageCollection
from cube_assets.client.connection import Catalog, connect, default_catalog, disconnect
from cube_assets.client.enums import (
    BandType,
    DataType,
    DownloadFileFormat,
    ImageUploadStatus,
    OverviewResampler,
    ResampleAlgorithm,
    Resolution,
    ResolutionUnit,
    StorageState,
)
from cube_assets.client.geocontext import GeoContext
from cube_assets.client.image import Image
from cube_assets.client.image_upload import ImageUpload, ImageUploadOptions
from cube_assets.client.product import Product

#: The catalog guide's name of :class:`ObjectState`.
DocumentState = ObjectState

__all__ = [
    "Band",
    "BandType",
    "Catalog",
    "CatalogObject",
    "ClassBand",
    "ConflictError",
    "DataType",
    "DerivedBand",
    "DocumentState",
    "DownloadFileFormat",
    "File",
    "GenericBand",
    "GeoContext",
    "Image",
    "ImageCollection",
    "ImageUpload",
    "ImageUploadOptions",
    "ImageUploadStatus",
    "InvalidAttributeError",
    "MaskBand",
    "MicrowaveBand",
    "NotFoundError",
    "ObjectState",
    "OverviewResampler",
    "Product",
    "ResampleAlgorithm",
    "Resolution",
    "ResolutionUnit",
    "SpectralBand",
    "StorageState",
    "properties",
    "connect",
    "default_catalog",
    "disconnect",
]
