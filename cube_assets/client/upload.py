"""Upload pixels into the catalog: write COGs into the raster store and register the image.

:func:`upload_ndarray` takes an array, :func:`upload_files` takes rasters on disk; both write one
validated Cloud-Optimized GeoTIFF per band of the image's product (the catalog's convention: one
file per band), publish them through the :class:`~cube_assets.storage.raster_store.RasterStore`
under ``uploads/{product_id}/{image_id}/{image_id}_{band}.tif``, and upsert the image with its
files. They return an :class:`Upload` whose ``status`` ends in ``success`` or ``failure``, with
``error`` saying why; they do not raise for bad input.

The order makes a failure harmless: everything is validated first (image fields, grid, array
shape, product and bands in the catalog, values that fit each band's data type); files are
published only then, and the catalog row is written last, so the catalog never points at a
missing file (a store failure halfway through publishing can leave some of the new files behind,
uncatalogued). Uploading the same image again overwrites the same keys and updates the same row.

Each band's data type and nodata come from the product's bands in the catalog. Masked pixels (a
``numpy.ma.MaskedArray``, or a file's nodata/mask) are written as the band's nodata; float values
going into an integer band are rounded and must be finite and in range (NaN is not nodata: mask
it). ``overviews=None`` lets :func:`~cube_assets.raster.cog.write_cog` choose the overview levels;
a list such as ``[2, 4]`` builds exactly those decimation factors.
"""

from __future__ import annotations

import dataclasses
import enum
import math
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
import rasterio.shutil
from affine import Affine
from rasterio.crs import CRS
from rasterio.enums import MaskFlags, Resampling
from rasterio.errors import RasterioError, RasterioIOError
from rasterio.io import MemoryFile
from rasterio.warp import transform_geom
from shapely.geometry import mapping, shape
from sqlalchemy import Engine, select
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from cube_assets.atomic import atomic_path
from cube_assets.catalog.database import session_factory
from cube_assets.catalog.models import Band, Product
from cube_assets.catalog.repository import ImageFileRecord, ImageRecord, upsert_image
from cube_assets.client.geocontext import GeoContext
from cube_assets.client.scaling import numpy_dtype
from cube_assets.errors import CatalogError, CubeAssetsError, InvalidRaster
from cube_assets.grids import densify
from cube_assets.raster.cog import COG_CONTENT_TYPE, OVERVIEW_RESAMPLINGS, is_valid_cog, write_cog
from cube_assets.raster.windowed_io import output_profile
from cube_assets.storage.raster_store import RasterStore

#: ImageRecord fields an upload takes from the caller; the grid fields come from the raster.
IMAGE_FIELDS: tuple[str, ...] = (
    "id",
    "product_id",
    "name",
    "acquired",
    "acquired_end",
    "geometry",
    "cloud_fraction",
    "fill_fraction",
    "provider",
    "provider_id",
    "tile",
    "period_start",
    "properties",
    "tags",
)
_BLOCKSIZE = 512


class UploadStatus(enum.StrEnum):
    """Where an upload is: ``pending`` → ``running`` → ``success`` or ``failure``."""

    PENDING = "pending"
    RUNNING = "running"
    SUCCESS = "success"
    FAILURE = "failure"


@dataclass
class Upload:
    """The state and outcome of one image upload.

    ``files`` maps band name to the published URI (filled on success); ``error`` says why a
    failed upload failed, naming the image and the bad input; ``exception`` is the original
    exception.
    """

    image_id: str
    product_id: str
    status: UploadStatus = UploadStatus.PENDING
    error: str | None = None
    files: dict[str, str] = field(default_factory=dict)
    exception: BaseException | None = field(default=None, repr=False, compare=False)

    @property
    def done(self) -> bool:
        """Whether the upload has finished, successfully or not."""
        return self.status in (UploadStatus.SUCCESS, UploadStatus.FAILURE)

    def raise_for_status(self) -> None:
        """Raise the upload's error if it failed.

        Returns:
            None when the upload has not failed.

        Raises:
            The original exception (a ``CubeAssetsError``, ``ValueError``, ``OSError``,
            rasterio or SQLAlchemy error) if the status is ``failure``.
        """
        if self.status == UploadStatus.FAILURE:
            assert self.exception is not None
            raise self.exception


