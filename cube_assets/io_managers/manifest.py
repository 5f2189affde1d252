"""Manifests: the small typed documents that tell a downstream stage what an upstream one wrote."""

from __future__ import annotations

import json

from dagster import ConfigurableIOManager, InputContext, OutputContext

from cube_assets.errors import InvalidManifest
from cube_assets.manifests import MANIFEST_MODELS, ManifestModel, manifest_json, parse_manifest
from cube_assets.partitions import split_partition_key
from cube_assets.resources.storage import RasterStoreResource
from cube_assets.storage.layout import manifest_key


class ManifestIOManager(ConfigurableIOManager):
    """Stores each partition's manifest (a ``cube_assets.manifests`` model) as JSON in the raster store beside the data.

    Key: ``{cube}/_manifests/{asset}/{tile}/{period}.json``, the cube being the asset key's
    prefix. Rasters themselves are written by the assets through the store; only their
    URIs travel through this IO manager. On load the JSON is validated with the manifest
    model of the upstream stage (``manifests.MANIFEST_MODELS``), which is also the type the
    reading asset declares for it.
    """

    store: RasterStoreResource

    def _key(self, context: OutputContext | InputContext) -> str:
        asset_key = context.asset_key
        tile, period = split_partition_key(context.partition_key)
        return manifest_key(asset_key.path[0], asset_key.path[-1], tile, period)

    def handle_output(self, context: OutputContext, obj: ManifestModel) -> None:
        """Write ``obj`` as JSON under the partition's manifest key.

        Raises:
            TypeError: when ``obj`` is not the manifest model of the asset's stage.
        """
        model = _model_of(context.asset_key.path[-1])
        if type(obj) is not model:
            raise TypeError(
                f"{context.asset_key.to_user_string()}: returned a {type(obj).__name__}, "
                f"expected its manifest {model.__name__}"
            )
        data = json.dumps(manifest_json(obj), indent=1, sort_keys=True).encode()
        context.add_output_metadata({"manifest": self.store.get_store().uri(self._key(context))})
        self.store.get_store().write_bytes(self._key(context), data, content_type="application/json")

    def load_input(self, context: InputContext) -> ManifestModel:
        """Return the upstream partition's manifest, validated with its stage's model.

        Raises:
            FileNotFoundError: naming the manifest when the upstream partition was never built.
            InvalidManifest: naming the manifest and the field, when the file is not JSON or not
                that stage's manifest (a field missing, of the wrong type or unknown); the
                message says to materialize the upstream partition again.
        """
        key = self._key(context)
        stage = context.asset_key.to_user_string()
        try:
            document = self.store.get_store().read_bytes(key)
        except FileNotFoundError as exc:
            raise FileNotFoundError(f"manifest {key} not found: materialize {stage} for this partition first") from exc
        try:
            return parse_manifest(_model_of(context.asset_key.path[-1]), document, self.store.get_store().uri(key))
        except InvalidManifest as exc:
            raise InvalidManifest(f"{exc}; materialize {stage} for this partition again") from None


def _model_of(stage: str) -> type[ManifestModel]:
    try:
        return MANIFEST_MODELS[stage]
    except KeyError:
        raise InvalidManifest(f"stage {stage} hands on no manifest ({', '.join(MANIFEST_MODELS)} do)") from None
