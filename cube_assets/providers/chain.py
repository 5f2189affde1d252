"""Providers tried in priority order: search all, fetch each scene from the first that delivers it.

Retries, backoff and timeouts belong to each provider (the ``stac`` driver's ``retries``,
``backoff_s`` and ``timeout_s`` options); here a provider that still fails, whatever the reason
(offline product, HTTP error, checksum mismatch, timeout, corrupt file), hands the scene to the
next provider, and every failure is kept in :attr:`FetchedScene.failures`.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from shapely.geometry.base import BaseGeometry

from cube_assets.errors import ProviderError
from cube_assets.providers.base import Provider, SceneRef
from cube_assets.providers.raw_store import RawStore
from cube_assets.redaction import redact_urls_in_text
from cube_assets.thread_map import map_in_threads

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class FetchedScene:
    """A scene delivered to the raw store, which provider served it, and which ones failed first.

    ``bands`` maps each requested band to its file (empty without a raw store); ``fetched``
    lists the bands downloaded by this run; ``failures`` holds ``"provider: error"`` for every
    provider that failed to deliver before ``provider`` did.
    """

    scene: SceneRef
    provider: str
    path: Path
    bands: Mapping[str, Path] = field(default_factory=dict)
    fetched: tuple[str, ...] = ()
    failures: tuple[str, ...] = ()


def search_and_fetch(
    providers: Sequence[Provider],
    collection: str,
    geometry: BaseGeometry,
    start: datetime,
    end: datetime,
    raw_dir: Path,
    max_cloud_cover: float | None = None,
    *,
    store: RawStore | None = None,
    bands: Sequence[str] = (),
    threads: int | None = None,
) -> list[FetchedScene]:
    """Find every scene over ``geometry`` in ``[start, end)`` and fetch each into ``raw_dir``.

    Providers are searched in order; a scene id offered by several is fetched from the first
    that offers it, and on failure from the next. A provider whose search fails is skipped
    (logged) as long as another one answered.

    With ``store``, scenes go through :meth:`RawStore.load` with ``bands`` (only missing bands
    are fetched, band-by-band providers write into ``store``); ``raw_dir`` is then unused.
    Scenes are fetched ``threads`` at a time (default: :func:`~cube_assets.thread_map.thread_count`).

    Returns:
        The fetched scenes, sorted by datetime then scene id.

    Raises:
        ProviderError: when every provider's search failed, or a scene could be fetched from none
            (the message names the scene and each provider's error).
    """
    offers: dict[str, list[tuple[Provider, SceneRef]]] = {}
    search_errors = []
    for provider in providers:
        try:
            found = provider.search(collection, geometry, start, end, max_cloud_cover)
        except ProviderError as exc:
            reason = redact_urls_in_text(str(exc))
            logger.warning("provider %s: search failed: %s", provider.name, reason)
            search_errors.append(f"{provider.name}: {reason}")
            continue
        for scene in found:
            offers.setdefault(scene.scene_id, []).append((provider, scene))
    if search_errors and len(search_errors) == len(providers):
        raise ProviderError(f"every provider failed to search {collection}: {'; '.join(search_errors)}")

    def fetch(offer: tuple[str, list[tuple[Provider, SceneRef]]]) -> FetchedScene:
        scene_id, candidates = offer
        errors: list[str] = []
        for provider, scene in candidates:
            try:
                if store is None:
                    return FetchedScene(scene, provider.name, provider.fetch(scene, raw_dir), failures=tuple(errors))
                stored = store.load(scene, bands, provider)
                return FetchedScene(
                    scene, provider.name, stored.path, dict(stored.bands), stored.fetched, tuple(errors)
                )
            except (ProviderError, OSError) as exc:
                # GDAL's and the OS's messages may quote a signed href: the failures go to run metadata.
                reason = redact_urls_in_text(str(exc))
                logger.warning("provider %s: fetching %s failed: %s", provider.name, scene_id, reason)
                errors.append(f"{provider.name}: {reason}")
        raise ProviderError(f"{scene_id}: no provider could deliver it ({'; '.join(errors)})")

    # A few scenes at once: downloads wait on the network, local products on GDAL (the raw
    # store locks each scene's folder, so threads and processes never write one scene together).
    fetched = map_in_threads(fetch, list(offers.items()), threads=threads)
    return sorted(fetched, key=lambda f: (f.scene.datetime, f.scene.scene_id))


def load_stored(
    store: RawStore,
    collection: str,
    geometry: BaseGeometry,
    start: datetime,
    end: datetime,
    bands: Sequence[str],
    max_cloud_cover: float | None = None,
) -> list[FetchedScene]:
    """Offline: the scenes already in ``store`` over ``geometry`` in ``[start, end)``, no provider asked.

    Returns:
        The stored scenes (``provider`` is the provider that stored each band-by-band scene,
        ``"raw-store"`` for whole products), sorted by datetime then scene id.

    Raises:
        SceneNotStored: naming the scene and its missing bands, when a stored scene lacks a
            requested band (or one is corrupt).
    """
    fetched = []
    for scene in store.search(collection, geometry, start, end, max_cloud_cover):
        stored = store.load(scene, bands, offline=True)
        fetched.append(FetchedScene(scene, stored.provider or scene.provider, stored.path, dict(stored.bands)))
    return sorted(fetched, key=lambda f: (f.scene.datetime, f.scene.scene_id))