@dataclass(frozen=True)
class _Grid:
    crs: CRS
    transform: Affine
    shape: tuple[int, int] | None


_EXPECTED_ERRORS = (CubeAssetsError, ValueError, OSError, RasterioError, SQLAlchemyError)


def upload_ndarray(
    store: RasterStore,
    catalog: Engine | sessionmaker[Session],
    image: Mapping[str, Any],
    array: np.ndarray | np.ma.MaskedArray,
    *,
    raster_meta: Mapping[str, Any] | GeoContext | None = None,
    geotransform: Sequence[float] | Affine | None = None,
    crs: CRS | str | int | None = None,
    bands: Sequence[str] | None = None,
    overviews: Sequence[int] | None = None,
    overview_resampler: str = "nearest",
) -> Upload:
    """Write ``array`` as the image's COGs, publish them and register the image in the catalog.

    ``image`` holds the image's catalog fields (:data:`IMAGE_FIELDS`): ``id``, ``product_id`` and
    a timezone-aware ``acquired`` are required; ``name`` defaults to the id and ``geometry`` to
    the raster's footprint in EPSG:4326. ``array`` is ``(band, y, x)`` or ``(y, x)``, one band per
    entry of ``bands`` (default: every band of the product, by ``band_index``). The grid is
    ``raster_meta`` (a :class:`GeoContext`, its ``raster_info()`` dict or the client's dict
    with ``geoTransform`` and ``coordinateSystem``; a ``shape``/``size`` in it must match the
    array) or ``geotransform`` (GDAL 6-tuple or ``Affine``) with ``crs``.
    ``overview_resampler`` is one of ``nearest``, ``average``, ``mode``, ``bilinear``, ``cubic``.

    Returns:
        The :class:`Upload`, ``success`` with its ``files`` or ``failure`` with its ``error``.

    Raises:
        Nothing for bad input or a failing store or database: they end in ``failure``.
    """
    upload = _new_upload(image)

    def work() -> None:
        grid = _grid(raster_meta, geotransform, crs)
        data = np.ma.asarray(array) if isinstance(array, np.ma.MaskedArray) else np.asarray(array)
        if data.ndim == 2:
            data = data[np.newaxis]
        if data.ndim != 3 or 0 in data.shape:
            raise InvalidRaster(f"array must be (band, y, x) or (y, x) and non-empty, got shape {np.shape(array)}")
        if grid.shape is not None and tuple(data.shape[1:]) != grid.shape:
            raise InvalidRaster(
                f"array of shape {data.shape} has (y, x) = {data.shape[1:]}, but raster_meta describes {grid.shape}"
            )
        if data.dtype == np.bool_ or data.dtype.kind not in "uif":
            raise InvalidRaster(f"array dtype {data.dtype} cannot be written to a GeoTIFF")
        _publish(
            upload,
            store,
            catalog,
            image,
            grid,
            (data.shape[1], data.shape[2]),
            bands,
            data.shape[0],
            lambda index, _band: data[index],
            overviews,
            overview_resampler,
        )

    return _run(upload, work)


