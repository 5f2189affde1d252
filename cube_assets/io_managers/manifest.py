"""Manifests: the small JSON documents that tell a downstream stage what an upstream one wrote."""

from __future__ import annotations

import json
from typing import Any

from dagster import ConfigurableIOManager, InputContext, OutputContext

from cube_assets.partitions import split_partition_key
from cube_assets.resources.storage import RasterStoreResource
from cube_assets.storage.layout import manifest_key


class ManifestIOManager(ConfigurableIOManager):
    """Stores each partition's manifest (a JSON-able dict) in the raster store beside the data.

    Key: ``{cube}/_manifests/{asset}/{tile}/{period}.json``, the cube being the asset key's
    prefix. Rasters themselves are written by the assets through the store; only their
    URIs travel through this IO manager.
    """

    store: RasterStoreResource

    def _key(self, context: OutputContext | InputContext) -> str:
        asset_key = context.asset_key
        tile, period = split_partition_key(context.partition_key)
        return manifest_key(asset_key.path[0], asset_key.path[-1], tile, period)

    def handle_output(self, context: OutputContext, obj: dict[str, Any]) -> None:
        """Write ``obj`` as JSON under the partition's manifest key."""
        data = json.dumps(obj, indent=1, sort_keys=True, default=str).encode()
        context.add_output_metadata({"manifest": self.store.get_store().uri(self._key(context))})
        self.store.get_store().write_bytes(self._key(context), data, content_type="application/json")

    def load_input(self, context: InputContext) -> dict[str, Any]:
        """Return the upstream partition's manifest.

        Raises:
            FileNotFoundError: naming the manifest when the upstream partition was never built.
        """
        key = self._key(context)
        try:
            return json.loads(self.store.get_store().read_bytes(key))
        except FileNotFoundError as exc:
            raise FileNotFoundError(f"manifest {key} not found: materialize {context.asset_key.to_user_string()} for this partition first") from exc
