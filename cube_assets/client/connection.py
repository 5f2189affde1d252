"""The connection to one catalog database, the catalog's object classes bound to it, and the one default catalog.

:class:`Catalog` opens a catalog (SQLite file or PostgreSQL) and gives sessions; ``catalog.products``,
``catalog.bands`` and ``catalog.images`` are the object classes bound to it (:class:`BoundClass`).
Each object class registers itself in :data:`BOUND_CLASSES` where it is defined
(:func:`bind_to_catalogs`), so this module, which every object module imports, imports none of
them; importing :mod:`cube_assets.client` registers them all. :func:`connect` sets the default
catalog of objects created without one; it is the only module-level state of the client.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator
from typing import Any

from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from cube_assets.catalog.database import (
    CatalogSessions,
    create_catalog_engine,
    postgis_footprint_schema,
    session_factory,
    upgrade_schema,
)
from cube_assets.errors import CatalogError
from cube_assets.redaction import redact_url

#: The object classes every :class:`Catalog` binds, by attribute name (``products``, ``bands``,
#: ``images``); filled by :func:`bind_to_catalogs` when each class is defined.
BOUND_CLASSES: dict[str, type[Any]] = {}


def bind_to_catalogs(name: str, cls: type[Any]) -> None:
    """Make ``catalog.<name>`` of every catalog opened from now on the class ``cls`` bound to it.

    Raises:
        CatalogError: if another class is already bound under ``name``.
    """
    if BOUND_CLASSES.get(name, cls) is not cls:
        raise CatalogError(f"catalog.{name} is already {BOUND_CLASSES[name].__name__}, not {cls.__name__}")
    BOUND_CLASSES[name] = cls


class Catalog:
    """A connection to one catalog database (SQLite file or PostgreSQL), and the objects bound to it.

    ``Catalog(url)`` creates the engine and, unless ``migrate=False``, brings the schema to the
    latest revision. ``postgis=False`` keeps PostGIS out on PostgreSQL: the migration does not add
    the footprint column, and searches use the portable exact test even where the column exists
    (same answers; see :mod:`cube_assets.catalog.footprints`). ``catalog.products``,
    ``catalog.bands`` and ``catalog.images`` give the
    class methods (``get``, ``get_many``, ``get_or_create``, ``exists``, ``search``) bound to
    this catalog, and create new objects bound to it: ``catalog.products(id=..., name=...)``.
    ``upload_store`` (a :class:`~cube_assets.storage.raster_store.RasterStore`) is where image
    uploads write their files when the call names no store.
    Use it as a context manager, or call :meth:`close`, to release its connections.

    Raises:
        CatalogError: if the URL is not a SQLite or PostgreSQL URL.
        sqlalchemy.exc.SQLAlchemyError: if the database cannot be reached while migrating.
    """

    #: ``Product``, ``Band`` and ``Image`` bound to this catalog (set from :data:`BOUND_CLASSES`).
    products: BoundClass
    bands: BoundClass
    images: BoundClass

    def __init__(
        self, url: str | Engine, *, migrate: bool = True, postgis: bool = True, upload_store: Any = None
    ) -> None:
        self._use_postgis = postgis
        #: The raster store that ``Image.upload``/``upload_ndarray`` write into when given none.
        self.upload_store = upload_store
        if isinstance(url, Engine):
            self.engine = url
            self._owns_engine = False
        else:
            self.engine = create_catalog_engine(url)
            self._owns_engine = True
        self.url = redact_url(self.engine.url)  # shown in repr and messages: never a password or token
        if migrate:
            upgrade_schema(self.engine, postgis=postgis)
        self._sessions: CatalogSessions = session_factory(self.engine)
        for name, cls in BOUND_CLASSES.items():
            setattr(self, name, BoundClass(cls, self))

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
    def single_statement_session(self) -> Iterator[Session]:
        """A session for one read statement (autocommit on PostgreSQL: no BEGIN or ROLLBACK); closed on exit."""
        with self._sessions.single_statement() as session:
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


def connect(url: str | Engine, *, migrate: bool = True, upload_store: Any = None) -> Catalog:
    """Open the catalog at ``url`` and make it the default for objects created without one.

    The previous default, if any, is closed. This is the only module-level state of the object
    model; pass ``catalog=`` (or use ``Catalog(url).products`` ...) to avoid it.

    Returns:
        The new default :class:`Catalog`.

    Raises:
        CatalogError, sqlalchemy.exc.SQLAlchemyError: as :class:`Catalog`.
    """
    global _default_catalog
    catalog = Catalog(url, migrate=migrate, upload_store=upload_store)
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
            "no catalog given and no default catalog: call cube_assets.client.connect(url) or pass catalog=Catalog(url)"
        )
    return _default_catalog


class BoundClass:
    """An object class bound to one :class:`Catalog`: ``catalog.products.get(...)``, ``catalog.images(...)``."""

    def __init__(self, cls: type[Any], catalog: Catalog) -> None:
        self._cls = cls
        self._catalog = catalog

    def __call__(self, **attributes: Any) -> Any:
        """Return a new unsaved object of the class, bound to the catalog."""
        return self._cls(catalog=self._catalog, **attributes)

    def get(self, id: str) -> Any:  # the catalog's word for it
        """``cls.get(id)`` on this catalog."""
        return self._cls.get(id, catalog=self._catalog)

    def get_many(self, ids: Iterable[str], ignore_missing: bool = False) -> list[Any]:
        """``cls.get_many(ids, ignore_missing)`` on this catalog."""
        return self._cls.get_many(ids, ignore_missing=ignore_missing, catalog=self._catalog)

    def get_or_create(self, id: str, **attributes: Any) -> Any:
        """``cls.get_or_create(id, **attributes)`` on this catalog."""
        return self._cls.get_or_create(id, catalog=self._catalog, **attributes)

    def exists(self, id: str) -> bool:
        """``cls.exists(id)`` on this catalog."""
        return self._cls.exists(id, catalog=self._catalog)

    def search(self) -> Any:
        """``cls.search()`` on this catalog."""
        return self._cls.search(catalog=self._catalog)

    def __repr__(self) -> str:
        return f"{self._cls.__name__} of {self._catalog!r}"


__all__ = ["BOUND_CLASSES", "BoundClass", "Catalog", "bind_to_catalogs", "connect", "default_catalog", "disconnect"]
