"""Stage manifests: frozen, typed models of what one stage of a partition hands to the next.

Each stage of the asset graph returns one manifest per ``(tile, period)`` partition; the
manifest IO manager (``io_managers/manifest.py``) writes it as JSON beside the data at
``{cube}/_manifests/{asset}/{tile}/{period}.json`` and validates it with the same model when the
next stage loads it, so a stage never reads a field the previous one did not write.

=======================  ================================  =========================================
stage                    manifest                          entries
=======================  ================================  =========================================
``raw_scene``            :class:`RawSceneManifest`          :class:`RawScene`: where each scene is
``surface_reflectance``  :class:`ReflectanceManifest`       :class:`ReflectanceScene`: + reflectance
``scene_cog``            :class:`SceneCogManifest`          :class:`SceneCog`: + COGs, quicklook, footprint
``tile_merge``           :class:`TileMergeManifest`         :class:`Merge`: one per acquisition date
``period_blend``         :class:`PeriodBlendManifest`       :class:`Composite` per function, and the merges
=======================  ================================  =========================================

The JSON is the models' ``model_dump(mode="json")`` (:func:`manifest_json`): the same documents
earlier versions wrote as plain dicts, so manifests already on disk keep loading. Paths and URIs
are strings (a store URI or a local path), dates ``datetime.date``, acquisition times
``datetime.datetime`` (written with ``isoformat()``). Radiometry is a JSON mapping, its shape
depending on the product format (``steps/scenes.py``).

This module depends on pydantic only; steps build these models, assets return them.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import date, datetime
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, PlainSerializer, ValidationError

from cube_assets.errors import InvalidManifest

#: An acquisition time, written as ``datetime.isoformat()`` (``+00:00``, as earlier manifests did).
IsoDatetime = Annotated[datetime, PlainSerializer(lambda moment: moment.isoformat(), return_type=str, when_used="json")]


def _absent_when_none(value: object) -> bool:
    return value is None


def _absent_when_empty(value: object) -> bool:
    return not value


class ManifestModel(BaseModel):
    """Base of every manifest model: frozen, and refusing fields it does not declare."""

    model_config = ConfigDict(frozen=True, extra="forbid")


# --------------------------------------------------------------------------------------------
# Scene entries: each stage's entry extends the previous stage's


class Sen2CorRecord(ManifestModel):
    """What Sen2Cor produced for a Level-1C scene (``sources.sen2cor.Sen2CorOutput.as_json``)."""

    l1c_product_id: str
    l2a_product_id: str
    l2a_path: str
    version: str | None
    image: str | None
    reused: bool


class IndexPixels(ManifestModel):
    """The pixels with valid inputs a written band index lost."""

    nodata_pixels: int  # results that were not finite, stored as nodata
    clipped_pixels: int  # finite results outside the output dtype's range, clipped into it


class SceneRasters(ManifestModel):
    """The rasters of one scene a merge reads: its bands and quality band, by URI."""

    scene_id: str
    bands: dict[str, str]
    quality: str


class RawScene(ManifestModel):
    """A scene found and fetched by the providers (``ProvidersResource.fetch_scenes``)."""

    scene_id: str
    collection: str
    datetime: IsoDatetime
    provider: str
    path: str  # the product folder or file in this process's raw store
    cloud_cover: float | None
    footprint: dict[str, Any] | None  # GeoJSON geometry, EPSG:4326; None when only the frame is known
    raw_bands: dict[str, str] = Field(default_factory=dict)  # source band → file
    fetched_bands: tuple[str, ...] = ()  # the bands this run downloaded
    provider_failures: tuple[str, ...] = ()  # "provider: error" of the providers tried before ``provider``
    source: str | None = Field(default=None, exclude_if=_absent_when_none)  # the cube's source (cubes with sources)


class ReflectanceScene(RawScene, SceneRasters):
    """A scene as surface reflectance × 10000: one file per cube band, and its quality band."""

    bands: dict[str, str]  # cube band → URI
    quality: str
    radiometry: dict[str, Any]  # the offsets, scales or quantification used; shape per product format
    pvi: str | None  # the product's own preview (local path, or URI when shared), if it has one
    pvi_key: str | None = Field(default=None, exclude_if=_absent_when_none)  # store key of a shared preview
    sen2cor: Sen2CorRecord | None = Field(default=None, exclude_if=_absent_when_none)  # Level-1C scenes only


class SceneCog(ReflectanceScene):
    """A published scene: COGs of its bands, quality and indexes, quicklook and footprint."""

    indexes: dict[str, str]  # index name → URI
    index_pixels: dict[str, IndexPixels | None]  # None: the COG was published by an earlier run
    quicklook: str | None
    quicklook_key: str | None
    footprint_source: str  # "product_metadata" or "valid_data_outline"
    footprint_file: str  # URI of the footprint GeoJSON Feature


# --------------------------------------------------------------------------------------------
# Merge and composite entries


class Merge(ManifestModel):
    """Every scene of one date warped onto the tile, with its quality statistics."""

    date: date
    item: str
    bands: dict[str, str]
    quality: str
    datasource: str  # DATASOURCE: which scene (index into ``scenes``) each pixel came from
    scenes: tuple[str, ...]
    efficacy: float  # percent of the tile's pixels that are clear
    cloud_ratio: float  # percent of the observed pixels that are not clear
    valid_pixels: int
    clear_pixels: int
    total_pixels: int
    source: str | None = Field(default=None, exclude_if=_absent_when_none)  # the cube's source (cubes with sources)


class Composite(ManifestModel):
    """One temporal composite of the period (one compositing function)."""

    item: str
    bands: dict[str, str]  # spectral bands, CLEAROB, TOTALOB, indexes (LCF: quality, PROVENANCE) → URI
    quicklook: str | None
    quicklook_key: str | None
    index_pixels: dict[str, IndexPixels]


# --------------------------------------------------------------------------------------------
# The stage manifests


class RawSceneManifest(ManifestModel):
    """``raw_scene``: every scene over the tile in the period."""

    tile: str
    period: str  # the period key
    scenes: tuple[RawScene, ...]


class ReflectanceManifest(ManifestModel):
    """``surface_reflectance``: every scene of the partition as reflectance."""

    tile: str
    period: str
    scenes: tuple[ReflectanceScene, ...]


class SceneCogManifest(ManifestModel):
    """``scene_cog``: every scene of the partition, published."""

    tile: str
    period: str
    scenes: tuple[SceneCog, ...]


class TileMergeManifest(ManifestModel):
    """``tile_merge``: one merge per acquisition date of the period, in date order."""

    tile: str
    period: str
    merges: tuple[Merge, ...]


class PeriodBlendManifest(ManifestModel):
    """``period_blend``: the composites of the period, and the merges they were made from."""

    tile: str
    period: str
    composites: dict[str, Composite]  # compositing function → composite; empty without merges
    observations: int  # the number of merges
    dates: tuple[date, ...] = Field(default=(), exclude_if=_absent_when_empty)
    merges: tuple[Merge, ...]


MANIFEST_MODELS: Mapping[str, type[ManifestModel]] = {
    "raw_scene": RawSceneManifest,
    "surface_reflectance": ReflectanceManifest,
    "scene_cog": SceneCogManifest,
    "tile_merge": TileMergeManifest,
    "period_blend": PeriodBlendManifest,
}
"""The manifest model of each stage that hands one on, by stage name."""


def manifest_json(manifest: ManifestModel) -> dict[str, Any]:
    """Return ``manifest`` as the JSON-able dict that is written to the store.

    Returns:
        ``manifest.model_dump(mode="json")``: dates and times as ISO strings, tuples as lists.
    """
    return manifest.model_dump(mode="json")


def parse_manifest(model: type[ManifestModel], document: bytes, where: str) -> ManifestModel:
    """Parse and validate the JSON ``document`` as a ``model`` manifest read from ``where``.

    Returns:
        The validated manifest.

    Raises:
        InvalidManifest: naming ``where`` and, for a document that is JSON, the first fields
            that are missing, of the wrong type or not part of ``model``.
    """
    try:
        return model.model_validate_json(document)
    except ValidationError as exc:
        raise InvalidManifest(f"manifest {where} is not a {model.__name__}: {_field_problems(exc.errors())}") from None


def _field_problems(errors: Iterable[Mapping[str, Any]], listed: int = 3) -> str:
    errors = list(errors)
    if errors and errors[0].get("type") == "json_invalid":
        return f"not JSON ({errors[0].get('ctx', {}).get('error', errors[0].get('msg'))})"
    problems = [
        f"field {'.'.join(str(part) for part in e['loc']) or '(document)'}: {e['msg']}" for e in errors[:listed]
    ]
    more = f" (and {len(errors) - listed} more)" if len(errors) > listed else ""
    return "; ".join(problems) + more
