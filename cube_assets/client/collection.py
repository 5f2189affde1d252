"""Image collections: a list of catalog images to filter, sort, group, and load as pixel arrays.

:meth:`Search.collect() <cube_assets.catalog.search.Search.collect>` returns an
:class:`ImageCollection`. Everything here works on images already fetched (the search did the
SQL); the pixel methods hand the images' files, their bands' metadata from the catalog and a
:class:`~cube_assets.client.geocontext.GeoContext` to the pure loaders of
:mod:`cube_assets.client.raster_read`::

    images = product.images().intersects(tile).filter(p.cloud_fraction < 0.2).collect()
    clear = images.filter_coverage(aoi, minimum_coverage=0.9).sorted("acquired")
    for month, group in clear.groupby("acquired.month"):
        print(month, len(group), group.each.cloud_fraction.collect())
    cube = clear.stack("B04 B08", GeoContext.from_tile(tile))     # (image, band, y, x), masked
    best = clear.sorted("cloud_fraction", reverse=True).mosaic("B04 B08")   # least cloudy on top

Predicates (for ``sorted``, ``groupby``, ``filter``, ``flatten``) are callables or dotted paths
of attributes and mapping keys, such as ``"acquired.year"`` or ``"properties.efficacy"``; a path
step that yields a method is called (``"acquired.date"`` is the calendar date).
"""

from __future__ import annotations

import functools
import os
import re
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import shapely
from pyproj import Transformer
from rasterio.crs import CRS
from rasterio.errors import CRSError
from shapely.geometry.base import BaseGeometry

from cube_assets.catalog.expressions import geometry_4326
from cube_assets.catalog.expressions import properties as p
from cube_assets.client import timeseries
from cube_assets.client.bands import Band
from cube_assets.client.base import CatalogObject
from cube_assets.client.enums import DownloadFileFormat, ResampleAlgorithm
from cube_assets.client.geocontext import GeoContext
from cube_assets.client.items import Collection, Each, Predicate, evaluate
from cube_assets.client.load_options import adjusted_grid, reader_options
from cube_assets.client.raster_read import (
    band_meta_from_files,
    download_files,
    download_mosaic_files,
    flatten_keys,
    mosaic_files,
    stack_files,
)
from cube_assets.client.scaling import multiproduct_scaling_parameters
from cube_assets.errors import CatalogError
from cube_assets.grids import densify

#: Equal-area CRS in which coverage is measured (WGS 84 / NSIDC EASE-Grid 2.0 Global).
EQUAL_AREA_CRS = "EPSG:6933"


# ------------------------------------------------------------------------------ coverage


@functools.lru_cache(maxsize=1)
def _to_equal_area() -> Transformer:
    return Transformer.from_crs("EPSG:4326", EQUAL_AREA_CRS, always_xy=True)


def _equal_area(geometry: BaseGeometry) -> BaseGeometry:
    transformer = _to_equal_area()
    dense = densify(geometry, 16)
    return shapely.transform(dense, lambda xy: _stack(transformer.transform(xy[:, 0], xy[:, 1])))


def _stack(xy: tuple[Any, Any]) -> Any:
    import numpy as np

    return np.column_stack(xy)


def _coverage(footprint: BaseGeometry, target: BaseGeometry, target_area: float) -> float:
    projected = _equal_area(footprint)
    if not projected.is_valid:
        projected = shapely.make_valid(projected)
    return min(1.0, max(0.0, projected.intersection(target).area / target_area))


def _target(geometry: BaseGeometry) -> tuple[BaseGeometry, float]:
    projected = _equal_area(geometry)
    if not projected.is_valid:
        projected = shapely.make_valid(projected)
    area = projected.area
    if not area > 0:
        raise CatalogError(f"coverage needs a geometry with an area, got a {geometry.geom_type} of area 0")
    return projected, area


def coverage_fraction(footprint: BaseGeometry, geometry: BaseGeometry) -> float:
    """Return the share of ``geometry``'s area inside ``footprint`` (both lon/lat), measured in EPSG:6933.

    Returns:
        A number in [0, 1].

    Raises:
        CatalogError: if ``geometry`` has no area.
    """
    target, area = _target(geometry)
    return _coverage(footprint, target, area)


# ------------------------------------------------------------------------------ grids


