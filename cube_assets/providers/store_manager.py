"""A ``StoreManager`` with the interface of DARTS' raw data store, over this project's raw store.

Code written for DARTS' Sentinel-2 store runs here with its import changed::

    manager = StoreManager(["B04", "B08"], store="cube-data/raw", provider=LocalArchiveProvider(archive))
    ds = manager.load(scene_id)                 # an xarray.Dataset, one variable per band
    manager.load(scene_id, force=True)          # fetched again from the provider
    manager.download(scene_id)                  # stored, only if bands are missing
    manager.open(scene_id)                      # offline: from the store only, bands must be complete
    StoreManager(["B04"]).load(scene)           # no store: fetched into memory only

Scenes are stored by :class:`~cube_assets.providers.raw_store.RawStore` (one file per band under
``{store}/{collection}/{scene id}/``, checked before use, bands added later appended), not as
DARTS' ``{identifier}.zarr``; what is returned is the same: an ``xarray.Dataset`` whose variables
are the bands on their common grid, with rioxarray's ``spatial_ref`` coordinate.
:meth:`StoreManager.encodings` gives the encodings (data type, fill value, compression) with which
the bands' variables are written to netCDF or Zarr (``dataset.to_zarr(encoding=...)``).

An item is a scene id (looked up through the provider's ``scenes()``, or in the store when
offline) or a :class:`~cube_assets.providers.base.SceneRef` from a provider's search.
"""

from __future__ import annotations

import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import rioxarray
import xarray as xr

from cube_assets.providers.base import Provider, SceneRef
from cube_assets.providers.raw_store import RawStore, RawStoreError, SceneNotStored

#: Sentinel-2 bands stored as 8-bit classes or masks; every other band is 16-bit reflectance.
_BYTE_BANDS = frozenset({"SCL", "scl", "MSK_CLDPRB", "cloud_probability"})


