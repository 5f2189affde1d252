"""The catalog's object model: products, their bands and images, saved and searched like records.

Point it at a catalog explicitly, either per call or through one explicit default::

    from cube_assets.client.base import Catalog, Image, Product, SpectralBand, connect
    from cube_assets.catalog.expressions import properties as p

    with Catalog("sqlite:///cube-data/catalog.sqlite") as catalog:       # explicit
        product = catalog.products.get("s2_16d-LCF")
        recent = product.images().filter(p.acquired >= "2024-06-01").limit(10).collect()

    connect("postgresql://user@host/catalog")                           # the explicit default
    Product.get("s2_16d-LCF")                                          # uses it
    Image.search().filter(p.cloud_fraction < 0.2).count()

Objects are plain Python values over the SQLAlchemy models (:mod:`cube_assets.catalog.models`);
they hold no session. Each knows its :class:`ObjectState`: ``unsaved`` (never stored),
``saved`` (equal to what it last read or wrote), ``modified`` (an attribute differs from that,
including in-place changes to ``tags``, ``properties`` or ``files``) or ``deleted``.
:meth:`CatalogObject.save` of a ``saved`` object does nothing (no database access); otherwise it
validates the object through the repository's records and writes it with the repository's
idempotent upserts, then reads back ``created``/``modified``.

Attribute rules, all raising :class:`~cube_assets.errors.CatalogError` (or its subclasses here)
that name the object and the attribute:

* an unknown attribute (in the constructor or by assignment) raises :class:`InvalidAttributeError`;
* ``created`` and ``modified`` are read-only (set by the database clock);
* identity attributes (``id``; ``product_id`` of images and bands; a band's ``name``) are
  immutable once the object is saved;
* a bad value (wrong type, out of range, too many tags or properties) raises when assigned;
  rules across attributes (``acquired_end`` after ``acquired``, a valid footprint) when saved.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import enum
import json
import math
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from numbers import Real
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar

import shapely
import shapely.geometry
import shapely.validation
from shapely.geometry.base import BaseGeometry
from sqlalchemy import JSON, Engine, Select, Text, cast, delete, func, select, tuple_, type_coerce, update
from sqlalchemy.orm import Session, sessionmaker

from cube_assets.catalog import models
from cube_assets.catalog.database import (
    create_catalog_engine,
    postgis_footprint_schema,
    session_factory,
    upgrade_schema,
)
from cube_assets.catalog.models import BAND_DATA_TYPES, MAX_PROPERTIES, MAX_TAGS
from cube_assets.catalog.repository import (
    BandRecord,
    ImageFileRecord,
    ImageRecord,
    ProductRecord,
    upsert_bands,
    upsert_image,
    upsert_product,
)
from cube_assets.catalog.expressions import SearchField, geometry_4326, parse_date, parse_datetime
from cube_assets.catalog.expressions import properties as p
from cube_assets.client.search import ObjectSearch
from cube_assets.errors import CatalogError
from cube_assets.redaction import redact_url

if TYPE_CHECKING:
    from cube_assets.client.collection import ImageCollection
    from cube_assets.client.upload import Upload
    from cube_assets.storage.raster_store import RasterStore


class NotFoundError(CatalogError):
    """An object asked for by id is not in the catalog."""


class ConflictError(CatalogError):
    """A new object would overwrite one already stored under the same id."""


class InvalidAttributeError(CatalogError, AttributeError):
    """An attribute that the object does not have, or may not set."""


class ObjectState(enum.StrEnum):
    """Where an object stands against the catalog."""

    UNSAVED = "unsaved"
    SAVED = "saved"
    MODIFIED = "modified"
    DELETED = "deleted"


# ------------------------------------------------------------------------------ connection


class Catalog:
    """A connection to one catalog database (SQLite file or PostgreSQL), and the objects bound to it.

    ``Catalog(url)`` creates the engine and, unless ``migrate=False``, brings the schema to the
    latest revision. ``postgis=False`` keeps PostGIS out on PostgreSQL: the migration does not add
    the footprint column, and searches use the portable exact test even where the column exists
    (same answers; see :mod:`cube_assets.catalog.footprints`). ``catalog.products``,
    ``catalog.bands`` and ``catalog.images`` give the
    class methods (``get``, ``get_many``, ``get_or_create``, ``exists``, ``search``) bound to
    this catalog, and create new objects bound to it: ``catalog.products(id=..., name=...)``.
    Use it as a context manager, or call :meth:`close`, to release its connections.

    Raises:
        CatalogError: if the URL is not a SQLite or PostgreSQL URL.
        sqlalchemy.exc.SQLAlchemyError: if the database cannot be reached while migrating.
    """

    def __init__(self, url: str | Engine, *, migrate: bool = True, postgis: bool = True) -> None:
        self._use_postgis = postgis
        if isinstance(url, Engine):
            self.engine = url
            self._owns_engine = False
        else:
            self.engine = create_catalog_engine(url)
            self._owns_engine = True
        self.url = redact_url(self.engine.url)  # shown in repr and messages: never a password or token
        if migrate:
            upgrade_schema(self.engine, postgis=postgis)
        self._sessions: sessionmaker[Session] = session_factory(self.engine)
        self.products = BoundClass(Product, self)
        self.bands = BoundClass(Band, self)
        self.images = BoundClass(Image, self)

    @property
    def dialect(self) -> str:
        """The database's SQLAlchemy dialect name: ``"sqlite"`` or ``"postgresql"``."""
        return self.engine.dialect.name

    @property
    def postgis_schema(self) -> str | None:
        """The schema of PostGIS if searches use its footprint column (migration 0004), else None.

        Asked of the database once per catalog, on first use (see
        :func:`cube_assets.catalog.database.postgis_footprint_schema`); always None for a catalog
        opened with ``postgis=False``.
        """
        if not self._use_postgis:
            return None
        if not hasattr(self, "_postgis_schema"):
            self._postgis_schema = postgis_footprint_schema(self.engine)
        return self._postgis_schema

    @property
    def sessions(self) -> sessionmaker[Session]:
        """The session factory (objects are not expired on commit)."""
        return self._sessions

    @contextlib.contextmanager
    def session(self) -> Iterator[Session]:
        """A session for reading; closed (and any transaction rolled back) on exit."""
        with self._sessions() as session:
            yield session

    @contextlib.contextmanager
    def transaction(self) -> Iterator[Session]:
        """A session in a transaction that commits on success and rolls back on error."""
        with self._sessions.begin() as session:
            yield session

    def close(self) -> None:
        """Release the engine's connections (only an engine this catalog created)."""
        if self._owns_engine:
            self.engine.dispose()

    def __enter__(self) -> Catalog:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Catalog({self.url!r})"


