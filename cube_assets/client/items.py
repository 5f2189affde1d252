"""Lists of catalog objects to filter, sort, group and map: :class:`Collection` and :class:`Each`.

``Product.search().collect()`` returns a :class:`Collection`; images come in the
:class:`~cube_assets.client.collection.ImageCollection` subclass. Predicates (for ``sorted``,
``groupby``, ``filter``) are callables or dotted paths of attributes and mapping keys, such as
``"acquired.year"`` or ``"properties.efficacy"``; a path step that yields a method is called
(``"acquired.date"`` is the calendar date). ``filter`` also takes a search expression
(``p.cloud_fraction < 0.2``).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any, Generic, TypeVar, overload

from cube_assets.catalog.expressions import Expression
from cube_assets.client.expression_match import matches
from cube_assets.errors import CatalogError

T = TypeVar("T")
Predicate = str | Callable[[Any], Any]
"""A dotted attribute/key path or a callable taking an item."""


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

    def combine(self, container: Callable[[Iterable[Any]], Any] = list) -> Any:
        """Return the values gathered by ``container`` (default ``list``), as :meth:`collect` does."""
        return container(self._values)

    def pipe(self, function: Callable[..., Any], *args: Any, **kwargs: Any) -> Each:
        """Return ``function(value, *args, **kwargs)`` for every value, as another :class:`Each`."""
        return Each(function(value, *args, **kwargs) for value in self._values)

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

    def filter(self, predicate: Predicate | Expression) -> Collection[T]:
        """Return the items for which ``predicate`` is truthy, in order.

        ``predicate`` is a callable, a dotted path, or a search expression such as
        ``p.cloud_fraction < 0.2`` (evaluated on each item as the catalog would, see
        :func:`~cube_assets.client.expression_match.matches`).

        Raises:
            CatalogError: if a path or expression names what an item does not have.
        """
        if isinstance(predicate, Expression):
            expression = predicate
            return self._new(item for item in self._items if matches(item, expression))
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


__all__ = ["Collection", "Each", "Predicate", "evaluate"]