def upload_files(
    store: RasterStore,
    catalog: Engine | sessionmaker[Session],
    image: Mapping[str, Any],
    files: Mapping[str, str | os.PathLike[str] | tuple[str | os.PathLike[str], int]] | Sequence[str | os.PathLike[str]],
    *,
    bands: Sequence[str] | None = None,
    overviews: Sequence[int] | None = None,
    overview_resampler: str = "nearest",
) -> Upload:
    """Upload rasters on disk (any GDAL format) as the image's COGs and register the image.

    ``files`` maps band name to a file (its band 1) or ``(file, band_number)``; or it is a list
    of files whose bands, taken in order, are the image's bands (``bands``, default every band of
    the product by ``band_index``). All bands must share one CRS, transform and size, which
    become the image's grid. A file's nodata or mask marks pixels written as the band's nodata.
    ``image`` and the other arguments as :func:`upload_ndarray`.

    Returns:
        The :class:`Upload`.

    Raises:
        Nothing for bad input: it ends in ``failure``.
    """
    upload = _new_upload(image)

    def work() -> None:
        sources = _file_sources(files, bands)
        grid, shape_yx = _files_grid(sources)
        names = [name for name, _ in sources] if isinstance(files, Mapping) else bands

        def read(index: int, band_row: Band) -> np.ndarray | np.ma.MaskedArray:
            # The file's nodata/mask marks pixels to write as the band's nodata; a band without
            # nodata keeps the file's values as they are.
            path, number = sources[index][1]
            with rasterio.open(path) as src:
                masked = band_row.nodata is not None and any(
                    flag != MaskFlags.all_valid for flag in src.mask_flag_enums[number - 1]
                )
                return src.read(number, masked=masked)

        _publish(
            upload, store, catalog, image, grid, shape_yx, names, len(sources), read, overviews, overview_resampler
        )

    return _run(upload, work)


# ------------------------------------------------------------------------------------ internals


def _new_upload(image: Any) -> Upload:
    if isinstance(image, Mapping):
        return Upload(image_id=str(image.get("id", "")), product_id=str(image.get("product_id", "")))
    return Upload(image_id="", product_id="")


def _run(upload: Upload, work: Callable[[], None]) -> Upload:
    upload.status = UploadStatus.RUNNING
    try:
        work()
    except _EXPECTED_ERRORS as error:
        upload.status = UploadStatus.FAILURE
        upload.error = f"upload of image {upload.image_id!r}: {error}"
        upload.exception = error
        upload.files = {}
        return upload
    upload.status = UploadStatus.SUCCESS
    return upload


def _publish(
    upload: Upload,
    store: RasterStore,
    catalog: Engine | sessionmaker[Session],
    image: Mapping[str, Any],
    grid: _Grid,
    shape_yx: tuple[int, int],
    bands: Sequence[str] | None,
    band_count: int,
    band_array: Callable[[int, Band], np.ndarray | np.ma.MaskedArray],
    overviews: Sequence[int] | None,
    overview_resampler: str,
) -> None:
    """Validate everything, write and publish one COG per band, then upsert the image."""
    fields = _image_fields(image)
    factors = _check_overviews(overviews, overview_resampler)
    sessions = session_factory(catalog) if isinstance(catalog, Engine) else catalog
    product_id, image_id = fields["product_id"], fields["id"]
    with sessions() as session:
        band_rows = _product_bands(session, product_id, bands)
    if len(band_rows) != band_count:
        raise InvalidRaster(
            f"{band_count} band(s) of pixels for the {len(band_rows)} band(s) {[b.name for b in band_rows]}"
            f" of product {product_id!r}"
        )
    height, width = shape_yx
    record = _record(fields, grid, height, width)  # validates the fields before anything is written

    hrefs: dict[str, str] = {}
    files = []
    with store.staging_dir() as staging:
        staged = []
        for index, band in enumerate(band_rows):
            dtype = numpy_dtype(band.data_type)
            values = _band_values(band_array(index, band), band, dtype)
            path = staging / f"{image_id}_{band.name}.tif"
            if factors is None:
                write_cog(
                    values,
                    path,
                    crs=grid.crs,
                    transform=grid.transform,
                    nodata=band.nodata,
                    dtype=dtype,
                    overview_resampling=overview_resampler,
                    band_descriptions=[band.name],
                )
            else:
                _write_cog_with_overviews(values, path, grid, band.nodata, band.name, factors, overview_resampler)
            staged.append((band.name, path))
        for name, path in staged:
            uri = store.publish(path, f"uploads/{product_id}/{image_id}/{image_id}_{name}.tif", COG_CONTENT_TYPE)
            hrefs[name] = uri
            files.append(ImageFileRecord(band=name, href=uri, size_bytes=store.size(uri)))
    with sessions.begin() as session:
        upsert_image(session, dataclasses.replace(record, files=tuple(files)))
    upload.files = hrefs


