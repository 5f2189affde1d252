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
import itertools
import re
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any, Generic, TypeVar, overload

import shapely
from pyproj import Transformer
from shapely.geometry.base import BaseGeometry

from cube_assets.catalog.expressions import geometry_4326
from cube_assets.catalog.expressions import properties as p
from cube_assets.client import timeseries
from cube_assets.client.bands import Band
from cube_assets.client.base import CatalogObject
from cube_assets.client.geocontext import GeoContext
from cube_assets.client.raster_read import (
    band_meta_from_files,
    download_files,
    download_mosaic_files,
    flatten_keys,
    mosaic_files,
    stack_files,
)
from cube_assets.errors import CatalogError
from cube_assets.grids import densify

T = TypeVar("T")
Predicate = str | Callable[[Any], Any]
"""A dotted attribute/key path or a callable taking an item."""

#: Equal-area CRS in which coverage is measured (WGS 84 / NSIDC EASE-Grid 2.0 Global).
EQUAL_AREA_CRS = "EPSG:6933"


def evaluate(item: Any, predicate: Predicate) -> Any:
    """Return ``predicate`` applied to ``item``: a callable's result or a dotted path's value.

    Raises:
        CatalogError: if a step of the path is neither an attribute nor a key of the value.
    """
    if callable(predicate):
        return predicate(item)
    if not isinstance(predicate, str) or not predicate:
        raise CatalogError(f"a predicate is a dotted attribute path or a callable, got {predicate!r}")
    value = item
    for step in predicate.split("."):
        if isinstance(value, Mapping) and step in value:
            value = value[step]
        elif hasattr(value, step):
            value = getattr(value, step)
            if callable(value) and not isinstance(value, type):
                value = value()
        else:
            raise CatalogError(f"{item!r} has no {step!r} (in predicate {predicate!r})")
    return value


def _sort_key(value: Any) -> tuple[bool, Any]:
    """Order values with None last (Python cannot compare None with other values)."""
    return (value is None, value)


class Each:
    """Attribute access, item access and calls applied to every item: ``images.each.acquired.year``.

    Iterate it, or :meth:`collect` the values into a list.
    """

    __slots__ = ("_values",)

    def __init__(self, values: Iterable[Any]) -> None:
        self._values = list(values)

    def __getattr__(self, name: str) -> Each:
        if name.startswith("__"):
            raise AttributeError(name)
        return Each(getattr(value, name) for value in self._values)

    def __getitem__(self, key: Any) -> Each:
        return Each(value[key] for value in self._values)

    def __call__(self, *args: Any, **kwargs: Any) -> Each:
        return Each(value(*args, **kwargs) for value in self._values)

    def __iter__(self) -> Iterator[Any]:
        return iter(self._values)

    def __len__(self) -> int:
        return len(self._values)

    def collect(self, container: Callable[[Iterable[Any]], Any] = list) -> Any:
        """Return the values gathered by ``container`` (default ``list``)."""
        return container(self._values)

    def __repr__(self) -> str:
        return f"Each({self._values!r})"