_default_catalog: Catalog | None = None


def connect(url: str | Engine, *, migrate: bool = True) -> Catalog:
    """Open the catalog at ``url`` and make it the default for objects created without one.

    The previous default, if any, is closed. This is the only module-level state of the object
    model; pass ``catalog=`` (or use ``Catalog(url).products`` ...) to avoid it.

    Returns:
        The new default :class:`Catalog`.

    Raises:
        CatalogError, sqlalchemy.exc.SQLAlchemyError: as :class:`Catalog`.
    """
    global _default_catalog
    catalog = Catalog(url, migrate=migrate)
    if _default_catalog is not None:
        _default_catalog.close()
    _default_catalog = catalog
    return catalog


def disconnect() -> None:
    """Close and forget the default catalog set by :func:`connect` (a no-op when there is none)."""
    global _default_catalog
    if _default_catalog is not None:
        _default_catalog.close()
    _default_catalog = None


def default_catalog() -> Catalog:
    """Return the catalog set by :func:`connect`.

    Raises:
        CatalogError: if :func:`connect` has not been called.
    """
    if _default_catalog is None:
        raise CatalogError(
            "no catalog given and no default catalog: call cube_assets.client.base.connect(url)"
            " or pass catalog=Catalog(url)"
        )
    return _default_catalog


O = TypeVar("O", bound="CatalogObject")


class BoundClass:
    """An object class bound to one :class:`Catalog`: ``catalog.products.get(...)``, ``catalog.images(...)``."""

    def __init__(self, cls: type[CatalogObject], catalog: Catalog) -> None:
        self._cls = cls
        self._catalog = catalog

    def __call__(self, **attributes: Any) -> CatalogObject:
        """Return a new unsaved object of the class, bound to the catalog."""
        return self._cls(catalog=self._catalog, **attributes)

    def get(self, id: str) -> Any:  # noqa: A002 - the catalog's word for it
        """``cls.get(id)`` on this catalog."""
        return self._cls.get(id, catalog=self._catalog)

    def get_many(self, ids: Iterable[str], ignore_missing: bool = False) -> list[Any]:
        """``cls.get_many(ids, ignore_missing)`` on this catalog."""
        return self._cls.get_many(ids, ignore_missing=ignore_missing, catalog=self._catalog)

    def get_or_create(self, id: str, **attributes: Any) -> Any:  # noqa: A002
        """``cls.get_or_create(id, **attributes)`` on this catalog."""
        return self._cls.get_or_create(id, catalog=self._catalog, **attributes)

    def exists(self, id: str) -> bool:  # noqa: A002
        """``cls.exists(id)`` on this catalog."""
        return self._cls.exists(id, catalog=self._catalog)

    def search(self) -> ObjectSearch[Any]:
        """``cls.search()`` on this catalog."""
        return self._cls.search(catalog=self._catalog)

    def __repr__(self) -> str:
        return f"{self._cls.__name__} of {self._catalog!r}"


# ------------------------------------------------------------------------------ attributes


Coerce = Callable[[str, Any], Any]
"""``coerce(what, value) -> value``: checks and normalizes an assigned value; raises CatalogError."""


class Attribute:
    """A declared attribute of a catalog object: how values are checked and how it maps to a column.

    ``kind`` is the search kind (see :data:`cube_assets.catalog.expressions.FIELD_KINDS`) or None
    when the attribute is not searchable; ``column`` the model attribute (default: same name).
    """

    def __init__(
        self,
        coerce: Coerce,
        *,
        kind: str | None = None,
        column: str | None = None,
        readonly: bool = False,
        immutable: bool = False,
        default: Callable[[], Any] | None = None,
        nullable: bool = True,
        doc: str = "",
    ) -> None:
        self.coerce = coerce
        self.kind = kind
        self.column = column
        self.readonly = readonly
        self.immutable = immutable
        self.default = default
        self.nullable = nullable
        self.__doc__ = doc
        self.name = ""

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name
        if self.column is None:
            self.column = name

    def __get__(self, obj: CatalogObject | None, owner: type | None = None) -> Any:
        if obj is None:
            return self
        return obj._values.get(self.name)

    def __set__(self, obj: CatalogObject, value: Any) -> None:
        obj._assign(self, value)

    def initial(self) -> Any:
        """The value of a new object that was not given one."""
        return self.default() if self.default is not None else None


def _optional(coerce: Coerce) -> Coerce:
    def coerce_optional(what: str, value: Any) -> Any:
        return None if value is None else coerce(what, value)

    return coerce_optional


def _text(what: str, value: Any) -> str:
    if not isinstance(value, str):
        raise CatalogError(f"{what} must be text, got {value!r}")
    return value