def image_grid(image: Any) -> Any:
    """Return the image's raster grid (``crs``, ``geotransform``, ``height``, ``width``) as a GeoContext.

    Raises:
        CatalogError: if one of them is unknown or they do not make a north-up grid.
    """
    missing = [name for name in ("crs", "geotransform", "width", "height") if getattr(image, name, None) is None]
    if missing:
        raise CatalogError(
            f"image {image.id!r} has no {', '.join(missing)}: it has no grid of its own; pass a geocontext"
        )
    try:
        return GeoContext.from_grid(image.crs, image.geotransform, (image.height, image.width))
    except ValueError as exc:
        raise CatalogError(f"image {image.id!r}: its grid is not usable: {exc}") from None


def _safe_name(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._:-]+", "_", text) or "image"


# ------------------------------------------------------------------------------ images


class ImageCollection(Collection[Any]):
    """A collection of :class:`~cube_assets.client.base.Image` objects, with pixel loading.

    ``geocontext`` is the default grid of :meth:`stack`, :meth:`mosaic` and the downloads; when
    it is None and every image has the same grid of its own, that grid is used.
    """

    def __init__(self, items: Iterable[Any] = (), geocontext: Any = None) -> None:
        super().__init__(items)
        self._default_grid = geocontext

    @property
    def geocontext(self) -> Any:
        """The default grid: the one given, else the images' own grid when they all share one, else None."""
        if self._default_grid is not None or not self._items:
            return self._default_grid
        try:
            grids = {image_grid(image) for image in self._items}
        except CatalogError:
            return None
        return grids.pop() if len(grids) == 1 else None

    @geocontext.setter
    def geocontext(self, value: Any) -> None:
        self._default_grid = value

    def _new(self, items: Iterable[Any]) -> ImageCollection:
        return ImageCollection(items, geocontext=self._default_grid)

    def _holds(self, value: Any) -> bool:
        return isinstance(value, CatalogObject) and type(value)._spatial  # an Image: the one spatial class

    # ------------------------------------------------------------------ coverage

    def filter_coverage(self, geometry: object, minimum_coverage: float = 1.0) -> ImageCollection:
        """Return the images whose footprint covers at least ``minimum_coverage`` of ``geometry``'s area.

        ``geometry`` as :meth:`~cube_assets.catalog.search.Search.intersects` accepts; coverage as
        :meth:`~cube_assets.client.base.Image.coverage`.

        Raises:
            CatalogError: if ``minimum_coverage`` is not in [0, 1], the geometry has no area, or an
                image has no footprint.
        """
        if (
            isinstance(minimum_coverage, bool)
            or not isinstance(minimum_coverage, int | float)
            or not (0.0 <= minimum_coverage <= 1.0)
        ):
            raise CatalogError(f"minimum_coverage must be a number in [0, 1], got {minimum_coverage!r}")
        target, area = _target(geometry_4326(geometry))
        kept = []
        for image in self._items:
            if image.geometry is None:
                raise CatalogError(f"image {image.id!r} has no footprint")
            if _coverage(image.geometry, target, area) >= minimum_coverage - 1e-9:
                kept.append(image)
        return self._new(kept)

    # ------------------------------------------------------------------ pixels

    def _geocontext(
        self, geocontext: Any, crs: Any = None, resolution: Any = None, all_touched: Any = None
    ) -> GeoContext:
        """The grid to load onto: ``geocontext``, else the collection's, else the images' common grid.

        ``crs``/``resolution`` then replace those parts (see :mod:`~cube_assets.client.load_options`).
        """
        if geocontext is None:
            geocontext = self._default_grid
        if geocontext is None:
            if not self._items:
                raise CatalogError("the collection is empty: there are no images to load")
            grids = {image_grid(image) for image in self._items}
            if len(grids) != 1:
                raise CatalogError(
                    f"the {len(self._items)} images lie on {len(grids)} different grids: pass a geocontext"
                    " (e.g. GeoContext.from_tile(tile) or GeoContext.from_geometry(aoi, resolution=10))"
                )
            geocontext = grids.pop()
        return adjusted_grid(geocontext, crs, resolution, all_touched)

    def _sources(self, bands: str | Sequence[str]) -> tuple[list[dict[str, str]], Any]:
        """The images' ``{band: href}`` and their band metadata, as ``raster_read`` takes them."""
        if not self._items:
            raise CatalogError("the collection is empty: there are no images to load")
        names = bands.split() if isinstance(bands, str) else list(bands)
        if not names:
            raise CatalogError("no bands given to load")
        sources = []
        for image in self._items:
            missing = [name for name in names if name not in image.files]
            if missing:
                raise CatalogError(
                    f"image {image.id!r} has no file for band(s) {missing}; it has {sorted(image.files)}"
                )
            sources.append({band: file.href for band, file in image.files.items()})
        product_ids = sorted({image.product_id for image in self._items})
        catalog = self._items[0].catalog
        by_product: dict[str, dict[str, Any]] = {product_id: {} for product_id in product_ids}
        search = Band.search(catalog=catalog).filter(p.product_id.in_(product_ids)).filter(p.name.in_(names))
        for band in search:
            by_product[band.product_id][band.name] = band
        if len(product_ids) == 1 and all(name in by_product[product_ids[0]] for name in names):
            return sources, by_product[product_ids[0]]
        metas = []
        for image, source in zip(self._items, sources, strict=True):
            meta = dict(by_product[image.product_id])
            undescribed = [name for name in names if name not in meta]
            if undescribed:
                # A source collection may carry no band rows: read type and nodata from its files.
                meta.update(band_meta_from_files({name: source[name] for name in undescribed}))
            metas.append(meta)
        return sources, metas

    def alpha_band(self, mask_alpha: bool | str | None = None) -> str | None:
        """Return the band whose 0 pixels are masked for ``mask_alpha``, or None for no alpha masking.

        ``None`` (the default of every loader): the alpha band (a mask band with ``is_alpha``)
        when every image's product has the same one and every image has its file, else none.
        ``True``: that band, which must exist. ``False``: none. A string: that band name.

        Raises:
            ValueError: if ``mask_alpha`` is True and the images have no common alpha band, or it
                is not a bool, None or a band name.
        """
        if mask_alpha is False:
            return None
        if isinstance(mask_alpha, str):
            if not mask_alpha:
                raise ValueError("mask_alpha: an empty band name")
            return mask_alpha
        if mask_alpha is not None and mask_alpha is not True:
            raise ValueError(f"mask_alpha must be True, False, None or a band name, got {mask_alpha!r}")
        if not self._items:
            return None
        product_ids = sorted({image.product_id for image in self._items})
        alphas: dict[str, set[str]] = {product_id: set() for product_id in product_ids}
        for band in Band.search(catalog=self._items[0].catalog).filter(p.product_id.in_(product_ids)):
            if getattr(band, "is_alpha", False):
                alphas[band.product_id].add(band.name)
        common = set.intersection(*alphas.values())
        found = sorted(name for name in common if all(name in image.files for image in self._items))
        if found:
            return found[0]
        if mask_alpha is True:
            raise ValueError(
                f"mask_alpha=True, but the products {product_ids} have no alpha band (a MaskBand with is_alpha)"
                " whose file every image has"
            )
        return None

    def stack(
        self,
        bands: str | Sequence[str],
        geocontext: Any = None,
        crs: Any = None,
        resolution: Any = None,
        all_touched: Any = None,
        flatten: Predicate | Sequence[Predicate] | None = None,
        mask_nodata: bool = True,
        mask_alpha: bool | str | None = None,
        bands_axis: int = 1,
        raster_info: bool = False,
        resampler: ResampleAlgorithm | str = ResampleAlgorithm.NEAR,
        processing_level: str | None = None,
        scaling: Any = None,
        data_type: str | None = None,
        progress: bool | None = None,
        max_workers: int | None = None,
        **options: Any,
    ) -> Any:
        """Load ``bands`` of every image onto the grid and stack them: ``(image, band, y, x)``.

        ``crs``/``resolution``/``all_touched``/``resampler``/``processing_level`` as
        :mod:`~cube_assets.client.load_options`; ``mask_alpha`` as :meth:`alpha_band`; ``flatten``
        (predicates such as ``"acquired.date"``) mosaics images with equal keys into one layer;
        ``options`` are :func:`~cube_assets.client.raster_read.stack_files`'s own
        (``resampling``, ``use_overviews``).

        Returns:
            The masked array (and the per-layer raster info when ``raster_info=True``).

        Raises:
            CatalogError: if the collection is empty, an image lacks a band's file, or there is
                no grid.
            ValueError, InvalidRaster: from the arguments or the pixel reader.
        """
        grid = self._geocontext(geocontext, crs, resolution, all_touched)
        sources, meta = self._sources(bands)
        keys = None if flatten is None else flatten_keys(self._items, flatten)
        extra = reader_options(
            resampler=resampler, processing_level=processing_level, progress=progress, options=options
        )
        return stack_files(
            sources,
            bands,
            grid,
            meta,
            flatten=keys,
            mask_nodata=mask_nodata,
            bands_axis=bands_axis,
            raster_info=raster_info,
            scaling=scaling,
            data_type=data_type,
            max_workers=max_workers,
            alpha=self.alpha_band(mask_alpha),
            **extra,
        )

    def mosaic(
        self,
        bands: str | Sequence[str],
        geocontext: Any = None,
        crs: Any = None,
        resolution: Any = None,
        all_touched: Any = None,
        mask_nodata: bool = True,
        mask_alpha: bool | str | None = None,
        bands_axis: int = 0,
        resampler: ResampleAlgorithm | str = ResampleAlgorithm.NEAR,
        processing_level: str | None = None,
        scaling: Any = None,
        data_type: str | None = None,
        progress: bool | None = None,
        raster_info: bool = False,
        **options: Any,
    ) -> Any:
        """Mosaic ``bands`` of the images onto the grid, the last image on top: ``(band, y, x)``.

        Sort first to choose what wins, e.g. ``images.sorted("cloud_fraction", reverse=True)``
        puts the least cloudy last; an image's alpha-0 pixels let the image below show through.
        Arguments as :meth:`stack` (``options`` as :func:`~cube_assets.client.raster_read.mosaic_files`).

        Returns:
            The masked array (and the raster info when ``raster_info=True``).

        Raises:
            CatalogError, ValueError, InvalidRaster: as :meth:`stack`.
        """
        grid = self._geocontext(geocontext, crs, resolution, all_touched)
        sources, meta = self._sources(bands)
        extra = reader_options(
            resampler=resampler, processing_level=processing_level, progress=progress, options=options
        )
        return mosaic_files(
            sources,
            bands,
            grid,
            meta,
            mask_nodata=mask_nodata,
            bands_axis=bands_axis,
            raster_info=raster_info,
            scaling=scaling,
            data_type=data_type,
            alpha=self.alpha_band(mask_alpha),
            **extra,
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
        progress: bool | None = None,
        max_workers: int | None = None,
        mask_alpha: bool | str | None = None,
        **options: Any,
    ) -> list[Any]:
        """Write each image, on the grid, to its own file in folder ``dest`` (default: the working directory).

        ``dest`` may also be one path per image (their extensions decide the format). Files in a
        folder are named ``{image id}-{band}-{band}....{format}``. The second positional argument
        may be the destination (``images.download("B04", "out")``) as well as the grid.
        ``options`` as :func:`~cube_assets.client.raster_read.download_files` (``cog``, ``nodata``).

        Returns:
            The written paths, in image order.

        Raises:
            CatalogError, ValueError, InvalidRaster: as :meth:`stack`.
        """
        geocontext, crs, dest = _grid_and_dest(geocontext, dest, crs)
        grid = self._geocontext(geocontext, crs, resolution, all_touched)
        sources, meta = self._sources(bands)
        options.setdefault("names", [_safe_name(image.id) for image in self._items])
        extra = reader_options(
            resampler=resampler, processing_level=processing_level, progress=progress, options=options
        )
        return download_files(
            sources,
            bands,
            grid,
            meta,
            Path.cwd() if dest is None else dest,
            format=str(format),
            scaling=scaling,
            data_type=data_type,
            max_workers=max_workers,
            alpha=self.alpha_band(mask_alpha),
            **extra,
        )

    def download_mosaic(
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
        mask_alpha: bool | str | None = None,
        nodata: float | None = None,
        progress: bool | None = None,
        **options: Any,
    ) -> Any:
        """Write the mosaic of the images (last on top) on the grid to one file ``dest``.

        ``dest`` is a file path (its extension decides the format) or a folder; the default is
        ``mosaic-{band}-{band}....{format}`` in the working directory. Other arguments as
        :meth:`mosaic`; ``options`` as :func:`~cube_assets.client.raster_read.download_mosaic_files`.

        Returns:
            The written path.

        Raises:
            CatalogError, ValueError, InvalidRaster: as :meth:`stack`.
        """
        geocontext, crs, dest = _grid_and_dest(geocontext, dest, crs)
        grid = self._geocontext(geocontext, crs, resolution, all_touched)
        sources, meta = self._sources(bands)
        extra = reader_options(
            resampler=resampler, processing_level=processing_level, progress=progress, options=options
        )
        return download_mosaic_files(
            sources,
            bands,
            grid,
            meta,
            Path.cwd() if dest is None else dest,
            format=str(format),
            scaling=scaling,
            data_type=data_type,
            nodata=nodata,
            alpha=self.alpha_band(mask_alpha),
            **extra,
        )

    def scaling_parameters(
        self,
        bands: str | Sequence[str],
        processing_level: str | None = None,
        scaling: Any = None,
        data_type: str | None = None,
    ) -> tuple[list[Any] | None, str]:
        """Return ``(scales, data_type)`` that :meth:`stack`/:meth:`mosaic` would use for these arguments.

        See :func:`~cube_assets.client.scaling.scaling_parameters`; across products the scales
        must agree (:func:`~cube_assets.client.scaling.multiproduct_scaling_parameters`).

        Raises:
            CatalogError: if the collection is empty or an image lacks a band's file.
            ValueError: for invalid or incompatible scaling, or a ``processing_level``.
        """
        reader_options(processing_level=processing_level, options={})
        names = bands.split() if isinstance(bands, str) else list(bands)
        _, meta = self._sources(names)
        metas = [meta] if isinstance(meta, Mapping) else list(meta)
        products = {str(index): dict(entry) for index, entry in enumerate(metas)}
        return multiproduct_scaling_parameters(products, names, scaling, data_type)

    def timeseries(self, point_or_geometry: Any, bands: str | Sequence[str], *, max_workers: int = 16) -> list[Any]:
        """The pixel time series of ``bands`` at a point, or a polygon's mean and median per image.

        ``point_or_geometry`` is ``(lon, lat)``, a shapely geometry or GeoJSON in EPSG:4326. One
        block per COG under the point is read, all files in parallel (see
        :mod:`cube_assets.client.timeseries`).

        Returns:
            For a point, one :class:`~cube_assets.client.timeseries.PointValue` per image that
            covers it (raw and physical values, quality flags); for a polygon, one
            :class:`~cube_assets.client.timeseries.AreaValue` (mean and median of the clear
            pixels, their count); in time order.

        Raises:
            CatalogError: if the collection is empty, the geometry is not a point or polygon,
                or an image lacks a band's file.
            InvalidRaster: when a file cannot be read.
        """
        geometry = timeseries.point_lonlat(point_or_geometry)
        names = bands.split() if isinstance(bands, str) else list(bands)
        _, meta = self._sources(names)
        metas = meta if isinstance(meta, list) else [meta]
        scales = {name: timeseries.band_scale(band) for m in metas for name, band in m.items()}
        product_ids = sorted({image.product_id for image in self._items})
        classes = Band.search(catalog=self._items[0].catalog).filter(p.product_id.in_(product_ids))
        quality_band = next((band.name for band in classes if band.type == "class"), None)
        observations = timeseries.observations_of(self._items)
        options: dict[str, Any] = {"quality_band": quality_band, "max_workers": max_workers}
        if quality_band != "SCL":
            options["quality_rules"] = None  # only the SCL classes are known without the cube file
        if geometry.geom_type == "Point":
            return timeseries.point_timeseries(observations, names, geometry.x, geometry.y, scales, **options)
        return timeseries.polygon_timeseries(observations, names, geometry, scales, **options)


def _grid_and_dest(geocontext: Any, dest: Any, crs: Any = None) -> tuple[Any, Any, Any]:
    """Read the destination where the older positional orders put it: ``(grid, crs, dest)`` to use.

    ``download(bands, "out")`` (this project's order) and ``download(bands, grid, "out")`` (the
    reference's examples, whose third argument is now ``crs``) both mean "write into ``out``": a
    second argument that is not a grid, or a third that is not a CRS, is the destination.
    """
    if geocontext is not None and not isinstance(geocontext, GeoContext):
        if dest is None or isinstance(dest, GeoContext):
            geocontext, dest = dest, geocontext
    if crs is not None and dest is None and not _is_crs(crs):
        crs, dest = None, crs
    return geocontext, crs, dest


def _is_crs(value: Any) -> bool:
    """Whether ``value`` reads as a CRS (an EPSG code, PROJ or WKT text, a CRS object)."""
    if isinstance(value, os.PathLike) or (isinstance(value, Sequence) and not isinstance(value, str)):
        return False
    try:
        CRS.from_user_input(value)
    except (CRSError, TypeError, ValueError):
        return False
    return True


__all__ = ["Collection", "Each", "ImageCollection", "coverage_fraction", "evaluate", "image_grid"]
