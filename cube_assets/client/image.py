"""An image of the catalog: one catalogued raster of a product, with its files and pixels.

The raster is a composite, a merge or a scene.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import shapely
import shapely.geometry
from sqlalchemy import JSON, Select, Text, cast, func, select, type_coerce
from sqlalchemy.orm import Session

from cube_assets.catalog import models
from cube_assets.catalog.expressions import geometry_4326
from cube_assets.catalog.models import MAX_PROPERTIES, MAX_TAGS
from cube_assets.catalog.repository import ImageFileRecord, ImageRecord, upsert_image
from cube_assets.client import coercers
from cube_assets.client.attributes import Attribute, File
from cube_assets.client.base import CatalogObject, InProduct, ObjectState
from cube_assets.client.collection import ImageCollection, coverage_fraction, image_grid
from cube_assets.client.connection import Catalog, bind_to_catalogs
from cube_assets.client.upload import IMAGE_FIELDS, Upload, UploadStatus, upload_files, upload_ndarray
from cube_assets.errors import CatalogError
from cube_assets.storage.raster_store import RasterStore


class Image(InProduct, CatalogObject):
    """One catalogued raster of a product: a composite, a merge or a scene.

    ``geometry`` is the footprint (a shapely polygon in EPSG:4326; GeoJSON is accepted),
    ``acquired``..``acquired_end`` the time covered, ``crs``/``geotransform``/``width``/``height``
    the raster grid, ``files`` maps band name to :class:`File`.
    """

    _model = models.Image
    _what = "image"
    _spatial = True
    _default_order = (("acquired", True),)

    id = Attribute(coercers.identifier, kind="string", immutable=True, nullable=False, doc="Unique id.")
    product_id = Attribute(coercers.identifier, kind="string", immutable=True, nullable=False, doc="The product's id.")
    name = Attribute(coercers.identifier, kind="string", doc="Name (defaults to the id when saved).")
    acquired = Attribute(
        coercers.aware_datetime, kind="datetime", nullable=False, doc="Start of acquisition (aware, UTC)."
    )
    acquired_end = Attribute(coercers.aware_datetime, kind="datetime", doc="End of the time covered, for composites.")
    geometry = Attribute(coercers.geometry, doc="Footprint in EPSG:4326 (shapely).")
    crs = Attribute(coercers.identifier, kind="string", doc="CRS code, e.g. ``EPSG:32723``.")
    geotransform = Attribute(coercers.geotransform, doc="GDAL geotransform of the raster grid.")
    width = Attribute(coercers.integer(1), kind="number", doc="Columns of the raster grid.")
    height = Attribute(coercers.integer(1), kind="number", doc="Rows of the raster grid.")
    pixel_size_x = Attribute(coercers.number(positive=True), kind="number", doc="Pixel width in CRS units.")
    pixel_size_y = Attribute(coercers.number(positive=True), kind="number", doc="Pixel height in CRS units.")
    cloud_fraction = Attribute(coercers.number(0.0, 1.0), kind="number", doc="Share of cloudy pixels, 0..1.")
    fill_fraction = Attribute(coercers.number(0.0, 1.0), kind="number", doc="Share of pixels with data, 0..1.")
    provider = Attribute(coercers.identifier, kind="string", doc="Provider the scene came from.")
    provider_id = Attribute(coercers.identifier, kind="string", doc="The scene's id at its provider.")
    tile = Attribute(coercers.identifier, kind="string", doc="Grid tile name, for cube images.")
    period_start = Attribute(coercers.date, kind="date", doc="Start date of the cube period, for cube images.")
    properties = Attribute(
        coercers.properties,
        kind="json",
        default=dict,
        nullable=False,
        doc=f"Extra JSON properties (at most {MAX_PROPERTIES}).",
    )
    tags = Attribute(
        coercers.tags, kind="tags", default=list, nullable=False, doc=f"At most {MAX_TAGS} distinct strings."
    )
    files = Attribute(coercers.files, default=dict, nullable=False, doc="Band name → File(href, size_bytes).")
    created = Attribute(
        coercers.aware_datetime, kind="datetime", readonly=True, doc="When the image was first stored (UTC)."
    )
    modified = Attribute(coercers.aware_datetime, kind="datetime", readonly=True, doc="When it was last changed (UTC).")

    @classmethod
    def _collection(cls, images: list[Image], geocontext: Any) -> ImageCollection:
        """Return ``images`` as an ImageCollection with ``geocontext`` as its default grid.

        For ``search.collect()``.
        """
        return ImageCollection(images, geocontext=geocontext)

    @classmethod
    def _select(cls, dialect: str) -> Select[Any]:
        """The image columns, the footprint as GeoJSON text and the files as one JSON list, in one query.

        The footprints are parsed by GEOS for all rows at once; the files come from a correlated
        subquery (an index lookup per returned row), so a search is a single round trip.
        """
        table = models.Image.__table__
        files = models.ImageFile.__table__
        geometry = (
            cast(table.c.geometry, Text) if dialect == "postgresql" else type_coerce(table.c.geometry, Text)
        ).label("geometry")
        if dialect == "postgresql":
            listed = func.json_agg(func.json_build_array(files.c.band, files.c.href, files.c.size_bytes))
        else:
            listed = func.json_group_array(func.json_array(files.c.band, files.c.href, files.c.size_bytes))
        file_list = (
            select(type_coerce(listed, JSON)).where(files.c.image_id == table.c.id).scalar_subquery().label("file_list")
        )
        columns = [geometry if column.name == "geometry" else column for column in table.c]
        return select(*columns, file_list)

    @classmethod
    def _build(cls, rows: Sequence[Any], catalog: Catalog, session: Session) -> list[Image]:
        """Images from rows of :meth:`_select`."""
        if not rows:
            return []
        geometries = shapely.from_geojson([row.geometry for row in rows])
        images = []
        for row, geometry in zip(rows, geometries, strict=True):
            listed = sorted(row.file_list or [], key=lambda entry: entry[0])
            files = {band: File(href, size) for band, href, size in listed}
            images.append(cls._from_row(row, catalog, {"geometry": geometry, "files": files}))
        return images

    @classmethod
    def _read_column(cls, row: Any, attribute: Attribute) -> Any:
        if attribute.name == "geotransform":
            return None if row.geotransform is None else tuple(row.geotransform)
        return super()._read_column(row, attribute)

    def _records(self) -> ImageRecord:
        self._required("id", "product_id", "acquired", "geometry", "crs")
        return ImageRecord(
            id=self.id,
            product_id=self.product_id,
            name=self.name if self.name is not None else self.id,
            acquired=self.acquired,
            acquired_end=self.acquired_end,
            geometry=shapely.geometry.mapping(self.geometry),
            crs=self.crs,
            geotransform=self.geotransform,
            width=self.width,
            height=self.height,
            pixel_size_x=self.pixel_size_x,
            pixel_size_y=self.pixel_size_y,
            cloud_fraction=self.cloud_fraction,
            fill_fraction=self.fill_fraction,
            provider=self.provider,
            provider_id=self.provider_id,
            tile=self.tile,
            period_start=self.period_start,
            properties=self.properties,
            tags=list(self.tags),
            files=[ImageFileRecord(band, file.href, file.size_bytes) for band, file in self.files.items()],
        )

    def _write(self, session: Session, records: ImageRecord) -> None:
        upsert_image(session, records)

    @property
    def size_bytes(self) -> int:
        """Total size of the image's files whose size is known, in bytes."""
        return sum(file.size_bytes or 0 for file in self.files.values())

    def coverage(self, geometry: object) -> float:
        """Return the share of ``geometry``'s area that this image's footprint covers, 0..1.

        Areas are compared in an equal-area projection (EPSG:6933), so the share is true on the
        ground. ``geometry`` as :meth:`~cube_assets.catalog.search.Search.intersects` accepts.

        Raises:
            CatalogError: if the image has no footprint or ``geometry`` is invalid or has no area.
        """
        self._required("geometry")
        return coverage_fraction(self.geometry, geometry_4326(geometry))

    def geocontext(self) -> Any:
        """Return the image's own raster grid as a :class:`~cube_assets.client.geocontext.GeoContext`.

        Raises:
            CatalogError: if ``crs``, ``geotransform``, ``width`` or ``height`` is unknown.
        """
        return image_grid(self)

    def ndarray(self, bands: str | Sequence[str], geocontext: Any = None, **options: Any) -> Any:
        """Load ``bands`` of this image onto ``geocontext`` (default: its own grid): ``(band, y, x)``.

        ``options`` are those of :func:`cube_assets.client.raster_read.mosaic_files`
        (``mask_nodata``, ``bands_axis``, ``raster_info``, ``resampling``, ``scaling``, ``data_type``...).

        Returns:
            A masked array (see ``mosaic_files``).

        Raises:
            CatalogError: if the band metadata cannot be found or there is no grid.
            ValueError, InvalidRaster: from the pixel reader.
        """
        return ImageCollection([self], geocontext=geocontext).mosaic(bands, **options)

    def download(self, bands: str | Sequence[str], dest: Any, geocontext: Any = None, **options: Any) -> Any:
        """Write ``bands`` of this image, on ``geocontext`` (default: its own grid), to ``dest`` (a file or folder).

        ``options`` are those of :func:`cube_assets.client.raster_read.download_mosaic_files`.

        Returns:
            The written path.

        Raises:
            CatalogError, ValueError, InvalidRaster: as :meth:`ndarray`.
        """
        return ImageCollection([self], geocontext=geocontext).download_mosaic(bands, dest, **options)

    def upload_ndarray(self, ndarray: Any, *, store: RasterStore, **options: Any) -> Upload:
        """Write ``ndarray`` as this new image's COGs into ``store`` and catalog the image with its files.

        The image's attributes (id, product_id, acquired, and any of name, acquired_end,
        geometry, cloud_fraction, fill_fraction, provider, provider_id, tile, period_start,
        properties, tags) describe it; the grid comes from ``options`` (``raster_meta=`` a
        GeoContext or its ``raster_info()``, or ``geotransform=`` and ``crs=``), see
        :func:`cube_assets.client.upload.upload_ndarray`. On success the object is reloaded
        from the catalog and is ``saved``, with its files and grid.

        Returns:
            The :class:`~cube_assets.client.upload.Upload`; check its ``status``.

        Raises:
            CatalogError: if the image is already saved or deleted (uploading replaces nothing here).
        """
        return self._upload(lambda fields: upload_ndarray(store, self.catalog.sessions, fields, ndarray, **options))

    def upload(self, files: Any, *, store: RasterStore, **options: Any) -> Upload:
        """Upload rasters on disk as this new image's COGs (see :func:`cube_assets.client.upload.upload_files`).

        Returns:
            The :class:`~cube_assets.client.upload.Upload`; check its ``status``.

        Raises:
            CatalogError: if the image is already saved or deleted.
        """
        return self._upload(lambda fields: upload_files(store, self.catalog.sessions, fields, files, **options))

    def _upload(self, run: Callable[[dict[str, Any]], Upload]) -> Upload:
        if self.state != ObjectState.UNSAVED:
            raise CatalogError(f"{self._label()} is {self.state.value}; upload creates new images only")
        self._required("id", "product_id", "acquired")
        fields: dict[str, Any] = {}
        for name in IMAGE_FIELDS:
            value = self._values.get(name)
            if value is None:
                continue
            fields[name] = shapely.geometry.mapping(value) if name == "geometry" else value
        upload = run(fields)
        if upload.status == UploadStatus.SUCCESS:
            self._catalog = self.catalog
            self._refresh(self.catalog)
        return upload


bind_to_catalogs("images", Image)


__all__ = ["Image"]
