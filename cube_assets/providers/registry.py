"""The provider registry: providers declared in JSON files, kept in the catalog database.

A provider file is one JSON object::

    {
      "name": "earth-search",                         # unique; lower case, digits, '-', '_'
      "description": "Element 84 Earth Search v1",
      "url": "https://earth-search.aws.element84.com/v1",
      "driver": "stac",                                # stac | local | simulator
      "options": {"scene_id_property": "s2:product_uri"},   # driver options (optional)
      "credentials": {"type": "basic",                 # optional; see providers/credentials.py
                      "username": {"env": "ES_USER"}, "password": {"env": "ES_PASSWORD"}}
    }

Credentials are references to environment variables; a literal secret is refused when the file
is read, and values are only looked up when a run builds its providers
(``ProvidersResource``). The registry stores the references, never a value.

Which providers serve a collection, and in which order, is set per collection with
:func:`set_priority` (priority 0 is tried first; a disabled provider is skipped).
:func:`collection_providers` returns them in that order. Everything here works on a SQLAlchemy
``Session`` of a catalog migrated to revision ``0002`` or later; callers own the transaction.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from sqlalchemy import select
from sqlalchemy.orm import Session

from cube_assets.errors import ProviderError
from cube_assets.providers.credentials import check_credentials_spec
from cube_assets.providers.registry_models import REGISTRY_DRIVERS, ProviderPriority, RegisteredProvider

#: The packaged example provider files (Earth Search, Copernicus Data Space, BDC).
EXAMPLES_DIR = Path(__file__).resolve().parent / "examples"

_PROVIDER_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")
_FILE_KEYS = {"name", "description", "url", "driver", "options", "credentials"}


@dataclass(frozen=True)
class ProviderDefinition:
    """One provider as declared in a registry file (or read back from the registry)."""

    name: str
    driver: str
    url: str | None = None
    description: str = ""
    options: Mapping[str, Any] = field(default_factory=dict, hash=False)
    credentials: Mapping[str, Any] = field(default_factory=dict, hash=False)

    def driver_options(self) -> dict[str, Any]:
        """The options the driver is built from: ``options`` plus ``url`` and ``credentials``.

        For ``stac`` the URL becomes ``options.url``; for ``local`` a ``file://`` URL becomes
        ``options.root``.
        """
        options = dict(self.options)
        if self.url:
            if self.driver == "local":
                options.setdefault("root", urlsplit(self.url).path if self.url.startswith("file:") else self.url)
            else:
                options.setdefault("url", self.url)
        if self.credentials and self.driver == "stac":
            options["credentials"] = dict(self.credentials)
        return options


def parse_provider_definition(document: Any, where: str) -> ProviderDefinition:
    """Validate a provider file's content.

    Returns:
        The :class:`ProviderDefinition`.

    Raises:
        ProviderError: naming ``where`` and the problem: not an object, unknown or missing
            keys, a bad name, an unknown driver, a URL with user info, options that the driver
            refuses, or credentials that are not environment-variable references (the message
            never repeats a secret).
    """
    if not isinstance(document, dict):
        raise ProviderError(f"{where}: expected a JSON object")
    unknown = sorted(set(document) - _FILE_KEYS)
    if unknown:
        raise ProviderError(f"{where}: unknown keys {unknown}; allowed: {sorted(_FILE_KEYS)}")
    missing = [key for key in ("name", "driver") if key not in document]
    if missing:
        raise ProviderError(f"{where}: missing keys {missing}")
    name, driver = document["name"], document["driver"]
    if not isinstance(name, str) or not _PROVIDER_NAME.match(name):
        raise ProviderError(f"{where}: name {name!r} must be lower-case letters, digits, '-' or '_'")
    where = f"{where} (provider {name})"
    if driver not in REGISTRY_DRIVERS:
        raise ProviderError(f"{where}: driver {driver!r} is not one of {list(REGISTRY_DRIVERS)}")
    url = document.get("url")
    if url is not None:
        if not isinstance(url, str) or not url:
            raise ProviderError(f"{where}: url must be a non-empty string")
        parts = urlsplit(url)
        if parts.username or parts.password:
            raise ProviderError(f"{where}: url must not hold user info; declare credentials with environment variables")
    if driver == "stac" and not url:
        raise ProviderError(f"{where}: a stac provider needs a url")
    description = document.get("description", "")
    if not isinstance(description, str):
        raise ProviderError(f"{where}: description must be a string")
    options = document.get("options") or {}
    if not isinstance(options, dict):
        raise ProviderError(f"{where}: options must be an object")
    credentials = check_credentials_spec(document.get("credentials") or {}, where)
    if credentials and driver != "stac":
        raise ProviderError(f"{where}: driver {driver!r} takes no credentials")
    definition = ProviderDefinition(
        name=name, driver=driver, url=url, description=description, options=options, credentials=credentials
    )
    if driver == "stac":
        from cube_assets.providers.stac import parse_stac_options

        parse_stac_options(definition.driver_options(), where)
    return definition


def read_provider_file(path: str | os.PathLike[str]) -> ProviderDefinition:
    """Read and validate one provider JSON file.

    Returns:
        The :class:`ProviderDefinition`.

    Raises:
        ProviderError: naming the file, if it cannot be read or is invalid.
    """
    path = Path(path)
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ProviderError(f"{path}: cannot read provider JSON ({exc})") from None
    return parse_provider_definition(document, str(path))


def read_provider_directory(directory: str | os.PathLike[str]) -> list[ProviderDefinition]:
    """Read every ``*.json`` file of ``directory`` (sorted by file name).

    Returns:
        The definitions, in file-name order.

    Raises:
        ProviderError: if the folder does not exist or holds no JSON file, a file is invalid,
            or two files declare the same name.
    """
    directory = Path(directory)
    if not directory.is_dir():
        raise ProviderError(f"{directory}: provider folder not found")
    files = sorted(directory.glob("*.json"))
    if not files:
        raise ProviderError(f"{directory}: no provider JSON file (*.json) in the folder")
    definitions = [read_provider_file(path) for path in files]
    seen: dict[str, Path] = {}
    for path, definition in zip(files, definitions, strict=True):
        if definition.name in seen:
            raise ProviderError(f"{path}: provider {definition.name!r} is also declared in {seen[definition.name]}")
        seen[definition.name] = path
    return definitions


@dataclass(frozen=True)
class LoadReport:
    """What :func:`load_providers` did: names added, updated and skipped (already registered)."""

    added: tuple[str, ...]
    updated: tuple[str, ...]
    skipped: tuple[str, ...]


def _as_definition(row: RegisteredProvider) -> ProviderDefinition:
    return ProviderDefinition(
        name=row.name,
        driver=row.driver,
        url=row.url,
        description=row.description,
        options=dict(row.options or {}),
        credentials=dict(row.credentials or {}),
    )


def load_providers(session: Session, definitions: Sequence[ProviderDefinition], *, update: bool = False) -> LoadReport:
    """Register ``definitions``: new names are added; existing ones are skipped, or updated with ``update``.

    Returns:
        The :class:`LoadReport`. Loading the same definitions twice changes nothing the
        second time (updated rows that are already equal count as skipped).

    Raises:
        sqlalchemy.exc.SQLAlchemyError: if the database write fails.
    """
    added, updated, skipped = [], [], []
    for definition in definitions:
        row = session.get(RegisteredProvider, definition.name)
        values = {
            "driver": definition.driver,
            "url": definition.url,
            "description": definition.description,
            "options": dict(definition.options),
            "credentials": dict(definition.credentials),
        }
        if row is None:
            session.add(RegisteredProvider(name=definition.name, **values))
            added.append(definition.name)
        elif update and any(getattr(row, key) != value for key, value in values.items()):
            for key, value in values.items():
                setattr(row, key, value)
            updated.append(definition.name)
        else:
            skipped.append(definition.name)
    session.flush()
    return LoadReport(tuple(added), tuple(updated), tuple(skipped))


def get_provider(session: Session, name: str) -> ProviderDefinition:
    """The registered provider called ``name``.

    Raises:
        ProviderError: if there is none (the message lists the registered names).
    """
    row = session.get(RegisteredProvider, name)
    if row is None:
        names = session.scalars(select(RegisteredProvider.name).order_by(RegisteredProvider.name)).all()
        raise ProviderError(f"no provider called {name!r} in the registry; registered: {list(names)}")
    return _as_definition(row)


def list_providers(session: Session) -> list[ProviderDefinition]:
    """Every registered provider, by name."""
    rows = session.scalars(select(RegisteredProvider).order_by(RegisteredProvider.name)).all()
    return [_as_definition(row) for row in rows]


@dataclass(frozen=True)
class CollectionProvider:
    """A provider's place in a collection's order."""

    collection: str
    provider: ProviderDefinition
    priority: int
    enabled: bool


def set_priority(
    session: Session, collection: str, provider: str, priority: int, *, enabled: bool = True
) -> CollectionProvider:
    """Set ``provider``'s priority for ``collection`` (0 is tried first) and whether it is enabled.

    Returns:
        The resulting :class:`CollectionProvider`. Setting the same values again is a no-op.

    Raises:
        ProviderError: if ``collection`` is empty, ``priority`` is negative or not an integer,
            or ``provider`` is not registered.
    """
    if not isinstance(collection, str) or not collection.strip():
        raise ProviderError(f"collection {collection!r} must be a non-empty string")
    if isinstance(priority, bool) or not isinstance(priority, int) or priority < 0:
        raise ProviderError(f"priority {priority!r} must be an integer >= 0 (0 is tried first)")
    definition = get_provider(session, provider)
    row = session.get(ProviderPriority, (collection, provider))
    if row is None:
        session.add(ProviderPriority(collection=collection, provider_name=provider, priority=priority, enabled=enabled))
    elif row.priority != priority or row.enabled != enabled:
        row.priority, row.enabled = priority, enabled
    session.flush()
    return CollectionProvider(collection, definition, priority, enabled)


def collection_providers(
    session: Session, collection: str, *, include_disabled: bool = False
) -> list[CollectionProvider]:
    """The providers of ``collection`` in the order they are tried: priority, then name.

    Returns:
        Enabled providers only, unless ``include_disabled``.
    """
    query = (
        select(ProviderPriority, RegisteredProvider)
        .join(RegisteredProvider, RegisteredProvider.name == ProviderPriority.provider_name)
        .where(ProviderPriority.collection == collection)
        .order_by(ProviderPriority.priority, ProviderPriority.provider_name)
    )
    if not include_disabled:
        query = query.where(ProviderPriority.enabled.is_(True))
    return [
        CollectionProvider(collection, _as_definition(provider), priority.priority, priority.enabled)
        for priority, provider in session.execute(query).all()
    ]


def all_priorities(session: Session) -> list[CollectionProvider]:
    """Every (collection, provider) priority, by collection, priority and name."""
    query = (
        select(ProviderPriority, RegisteredProvider)
        .join(RegisteredProvider, RegisteredProvider.name == ProviderPriority.provider_name)
        .order_by(ProviderPriority.collection, ProviderPriority.priority, ProviderPriority.provider_name)
    )
    return [
        CollectionProvider(priority.collection, _as_definition(provider), priority.priority, priority.enabled)
        for priority, provider in session.execute(query).all()
    ]
