"""Providers tried in priority order: search all, fetch each scene from the first that delivers it."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from shapely.geometry.base import BaseGeometry

from cube_assets.errors import ProviderError
from cube_assets.providers.base import Provider, SceneRef

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class FetchedScene:
    """A scene delivered to the raw store, and which provider served it."""

    scene: SceneRef
    provider: str
    path: Path


def search_and_fetch(
    providers: Sequence[Provider],
    collection: str,
    geometry: BaseGeometry,
    start: datetime,
    end: datetime,
    raw_dir: Path,
    max_cloud_cover: float | None = None,
) -> list[FetchedScene]:
    """Find every scene over ``geometry`` in ``[start, end)`` and fetch each into ``raw_dir``.

    Providers are searched in order; a scene id offered by several is fetched from the first
    that offers it, and on failure from the next. A provider whose search fails is skipped
    (logged) as long as another one answered.

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
            logger.warning("provider %s: search failed: %s", provider.name, exc)
            search_errors.append(f"{provider.name}: {exc}")
            continue
        for scene in found:
            offers.setdefault(scene.scene_id, []).append((provider, scene))
    if search_errors and len(search_errors) == len(providers):
        raise ProviderError(f"every provider failed to search {collection}: {'; '.join(search_errors)}")
    fetched = []
    for scene_id, candidates in offers.items():
        errors = []
        for provider, scene in candidates:
            try:
                path = provider.fetch(scene, raw_dir)
            except ProviderError as exc:
                logger.warning("provider %s: fetching %s failed: %s", provider.name, scene_id, exc)
                errors.append(f"{provider.name}: {exc}")
                continue
            fetched.append(FetchedScene(scene, provider.name, path))
            break
        else:
            raise ProviderError(f"{scene_id}: no provider could deliver it ({'; '.join(errors)})")
    return sorted(fetched, key=lambda f: (f.scene.datetime, f.scene.scene_id))
