"""The storage resource: which ``RasterStore`` the assets write through."""

from __future__ import annotations

from dagster import ConfigurableResource

from cube_assets.storage.raster_store import LocalRasterStore, RasterStore


class RasterStoreResource(ConfigurableResource):
    """Rasters, quicklooks and manifests: the local filesystem under ``root``."""

    root: str

    def get_store(self) -> RasterStore:
        """Return the configured store."""
        return LocalRasterStore(self.root)