class Collection(Generic[T]):
    """A list of items with functional helpers; slicing and filtering keep the collection type."""

    def __init__(self, items: Iterable[T] = ()) -> None:
        self._items: list[T] = list(items)

    def _new(self, items: Iterable[T]) -> Collection[T]:
        return type(self)(items)

    # ------------------------------------------------------------------ list behaviour

    def __len__(self) -> int:
        return len(self._items)

    def __iter__(self) -> Iterator[T]:
        return iter(self._items)

    @overload
    def __getitem__(self, index: int) -> T: ...

    @overload
    def __getitem__(self, index: slice) -> Collection[T]: ...

    def __getitem__(self, index: int | slice) -> T | Collection[T]:
        if isinstance(index, slice):
            return self._new(self._items[index])
        return self._items[index]

    def __contains__(self, item: object) -> bool:
        return item in self._items

    def __add__(self, other: Iterable[T]) -> Collection[T]:
        return self._new([*self._items, *other])

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Collection):
            return self._items == other._items
        if isinstance(other, list):
            return self._items == other
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]  # a mutable collection is not hashable

    def append(self, item: T) -> None:
        """Add ``item`` at the end."""
        self._items.append(item)

    def extend(self, items: Iterable[T]) -> None:
        """Add ``items`` at the end."""
        self._items.extend(items)

    def to_list(self) -> list[T]:
        """Return the items as a new list."""
        return list(self._items)

    # ------------------------------------------------------------------ helpers

    @property
    def each(self) -> Each:
        """:class:`Each` over the items: ``collection.each.acquired.date().collect()``."""
        return Each(self._items)

    def map(self, function: Callable[[T], Any]) -> Collection[Any] | list[Any]:
        """Return ``function`` applied to every item.

        Returns:
            A collection of the same type when every result is an item of the kind this
            collection holds (see :meth:`_holds`), else a list.
        """
        results = [function(item) for item in self._items]
        if results and all(self._holds(result) for result in results):
            return self._new(results)
        return results

    def _holds(self, value: Any) -> bool:
        return True

    def filter(self, predicate: Predicate) -> Collection[T]:
        """Return the items for which ``predicate`` is truthy, in order."""
        return self._new(item for item in self._items if evaluate(item, predicate))

    def sorted(self, *predicates: Predicate, reverse: bool = False) -> Collection[T]:
        """Return the items sorted by the predicates' values (None last, ties keep their order).

        Raises:
            CatalogError: if no predicate is given or a path does not apply to an item.
        """
        if not predicates:
            raise CatalogError("sorted needs at least one predicate")
        keyed = [
            (tuple(_sort_key(evaluate(item, p)) for p in predicates), index, item)
            for index, item in enumerate(self._items)
        ]
        try:
            keyed.sort(key=lambda entry: entry[0], reverse=reverse)
        except TypeError as exc:
            raise CatalogError(f"cannot order items by {predicates}: {exc}") from None
        return self._new(item for _, _, item in keyed)

    def sort(self, field: str, ascending: bool = True) -> Collection[T]:
        """Return the items sorted by ``field`` (a dotted path; ``"-field"`` also means descending)."""
        if field.startswith("-"):
            field, ascending = field[1:], not ascending
        return self.sorted(field, reverse=not ascending)

    def groupby(self, *predicates: Predicate) -> Iterator[tuple[Any, Collection[T]]]:
        """Yield ``(key, collection)`` pairs, one per distinct key, in key order.

        With one predicate the key is its value, with several a tuple of their values.

        Raises:
            CatalogError: if no predicate is given or the keys cannot be ordered.
        """
        if not predicates:
            raise CatalogError("groupby needs at least one predicate")

        def key_of(item: T) -> Any:
            values = tuple(evaluate(item, p) for p in predicates)
            return values[0] if len(values) == 1 else values

        keyed = [(key_of(item), item) for item in self._items]
        try:
            keyed.sort(key=lambda entry: _sort_key(entry[0]))
        except TypeError as exc:
            raise CatalogError(f"cannot order groups by {predicates}: {exc}") from None
        return iter(
            [(key, self._new(item for _, item in group)) for key, group in itertools.groupby(keyed, key=lambda e: e[0])]
        )

    def __repr__(self) -> str:
        head = ", ".join(repr(item) for item in self._items[:5])
        more = f", ... {len(self._items) - 5} more" if len(self._items) > 5 else ""
        return f"{type(self).__name__}([{head}{more}])"


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
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text) or "image"


# ------------------------------------------------------------------------------ images


