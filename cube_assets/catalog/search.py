"""The lazy :class:`Search` over one class of catalog objects, compiled to SQL over the catalog's tables.

A search holds property expressions (:mod:`cube_assets.catalog.expressions`), a geometry, an
order and a limit; nothing runs until it is iterated or counted. It works over any class that
describes its table and how to build objects from rows (:class:`Searchable`), on any catalog
connection that gives sessions (:class:`SearchCatalog`); the client's ``Image``, ``Product`` and
band classes are such classes, and ``Image.search()`` returns the client's search, which adds
``collect`` and the summaries (:mod:`cube_assets.catalog.summary`)::

    from cube_assets.catalog.search import properties as p

    search = (
        Image.search(catalog)
        .filter(p.product_id == "s2_16d-LCF")
        .filter((p.acquired >= "2024-01-01") & (p.acquired < "2024-04-01"))
        .intersects(tile)                       # GeoJSON, shapely, a grid Tile or a GeoContext
        .sort("acquired", ascending=False)
        .limit(100)
    )
    search.count(); list(search); search.sql()

:meth:`Search.intersects` is exact (footprint and geometry share a point; touching counts) and
gives the same answers on every backend: ``ST_Intersects`` on PostgreSQL with PostGIS, an exact
test in plain SQL elsewhere, each behind a spatial index (:mod:`cube_assets.catalog.footprints`).
On PostgreSQL the bounding-box condition is ``box(...) && box(...)`` and every ``acquired``
comparison gets an added, implied ``tstzrange(...) && tstzrange(...)``, so the GiST index of
migration 0003 finds "near here, in these dates" at once (in searches with a geometry the plain
comparison is wrapped so that no B-tree on ``acquired`` joins that plan, see
``cube_assets.catalog.expressions._BTREE_TIME_BOUNDS``); on SQLite the R*Tree of 0004 finds the
candidates and ``acquired`` comparisons are plain.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Iterator
from contextlib import AbstractContextManager
from typing import Any, ClassVar, Generic, Protocol, TypeVar

from shapely.geometry.base import BaseGeometry
from sqlalchemy import ColumnElement, Engine, Select, and_, func, select, true
from sqlalchemy.orm import Session

from cube_assets.catalog.expressions import (
    MAX_LIMIT,
    MAX_SEARCH_TERMS,
    PROPERTY_NAME,
    Expression,
    SearchField,
    geometry_4326,
    p,
    parameter,
    properties,
    quote,
    recorded_parameters,
    template_parameters,
    without_btree_time_bounds,
)
from cube_assets.catalog.footprints import footprint_intersects, postgis_geometry_text
from cube_assets.errors import CatalogError

BBox = tuple[float, float, float, float]
"""``(min_lon, min_lat, max_lon, max_lat)`` in EPSG:4326 degrees."""

#: Rows fetched per round trip when a search is iterated without a limit.
ITERATION_BATCH = 1000

#: Most statement templates kept (one per search shape; the cache is emptied when full).
MAX_TEMPLATES = 512


class SearchCatalog(Protocol):
    """The catalog connection a search runs on: its SQL dialect, engine and sessions."""

    @property
    def dialect(self) -> str: ...

    @property
    def engine(self) -> Engine: ...

    @property
    def postgis_schema(self) -> str | None: ...

    def session(self) -> AbstractContextManager[Session]: ...

    def single_statement_session(self) -> AbstractContextManager[Session]: ...


class Searchable(Protocol):
    """A class of catalog objects a search yields: its table, fields, order and how rows become objects."""

    __name__: str
    _model: ClassVar[Any]
    _spatial: ClassVar[bool]
    _default_order: ClassVar[tuple[tuple[str, bool], ...]]

    @classmethod
    def _search_field(cls, name: str) -> SearchField: ...

    @classmethod
    def _select(cls, dialect: str) -> Select[Any]: ...

    @classmethod
    def _tiebreak(cls) -> Iterable[Any]: ...

    @classmethod
    def _build(cls, rows: Any, catalog: Any, session: Session) -> Iterable[Any]: ...


T = TypeVar("T", bound=Searchable)


class Search(Generic[T]):
    """A lazy, immutable query over one object class; every method returns a new Search.

    Nothing runs until the search is iterated or counted; each of those runs in a fresh session
    (iterating: one statement, images with their files). Methods that build return a search of
    the same type, so subclasses (the client's search) keep their own methods along a chain.
    """

    def __init__(
        self,
        cls: type[T],
        catalog: SearchCatalog,
        *,
        filters: tuple[Expression, ...] = (),
        clauses: tuple[Any, ...] = (),
        bbox: BBox | None = None,
        geometry: BaseGeometry | None = None,
        order: tuple[tuple[str, bool], ...] = (),
        limit: int | None = None,
    ) -> None:
        self._cls = cls
        self._catalog = catalog
        self._filters = filters
        self._bbox = bbox
        self._geometry = geometry
        self._order = order
        self._limit = limit
        # Per filter: its template shape and values (template_parameters), or its compiled clause
        # when it has no template (compiled once, when added, in the mode its geometry asks for:
        # a search given its geometry first never compiles twice). Either checks it at once.
        if len(clauses) != len(filters):
            clauses = tuple(map(self._prepare, filters))
        self._clauses = clauses

    def _prepare(self, expression: Expression) -> Any:
        templated = template_parameters(expression, self._resolve, self._dialect)
        return templated if templated is not None else self._compile(expression)

    def _compile(self, expression: Expression) -> ColumnElement[bool]:
        if self._geometry is not None and self._dialect == "postgresql":
            with without_btree_time_bounds():
                return expression.compile(self._resolve, self._dialect)
        return expression.compile(self._resolve, self._dialect)

    def _copy(self, **changes: Any) -> Search[T]:
        values: dict[str, Any] = {
            "filters": self._filters,
            "clauses": self._clauses,
            "bbox": self._bbox,
            "geometry": self._geometry,
            "order": self._order,
            "limit": self._limit,
        }
        values.update(changes)
        return type(self)(self._cls, self._catalog, **values)

    @property
    def catalog(self) -> SearchCatalog:
        """The catalog this search runs on."""
        return self._catalog

    @property
    def object_class(self) -> type[T]:
        """The class of the objects the search yields (``Image``, ``Product``, a ``Band`` class)."""
        return self._cls

    @property
    def geometry(self) -> BaseGeometry | None:
        """The lon/lat geometry given to :meth:`intersects`, if any."""
        return self._geometry

    @property
    def filters(self) -> tuple[Expression, ...]:
        """The property expressions given to :meth:`filter`, in order (ANDed)."""
        return self._filters

    # ------------------------------------------------------------------ building

    def filter(self, expression: Expression) -> Search[T]:
        """Return a search that also requires ``expression`` (ANDed with earlier filters).

        The expression is compiled now, so unknown properties and bad values raise here.

        Returns:
            The new Search.

        Raises:
            CatalogError: if ``expression`` is not a property expression, does not compile, or
                would bring the search's comparisons beyond :data:`MAX_SEARCH_TERMS`.
        """
        if not isinstance(expression, Expression):
            raise CatalogError(
                f"filter takes a property expression such as p.cloud_fraction < 0.2, got {quote(expression)}"
            )
        terms = sum(f._terms for f in self._filters) + expression._terms
        if terms > MAX_SEARCH_TERMS:
            raise CatalogError(f"filter: the search would hold {terms} comparisons, at most {MAX_SEARCH_TERMS} allowed")
        return self._copy(filters=(*self._filters, expression), clauses=(*self._clauses, self._prepare(expression)))

    def intersects(self, geometry: object) -> Search[T]:
        """Return a search for images whose footprint intersects ``geometry``.

        ``geometry`` is GeoJSON, shapely, a grid tile or a GeoContext (see :func:`geometry_4326`).
        The test is exact, in SQL (shapely's and PostGIS's ``intersects``: touching counts; a
        footprint whose bounding box meets the geometry but whose outline does not is not a
        match), with the same answers on SQLite and on PostgreSQL with or without PostGIS; see
        :mod:`cube_assets.catalog.footprints`. For the share of an area an image covers use
        ``Image.coverage`` and ``ImageCollection.filter_coverage``. Calling it again replaces the
        earlier geometry. Geometries that cross the antimeridian are not supported.

        Returns:
            The new Search.

        Raises:
            CatalogError: if the object class has no footprint or the geometry is invalid.
        """
        if not self._cls._spatial:
            raise CatalogError(f"{self._cls.__name__} objects have no footprint; intersects is for images")
        shape = geometry_4326(geometry)
        recompile = self._geometry is None and self._dialect == "postgresql"  # the filters' mode changes
        clauses = self._clauses
        if recompile and any(isinstance(clause, ColumnElement) for clause in clauses):
            clauses = ()
        return self._copy(bbox=tuple(float(v) for v in shape.bounds), geometry=shape, clauses=clauses)

    def sort(self, field: str, ascending: bool = True) -> Search[T]:
        """Return a search ordered by ``field`` (``"-field"`` also means descending); replaces earlier sorts.

        Ties are broken by id, so the order is total and repeatable. Unknown values (NULL) come last.

        Returns:
            The new Search.

        Raises:
            CatalogError: if ``field`` is not a sortable (single-valued) property.
        """
        if not isinstance(field, str) or not field.strip("-"):
            raise CatalogError(f"sort takes a property name, got {quote(field)}")
        if field.startswith("-"):
            field, ascending = field[1:], not ascending
        if not PROPERTY_NAME.fullmatch(field):
            raise CatalogError(f"sort takes a property name (an ASCII identifier), got {quote(field)}")
        resolved = self._resolve(field)
        if resolved.kind in ("tags", "json"):
            raise CatalogError(f"cannot sort by {field!r}: it holds several values")
        return self._copy(order=((field, bool(ascending)),))

    def limit(self, count: int | None) -> Search[T]:
        """Return a search that yields at most ``count`` objects (``None``: no limit).

        Raises:
            CatalogError: if ``count`` is not a positive integer of at most :data:`MAX_LIMIT`, or None.
        """
        if count is not None and (isinstance(count, bool) or not isinstance(count, int) or not 0 < count <= MAX_LIMIT):
            raise CatalogError(f"limit must be a positive integer of at most {MAX_LIMIT}, or None, got {quote(count)}")
        return self._copy(limit=count)

    # ------------------------------------------------------------------ SQL

    @property
    def _dialect(self) -> str:
        return self._catalog.dialect

    def _resolve(self, name: str) -> SearchField:
        return self._cls._search_field(name)

    def where_clause(self) -> ColumnElement[bool]:
        """Return the SQL condition of every filter and the geometry, for this catalog's dialect."""
        model = self._cls._model
        clauses = [
            clause if isinstance(clause, ColumnElement) else self._compile(expression)
            for expression, clause in zip(self._filters, self._clauses, strict=True)
        ]
        if self._bbox is not None and self._geometry is not None:
            clauses.append(
                footprint_intersects(
                    model,
                    self._geometry,
                    bbox_intersects(model, self._bbox, self._dialect),
                    self._dialect,
                    self._catalog.postgis_schema,
                    parameter,
                )
            )
        return and_(true(), *clauses)

    def statement(self) -> Select[Any]:
        """Return the ``SELECT`` this search runs (ordered and limited), for inspection or reuse."""
        statement = self._cls._select(self._dialect).where(self.where_clause())
        statement = statement.order_by(*self._order_by())
        if self._limit is not None:
            statement = statement.limit(self._limit)
        return statement

    def _template(self) -> tuple[Select[Any], dict[str, Any]] | None:
        """The cached statement of this search's shape and the values of its parameters, or None.

        Searches that differ only in their values (another area, other dates, another cloud
        limit) share one statement, built once with named parameters: building a statement and
        SQLAlchemy's cache key for it cost more than running a page of it. The first search of a
        shape checks that its values, taken without compiling, are the ones its statement binds;
        shapes that fail (or whose SQL holds values bound otherwise) run :meth:`statement`.
        """
        values: list[Any] = []
        shapes = []
        for clause in self._clauses:
            if isinstance(clause, ColumnElement):
                return None
            shapes.append(clause[0])
            values.extend(clause[1])
        schema = self._catalog.postgis_schema
        if self._geometry is not None:
            if self._dialect != "postgresql" or schema is None or self._bbox is None:
                return None  # only the PostGIS test binds its geometry as one parameter
            if self._bbox[0] > self._bbox[2] or self._bbox[1] > self._bbox[3]:
                return None  # bbox_intersects refuses it
            values.extend(self._bbox)
            values.append(postgis_geometry_text(self._geometry))
        key = (self._cls, self._dialect, schema, self._geometry is not None, tuple(shapes), self._order, self._limit)
        with _TEMPLATES_LOCK:
            found = _TEMPLATES.get(key, _MISSING)
        if found is _MISSING:
            with recorded_parameters() as recorded:
                found = self.statement()
            if recorded != values:
                found = None
            with _TEMPLATES_LOCK:
                if len(_TEMPLATES) >= MAX_TEMPLATES:
                    _TEMPLATES.clear()
                _TEMPLATES[key] = found
        if found is None:
            return None
        return found, {f"v{index}": value for index, value in enumerate(values)}

    def _order_by(self) -> list[ColumnElement[Any]]:
        order = self._order or self._cls._default_order
        clauses: list[ColumnElement[Any]] = []
        for name, ascending in order:
            field = self._resolve(name)
            clause = field.column.asc() if ascending else field.column.desc()
            if field.nullable:
                clause = clause.nulls_last()
            clauses.append(clause)
        clauses.extend(column.asc() for column in self._cls._tiebreak())
        return clauses

    def sql(self) -> str:
        """Return the SQL text of :meth:`statement` for this catalog's dialect (values bound inline)."""
        return str(
            self.statement().compile(dialect=self._catalog.engine.dialect, compile_kwargs={"literal_binds": True})
        )

    # ------------------------------------------------------------------ running

    def count(self) -> int:
        """Return how many objects match the filters and geometry (ignoring :meth:`limit`).

        Returns:
            The count, computed by the database.
        """
        statement = select(func.count()).select_from(self._cls._model).where(self.where_clause())
        with self._catalog.session() as session:
            return int(session.execute(statement).scalar_one())

    def __iter__(self) -> Iterator[T]:
        return self._run(self._cls._build)

    def _run(self, build: Callable[[Any, Any, Session], Iterable[Any]]) -> Iterator[Any]:
        """Run the search; yield what ``build(rows, catalog, session)`` makes of its rows (objects, or views)."""
        template = self._template()
        statement, parameters = template if template is not None else (self.statement(), None)
        if self._limit is not None and self._limit <= ITERATION_BATCH:  # one statement: its own transaction
            with self._catalog.single_statement_session() as session:
                yield from build(session.connection().execute(statement, parameters).all(), self._catalog, session)
            return
        with self._catalog.session() as session:
            # Stream: the rows come in batches (a server-side cursor on PostgreSQL), objects per batch.
            result = session.connection().execute(statement.execution_options(yield_per=ITERATION_BATCH), parameters)
            for rows in result.partitions():
                yield from build(rows, self._catalog, session)

    def first(self) -> T | None:
        """Return the first matching object in order, or None."""
        for found in self.limit(1):
            return found
        return None

    def __repr__(self) -> str:
        parts = [repr(f) for f in self._filters]
        if self._bbox is not None:
            parts.append(f"intersects bbox {self._bbox}")
        if self._order:
            parts.append("sort " + ", ".join(f"{n} {'asc' if a else 'desc'}" for n, a in self._order))
        if self._limit is not None:
            parts.append(f"limit {self._limit}")
        return f"Search({self._cls.__name__}: {'; '.join(parts) or 'everything'})"


_TEMPLATES: dict[Any, Select[Any] | None] = {}
_TEMPLATES_LOCK = threading.Lock()
_MISSING: Any = object()


def bbox_intersects(model: Any, bbox: BBox, dialect: str) -> ColumnElement[bool]:
    """SQL for "the row's ``min_lon``..``max_lat`` box intersects ``bbox``" (touching counts).

    PostgreSQL: ``box(point(min_lon, min_lat), point(max_lon, max_lat)) && box(...)``, the
    expression the GiST index of migration 0003 is built on. Elsewhere: four comparisons (the
    search itself uses the R*Tree on SQLite, :func:`cube_assets.catalog.footprints.rtree_candidates`).

    Returns:
        The boolean SQL expression.

    Raises:
        CatalogError: if the box is not ordered (crossing the antimeridian is not supported).
    """
    min_lon, min_lat, max_lon, max_lat = bbox
    if min_lon > max_lon or min_lat > max_lat:
        raise CatalogError(f"bbox {bbox} has a minimum above its maximum (the antimeridian is not supported)")
    if dialect == "postgresql":
        lower_left = func.point(parameter(min_lon), parameter(min_lat))
        return image_box(model).op("&&")(func.box(lower_left, func.point(parameter(max_lon), parameter(max_lat))))
    return and_(
        model.min_lon <= max_lon,
        model.max_lon >= min_lon,
        model.min_lat <= max_lat,
        model.max_lat >= min_lat,
    )


def image_box(model: Any) -> ColumnElement[Any]:
    """``box(point(min_lon, min_lat), point(max_lon, max_lat))`` of the images table (PostgreSQL)."""
    return func.box(func.point(model.min_lon, model.min_lat), func.point(model.max_lon, model.max_lat))


__all__ = [
    "ITERATION_BATCH",
    "BBox",
    "Search",
    "SearchCatalog",
    "Searchable",
    "bbox_intersects",
    "image_box",
    "p",
    "properties",
]
