"""The client's search: a catalog search of client objects that also collects and summarizes.

The catalog search is :class:`~cube_assets.catalog.search.Search`.

``Image.search()``, ``Product.search()``, the band classes' ``search()`` and ``product.images()``
return an :class:`ObjectSearch`: filters, geometry, order and limit as the catalog's search, and
:meth:`ObjectSearch.collect` (the images as an ``ImageCollection``), :meth:`ObjectSearch.views`
(the images as read-only values, no objects built), :meth:`ObjectSearch.summary` and
:meth:`ObjectSearch.summary_interval` (SQL aggregates, :mod:`cube_assets.catalog.summary`).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, TypeVar

from cube_assets.catalog.search import Search, Searchable
from cube_assets.catalog.summary import IntervalSummary, Summary, summarize, summarize_intervals
from cube_assets.client.items import Collection
from cube_assets.errors import CatalogError

T = TypeVar("T", bound=Searchable)


class ObjectSearch(Search[T]):
    """A lazy, immutable search of client objects; every method returns a new ObjectSearch.

    Nothing runs until the search is iterated, counted, collected or summarized; each of those
    runs in a fresh session.
    """

    def collect(self, geocontext: Any = None) -> Any:
        """Return every matching image as an :class:`~cube_assets.client.collection.ImageCollection`.

        ``geocontext`` becomes the collection's default grid for stack/mosaic/download. The
        image class builds the collection (``Image._collection``).

        Raises:
            CatalogError: if this is not a search of images.
        """
        if not self._cls._spatial:
            if geocontext is not None:
                raise CatalogError(f"a geocontext applies to images, not to {self._cls.__name__} searches")
            return Collection(list(self))
        return self._cls._collection(list(self), geocontext)

    def views(self) -> Iterator[Any]:
        """Yield the matching images in order as read-only :class:`~cube_assets.client.image.ImageView` values.

        The same images as iterating the search, without building ``Image`` objects: for pages
        that are only read (the STAC API's Items).

        Raises:
            CatalogError: if this is not a search of images.
        """
        if not self._cls._spatial:
            raise CatalogError(f"views are of images, not of {self._cls.__name__} objects")
        return self._run(self._cls._build_views)  # type: ignore[attr-defined]  # images have _build_views

    def summary(self) -> Summary:
        """Return the count, total file bytes and product ids of the matching images, from SQL aggregates.

        Raises:
            CatalogError: if this is not a search of images.
        """
        return summarize(self)

    def summary_interval(
        self,
        interval: str = "month",
        start_datetime: object = None,
        end_datetime: object = None,
        aggregate_date_field: str = "acquired",
    ) -> list[IntervalSummary]:
        """Return per-interval counts and bytes of the matching images.

        See :func:`~cube_assets.catalog.summary.summarize_intervals`.

        Raises:
            CatalogError: for a search of products, an unknown interval or date field, or bad bounds.
        """
        return summarize_intervals(
            self,
            interval=interval,
            start_datetime=start_datetime,
            end_datetime=end_datetime,
            date_field=aggregate_date_field,
        )


class ListedSearch(ObjectSearch[T]):
    """A search that also reads as the list of its results: ``len(search)``, ``search[0]``.

    ``product.bands()`` returns one, so it can be refined like any search
    (``.filter(p.type == BandType.CLASS).sort("name")``) and still used as a list of bands.
    """

    def __len__(self) -> int:
        return self.count()

    def __getitem__(self, index: int | slice) -> Any:
        return list(self)[index]


__all__ = ["ListedSearch", "ObjectSearch"]