class StoreManager:
    """Scenes' bands loaded as ``xarray.Dataset``, stored once in a raw store (or, without one, in memory only).

    ``bands`` are the bands managed; ``store`` the raw store's folder (a path or a
    :class:`RawStore`), or None for no store; ``provider`` where missing bands are fetched from;
    ``collection`` the scenes' collection in the store (default ``sentinel-2-l2a``).
    """

    def __init__(
        self,
        bands: Sequence[str],
        store: str | Path | RawStore | None = None,
        *,
        provider: Provider | None = None,
        collection: str = "sentinel-2-l2a",
    ) -> None:
        if isinstance(bands, str) or not bands:
            raise RawStoreError(f"StoreManager: bands must be a non-empty list of band names, got {bands!r}")
        self.bands = list(bands)
        self.store = store if isinstance(store, RawStore) else None if store is None else RawStore(store)
        self.provider = provider
        self.collection = collection

    def __repr__(self) -> str:
        return f"StoreManager(bands={self.bands!r}, store={self.store!r}, provider={self.provider!r})"

    # -- scenes ------------------------------------------------------------------------------

    def identifier(self, item: str | SceneRef) -> str:
        """Return the scene id of ``item``."""
        return item.scene_id if isinstance(item, SceneRef) else str(item)

    def _scene(self, item: str | SceneRef, *, offline: bool) -> SceneRef:
        """The :class:`SceneRef` of ``item``: itself, from the store (offline), else from the provider's scenes."""
        if isinstance(item, SceneRef):
            return item
        if self.store is not None:
            stored = self.store.stored_scene(self.collection, item)
            if stored is not None and (offline or self.provider is None):
                return stored
        if offline:
            raise SceneNotStored(item, self.bands, "the scene is not in the store")
        scenes = getattr(self.provider, "scenes", None)
        if scenes is None:
            raise RawStoreError(
                f"{item}: pass the SceneRef from a provider search; this provider cannot look up scene ids"
                if self.provider is not None
                else f"{item}: no provider to fetch the scene from"
            )
        for scene in scenes():
            if scene.scene_id == item:
                return scene
        raise RawStoreError(f"{item}: provider {self.provider!r} has no such scene")

    # -- the store ---------------------------------------------------------------------------

    def exists(self, identifier: str) -> bool:
        """Return whether the store holds any band of the scene (False without a store)."""
        if self.store is None:
            return False
        if self.store.stored_scene(self.collection, identifier) is not None:
            return True
        return len(self.missing_bands(identifier)) < len(self.bands)

    def missing_bands(self, identifier: str) -> list[str]:
        """Return the managed bands the store does not hold for the scene (all of them without a store)."""
        if self.store is None:
            return list(self.bands)
        stored = self.store.stored_scene(self.collection, identifier)
        if stored is not None:
            return self.store.missing_bands(stored, self.bands)
        try:  # a whole product (.SAFE) has no band manifest: ask the store offline
            self.store.load(self._scene(identifier, offline=False), self.bands, offline=True)
        except SceneNotStored as missing:
            return [band for band in self.bands if band in missing.missing] or list(self.bands)
        except RawStoreError:
            return list(self.bands)
        return []

    def complete(self, identifier: str) -> bool:
        """Return whether the store holds every managed band of the scene."""
        return not self.missing_bands(identifier)

    def encodings(self, bands: Sequence[str]) -> dict[str, dict[str, Any]]:
        """Return, per band, the encoding to write its variable with (netCDF or Zarr).

        Reflectance bands are ``uint16``, classes and masks (``SCL``) ``uint8``; both have 0 as
        fill value (Sentinel-2's no-data) and are zlib-compressed.
        """
        return {
            band: {
                "dtype": "uint8" if band in _BYTE_BANDS else "uint16",
                "_FillValue": 0,
                "zlib": True,
                "complevel": 5,
            }
            for band in bands
        }

    def download(self, item: str | SceneRef) -> None:
        """Fetch the scene's missing bands into the store; nothing when it is complete.

        Raises:
            RawStoreError: without a store, or when the provider cannot deliver.
        """
        if self.store is None:
            raise RawStoreError("StoreManager.download: a store must be given to download scenes into")
        identifier = self.identifier(item)
        if self.complete(identifier):
            return
        self.store.load(self._scene(item, offline=False), self.bands, self.provider)

    download_and_store = download

    def open(self, item: str | SceneRef) -> xr.Dataset:
        """Open the scene from the store only (no provider is asked).

        Raises:
            SceneNotStored: if the store lacks a managed band (naming them) or there is no store.
        """
        if self.store is None:
            raise SceneNotStored(self.identifier(item), self.bands, "no store given")
        stored = self.store.load(self._scene(item, offline=True), self.bands, offline=True)
        return _dataset(stored.bands, self.bands, self.identifier(item))

    def load(self, item: str | SceneRef, bands: Sequence[str] | None = None, force: bool = False) -> xr.Dataset:
        """Return the scene's ``bands`` (default: the managed ones) as a Dataset, fetching what is missing.

        With ``force`` every band is fetched again. With a store, fetched bands are kept there;
        without one, they are fetched into a temporary folder and read into memory.

        Raises:
            RawStoreError: when a band must be fetched and the provider cannot deliver it.
        """
        wanted = list(bands) if bands is not None else list(self.bands)
        identifier = self.identifier(item)
        if self.store is not None:
            stored = self.store.load(self._scene(item, offline=False), wanted, self.provider, force=force)
            return _dataset(stored.bands, wanted, identifier)
        scene = self._scene(item, offline=False)
        with tempfile.TemporaryDirectory(prefix="store-manager-") as folder:
            fetched = RawStore(folder).load(scene, wanted, self.provider)
            return _dataset(fetched.bands, wanted, identifier)


def _dataset(files: Mapping[str, Path], bands: Sequence[str], identifier: str) -> xr.Dataset:
    """The bands' files as one in-memory Dataset on the first band's grid (others resampled onto it, nearest)."""
    arrays: dict[str, xr.DataArray] = {}
    for band in bands:
        opened = rioxarray.open_rasterio(files[band])
        assert isinstance(opened, xr.DataArray)  # one band per file
        array = opened.squeeze("band", drop=True).load()
        if arrays:
            first = next(iter(arrays.values()))
            if array.shape != first.shape or not (array.x.equals(first.x) and array.y.equals(first.y)):
                array = array.rio.reproject_match(first)
        arrays[band] = array.rename(band)
    dataset = xr.Dataset(arrays)
    dataset.attrs["scene_id"] = identifier
    return dataset


__all__ = ["StoreManager"]
