"""The base of the catalog's object model: :class:`CatalogObject`, its states and errors.

:class:`~cube_assets.client.product.Product`, the bands (:mod:`cube_assets.client.bands`) and
:class:`~cube_assets.client.image.Image` are its subclasses; :mod:`cube_assets.client` gathers them.

Point it at a catalog explicitly, either per call or through one explicit default::

    from cube_assets.client import Catalog, Image, Product, SpectralBand, connect
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

import datetime as dt
import enum
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, ClassVar, TypeVar

import shapely
import shapely.geometry
from shapely.geometry.base import BaseGeometry
from sqlalchemy import Select, delete, func, select
from sqlalchemy.orm import Session

from cube_assets.catalog import models
from cube_assets.catalog.expressions import SearchField
from cube_assets.client.attributes import Alias, Attribute, File
from cube_assets.client.connection import Catalog, default_catalog
from cube_assets.client.search import ObjectSearch
from cube_assets.errors import CatalogError


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


ObjectT = TypeVar("ObjectT", bound="CatalogObject")

#: Characters a band or image name may hold (the catalog guide's rule).
_VALID_NAME = re.compile(r"[^A-Za-z0-9._-]+")


class class_or_instance_method:
    """A method with a class form and an instance form: ``Image.delete(id)`` and ``image.delete()``."""

    def __init__(self, on_class: str, on_instance: str) -> None:
        self._on_class = on_class
        self._on_instance = on_instance

    def __get__(self, obj: Any, owner: type | None = None) -> Any:
        if obj is None:
            return getattr(owner, self._on_class)
        return getattr(obj, self._on_instance)


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
    _writable: ClassVar[tuple[str, ...]] = ()
    _row_plan: ClassVar[tuple[tuple[str, str, bool], ...]] = ()
    #: The attributes an overridden ``_read_column`` converts (None: every attribute goes through it).
    _converted_columns: ClassVar[frozenset[str] | None] = None
    _aliases: ClassVar[dict[str, Alias]] = {}
    #: Every attribute name the object accepts: its own and the catalog guide's aliases.
    ATTRIBUTES: ClassVar[tuple[str, ...]] = ()

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        attributes: dict[str, Attribute] = {}
        aliases: dict[str, Alias] = {}
        for klass in reversed(cls.__mro__):
            for name, value in vars(klass).items():
                if isinstance(value, Attribute):
                    attributes[name] = value
                elif isinstance(value, Alias):
                    aliases[name] = value
        cls._attributes = attributes
        cls._aliases = aliases
        cls.ATTRIBUTES = (*attributes, *aliases)
        cls._writable = tuple(name for name, attribute in attributes.items() if not attribute.readonly)
        hooked = cls._read_column.__func__ is not CatalogObject._read_column.__func__  # type: ignore[attr-defined]
        converted = cls._converted_columns
        cls._row_plan = tuple(
            (name, str(attribute.column or name), hooked and (converted is None or name in converted))
            for name, attribute in attributes.items()
        )

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
        unknown = sorted(name for name in names if name not in self._attributes and name not in self._aliases)
        if unknown:
            raise InvalidAttributeError(
                f"{type(self).__name__} has no attribute {', '.join(map(repr, unknown))};"
                f" its attributes are: {', '.join(sorted(self.ATTRIBUTES))}"
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
        values = self._values
        return {
            name: _copy(value) if isinstance(value, dict | list) else value
            for name in self._writable
            for value in (values.get(name),)
        }

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

    @property
    def is_modified(self) -> bool:
        """Whether an attribute differs from what was last read or written (``state`` is ``modified``)."""
        return self.state == ObjectState.MODIFIED

    def serialize(self, modified_only: bool = False, jsonapi_format: bool = False) -> dict[str, Any]:
        """Return the attributes as JSON-able data, as :meth:`to_dict` does.

        ``modified_only`` keeps only the attributes changed since the last read or write;
        ``jsonapi_format`` wraps them as ``{"data": {"id", "type", "attributes"}}``.

        Returns:
            A dict of plain JSON values.
        """
        values = self.to_dict()
        if modified_only:
            writable = [name for name, attribute in self._attributes.items() if not attribute.readonly]
            if self._snapshot is not None:  # saved: what differs from the last read or write
                writable = [name for name in writable if not _same(self._values.get(name), self._snapshot.get(name))]
            values = {name: values[name] for name in writable}
        if jsonapi_format:
            identity = getattr(self, "id", None)
            attributes = {name: value for name, value in values.items() if name != "id"}
            return {"data": {"id": identity, "type": self._what, "attributes": attributes}}
        return values

    def update(self, ignore_errors: bool = False, **attributes: Any) -> None:
        """Assign several attributes at once, as ``setattr`` does for each.

        With ``ignore_errors``, an attribute that cannot be set (unknown, read-only, immutable)
        is skipped and the others are still assigned.

        Raises:
            InvalidAttributeError, CatalogError: for the first attribute that cannot be set,
                unless ``ignore_errors``.
        """
        for name, value in attributes.items():
            try:
                setattr(self, name, value)
            except InvalidAttributeError:
                if not ignore_errors:
                    raise

    @classmethod
    def make_valid_name(cls, name: str) -> str:
        """Return ``name`` with every run of characters other than letters, digits, ``.``, ``_`` and ``-`` as one ``_``.

        Raises:
            CatalogError: if ``name`` is not a string.
        """
        if not isinstance(name, str):
            raise CatalogError(f"make_valid_name takes a string, got {name!r}")
        return _VALID_NAME.sub("_", name)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self._label()}, {self.state.value})"

    # ------------------------------------------------------------------ loading

    @classmethod
    def _key(cls, id: str) -> tuple[Any, ...]:
        return (id,)

    @classmethod
    def _select(cls, dialect: str) -> Select[Any]:
        """``SELECT`` of the columns objects are built from (Core rows, no ORM identity map)."""
        return select(*cls._model.__table__.c)  # type: ignore[attr-defined]  # _model is a mapped class; its columns are typed Any

    @classmethod
    def _build(cls: type[ObjectT], rows: Sequence[Any], catalog: Catalog, session: Session) -> list[ObjectT]:
        """Objects from rows of :meth:`_select` (subclasses fetch what the rows lack, e.g. files)."""
        return [cls._from_row(row, catalog, {}) for row in rows]

    @classmethod
    def _load(cls: type[ObjectT], catalog: Catalog, session: Session, statement: Select[Any]) -> list[ObjectT]:
        # Core execution on the session's connection: no ORM layer between the rows and the objects.
        return cls._build(session.connection().execute(statement).all(), catalog, session)

    @classmethod
    def _from_row(cls: type[ObjectT], row: Any, catalog: Catalog, extra: Mapping[str, Any]) -> ObjectT:
        target = cls._class_for(row)
        obj = target.__new__(target)
        object.__setattr__(obj, "_catalog", catalog)
        object.__setattr__(obj, "_deleted", False)
        object.__setattr__(obj, "_values", target._row_values(row, extra))
        object.__setattr__(obj, "_snapshot", obj._tracked())
        return obj

    @classmethod
    def _row_values(cls, row: Any, extra: Mapping[str, Any]) -> dict[str, Any]:
        """The attribute values of an object of this class read from ``row`` (``extra`` gives some of them)."""
        values = {}
        for name, column, hooked in cls._row_plan:  # the read hook only where a class converts the column
            if name in extra:
                values[name] = extra[name]
            elif hooked:
                values[name] = cls._read_column(row, cls._attributes[name])
            else:
                values[name] = getattr(row, column)
        return values

    @classmethod
    def _class_for(cls, row: Any) -> type[Any]:
        return cls

    @classmethod
    def _read_column(cls, row: Any, attribute: Attribute) -> Any:
        # Rows are fresh per query (JSON decoded anew), so their lists and dicts are the object's own.
        return getattr(row, attribute.column or attribute.name)

    @classmethod
    def _search_field(cls, name: str) -> SearchField:
        alias = cls._aliases.get(name)
        if alias is not None and alias.searchable:
            name = alias.target
        attribute = cls._attributes.get(name)
        if attribute is None or attribute.kind is None:
            searchable = sorted(n for n, a in cls._attributes.items() if a.kind is not None)
            raise CatalogError(
                f"{cls._what}s have no searchable property {name!r}; searchable: {', '.join(searchable)}"
            )
        column = getattr(cls._model, attribute.column or name)
        return SearchField(name=name, column=column, kind=attribute.kind, nullable=attribute.nullable)

    @classmethod
    def _resolve_catalog(cls, catalog: Catalog | None) -> Catalog:
        return catalog if catalog is not None else default_catalog()

    @classmethod
    def search(cls: type[ObjectT], catalog: Catalog | None = None) -> ObjectSearch[ObjectT]:
        """Return an :class:`~cube_assets.client.search.ObjectSearch` over every object of this class.

        Raises:
            CatalogError: if no catalog is given and there is no default.
        """
        return ObjectSearch(cls, cls._resolve_catalog(catalog))

    @classmethod
    def get(cls: type[ObjectT], id: str, catalog: Catalog | None = None) -> ObjectT | None:
        """Return the object stored under ``id``, or None if there is none.

        Raises:
            CatalogError: if no catalog is given and there is no default, or ``id`` is malformed.
        """
        found = cls.get_many([id], ignore_missing=True, catalog=catalog)
        return found[0] if found else None

    @classmethod
    def get_many(
        cls: type[ObjectT], ids: Iterable[str], ignore_missing: bool = False, catalog: Catalog | None = None
    ) -> list[ObjectT]:
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
        found: dict[tuple[Any, ...], ObjectT] = {}
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
        return cls._model.id.in_([key[0] for key in keys])  # type: ignore[attr-defined]  # _model is a mapped class; its columns are typed Any

    @classmethod
    def _tiebreak(cls) -> list[Any]:
        """Columns that make an ordering total (the primary key)."""
        return [cls._model.id]  # type: ignore[attr-defined]  # _model is a mapped class; its columns are typed Any

    def _identity(self) -> tuple[Any, ...]:
        return (self._values["id"],)

    @classmethod
    def exists(cls, id: str, catalog: Catalog | None = None) -> bool:
        """Return whether an object is stored under ``id`` (one indexed query, nothing loaded).

        Raises:
            CatalogError: if no catalog is given and there is no default, or ``id`` is malformed.
        """
        resolved = cls._resolve_catalog(catalog)
        statement = select(func.count()).select_from(cls._model).where(cls._keys_clause([cls._key(id)]))
        with resolved.session() as session:
            return bool(session.execute(statement).scalar_one())

    @classmethod
    def get_or_create(cls: type[ObjectT], id: str, catalog: Catalog | None = None, **attributes: Any) -> ObjectT:
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
    def _id_attributes(cls, id: str) -> dict[str, Any]:
        return {"id": id}

    # ------------------------------------------------------------------ writing

    def save(self: ObjectT) -> ObjectT:
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

    def reload(self: ObjectT) -> ObjectT:
        """Replace every attribute with what the catalog holds now (dropping unsaved changes).

        Returns:
            The object itself, ``saved``.

        Raises:
            NotFoundError: if the object is not (or no longer) in the catalog.
        """
        self._refresh(self.catalog)
        self._deleted = False
        return self

    @classmethod
    def _delete_id(cls, id: str, catalog: Catalog | None = None) -> bool:
        """Delete the object stored under ``id``: ``Image.delete("product:name")``.

        Returns:
            True if it was deleted, False if there was none.

        Raises:
            CatalogError: if ``id`` is malformed, no catalog is given and there is no default, or
                (products) it still has images.
        """
        found = cls.get(id, catalog=catalog)
        if found is None:
            return False
        found._delete_self()
        return True

    def _delete_self(self) -> None:
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
            if result.rowcount == 0:  # type: ignore[attr-defined]  # an UPDATE returns a CursorResult, which has rowcount
                raise NotFoundError(f"{self._label()} is not in the catalog")
        self._deleted = True

    delete = class_or_instance_method("_delete_id", "_delete_self")

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


# ------------------------------------------------------------------------------ in a product


class InProduct:
    """What a band and an image share: they belong to a product (``product_id``).

    Their constructors take ``product=`` (a Product or its id) for ``product_id``, as the
    catalog guide writes ``SpectralBand(name="blue", product=product)``.
    """

    product_id: str
    catalog: Catalog

    @staticmethod
    def _take_product(attributes: dict[str, Any]) -> None:
        """Replace ``product=`` in constructor ``attributes`` by ``product_id``.

        Raises:
            CatalogError: if both are given and differ, or the product has no id.
        """
        if "product" not in attributes:
            return
        product = attributes.pop("product")
        product_id = product if isinstance(product, str) or product is None else getattr(product, "id", None)
        if product_id is None:
            raise CatalogError(f"product= must be a Product with an id or a product id, got {product!r}")
        if attributes.get("product_id", product_id) != product_id:
            raise CatalogError(
                f"product= {product_id!r} and product_id= {attributes['product_id']!r} disagree; give one of them"
            )
        attributes["product_id"] = product_id

    def product(self) -> Any:
        """Return the :class:`~cube_assets.client.product.Product` this band or image belongs to.

        Raises:
            NotFoundError: if the product is not in the catalog.
        """
        found = self.catalog.products.get(self.product_id)
        if found is None:
            raise NotFoundError(f"{self._label()}: product {self.product_id!r} is not in the catalog")  # type: ignore[attr-defined]  # only objects in a product have product_id
        return found


__all__ = ["CatalogObject", "ConflictError", "InvalidAttributeError", "NotFoundError", "ObjectState"]