def _image_fields(image: Any) -> dict[str, Any]:
    if not isinstance(image, Mapping):
        raise CatalogError(f"image must be a mapping of catalog fields, got {type(image).__name__}")
    unknown = sorted(str(key) for key in image if key not in IMAGE_FIELDS)
    if unknown:
        raise CatalogError(f"image fields {unknown} are not uploadable; use {IMAGE_FIELDS}")
    for required in ("id", "product_id", "acquired"):
        if image.get(required) in (None, ""):
            raise CatalogError(f"image field {required!r} is required")
    for key in ("id", "product_id"):
        value = image[key]
        if not isinstance(value, str) or "/" in value or "\\" in value or value in (".", ".."):
            raise CatalogError(
                f"image {key} {value!r} must be a string without '/', '\\' or dots alone (it names files)"
            )
    return dict(image)


def _record(fields: Mapping[str, Any], grid: _Grid, height: int, width: int) -> ImageRecord:
    geometry = fields.get("geometry")
    if geometry is None:
        geometry = _footprint(grid, height, width)
    transform = grid.transform
    return ImageRecord(
        **{key: value for key, value in fields.items() if key not in ("geometry", "name")},
        name=fields.get("name") or fields["id"],
        geometry=geometry,
        crs=grid.crs.to_string(),
        geotransform=transform.to_gdal(),
        width=width,
        height=height,
        pixel_size_x=math.hypot(transform.a, transform.d),
        pixel_size_y=math.hypot(transform.b, transform.e),
    )


def _footprint(grid: _Grid, height: int, width: int) -> dict[str, Any]:
    """The raster's outline in EPSG:4326, densified so projected edges stay close."""
    corners = [grid.transform @ xy for xy in ((0, 0), (width, 0), (width, height), (0, height))]
    outline = shape({"type": "Polygon", "coordinates": [[*corners, corners[0]]]})
    geometry = transform_geom(grid.crs, "EPSG:4326", mapping(densify(outline, 16)))
    return {"type": geometry["type"], "coordinates": geometry["coordinates"]}


def _grid(
    raster_meta: Mapping[str, Any] | GeoContext | None,
    geotransform: Sequence[float] | Affine | None,
    crs: CRS | str | int | None,
) -> _Grid:
    """The upload's grid from ``raster_meta`` or ``geotransform`` + ``crs``."""
    if raster_meta is not None and (geotransform is not None or crs is not None):
        raise InvalidRaster("give raster_meta or geotransform with crs, not both")
    if isinstance(raster_meta, GeoContext):
        return _Grid(raster_meta.crs, raster_meta.transform, raster_meta.shape)
    shape_yx: tuple[int, int] | None = None
    if raster_meta is not None:
        if not isinstance(raster_meta, Mapping):
            raise InvalidRaster(f"raster_meta must be a mapping or a GeoContext, got {type(raster_meta).__name__}")
        geotransform = raster_meta.get("geotransform", raster_meta.get("geoTransform"))
        system = raster_meta.get("coordinateSystem")
        crs = raster_meta.get("crs")
        if crs is None and isinstance(system, Mapping):
            crs = system.get("wkt") or system.get("proj4")
        if "shape" in raster_meta:
            shape_yx = _shape_pair(raster_meta["shape"], "shape")
        elif "size" in raster_meta:
            width_height = _shape_pair(raster_meta["size"], "size")
            shape_yx = (width_height[1], width_height[0])
    if geotransform is None or crs is None:
        raise InvalidRaster("the raster grid needs a geotransform and a crs (in raster_meta or as arguments)")
    try:
        parsed_crs = CRS.from_user_input(crs)
    except Exception as error:  # rasterio raises several types for unparseable input
        raise InvalidRaster(f"crs {crs!r} cannot be parsed ({error})") from error
    transform = _transform(geotransform)
    return _Grid(parsed_crs, transform, shape_yx)


