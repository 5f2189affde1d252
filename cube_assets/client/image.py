"""An image of the catalog: one catalogued raster of a product, with its files and pixels.

The raster is a composite, a merge or a scene.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import shapely
import shapely.geometry
from sqlalchemy import JSON, Select, Text, cast, func, select, type_coerce
from sqlalchemy.orm import Session

from cube_assets.catalog import models
from cube_assets.catalog.expressions import geometry_4326
from cube_assets.catalog.expressions import properties as p
from cube_assets.catalog.models import MAX_PROPERTIES, MAX_TAGS
from cube_assets.catalog.repository import ImageFileRecord, ImageRecord, upsert_image
from cube_assets.client import coercers
from cube_assets.client.attributes import Alias, Attribute, File
from cube_assets.client.bands import Band
from cube_assets.client.base import CatalogObject, InProduct, ObjectState
from cube_assets.client.collection import ImageCollection, _grid_and_dest, coverage_fraction, image_grid
from cube_assets.client.connection import Catalog, bind_to_catalogs
from cube_assets.client.enums import DownloadFileFormat, ResampleAlgorithm, StorageState
from cube_assets.client.image_upload import ImageUpload, ImageUploadOptions, start_upload
from cube_assets.client.search import ObjectSearch
from cube_assets.client.upload import IMAGE_FIELDS, Upload, upload_files, upload_ndarray
from cube_assets.errors import CatalogError
from cube_assets.storage.raster_store import RasterStore


class ImageView:
    """An image found by a search, read only: the attribute values an :class:`Image` of the same row holds.

    What :meth:`~cube_assets.client.search.ObjectSearch.views` yields: reading a page of images
    this way builds no objects (no change tracking), and the attributes (by their own names, not
    the aliases) are those of the image: ``view.acquired == image.acquired``.
    """

    def __init__(self, values: dict[str, Any]) -> None:
        # The values are the instance's attributes: read at the speed of plain attributes.
        object.__setattr__(self, "__dict__", values)

    def __getattr__(self, name: str) -> Any:
        # Reached only for a name the values lack: the footprint, parsed by GEOS on first use
        # (a page of Items reads its GeoJSON, :meth:`footprint_geojson`, and never needs it).
        if name != "geometry":
            raise AttributeError(f"an ImageView has no attribute {name!r}")
        text = self.__dict__.get("_footprint_text")
        geometry = None if text is None else shapely.from_geojson(text)
        self.__dict__["geometry"] = geometry
        return geometry

    def footprint_geojson(self) -> dict[str, Any] | None:
        """Return the footprint as the catalog stores it: a GeoJSON mapping (EPSG:4326), or None.

        Returns:
            A new dict each call, parsed from the row's GeoJSON text.
        """
        text = self.__dict__.get("_footprint_text")
        if text is None:
            return None
        document: dict[str, Any] = orjson.loads(text)
        return document

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError(f"an ImageView is read only; set {name!r} on an Image")

    def __repr__(self) -> str:
        return f"ImageView(id={self.__dict__.get('id')!r})"


class Image(InProduct, CatalogObject):
    """One catalogued raster of a product: a composite, a merge or a scene.

    ``geometry`` is the footprint (a shapely polygon in EPSG:4326; GeoJSON is accepted),
    ``acquired``..``acquired_end`` the time covered, ``crs``/``geotransform``/``width``/``height``
    the raster grid (also named ``cs_code``/``geotrans``/``x_pixels``/``y_pixels``), ``files``
    maps band name to :class:`File`, ``extra_properties`` is ``properties``.
    ``Image(product=product, name="scene2")`` builds the id ``"{product_id}:{name}"``; an id
    ``"{product_id}:{name}"`` given alone gives the product and the name.
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

    cs_code = Alias("crs", doc="The catalog guide's name of ``crs`` (an EPSG code such as ``EPSG:32723``).")
    projection = Alias("crs", doc="The CRS as PROJ or WKT text; stored in ``crs``.")
    geotrans = Alias("geotransform", doc="The catalog guide's name of ``geotransform``.")
    x_pixels = Alias("width", doc="The catalog guide's name of ``width``.")
    y_pixels = Alias("height", doc="The catalog guide's name of ``height``.")
    extra_properties = Alias("properties", doc="The catalog guide's name of ``properties``.")

    def __init__(self, *, catalog: Catalog | None = None, **attributes: Any) -> None:
        self._take_product(attributes)
        identity = attributes.get("id")
        if isinstance(identity, str) and ":" in identity and "product_id" not in attributes:
            product_id, name = identity.rsplit(":", 1)
            attributes["product_id"] = product_id
            attributes.setdefault("name", name)
        super().__init__(catalog=catalog, **attributes)
        self._fill_id()

    def _fill_id(self) -> None:
        """Give a new image without an id the id ``"{product_id}:{name}"``."""
        if self._values.get("id") is None and self._values.get("product_id") and self._values.get("name"):
            self._values["id"] = f"{self._values['product_id']}:{self._values['name']}"

    @property
    def date(self) -> Any:
        """The acquisition time (``acquired``)."""
        return self.acquired

    @property
    def storage_state(self) -> StorageState:
        """``available``: every catalogued image here has its files."""
        return StorageState.AVAILABLE

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
        return [cls._from_row(row, catalog, extra) for row, extra in cls._read_rows(rows)]

    @classmethod
    def _build_views(cls, rows: Sequence[Any], catalog: Catalog, session: Session) -> list[ImageView]:
        """Read-only views of the images of rows of :meth:`_select`: the values :meth:`_build` gives its images."""
        views = []
        for row, extra in cls._read_rows(rows, parse_footprints=False):
            values = cls._row_values(row, extra)
            values["_footprint_text"] = values.pop("geometry")
            views.append(ImageView(values))
        return views

    @classmethod
    def _read_rows(cls, rows: Sequence[Any], parse_footprints: bool = True) -> list[tuple[Any, dict[str, Any]]]:
        """Each row with its files by band and footprint (parsed by GEOS for all rows at once, or left as text)."""
        if not rows:
            return []
        texts = [row.geometry for row in rows]
        geometries = shapely.from_geojson(texts) if parse_footprints else texts
        read = []
        for row, geometry in zip(rows, geometries, strict=True):
            listed = sorted(row.file_list or [], key=lambda entry: entry[0])
            files = {band: File(href, size) for band, href, size in listed}
            read.append((row, {"geometry": geometry, "files": files}))
        return read

    _converted_columns = frozenset({"geotransform"})

    @classmethod
    def _read_column(cls, row: Any, attribute: Attribute) -> Any:
        if attribute.name == "geotransform":
            return None if row.geotransform is None else tuple(row.geotransform)
        return super()._read_column(row, attribute)

    def _records(self) -> ImageRecord:
        self._fill_id()
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

    @property
    def geocontext(self) -> Any:
        """The image's own raster grid as a :class:`~cube_assets.client.geocontext.GeoContext`.

        Raises:
            CatalogError: if ``crs``, ``geotransform``, ``width`` or ``height`` is unknown.
        """
        return image_grid(self)

    def ndarray(
        self,
        bands: str | Sequence[str],
        geocontext: Any = None,
        crs: Any = None,
        resolution: Any = None,
        all_touched: Any = None,
        mask_nodata: bool = True,
        mask_alpha: bool | str | None = None,
        bands_axis: int = 0,
        raster_info: bool = False,
        resampler: ResampleAlgorithm | str = ResampleAlgorithm.NEAR,
        processing_level: str | None = None,
        scaling: Any = None,
        data_type: str | None = None,
        progress: bool | None = None,
        **options: Any,
    ) -> Any:
        """Load ``bands`` of this image onto ``geocontext`` (default: its own grid): ``(band, y, x)``.

        Arguments as :meth:`ImageCollection.mosaic <cube_assets.client.collection.ImageCollection.mosaic>`;
        ``mask_alpha=None`` masks the pixels where the product's alpha band is 0, if it has one.

        Returns:
            A masked array (see ``mosaic_files``), and the raster info with ``raster_info=True``.

        Raises:
            CatalogError: if the band metadata cannot be found or there is no grid.
            ValueError, InvalidRaster: from the arguments or the pixel reader.
        """
        return ImageCollection([self], geocontext=geocontext).mosaic(
            bands,
            crs=crs,
            resolution=resolution,
            all_touched=all_touched,
            mask_nodata=mask_nodata,
            mask_alpha=mask_alpha,
            bands_axis=bands_axis,
            raster_info=raster_info,
            resampler=resampler,
            processing_level=processing_level,
            scaling=scaling,
            data_type=data_type,
            progress=progress,
            **options,
        )

    def download(
        self,
        bands: str | Sequence[str],
        geocontext: Any = None,
        crs: Any = None,
        resolution: Any = None,
        all_touched: Any = None,
        dest: Any = None,
        format: DownloadFileFormat | str = DownloadFileFormat.TIF,
        resampler: ResampleAlgorithm | str = ResampleAlgorithm.NEAR,
        processing_level: str | None = None,
        scaling: Any = None,
        data_type: str | None = None,
        nodata: float | None = None,
        progress: bool | None = None,
        **options: Any,
    ) -> Any:
        """Write ``bands`` of this image, on ``geocontext`` (default: its own grid), to a file.

        ``dest`` is a file path (its extension decides the format) or a folder; by default the
        file ``{image id}-{band}-{band}....{format}`` in the working directory. The second
        positional argument may be the destination as well as the grid. Other arguments as
        :meth:`ndarray`; ``options`` as :func:`cube_assets.client.raster_read.download_mosaic_files`.

        Returns:
            The written path.

        Raises:
            CatalogError, ValueError, InvalidRaster: as :meth:`ndarray`.
        """
        geocontext, crs, dest = _grid_and_dest(geocontext, dest, crs)
        names = bands.split() if isinstance(bands, str) else list(bands)
        default_name = f"{self.id}-{'-'.join(names)}.{format}".replace("/", "_")
        folder = Path.cwd() if dest is None else Path(dest) if Path(dest).is_dir() else None
        target = folder / default_name if folder is not None else dest
        return ImageCollection([self], geocontext=geocontext).download_mosaic(
            bands,
            crs=crs,
            resolution=resolution,
            all_touched=all_touched,
            dest=target,
            resampler=resampler,
            processing_level=processing_level,
            scaling=scaling,
            data_type=data_type,
            nodata=nodata,
            progress=progress,
            **options,
        )

    def scaling_parameters(
        self,
        bands: str | Sequence[str],
        processing_level: str | None = None,
        scaling: Any = None,
        data_type: str | None = None,
    ) -> tuple[list[Any] | None, str]:
        """Return ``(scales, data_type)`` that :meth:`ndarray` would use for these arguments.

        Raises:
            CatalogError: if a band has no file or metadata.
            ValueError: for invalid scaling or a ``processing_level``.
        """
        return ImageCollection([self]).scaling_parameters(bands, processing_level, scaling, data_type)

    def image_uploads(self) -> ObjectSearch[ImageUpload]:
        """Return a search of the uploads of this image.

        Raises:
            CatalogError: if the image has no id.
        """
        self._fill_id()
        self._required("id")
        return ImageUpload.search(catalog=self.catalog).filter(p.image_id == self.id)

    def upload_ndarray(
        self,
        ndarray: Any,
        upload_options: ImageUploadOptions | None = None,
        raster_meta: Any = None,
        overviews: Sequence[int] | None = None,
        overview_resampler: str | None = None,
        overwrite: bool = False,
        *,
        store: RasterStore | None = None,
        **options: Any,
    ) -> ImageUpload:
        """Upload ``ndarray`` as this new image's COGs into the store and catalog it, in the background.

        The image's attributes (id or product and name, acquired, and any of acquired_end,
        geometry, cloud_fraction, fill_fraction, provider, provider_id, tile, period_start,
        properties, tags) describe it. The grid is ``raster_meta`` (a GeoContext, its
        ``raster_info()`` or the raster info of a load), else the image's ``geotrans`` and
        ``cs_code``, else ``geotransform=``/``crs=`` in ``options`` (see
        :func:`cube_assets.client.upload.upload_ndarray`, which does the work). ``overviews`` and
        ``overview_resampler`` may also come in ``upload_options``. ``store`` defaults to the
        catalog's ``upload_store``. On success the object is reloaded by
        :meth:`ImageUpload.wait_for_completion` / ``reload`` and is ``saved``.

        Returns:
            The :class:`~cube_assets.client.image_upload.ImageUpload`, ``pending`` at first.

        Raises:
            CatalogError: if the image is saved or deleted, required attributes are missing, an
                image with its id exists and ``overwrite`` is False, or there is no store.
        """
        opts = _upload_options(upload_options, overviews, overview_resampler, "ndarray")
        if raster_meta is None and "geotransform" not in options and self.geotransform is not None:
            options = {"geotransform": self.geotransform, "crs": self.crs, **options}
        target = self._upload_store(store)
        sessions = self.catalog.sessions
        reader = {**options, **_overview_arguments(opts)}
        pixels = ndarray
        if "bands" not in reader and self.product_id is not None:
            reader["bands"], pixels = self._fit_to_product(ndarray)
        return self._upload(
            opts,
            overwrite,
            lambda fields: upload_ndarray(target, sessions, fields, pixels, raster_meta=raster_meta, **reader),
        )

    def upload(
        self,
        files: Any,
        upload_options: ImageUploadOptions | None = None,
        overwrite: bool = False,
        *,
        store: RasterStore | None = None,
        **options: Any,
    ) -> ImageUpload:
        """Upload rasters on disk as this new image's COGs, in the background (see :meth:`upload_ndarray`).

        ``files`` is one path, a list of paths (their bands in order are the product's bands) or
        a mapping of band name to path (see :func:`cube_assets.client.upload.upload_files`).

        Returns:
            The :class:`~cube_assets.client.image_upload.ImageUpload`.

        Raises:
            CatalogError: as :meth:`upload_ndarray`.
        """
        opts = _upload_options(upload_options, None, None, "file")
        target = self._upload_store(store)
        sessions = self.catalog.sessions
        listed = [files] if isinstance(files, str | os.PathLike) else files
        reader = {**options, **_overview_arguments(opts)}
        return self._upload(opts, overwrite, lambda fields: upload_files(target, sessions, fields, listed, **reader))

    def _fit_to_product(self, ndarray: Any) -> tuple[list[str] | None, Any]:
        """The bands an array with fewer bands than the product fills, and the array to upload.

        Its bands are the product's first bands by ``band_index`` (a 1-band array for a product
        of ``blue`` and ``alpha`` is its ``blue``, as the catalog guide uploads it). When the
        product also has an alpha band the array does not fill, a masked array's mask becomes
        that alpha band (0 where any band is masked) and the masked pixels are written as 0.

        Returns:
            ``(band names, array)``; ``(None, ndarray)`` when the array has as many bands as the
            product (the upload then checks it as it is).
        """
        count = 1 if getattr(ndarray, "ndim", 3) == 2 else len(ndarray)
        bands = list(Band.search(catalog=self.catalog).filter(p.product_id == self.product_id))
        if not 0 < count < len(bands):
            return None, ndarray
        names = [band.name for band in bands[:count]]
        alpha = next((b for b in bands[count:] if getattr(b, "is_alpha", False)), None)
        if alpha is None or not isinstance(ndarray, np.ma.MaskedArray):
            return names, ndarray
        layers = ndarray[np.newaxis] if ndarray.ndim == 2 else ndarray
        transparent = np.ma.getmaskarray(layers).any(axis=0)
        filled = np.ma.filled(layers, 0)
        opaque = (~transparent).astype(filled.dtype)[np.newaxis]
        return [*names, alpha.name], np.concatenate([filled, opaque])

    def _upload_store(self, store: RasterStore | None) -> RasterStore:
        resolved = store if store is not None else self.catalog.upload_store
        if resolved is None:
            raise CatalogError(
                f"{self._label()}: no raster store to upload into; pass store= or open the catalog with upload_store="
            )
        return resolved

    def _upload(
        self, options: ImageUploadOptions, overwrite: bool, run: Callable[[dict[str, Any]], Upload]
    ) -> ImageUpload:
        if self.state != ObjectState.UNSAVED:
            raise CatalogError(f"{self._label()} is {self.state.value}; upload creates new images only")
        self._fill_id()
        self._required("id", "product_id", "acquired")
        if not overwrite and Image.exists(self.id, catalog=self.catalog):
            raise CatalogError(f"{self._label()} is already in the catalog; pass overwrite=True to replace its files")
        fields: dict[str, Any] = {}
        for name in IMAGE_FIELDS:
            value = self._values.get(name)
            if value is None:
                continue
            fields[name] = shapely.geometry.mapping(value) if name == "geometry" else value
        self._catalog = self.catalog
        return start_upload(self.catalog, self, options, lambda: run(fields))


def _upload_options(
    given: ImageUploadOptions | None, overviews: Sequence[int] | None, resampler: str | None, upload_type: str
) -> ImageUploadOptions:
    """The upload's options: ``given`` with ``overviews``/``overview_resampler`` arguments on top."""
    base = given if given is not None else ImageUploadOptions()
    if not isinstance(base, ImageUploadOptions):
        raise CatalogError(f"upload_options must be an ImageUploadOptions, got {type(base).__name__}")
    return ImageUploadOptions(
        overviews=tuple(overviews) if overviews is not None else base.overviews,
        overview_resampler=resampler if resampler is not None else base.overview_resampler,
        upload_type=upload_type,
    )


def _overview_arguments(options: ImageUploadOptions) -> dict[str, Any]:
    arguments: dict[str, Any] = {}
    if options.overviews is not None:
        arguments["overviews"] = list(options.overviews)
    if options.overview_resampler is not None:
        arguments["overview_resampler"] = options.overview_resampler
    return arguments


bind_to_catalogs("images", Image)


__all__ = ["Image", "ImageView"]
