"""The ``simulator`` driver's provider: simulated Sentinel-2 L2A products served like a ``local`` archive.

This module only turns the provider options into scenes and serves them; the products
themselves (folders, JPEG 2000 bands, metadata XML) are rendered by
:mod:`cube_assets.formats.simulator`, beside the real product formats it imitates.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

from shapely.geometry.base import BaseGeometry

from cube_assets.errors import ProviderError
from cube_assets.formats.simulator import DEFAULT_BANDS, SimulatedScene, simulate_archive
from cube_assets.providers.base import Provider, SceneRef
from cube_assets.providers.local import LocalArchiveProvider


def simulated_scenes(options: Mapping[str, Any]) -> list[SimulatedScene]:
    """Expand the provider options (``products`` × ``acquisitions``) into simulated scenes.

    Every product footprint is simulated on every acquisition; ``swath_edge`` lists the
    products cut by the swath edge on that date; ``bands`` (optional, default B02, B03, B04,
    B08, B8A and B11) lists the spectral bands every product holds beside SCL, so that a cube
    reading four bands does not wait for six to be encoded. Seeds derive from tile and time, so
    the same options always give the same bytes.

    Returns:
        The scenes, in acquisition then product order.

    Raises:
        ProviderError: naming the bad entry when an option is missing or invalid.
    """
    try:
        products = options["products"]
        acquisitions = options["acquisitions"]
    except KeyError as exc:
        raise ProviderError(f"simulator options need {exc.args[0]!r}") from exc
    bands = options.get("bands", DEFAULT_BANDS)
    if isinstance(bands, str) or not isinstance(bands, Sequence) or not all(isinstance(b, str) for b in bands):
        raise ProviderError(f"simulator option 'bands': expected a list of band names like [B02, B04], not {bands!r}")
    if not bands:
        raise ProviderError("simulator option 'bands': give at least one band")
    scenes = []
    for acquisition in acquisitions:
        try:
            when = datetime.fromisoformat(str(acquisition["datetime"]).replace("Z", "+00:00"))
            edge = set(acquisition.get("swath_edge", []))
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise ProviderError(f"simulator acquisition {acquisition!r}: {exc!r}") from exc
        for product in products:
            seed = int(hashlib.sha256(f"{product['tile_id']}{when.isoformat()}".encode()).hexdigest()[:8], 16)
            try:
                scenes.append(
                    SimulatedScene(
                        tile_id=product["tile_id"],
                        epsg=int(product["epsg"]),
                        ulx=float(product["ulx"]),
                        uly=float(product["uly"]),
                        size_px=int(product["size_px"]),
                        sensing_time=when,
                        seed=seed,
                        cloud_fraction=float(acquisition.get("cloud_fraction", 0.2)),
                        swath_edge=product["tile_id"] in edge,
                        bands=tuple(bands),
                    )
                )
            except (KeyError, TypeError, ValueError) as exc:
                raise ProviderError(f"simulator product {product!r} on {when}: {exc}") from exc
    return scenes


class SimulatorProvider(Provider):
    """Writes the configured simulated products into ``archive`` on first use, then searches and fetches them."""

    def __init__(
        self, archive: str | os.PathLike[str], scenes: Sequence[SimulatedScene], name: str = "simulator"
    ) -> None:
        self.name = name
        self.archive = Path(archive)
        self._scenes = list(scenes)
        self._local = LocalArchiveProvider(self.archive, name=name)
        self._ready = False

    def _ensure_archive(self) -> None:
        if not self._ready:
            self.archive.mkdir(parents=True, exist_ok=True)
            simulate_archive(self.archive, self._scenes)
            self._ready = True

    def search(
        self,
        collection: str,
        geometry: BaseGeometry,
        start: datetime,
        end: datetime,
        max_cloud_cover: float | None = None,
    ) -> list[SceneRef]:
        """Simulate the archive if needed, then search it (see ``LocalArchiveProvider.search``)."""
        self._ensure_archive()
        return self._local.search(collection, geometry, start, end, max_cloud_cover)

    def fetch(self, scene: SceneRef, destination_dir: Path) -> Path:
        """Copy (hard-link) the simulated product into ``destination_dir``; return its path."""
        self._ensure_archive()
        return self._local.fetch(scene, destination_dir)