def _identifier(what: str, value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise CatalogError(f"{what} must be a non-empty string, got {value!r}")
    return value


def _number(minimum: float | None = None, maximum: float | None = None, positive: bool = False) -> Coerce:
    def coerce_number(what: str, value: Any) -> float:
        if isinstance(value, bool) or not isinstance(value, Real) or not math.isfinite(float(value)):
            raise CatalogError(f"{what} must be a finite number, got {value!r}")
        number = float(value)
        if positive and number <= 0:
            raise CatalogError(f"{what} must be > 0, got {value!r}")
        if (minimum is not None and number < minimum) or (maximum is not None and number > maximum):
            raise CatalogError(f"{what} must be in [{minimum}, {maximum}], got {value!r}")
        return number

    return coerce_number


def _integer(minimum: int) -> Coerce:
    def coerce_integer(what: str, value: Any) -> int:
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            raise CatalogError(f"{what} must be an integer >= {minimum}, got {value!r}")
        return value

    return coerce_integer


def _boolean(what: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise CatalogError(f"{what} must be True or False, got {value!r}")
    return value


def _datetime(what: str, value: Any) -> dt.datetime:
    return parse_datetime(what, value)


def _date(what: str, value: Any) -> dt.date:
    return parse_date(what, value)


def _range(what: str, value: Any) -> tuple[float, float]:
    if isinstance(value, str | bytes) or not isinstance(value, Sequence) or len(value) != 2:
        raise CatalogError(f"{what} must be (min, max), got {value!r}")
    low, high = (_number()(what, v) for v in value)
    if low > high:
        raise CatalogError(f"{what}: minimum {low} is above maximum {high}")
    return (low, high)


def _tags(what: str, value: Any) -> list[str]:
    if isinstance(value, str | bytes) or not isinstance(value, Iterable):
        raise CatalogError(f"{what} must be a list of strings, got {value!r}")
    tags = list(value)
    if len(tags) > MAX_TAGS:
        raise CatalogError(f"{what} has {len(tags)} entries, at most {MAX_TAGS} allowed")
    for tag in tags:
        if not isinstance(tag, str) or not tag.strip():
            raise CatalogError(f"{what} must hold non-empty strings, got {tag!r}")
    duplicates = sorted({tag for tag in tags if tags.count(tag) > 1})
    if duplicates:
        raise CatalogError(f"{what} has duplicates: {duplicates}")
    return tags


def _json_copy(what: str, value: Any) -> Any:
    try:
        return json.loads(json.dumps(value, allow_nan=False))
    except (TypeError, ValueError) as exc:
        raise CatalogError(f"{what} is not JSON-serializable: {exc}") from exc


def _properties(what: str, value: Any) -> dict[str, Any]:
    if not isinstance(value, Mapping):
        raise CatalogError(f"{what} must be a mapping, got {type(value).__name__}")
    if len(value) > MAX_PROPERTIES:
        raise CatalogError(f"{what} has {len(value)} keys, at most {MAX_PROPERTIES} allowed")
    for key in value:
        if not isinstance(key, str) or not key:
            raise CatalogError(f"{what} keys must be non-empty strings, got {key!r}")
    return _json_copy(what, dict(value))


def _geometry(what: str, value: Any) -> BaseGeometry:
    try:
        shape = geometry_4326(value)
    except CatalogError as exc:
        raise CatalogError(f"{what}: {exc}") from None
    if shape.geom_type not in ("Polygon", "MultiPolygon"):
        raise CatalogError(f"{what} must be a Polygon or MultiPolygon, got {shape.geom_type}")
    if not shape.is_valid:
        raise CatalogError(f"{what} is not a valid polygon: {shapely.validation.explain_validity(shape)}")
    return shape


def _geotransform(what: str, value: Any) -> tuple[float, ...]:
    if isinstance(value, str | bytes) or not isinstance(value, Sequence) or len(value) != 6:
        raise CatalogError(f"{what} must be the 6 numbers of a GDAL geotransform, got {value!r}")
    return tuple(_number()(what, v) for v in value)


def _data_type(what: str, value: Any) -> str:
    if value not in BAND_DATA_TYPES:
        raise CatalogError(f"{what} must be one of {BAND_DATA_TYPES}, got {value!r}")
    return value


def _class_labels(what: str, value: Any) -> dict[str, str]:
    if not isinstance(value, Mapping) or not all(isinstance(label, str) for label in value.values()):
        raise CatalogError(f"{what} must map pixel values to label strings, got {value!r}")
    return {str(key): label for key, label in value.items()}


def _colormap(what: str, value: Any) -> dict[str, list[int]]:
    if not isinstance(value, Mapping):
        raise CatalogError(f"{what} must map pixel values to [r, g, b(, a)], got {value!r}")
    colors = {}
    for key, color in value.items():
        if (
            isinstance(color, str | bytes)
            or not isinstance(color, Sequence)
            or len(color) not in (3, 4)
            or not all(isinstance(c, int) and not isinstance(c, bool) and 0 <= c <= 255 for c in color)
        ):
            raise CatalogError(f"{what} entry {key!r} must be 3 or 4 integers in [0, 255], got {color!r}")
        colors[str(key)] = list(color)
    return colors


@dataclass(frozen=True)
class File:
    """The file holding one band of an image: a local path or URI, and its size in bytes if known."""

    href: str
    size_bytes: int | None = None


def _files(what: str, value: Any) -> dict[str, File]:
    if not isinstance(value, Mapping):
        raise CatalogError(f"{what} must map band names to files, got {type(value).__name__}")
    files: dict[str, File] = {}
    for band, file in value.items():
        if not isinstance(band, str) or not band.strip():
            raise CatalogError(f"{what}: band names must be non-empty strings, got {band!r}")
        if isinstance(file, str):
            file = File(file)
        elif isinstance(file, Mapping):
            file = File(file.get("href"), file.get("size_bytes"))  # type: ignore[arg-type]
        if not isinstance(file, File):
            raise CatalogError(f"{what}: band {band!r} must be a File, an href or {{'href', 'size_bytes'}}, got {file!r}")
        if not isinstance(file.href, str) or not file.href.strip():
            raise CatalogError(f"{what}: band {band!r} href must be a non-empty string, got {file.href!r}")
        size = file.size_bytes
        if size is not None and (isinstance(size, bool) or not isinstance(size, int) or size < 0):
            raise CatalogError(f"{what}: band {band!r} size_bytes must be an integer >= 0, got {size!r}")
        files[band] = file
    return files


def _copy(value: Any) -> Any:
    """A copy of the lists and dicts in ``value``; everything else (str, numbers, File, geometry) is immutable."""
    if isinstance(value, dict):
        return {key: _copy(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_copy(item) for item in value]
    return value


def _same(value: Any, saved: Any) -> bool:
    """Whether an attribute still holds its saved value (geometries compared exactly, by coordinates)."""
    if isinstance(value, BaseGeometry) or isinstance(saved, BaseGeometry):
        return (
            isinstance(value, BaseGeometry)
            and isinstance(saved, BaseGeometry)
            and value.geom_type == saved.geom_type
            and shapely.equals_exact(value, saved, tolerance=0.0)
        )
    return bool(value == saved)


def _plain(value: Any) -> Any:
    """A JSON-able form of an attribute value, for change detection and :meth:`to_dict`."""
    if isinstance(value, BaseGeometry):
        return shapely.geometry.mapping(value)
    if isinstance(value, File):
        return {"href": value.href, "size_bytes": value.size_bytes}
    if isinstance(value, dt.datetime | dt.date):
        return value.isoformat()
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


# ------------------------------------------------------------------------------ base object


class CatalogObject:
    """Base of :class:`Product`, :class:`Band` and :class:`Image`: attributes, state, get/save/delete."""

    _model: ClassVar[type[models.Base]]
    _what: ClassVar[str] = "object"
    _spatial: ClassVar[bool] = False
    _default_order: ClassVar[tuple[tuple[str, bool], ...]] = (("id", True),)
    _attributes: ClassVar[dict[str, Attribute]] = {}

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        attributes: dict[str, Attribute] = {}
        for klass in reversed(cls.__mro__):
            for name, value in vars(klass).items():
                if isinstance(value, Attribute):
                    attributes[name] = value
        cls._attributes = attributes

    def __init__(self, *, catalog: Catalog | None = None, **attributes: Any) -> None:
        object.__setattr__(self, "_catalog", catalog)
        object.__setattr__(self, "_values", {name: a.initial() for name, a in self._attributes.items()})
        object.__setattr__(self, "_snapshot", None)
        object.__setattr__(self, "_deleted", False)
        self._check_names(attributes)
        for name, value in attributes.items():
            setattr(self, name, value)

    # ------------------------------------------------------------------ attributes

    def _label(self) -> str:
        identity = self._values.get("id")
        return f"{self._what} {identity!r}" if identity is not None else f"new {self._what}"

    def _check_names(self, names: Iterable[str]) -> None:
        unknown = sorted(name for name in names if name not in self._attributes)
        if unknown:
            raise InvalidAttributeError(
                f"{type(self).__name__} has no attribute {', '.join(map(repr, unknown))};"
                f" its attributes are: {', '.join(sorted(self._attributes))}"
            )

    def __setattr__(self, name: str, value: Any) -> None:
        if name.startswith("_"):
            object.__setattr__(self, name, value)
            return
        self._check_names([name])
        super().__setattr__(name, value)

    def _assign(self, attribute: Attribute, value: Any) -> None:
        what = f"{self._label()}: {attribute.name}"
        if self._deleted:
            raise CatalogError(f"{self._label()} was deleted; it cannot be changed")
        if attribute.readonly:
            raise InvalidAttributeError(f"{what} is read-only (set by the catalog)")
        if attribute.immutable and self._snapshot is not None:
            if _plain(value) != _plain(self._values.get(attribute.name)):
                raise InvalidAttributeError(f"{what} cannot change once saved (it identifies the {self._what})")
            return
        if value is None:
            if not attribute.nullable:
                raise CatalogError(f"{what} cannot be None")
            self._values[attribute.name] = None
            return
        self._values[attribute.name] = attribute.coerce(what, value)

    def _tracked(self) -> dict[str, Any]:
        """A copy of the writable values to compare with later (containers copied, so in-place changes show)."""
        return {name: _copy(value) for name, value in self._values.items() if not self._attributes[name].readonly}

    @property
    def state(self) -> ObjectState:
        """:class:`ObjectState`: unsaved, saved, modified (compared with the last read or write) or deleted."""
        if self._deleted:
            return ObjectState.DELETED
        if self._snapshot is None:
            return ObjectState.UNSAVED
        for name, saved in self._snapshot.items():
            if not _same(self._values.get(name), saved):
                return ObjectState.MODIFIED
        return ObjectState.SAVED

    @property
    def catalog(self) -> Catalog:
        """The catalog the object belongs to (its own, else the default set by :func:`connect`).

        Raises:
            CatalogError: if it has none and there is no default.
        """
        return self._catalog if self._catalog is not None else default_catalog()

    def to_dict(self) -> dict[str, Any]:
        """Return every attribute as JSON-able data (geometry as GeoJSON, datetimes as ISO text)."""
        return {name: _plain(self._values.get(name)) for name in self._attributes}

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self._label()}, {self.state.value})"

    # ------------------------------------------------------------------ loading

    @classmethod
    def _key(cls, id: str) -> tuple[Any, ...]:  # noqa: A002
        return (id,)

    @classmethod
    def _select(cls, dialect: str) -> Select[Any]:
        """``SELECT`` of the columns objects are built from (Core rows, no ORM identity map)."""
        return select(*cls._model.__table__.c)  # type: ignore[attr-defined]

    @classmethod
    def _build(cls: type[O], rows: Sequence[Any], catalog: Catalog, session: Session) -> list[O]:
        """Objects from rows of :meth:`_select` (subclasses fetch what the rows lack, e.g. files)."""
        return [cls._from_row(row, catalog, {}) for row in rows]

    @classmethod
    def _load(cls: type[O], catalog: Catalog, session: Session, statement: Select[Any]) -> list[O]:
        # Core execution on the session's connection: no ORM layer between the rows and the objects.
        return cls._build(session.connection().execute(statement).all(), catalog, session)

    @classmethod
    def _from_row(cls: type[O], row: Any, catalog: Catalog, extra: Mapping[str, Any]) -> O:
        target = cls._class_for(row)
        obj = target.__new__(target)
        object.__setattr__(obj, "_catalog", catalog)
        object.__setattr__(obj, "_deleted", False)
        values = {
            name: extra[name] if name in extra else target._read_column(row, attribute)
            for name, attribute in target._attributes.items()
        }
        object.__setattr__(obj, "_values", values)
        object.__setattr__(obj, "_snapshot", obj._tracked())
        return obj

    @classmethod
    def _class_for(cls, row: Any) -> type[Any]:
        return cls

    @classmethod
    def _read_column(cls, row: Any, attribute: Attribute) -> Any:
        # Rows are fresh per query (JSON decoded anew), so their lists and dicts are the object's own.
        return getattr(row, attribute.column or attribute.name)

    @classmethod
    def _search_field(cls, name: str) -> SearchField:
        attribute = cls._attributes.get(name)
        if attribute is None or attribute.kind is None:
            searchable = sorted(n for n, a in cls._attributes.items() if a.kind is not None)
            raise CatalogError(f"{cls._what}s have no searchable property {name!r}; searchable: {', '.join(searchable)}")
        column = getattr(cls._model, attribute.column or name)
        return SearchField(name=name, column=column, kind=attribute.kind, nullable=attribute.nullable)

    @classmethod
    def _resolve_catalog(cls, catalog: Catalog | None) -> Catalog:
        return catalog if catalog is not None else default_catalog()

    @classmethod
    def search(cls: type[O], catalog: Catalog | None = None) -> ObjectSearch[O]:
        """Return an :class:`~cube_assets.client.search.ObjectSearch` over every object of this class.

        Raises:
            CatalogError: if no catalog is given and there is no default.
        """
        return ObjectSearch(cls, cls._resolve_catalog(catalog))

    @classmethod
    def get(cls: type[O], id: str, catalog: Catalog | None = None) -> O | None:  # noqa: A002
        """Return the object stored under ``id``, or None if there is none.

        Raises:
            CatalogError: if no catalog is given and there is no default, or ``id`` is malformed.
        """
        found = cls.get_many([id], ignore_missing=True, catalog=catalog)
        return found[0] if found else None

    @classmethod
    def get_many(
        cls: type[O], ids: Iterable[str], ignore_missing: bool = False, catalog: Catalog | None = None
    ) -> list[O]:
        """Return the objects stored under ``ids``, in the order of ``ids``, in one query.

        Returns:
            The objects; ids not found are left out when ``ignore_missing`` is true.

        Raises:
            NotFoundError: naming every missing id, unless ``ignore_missing``.
            CatalogError: if no catalog is given and there is no default, or an id is malformed.
        """
        resolved = cls._resolve_catalog(catalog)
        if isinstance(ids, str):
            raise CatalogError(f"get_many takes a list of ids, got the string {ids!r}")
        wanted = list(dict.fromkeys(ids))
        keys = {id_: cls._key(id_) for id_ in wanted}
        found: dict[tuple[Any, ...], O] = {}
        if keys:
            statement = cls._select(resolved.dialect).where(cls._keys_clause(list(keys.values())))
            with resolved.session() as session:
                for obj in cls._load(resolved, session, statement):
                    found[obj._identity()] = obj
        missing = [id_ for id_, key in keys.items() if key not in found]
        if missing and not ignore_missing:
            raise NotFoundError(f"{cls._what}s not in the catalog: {', '.join(map(repr, missing))}")
        return [found[keys[id_]] for id_ in wanted if keys[id_] in found]

    @classmethod
    def _keys_clause(cls, keys: list[tuple[Any, ...]]) -> Any:
        return cls._model.id.in_([key[0] for key in keys])  # type: ignore[attr-defined]

    @classmethod
    def _tiebreak(cls) -> list[Any]:
        """Columns that make an ordering total (the primary key)."""
        return [cls._model.id]  # type: ignore[attr-defined]

    def _identity(self) -> tuple[Any, ...]:
        return (self._values["id"],)

    @classmethod
    def exists(cls, id: str, catalog: Catalog | None = None) -> bool:  # noqa: A002
        """Return whether an object is stored under ``id`` (one indexed query, nothing loaded).

        Raises:
            CatalogError: if no catalog is given and there is no default, or ``id`` is malformed.
        """
        resolved = cls._resolve_catalog(catalog)
        statement = select(func.count()).select_from(cls._model).where(cls._keys_clause([cls._key(id)]))
        with resolved.session() as session:
            return bool(session.execute(statement).scalar_one())

    @classmethod
    def get_or_create(cls: type[O], id: str, catalog: Catalog | None = None, **attributes: Any) -> O:  # noqa: A002
        """Return the stored object ``id`` with ``attributes`` assigned, or a new unsaved one with them.

        Nothing is written: call :meth:`save`. A stored object whose attributes all match is ``saved``
        (so saving it does nothing), otherwise ``modified``.

        Raises:
            InvalidAttributeError, CatalogError: for unknown or bad attributes, as assignment does.
        """
        found = cls.get(id, catalog=catalog)
        if found is None:
            return cls(catalog=catalog, **cls._id_attributes(id), **attributes)
        found._check_names(attributes)
        for name, value in attributes.items():
            setattr(found, name, value)
        return found

    @classmethod
    def _id_attributes(cls, id: str) -> dict[str, Any]:  # noqa: A002
        return {"id": id}

    # ------------------------------------------------------------------ writing

    def save(self: O) -> O:
        """Store the object if it is unsaved or modified; do nothing if it is saved.

        A new object whose id is already stored is refused (use :meth:`get_or_create` to update
        it). After writing, ``created`` and ``modified`` are read back from the database.

        Returns:
            The object itself.

        Raises:
            ConflictError: if the object is new and its id is already in the catalog.
            CatalogError: if the object was deleted, a required attribute is missing, the values
                are invalid together, or a referenced product is missing.
            sqlalchemy.exc.SQLAlchemyError: if the database rejects the write.
        """
        state = self.state
        if state == ObjectState.DELETED:
            raise CatalogError(f"{self._label()} was deleted; create a new object to store it again")
        if state == ObjectState.SAVED:
            return self
        for name, attribute in self._attributes.items():  # re-check values changed in place
            value = self._values.get(name)
            if value is not None and not attribute.readonly:
                self._values[name] = attribute.coerce(f"{self._label()}: {name}", value)
        catalog = self.catalog
        records = self._records()
        with catalog.transaction() as session:
            if state == ObjectState.UNSAVED and self._stored(session):
                raise ConflictError(
                    f"{self._label()} is already in the catalog; use {type(self).__name__}.get or get_or_create"
                )
            self._write(session, records)
        self._catalog = catalog
        self._refresh(catalog)
        return self

    def _stored(self, session: Session) -> bool:
        statement = select(func.count()).select_from(self._model).where(self._keys_clause([self._identity()]))
        return bool(session.execute(statement).scalar_one())

    def _refresh(self, catalog: Catalog) -> None:
        statement = self._select(catalog.dialect).where(self._keys_clause([self._identity()]))
        with catalog.session() as session:
            found = self._load(catalog, session, statement)
        if not found:
            raise NotFoundError(f"{self._label()} is not in the catalog")
        fresh = found[0]
        object.__setattr__(self, "_values", fresh._values)
        object.__setattr__(self, "_snapshot", fresh._snapshot)

    def reload(self: O) -> O:
        """Replace every attribute with what the catalog holds now (dropping unsaved changes).

        Returns:
            The object itself, ``saved``.

        Raises:
            NotFoundError: if the object is not (or no longer) in the catalog.
        """
        self._refresh(self.catalog)
        self._deleted = False
        return self

    def delete(self) -> None:
        """Delete the object from the catalog; it becomes ``deleted`` and can no longer change.

        Raises:
            CatalogError: if it was never saved, or (products) it still has images.
            NotFoundError: if it is no longer in the catalog.
        """
        if self._deleted:
            raise CatalogError(f"{self._label()} was already deleted")
        if self._snapshot is None:
            raise CatalogError(f"{self._label()} was never saved; there is nothing to delete")
        with self.catalog.transaction() as session:
            self._check_deletable(session)
            result = session.execute(delete(self._model).where(self._keys_clause([self._identity()])))
            if result.rowcount == 0:  # type: ignore[attr-defined]
                raise NotFoundError(f"{self._label()} is not in the catalog")
        self._deleted = True

    def _check_deletable(self, session: Session) -> None:
        return None

    def _records(self) -> Any:
        raise NotImplementedError

    def _write(self, session: Session, records: Any) -> None:
        raise NotImplementedError

    def _required(self, *names: str) -> None:
        missing = [name for name in names if self._values.get(name) is None]
        if missing:
            raise CatalogError(f"{self._label()}: {', '.join(missing)} required before saving")


# ------------------------------------------------------------------------------ product


class Product(CatalogObject):
    """A product: a data cube's composites or merges, or a source collection; it has bands and images."""

    _model = models.Product
    _what = "product"

    id = Attribute(_identifier, kind="string", immutable=True, nullable=False, doc="Unique id, e.g. ``s2_16d-LCF``.")
    name = Attribute(_identifier, kind="string", doc="Display name.")
    description = Attribute(_text, kind="string", default=str, nullable=False, doc="Free text.")
    start_datetime = Attribute(_datetime, kind="datetime", doc="Start of the time the product covers (aware).")
    end_datetime = Attribute(_datetime, kind="datetime", doc="End of the time the product covers (aware).")
    tags = Attribute(_tags, kind="tags", default=list, nullable=False, doc=f"At most {MAX_TAGS} distinct strings.")
    properties = Attribute(
        _properties, kind="json", default=dict, nullable=False, doc=f"Extra JSON properties (at most {MAX_PROPERTIES})."
    )
    created = Attribute(_datetime, kind="datetime", readonly=True, doc="When the product was first stored (UTC).")
    modified = Attribute(_datetime, kind="datetime", readonly=True, doc="When it was last changed (UTC).")

    def _records(self) -> ProductRecord:
        self._required("id", "name")
        return ProductRecord(
            id=self.id,
            name=self.name,
            description=self.description,
            start_datetime=self.start_datetime,
            end_datetime=self.end_datetime,
            tags=list(self.tags),
            properties=self.properties,
        )

    def _write(self, session: Session, records: ProductRecord) -> None:
        upsert_product(session, records)

    def _check_deletable(self, session: Session) -> None:
        images = session.execute(
            select(func.count()).select_from(models.Image).where(models.Image.product_id == self.id)
        ).scalar_one()
        if images:
            raise CatalogError(f"{self._label()} still has {images} image(s); delete them first")

    def images(self) -> ObjectSearch[Image]:
        """Return a search of this product's images.

        Raises:
            CatalogError: if the product has no id.
        """
        self._required("id")
        return Image.search(catalog=self.catalog).filter(p.product_id == self.id)

    def bands(self) -> list[Band]:
        """Return the product's bands, ordered by ``band_index`` (each of its own Band subclass)."""
        self._required("id")
        return list(Band.search(catalog=self.catalog).filter(p.product_id == self.id).sort("band_index"))

    def get_band(self, name: str) -> Band | None:
        """Return the product's band ``name``, or None."""
        self._required("id")
        return Band.get(f"{self.id}:{name}", catalog=self.catalog)


# ------------------------------------------------------------------------------ bands


class _InProduct:
    """What a band and an image share: they belong to a product (``product_id``)."""

    product_id: str
    catalog: Catalog

    def product(self) -> Product:
        """Return the product this band or image belongs to.

        Raises:
            NotFoundError: if the product is not in the catalog.
        """
        found = Product.get(self.product_id, catalog=self.catalog)
        if found is None:
            raise NotFoundError(f"{self._label()}: product {self.product_id!r} is not in the catalog")  # type: ignore[attr-defined]
        return found


class Band(_InProduct, CatalogObject):
    """A band of a product; use its subclasses :class:`SpectralBand`, :class:`MaskBand`,
    :class:`ClassBand` and :class:`GenericBand`.

    Its id is ``"{product_id}:{name}"``. ``data_range`` is the range of stored values,
    ``display_range`` the range to stretch for display, ``resolution`` in metres, ``band_index``
    the band's position in the product (unique per product).
    """

    _model = models.Band
    _what = "band"
    _default_order = (("product_id", True), ("band_index", True))
    band_type: ClassVar[str | None] = None

    product_id = Attribute(_identifier, kind="string", immutable=True, nullable=False, doc="The product's id.")
    name = Attribute(_identifier, kind="string", immutable=True, nullable=False, doc="Unique within the product.")
    type = Attribute(_text, kind="string", readonly=True, doc="spectral, mask, class or generic (from the class).")
    data_type = Attribute(_data_type, kind="string", doc=f"One of {', '.join(BAND_DATA_TYPES)}.")
    data_range = Attribute(_range, doc="(min, max) of the stored values.")
    display_range = Attribute(_range, doc="(min, max) to stretch for display.")
    nodata = Attribute(_number(), kind="number", doc="The value marking missing pixels.")
    resolution = Attribute(_number(positive=True), kind="number", doc="Pixel size in metres.")
    band_index = Attribute(_integer(0), kind="number", doc="Position of the band in the product (0-based).")
    description = Attribute(_text, kind="string", default=str, nullable=False, doc="Free text.")

    def __init__(self, *, catalog: Catalog | None = None, **attributes: Any) -> None:
        if type(self) is Band:
            raise CatalogError("Band is abstract: create a SpectralBand, MaskBand, ClassBand or GenericBand")
        if "id" in attributes:
            band_id = attributes.pop("id")
            attributes.update(self._id_attributes(band_id))
        super().__init__(catalog=catalog, **attributes)
        self._values["type"] = self.band_type

    @property
    def id(self) -> str | None:
        """``"{product_id}:{name}"``, or None until both are set."""
        if self._values.get("product_id") is None or self._values.get("name") is None:
            return None
        return f"{self._values['product_id']}:{self._values['name']}"

    def _label(self) -> str:
        return f"band {self.id!r}" if self.id is not None else "new band"

    @classmethod
    def _key(cls, id: str) -> tuple[Any, ...]:  # noqa: A002
        if not isinstance(id, str) or ":" not in id:
            raise CatalogError(f"band id must be 'product_id:band_name', got {id!r}")
        product_id, name = id.rsplit(":", 1)
        if not product_id or not name:
            raise CatalogError(f"band id must be 'product_id:band_name', got {id!r}")
        return (product_id, name)

    @classmethod
    def _id_attributes(cls, id: str) -> dict[str, Any]:  # noqa: A002
        product_id, name = cls._key(id)
        return {"product_id": product_id, "name": name}

    def _identity(self) -> tuple[Any, ...]:
        return (self._values["product_id"], self._values["name"])

    @classmethod
    def _keys_clause(cls, keys: list[tuple[Any, ...]]) -> Any:
        return tuple_(models.Band.product_id, models.Band.name).in_(keys)

    @classmethod
    def _class_for(cls, row: Any) -> type[Any]:
        target = _BAND_CLASSES.get(row.type)
        if target is None:
            raise CatalogError(f"band {row.product_id}:{row.name} has unknown type {row.type!r}")
        if cls is not Band and target is not cls:
            raise CatalogError(f"band {row.product_id}:{row.name} is a {target.__name__}, not a {cls.__name__}")
        return target

    @classmethod
    def _tiebreak(cls) -> list[Any]:
        return [models.Band.product_id, models.Band.name]

    @classmethod
    def _read_column(cls, row: Any, attribute: Attribute) -> Any:
        value = super()._read_column(row, attribute)
        if attribute.name in ("data_range", "display_range", "physical_range") and value is not None:
            return tuple(value)
        return value

    @classmethod
    def search(cls: type[O], catalog: Catalog | None = None) -> ObjectSearch[O]:
        """Return a search over bands; on a subclass, only bands of that type."""
        search = ObjectSearch(cls, cls._resolve_catalog(catalog))
        band_type = getattr(cls, "band_type", None)
        return search.filter(p.type == band_type) if band_type is not None else search

    def _records(self) -> BandRecord:
        self._required("product_id", "name", "data_type", "resolution", "band_index")
        if ":" in self.name:
            raise CatalogError(f"{self._label()}: band names cannot contain ':' (it separates the band id)")
        fields = {
            name: self._values.get(name)
            for name in (
                "name",
                "data_type",
                "resolution",
                "band_index",
                "data_range",
                "display_range",
                "nodata",
                "description",
                *self._extra_columns,
            )
        }
        return BandRecord(type=self.band_type, **fields)  # type: ignore[arg-type]

    _extra_columns: ClassVar[tuple[str, ...]] = ()

    def _write(self, session: Session, records: BandRecord) -> None:
        upsert_bands(session, self.product_id, [records])


class SpectralBand(Band):
    """A band of reflectance or radiance, with its wavelengths in micrometres."""

    band_type = "spectral"
    _extra_columns = ("wavelength_min", "wavelength_max", "wavelength_center")
    wavelength_min = Attribute(_number(positive=True), kind="number", doc="Lower wavelength (µm).")
    wavelength_max = Attribute(_number(positive=True), kind="number", doc="Upper wavelength (µm).")
    wavelength_center = Attribute(_number(positive=True), kind="number", doc="Center wavelength (µm).")


class MaskBand(Band):
    """A mask band; ``is_alpha`` marks the band that is the image's alpha (transparency) channel."""

    band_type = "mask"
    is_alpha = Attribute(_boolean, default=lambda: False, nullable=False, doc="Whether it is an alpha band.")

    def _write(self, session: Session, records: BandRecord) -> None:
        upsert_bands(session, self.product_id, [records])
        session.execute(
            update(models.Band)
            .where(models.Band.product_id == self.product_id, models.Band.name == self.name)
            .where(models.Band.is_alpha.is_distinct_from(self.is_alpha))
            .values(is_alpha=self.is_alpha)
        )


class ClassBand(Band):
    """A classification band: ``class_labels`` maps pixel values to names, ``colormap`` to colours."""

    band_type = "class"
    _extra_columns = ("class_labels", "colormap")
    class_labels = Attribute(_class_labels, doc="Pixel value → label.")
    colormap = Attribute(_colormap, doc="Pixel value → [r, g, b, a].")


class GenericBand(Band):
    """Any other band: a count, an index, a date; ``physical_range`` and ``unit`` say what values mean."""

    band_type = "generic"
    _extra_columns = ("physical_range", "unit")
    physical_range = Attribute(_range, doc="(min, max) in physical units that data_range maps to.")
    unit = Attribute(_identifier, kind="string", doc="Unit of the physical values.")


_BAND_CLASSES: dict[str, type[Band]] = {
    cls.band_type: cls for cls in (SpectralBand, MaskBand, ClassBand, GenericBand) if cls.band_type
}


# ------------------------------------------------------------------------------ image


class Image(_InProduct, CatalogObject):
    """One catalogued raster of a product: a composite, a merge or a scene.

    ``geometry`` is the footprint (a shapely polygon in EPSG:4326; GeoJSON is accepted),
    ``acquired``..``acquired_end`` the time covered, ``crs``/``geotransform``/``width``/``height``
    the raster grid, ``files`` maps band name to :class:`File`.
    """

    _model = models.Image
    _what = "image"
    _spatial = True
    _default_order = (("acquired", True),)

    id = Attribute(_identifier, kind="string", immutable=True, nullable=False, doc="Unique id.")
    product_id = Attribute(_identifier, kind="string", immutable=True, nullable=False, doc="The product's id.")
    name = Attribute(_identifier, kind="string", doc="Name (defaults to the id when saved).")
    acquired = Attribute(_datetime, kind="datetime", nullable=False, doc="Start of acquisition (aware, UTC).")
    acquired_end = Attribute(_datetime, kind="datetime", doc="End of the time covered, for composites.")
    geometry = Attribute(_geometry, doc="Footprint in EPSG:4326 (shapely).")
    crs = Attribute(_identifier, kind="string", doc="CRS code, e.g. ``EPSG:32723``.")
    geotransform = Attribute(_geotransform, doc="GDAL geotransform of the raster grid.")
    width = Attribute(_integer(1), kind="number", doc="Columns of the raster grid.")
    height = Attribute(_integer(1), kind="number", doc="Rows of the raster grid.")
    pixel_size_x = Attribute(_number(positive=True), kind="number", doc="Pixel width in CRS units.")
    pixel_size_y = Attribute(_number(positive=True), kind="number", doc="Pixel height in CRS units.")
    cloud_fraction = Attribute(_number(0.0, 1.0), kind="number", doc="Share of cloudy pixels, 0..1.")
    fill_fraction = Attribute(_number(0.0, 1.0), kind="number", doc="Share of pixels with data, 0..1.")
    provider = Attribute(_identifier, kind="string", doc="Provider the scene came from.")
    provider_id = Attribute(_identifier, kind="string", doc="The scene's id at its provider.")
    tile = Attribute(_identifier, kind="string", doc="Grid tile name, for cube images.")
    period_start = Attribute(_date, kind="date", doc="Start date of the cube period, for cube images.")
    properties = Attribute(
        _properties, kind="json", default=dict, nullable=False, doc=f"Extra JSON properties (at most {MAX_PROPERTIES})."
    )
    tags = Attribute(_tags, kind="tags", default=list, nullable=False, doc=f"At most {MAX_TAGS} distinct strings.")
    files = Attribute(_files, default=dict, nullable=False, doc="Band name → File(href, size_bytes).")
    created = Attribute(_datetime, kind="datetime", readonly=True, doc="When the image was first stored (UTC).")
    modified = Attribute(_datetime, kind="datetime", readonly=True, doc="When it was last changed (UTC).")

    @classmethod
    def _collection(cls, images: list[Image], geocontext: Any) -> ImageCollection:
        """Return ``images`` as an ImageCollection with ``geocontext`` as its default grid (for ``search.collect()``)."""
        from cube_assets.client.collection import ImageCollection

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
        from cube_assets.client.collection import coverage_fraction

        self._required("geometry")
        return coverage_fraction(self.geometry, geometry_4326(geometry))

    def geocontext(self) -> Any:
        """Return the image's own raster grid as a :class:`~cube_assets.client.geocontext.GeoContext`.

        Raises:
            CatalogError: if ``crs``, ``geotransform``, ``width`` or ``height`` is unknown.
        """
        from cube_assets.client.collection import image_grid

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
        from cube_assets.client.collection import ImageCollection

        return ImageCollection([self], geocontext=geocontext).mosaic(bands, **options)

    def download(self, bands: str | Sequence[str], dest: Any, geocontext: Any = None, **options: Any) -> Any:
        """Write ``bands`` of this image, on ``geocontext`` (default: its own grid), to ``dest`` (a file or folder).

        ``options`` are those of :func:`cube_assets.client.raster_read.download_mosaic_files`.

        Returns:
            The written path.

        Raises:
            CatalogError, ValueError, InvalidRaster: as :meth:`ndarray`.
        """
        from cube_assets.client.collection import ImageCollection

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
        from cube_assets.client.upload import upload_ndarray

        return self._upload(lambda fields: upload_ndarray(store, self.catalog.sessions, fields, ndarray, **options))

    def upload(self, files: Any, *, store: RasterStore, **options: Any) -> Upload:
        """Upload rasters on disk as this new image's COGs (see :func:`cube_assets.client.upload.upload_files`).

        Returns:
            The :class:`~cube_assets.client.upload.Upload`; check its ``status``.

        Raises:
            CatalogError: if the image is already saved or deleted.
        """
        from cube_assets.client.upload import upload_files

        return self._upload(lambda fields: upload_files(store, self.catalog.sessions, fields, files, **options))

    def _upload(self, run: Callable[[dict[str, Any]], Upload]) -> Upload:
        from cube_assets.client.upload import IMAGE_FIELDS, UploadStatus

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