class ImageCollection(Collection[Any]):
    """A collection of :class:`~cube_assets.client.base.Image` objects, with pixel loading.

    ``geocontext`` is the default grid of :meth:`stack`, :meth:`mosaic` and the downloads; when
    it is None and every image has the same grid of its own, that grid is used.
    """

    def __init__(self, items: Iterable[Any] = (), geocontext: Any = None) -> None:
        super().__init__(items)
        self.geocontext = geocontext

    def _new(self, items: Iterable[Any]) -> ImageCollection:
        return ImageCollection(items, geocontext=self.geocontext)

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

    def _geocontext(self, geocontext: Any) -> Any:
        if geocontext is not None:
            return geocontext
        if self.geocontext is not None:
            return self.geocontext
        if not self._items:
            raise CatalogError("the collection is empty: there are no images to load")
        grids = {image_grid(image) for image in self._items}
        if len(grids) == 1:
            return grids.pop()
        raise CatalogError(
            f"the {len(self._items)} images lie on {len(grids)} different grids: pass a geocontext"
            " (e.g. GeoContext.from_tile(tile) or GeoContext.from_geometry(aoi, resolution=10))"
        )

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

    def stack(
        self,
        bands: str | Sequence[str],
        geocontext: Any = None,
        *,
        flatten: Predicate | Sequence[Predicate] | None = None,
        **options: Any,
    ) -> Any:
        """Load ``bands`` of every image onto the grid and stack them: ``(image, band, y, x)``.

        ``flatten`` (predicates such as ``"acquired.date"``) mosaics images with equal keys into
        one layer; ``options`` are :func:`~cube_assets.client.raster_read.stack_files`'s
        (``mask_nodata``, ``bands_axis``, ``raster_info``, ``resampling``, ``scaling``,
        ``data_type``, ``max_workers``, ``progress``, ``use_overviews``).

        Returns:
            The masked array (and the per-layer raster info when ``raster_info=True``).

        Raises:
            CatalogError: if the collection is empty, an image lacks a band's file, or there is
                no grid.
            ValueError, InvalidRaster: from the pixel reader.
        """
        grid = self._geocontext(geocontext)
        sources, meta = self._sources(bands)
        keys = None if flatten is None else flatten_keys(self._items, flatten)
        return stack_files(sources, bands, grid, meta, flatten=keys, **options)

    def mosaic(self, bands: str | Sequence[str], geocontext: Any = None, **options: Any) -> Any:
        """Mosaic ``bands`` of the images onto the grid, the last image on top: ``(band, y, x)``.

        Sort first to choose what wins, e.g. ``images.sorted("cloud_fraction", reverse=True)``
        puts the least cloudy last. ``options`` as :func:`~cube_assets.client.raster_read.mosaic_files`.

        Returns:
            The masked array (and the raster info when ``raster_info=True``).

        Raises:
            CatalogError, ValueError, InvalidRaster: as :meth:`stack`.
        """
        grid = self._geocontext(geocontext)
        sources, meta = self._sources(bands)
        return mosaic_files(sources, bands, grid, meta, **options)

    def download(self, bands: str | Sequence[str], dest: Any, geocontext: Any = None, **options: Any) -> list[Any]:
        """Write each image, on the grid, to its own file under folder ``dest`` (or to the paths in ``dest``).

        Files in a folder are named after the image ids. ``options`` as
        :func:`~cube_assets.client.raster_read.download_files` (``format``, ``cog``, ``nodata``, ...).

        Returns:
            The written paths, in image order.

        Raises:
            CatalogError, ValueError, InvalidRaster: as :meth:`stack`.
        """
        grid = self._geocontext(geocontext)
        sources, meta = self._sources(bands)
        options.setdefault("names", [_safe_name(image.id) for image in self._items])
        return download_files(sources, bands, grid, meta, dest, **options)

    def download_mosaic(self, bands: str | Sequence[str], dest: Any, geocontext: Any = None, **options: Any) -> Any:
        """Write the mosaic of the images (last on top) on the grid to one file ``dest`` (or into folder ``dest``).

        ``options`` as :func:`~cube_assets.client.raster_read.download_mosaic_files`.

        Returns:
            The written path.

        Raises:
            CatalogError, ValueError, InvalidRaster: as :meth:`stack`.
        """
        grid = self._geocontext(geocontext)
        sources, meta = self._sources(bands)
        return download_mosaic_files(sources, bands, grid, meta, dest, **options)

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


__all__ = ["Collection", "Each", "ImageCollection", "coverage_fraction", "evaluate", "image_grid"]