def _transform(geotransform: Sequence[float] | Affine) -> Affine:
    if isinstance(geotransform, Affine):
        transform = geotransform
    else:
        if isinstance(geotransform, str | bytes) or not isinstance(geotransform, Sequence) or len(geotransform) != 6:
            raise InvalidRaster(f"geotransform must be the 6 GDAL coefficients, got {geotransform!r}")
        try:
            transform = Affine.from_gdal(*(float(value) for value in geotransform))
        except (TypeError, ValueError):
            raise InvalidRaster(f"geotransform must be 6 numbers, got {geotransform!r}") from None
    if not all(math.isfinite(value) for value in tuple(transform)[:6]) or transform.determinant == 0:
        raise InvalidRaster(f"geotransform {transform.to_gdal()} is degenerate or not finite")
    return transform


def _shape_pair(value: Any, name: str) -> tuple[int, int]:
    if (
        isinstance(value, str | bytes)
        or not isinstance(value, Sequence)
        or len(value) != 2
        or not all(isinstance(n, int | np.integer) and not isinstance(n, bool) and n > 0 for n in value)
    ):
        raise InvalidRaster(f"raster_meta {name} must be two positive integers, got {value!r}")
    return (int(value[0]), int(value[1]))


def _check_overviews(overviews: Sequence[int] | None, resampler: str) -> tuple[int, ...] | None:
    if resampler not in OVERVIEW_RESAMPLINGS:
        raise ValueError(f"overview_resampler {resampler!r} is not one of {OVERVIEW_RESAMPLINGS}")
    if overviews is None:
        return None
    factors = tuple(overviews)
    if not all(isinstance(f, int) and not isinstance(f, bool) and f >= 2 for f in factors):
        raise ValueError(f"overviews {list(overviews)!r} must be integers >= 2, e.g. [2, 4]")
    if list(factors) != sorted(set(factors)):
        raise ValueError(f"overviews {list(overviews)!r} must be increasing without repeats")
    return factors


def _product_bands(session: Session, product_id: str, bands: Sequence[str] | None) -> list[Band]:
    if session.get(Product, product_id) is None:
        raise CatalogError(f"product {product_id!r} is not in the catalog; create it and its bands first")
    rows = list(session.scalars(select(Band).where(Band.product_id == product_id).order_by(Band.band_index)))
    if not rows:
        raise CatalogError(f"product {product_id!r} has no bands in the catalog")
    if bands is None:
        return rows
    by_name = {row.name: row for row in rows}
    names = list(bands)
    unknown = [name for name in names if name not in by_name]
    if unknown:
        raise CatalogError(f"bands {unknown} are not bands of product {product_id!r} ({list(by_name)})")
    repeated = sorted({name for name in names if names.count(name) > 1})
    if repeated:
        raise CatalogError(f"bands {repeated} are listed more than once")
    return [by_name[name] for name in names]


def _band_values(array: np.ndarray | np.ma.MaskedArray, band: Band, dtype: np.dtype) -> np.ndarray:
    """The band's pixels as ``dtype``: masked pixels become nodata; floats are rounded and checked."""
    what = f"band {band.name!r} ({band.data_type})"
    mask = np.ma.getmaskarray(array) if isinstance(array, np.ma.MaskedArray) else None
    values = np.asarray(np.ma.getdata(array))
    if mask is not None and mask.any():
        if band.nodata is None:
            raise InvalidRaster(f"{what}: {int(mask.sum())} pixels are masked, but the band has no nodata to hold them")
        fill = int(band.nodata) if float(band.nodata).is_integer() else band.nodata
        values = values.astype(np.promote_types(values.dtype, np.min_scalar_type(fill)), copy=True)
        values[mask] = band.nodata
    if band.nodata is not None and dtype.kind in "ui":
        info = np.iinfo(dtype)
        if not (float(band.nodata).is_integer() and info.min <= band.nodata <= info.max):
            raise InvalidRaster(f"{what}: nodata {band.nodata} does not fit {dtype}")
    if values.dtype == dtype:
        return values
    if dtype.kind in "ui":
        info = np.iinfo(dtype)
        if values.dtype.kind == "f":
            finite = np.isfinite(values)
            if not finite.all():
                raise InvalidRaster(
                    f"{what}: {int((~finite).sum())} NaN or infinite values cannot be stored in {dtype}; mask them"
                )
            values = np.rint(values)
        low, high = values.min(), values.max()
        if low < info.min or high > info.max:
            raise InvalidRaster(f"{what}: values {low}..{high} do not fit {dtype} ({info.min}..{info.max})")
    return values.astype(dtype)


def _write_cog_with_overviews(
    values: np.ndarray,
    destination: Path,
    grid: _Grid,
    nodata: float | None,
    description: str,
    factors: Sequence[int],
    resampler: str,
) -> None:
    """A COG with exactly the overview ``factors`` (GDAL's COG driver over pre-built overviews)."""
    profile = output_profile(
        values.dtype, nodata, crs=grid.crs, transform=grid.transform, shape=values.shape, compress=False
    )
    options = {
        "COMPRESS": "DEFLATE",
        "PREDICTOR": "YES",
        "BLOCKSIZE": _BLOCKSIZE,
        "OVERVIEWS": "FORCE_USE_EXISTING" if factors else "NONE",
    }
    with MemoryFile() as memfile:
        with memfile.open(**profile) as staging:
            staging.write(values, 1)
            staging.set_band_description(1, description)
            if factors:
                staging.build_overviews(list(factors), Resampling[resampler])
        with memfile.open() as staging, atomic_path(destination) as tmp:
            rasterio.shutil.copy(staging, tmp, driver="COG", **options)
            if not is_valid_cog(tmp):
                raise InvalidRaster(f"{destination}: not a valid COG after writing")


def _file_sources(
    files: Mapping[str, Any] | Sequence[Any], bands: Sequence[str] | None
) -> list[tuple[str | None, tuple[str, int]]]:
    """``(band name or None, (path, band_number))`` for every band the files provide, in order."""
    if isinstance(files, Mapping):
        if bands is not None:
            raise ValueError("files already name their bands; do not pass bands too")
        sources = []
        for name, source in files.items():
            if isinstance(source, tuple):
                path, number = source
            else:
                path, number = source, 1
            sources.append((str(name), (os.fspath(path), int(number))))
        if not sources:
            raise ValueError("no files to upload")
        return sources
    if isinstance(files, str | os.PathLike):
        files = [files]
    sources = []
    for path in files:
        path = os.fspath(path)
        try:
            with rasterio.open(path) as src:
                count = src.count
        except RasterioIOError as error:
            raise InvalidRaster(f"{path}: cannot be read as a raster ({error})") from error
        sources.extend((None, (path, number)) for number in range(1, count + 1))
    if not sources:
        raise ValueError("no files to upload")
    return sources


def _files_grid(sources: Sequence[tuple[str | None, tuple[str, int]]]) -> tuple[_Grid, tuple[int, int]]:
    """The grid all files share; an error names the first file that differs."""
    reference: tuple[Any, ...] | None = None
    first = ""
    for _, (path, number) in sources:
        try:
            with rasterio.open(path) as src:
                if not 1 <= number <= src.count:
                    raise InvalidRaster(f"{path}: no band {number} (the file has {src.count})")
                if src.crs is None:
                    raise InvalidRaster(f"{path}: has no CRS")
                current = (src.crs, src.transform, (src.height, src.width))
        except RasterioIOError as error:
            raise InvalidRaster(f"{path}: cannot be read as a raster ({error})") from error
        if reference is None:
            reference, first = current, path
        elif current != reference:
            raise InvalidRaster(
                f"{path}: grid (crs {current[0]}, transform {tuple(current[1])[:6]}, shape {current[2]}) differs from"
                f" {first} (crs {reference[0]}, transform {tuple(reference[1])[:6]}, shape {reference[2]})"
            )
    assert reference is not None
    return _Grid(reference[0], reference[1], reference[2]), reference[2]
