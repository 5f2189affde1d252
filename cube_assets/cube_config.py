"""Cube declarations: one YAML file lists the cubes and the providers that feed them.

See ``cube_assets/cubes/demo.yaml`` for a complete example and docs/configuration.md for every field.

The whole file is checked when it is loaded (``load_project_config``, which ``Definitions``
use), so nothing it declares fails later in a run: names that become keys or paths follow
``_NAME``; numbers are finite; dates lie in ``FIRST_YEAR``..``LAST_YEAR``; grids, tile names,
areas, quality rules, resampling names, ``nodata`` against the dtype and every index expression
are built or compiled once; the tiles of a cube (at most ``MAX_TILES_PER_CUBE``, counted before
any is made) and its partitions are bounded; band valid ranges against the cube's nodata and
dtype; a ``reuse_data_cube`` against the cube it names (same grid, quality band, storage). Every
problem is reported, each as
``FILE: cubes[0].temporal.step: what is wrong`` (``check_project_config``).
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date
from functools import cached_property
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    StrictInt,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from rasterio.warp import SUPPORTED_RESAMPLING
from shapely.geometry import box, shape
from shapely.geometry.base import BaseGeometry

from cube_assets.config_file import read_cube_file
from cube_assets.errors import InvalidCubeConfig, InvalidExpression, InvalidQualityRule
from cube_assets.grids import (
    MAX_TILE_SIDE_PX,
    MAX_TILES_PER_CUBE,
    Grid,
    Tile,
    bdc_grid,
    check_name_format,
    user_grid,
    utm_grid,
)
from cube_assets.quoting import quoted, shortened
from cube_assets.raster.bandpass import HLS_MSI_TO_OLI
from cube_assets.raster.codecs import COMPRESSIONS, DEFAULT_COMPRESSION
from cube_assets.raster.composite_cube_rules import CUBE_FUNCTION_NAMES, check_cube_function_options
from cube_assets.raster.composite_rules import COMPOSITE_FUNCTION_NAMES, is_composite_function
from cube_assets.raster.datasource import MAX_SOURCES
from cube_assets.raster.indexes import compile_expression
from cube_assets.raster.masks import ValueMaskRules, rules_from_config
from cube_assets.raster.reflectance import DEFAULT_BLOCK_SIZE, BandStorage
from cube_assets.temporal import Period, TemporalSchema

_CUBE_NAME = re.compile(r"^[a-z][a-z0-9_]{0,62}$")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
"""Names that become path components, store keys or registry keys: bands, quality bands, indexes,
collections, providers and grids."""
_COMMON_NAME = re.compile(r"^[a-z][a-z0-9_]{0,31}$")
_PLAIN_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")
COMPOSITE_FUNCTIONS = COMPOSITE_FUNCTION_NAMES
_DTYPES = ("uint8", "int16", "uint16", "int32", "float32")
RESAMPLING_NAMES = tuple(method.name for method in SUPPORTED_RESAMPLING)
# Scene files published beside the bands share their key space (storage/layout.py).
RESERVED_BAND_NAMES = ("quicklook", "footprint", "PVI")
FIRST_YEAR, LAST_YEAR = 1970, 2100
MAX_CUBES = 100
MAX_PROVIDERS = 100
MAX_BANDS = 64
MAX_SOURCE_BANDS = 1024
MIN_BLOCK_SIZE, MAX_BLOCK_SIZE = 16, 4096
MAX_INDEXES = 64
SOURCES_QUALITY_BAND = "QUALITY"
"""The quality band of a cube with ``sources``: every source's own quality classified into ``QualityClass`` codes."""
MAX_PARTITIONS_PER_CUBE = 5_000_000
MAX_CRS_CHARACTERS = 20_000
MAX_PROBLEMS_IN_MESSAGE = 20
MAX_PROBLEMS_PER_VALUE = 50


class _Problems(ValueError):
    """Problems a validator found, each at a path relative to the value it validated.

    Pydantic keeps the exception in the error's context, so the file's report can give each
    problem its full field path (``cubes[0].tiles[3]``) instead of the validated value's.
    """

    def __init__(self, problems: list[tuple[tuple[str | int, ...], str]]) -> None:
        super().__init__("; ".join(message for _, message in problems))
        self.problems = problems


def _problem(message: str, *at: str | int) -> _Problems:
    return _Problems([(at, message)])


def _raise_any(problems: list[tuple[tuple[str | int, ...], str]]) -> None:
    if len(problems) > MAX_PROBLEMS_PER_VALUE:
        more = len(problems) - MAX_PROBLEMS_PER_VALUE
        problems = problems[:MAX_PROBLEMS_PER_VALUE] + [((), f"… and {more:,} more problems of this value")]
    if problems:
        raise _Problems(problems)


def _name_problem(value: str, what: str, pattern: re.Pattern[str] = _NAME) -> str | None:
    if pattern.fullmatch(value) and value not in (".", ".."):
        return None
    if pattern is _COMMON_NAME:
        return f"{what} {quoted(value)} must be 1 to 32 lower-case letters, digits and '_', starting with a letter"
    return f"{what} {quoted(value)} must be 1 to 64 letters, digits, '_', '.' and '-', starting with a letter or digit"


def _check_name(value: str | None, what: str, pattern: re.Pattern[str] = _NAME) -> str | None:
    if value is not None and (message := _name_problem(value, what, pattern)):
        raise ValueError(message)
    return value


def _repeats(values: Iterable[Any]) -> dict[int, int]:
    """``{index: index of its first occurrence}`` for every value that repeats an earlier one."""
    first: dict[Any, int] = {}
    repeats = {}
    for position, value in enumerate(values):
        if value in first:
            repeats[position] = first[value]
        else:
            first[value] = position
    return repeats


def _check_provider_names(value: list[str]) -> list[str]:
    """Return ``value``, a list of provider names, once each is a valid name given once.

    Raises:
        _Problems: naming each bad or repeated entry by its index.
    """
    problems = [((i,), message) for i, name in enumerate(value) if (message := _name_problem(name, "provider name"))]
    problems += [((i,), f"provider {quoted(value[i])} repeats providers[{j}]") for i, j in _repeats(value).items()]
    _raise_any(problems)
    return value


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class GridConfig(_Strict):
    """Which grid the cube's tiles come from."""

    kind: Literal["bdc", "utm", "user"]
    size: str = Field("SM", max_length=8)  # bdc
    zone: StrictInt | None = None  # utm
    hemisphere: str = Field("N", max_length=8)  # utm
    name: str | None = None  # user
    crs: str | int | None = None  # user
    origin: tuple[float, float] | None = None  # user
    tile_size: tuple[StrictInt, StrictInt] | None = None  # user
    resolution: float | tuple[float, float] | None = None  # user: a pixel size, or [x, y] for non-square pixels
    name_format: str = "{col:03d}{row:03d}"

    @field_validator("name")
    @classmethod
    def _check_grid_name(cls, value: str | None) -> str | None:
        return _check_name(value, "grid name")

    @field_validator("crs", mode="before")
    @classmethod
    def _check_crs(cls, value: Any) -> Any:
        if value is None:
            return value
        if isinstance(value, bool) or not isinstance(value, (str, int)):
            raise ValueError(f"CRS must be an EPSG code or a PROJ/WKT string, got {quoted(value)}")
        if isinstance(value, str) and len(value) > MAX_CRS_CHARACTERS:
            raise ValueError(f"CRS of {len(value):,} characters is longer than {MAX_CRS_CHARACTERS:,}")
        return value

    @field_validator("resolution")
    @classmethod
    def _check_resolution(cls, value: float | tuple[float, float] | None) -> float | tuple[float, float] | None:
        sizes = value if isinstance(value, tuple) else (value,)
        if value is not None and not all(size > 0 for size in sizes):
            shown = list(value) if isinstance(value, tuple) else value
            raise ValueError(f"resolution {shown} must be a positive pixel size, or [x, y] of positive sizes")
        return value

    @field_validator("tile_size")
    @classmethod
    def _check_tile_size(cls, value: tuple[int, int] | None) -> tuple[int, int] | None:
        if value is not None and not all(1 <= side <= MAX_TILE_SIDE_PX for side in value):
            raise ValueError(f"tile size {list(value)} must be two pixel counts in 1..{MAX_TILE_SIDE_PX}")
        return value

    @field_validator("name_format")
    @classmethod
    def _check_name_format(cls, value: str) -> str:
        try:
            check_name_format(value, "")
        except InvalidCubeConfig as exc:
            raise ValueError(str(exc).removeprefix("grid '': ")) from None
        return value

    @model_validator(mode="after")
    def _check_grid(self) -> GridConfig:
        needs = {"utm": ("zone",), "user": ("name", "crs", "origin", "tile_size", "resolution")}.get(self.kind, ())
        _raise_any(
            [((name,), f"required for grid kind {self.kind!r}") for name in needs if getattr(self, name) is None]
        )
        try:
            _ = self.definition
        except InvalidCubeConfig as exc:
            raise _problem(str(exc)) from None
        return self

    @cached_property
    def definition(self) -> Grid:
        """The configured ``Grid``, built once.

        Raises:
            InvalidCubeConfig: when a field the kind needs is missing or invalid.
        """
        return self.build()

    def build(self) -> Grid:
        """Return the configured ``Grid``.

        Raises:
            InvalidCubeConfig: when a field the kind needs is missing or invalid.
        """
        if self.kind == "bdc":
            return bdc_grid(self.size)
        if self.kind == "utm":
            if self.zone is None:
                raise InvalidCubeConfig("grid kind 'utm' needs 'zone'")
            return utm_grid(self.zone, self.hemisphere)
        missing = [f for f in ("name", "crs", "origin", "tile_size", "resolution") if getattr(self, f) is None]
        if missing:
            raise InvalidCubeConfig(f"grid kind 'user' needs {', '.join(missing)}")
        return user_grid(self.name, self.crs, self.origin, self.tile_size, self.resolution, self.name_format)  # type: ignore[arg-type]  # the fields were checked for None just above


class BandConfig(_Strict):
    """One spectral band of the cube and where it comes from in the source products."""

    name: str
    source: str | None = None  # band name in the source product; defaults to ``name``
    common_name: str | None = None  # blue, green, red, nir, swir16 … (used by indexes and quicklooks)
    resampling: str = "bilinear"
    band_index: StrictInt | None = Field(None, ge=1, le=MAX_SOURCE_BANDS)  # 1-based band of the source file
    source_nodata: float | None = Field(None, allow_inf_nan=True)  # the input's nodata when the product has none
    valid_range: tuple[float, float] | None = None  # stored units; default: the product's reflectance rule

    @field_validator("valid_range")
    @classmethod
    def _check_valid_range(cls, value: tuple[float, float] | None) -> tuple[float, float] | None:
        if value is not None and not value[0] < value[1]:
            raise ValueError(f"valid range {list(value)} must be [min, max] with min below max")
        return value

    @field_validator("name")
    @classmethod
    def _check_band_name(cls, value: str) -> str:
        if value in RESERVED_BAND_NAMES:
            raise ValueError(f"band name {value!r} is reserved for scene files ({', '.join(RESERVED_BAND_NAMES)})")
        return _check_name(value, "band name")

    @field_validator("source")
    @classmethod
    def _check_source(cls, value: str | None) -> str | None:
        return _check_name(value, "source band name")

    @field_validator("common_name")
    @classmethod
    def _check_common_name(cls, value: str | None) -> str | None:
        return _check_name(value, "common name", _COMMON_NAME)

    @field_validator("resampling")
    @classmethod
    def _check_resampling(cls, value: str) -> str:
        if value not in RESAMPLING_NAMES:
            raise ValueError(f"unknown resampling {quoted(value)}; use one of {', '.join(RESAMPLING_NAMES)}")
        return value

    @property
    def source_band(self) -> str:
        """The band's name in the source product."""
        return self.source or self.name


class QualityConfig(_Strict):
    """The quality band and how its values classify into clear / not clear / nodata."""

    band: str
    rules: dict[str, Any] = Field(default_factory=lambda: {"preset": "scl"})
    nodata: StrictInt = Field(0, ge=0, le=65535)  # default: the rules' first nodata code (0 for bit rules)
    band_index: StrictInt | None = Field(None, ge=1, le=MAX_SOURCE_BANDS)  # 1-based band of the source file
    radsat: str | None = None  # Landsat: the QA_RADSAT band; its saturated pixels become saturated

    @model_validator(mode="before")
    @classmethod
    def _nodata_of_the_rules(cls, value: Any) -> Any:
        if isinstance(value, dict) and "nodata" not in value:
            try:
                rules = rules_from_config(value.get("rules", {"preset": "scl"}))
            except (InvalidQualityRule, TypeError):
                return value  # reported by the rules' own check
            if isinstance(rules, ValueMaskRules):
                return {**value, "nodata": rules.quality_nodata}
        return value

    @field_validator("radsat")
    @classmethod
    def _check_radsat(cls, value: str | None) -> str | None:
        return _check_name(value, "QA_RADSAT band name")

    @field_validator("band")
    @classmethod
    def _check_band(cls, value: str) -> str:
        if value in RESERVED_BAND_NAMES:
            raise ValueError(f"quality band name {value!r} is reserved for scene files")
        return _check_name(value, "quality band name")

    @field_validator("rules")
    @classmethod
    def _check_rules(cls, value: dict[str, Any]) -> dict[str, Any]:
        try:
            rules_from_config(value)
        except InvalidQualityRule as exc:
            raise ValueError(shortened(str(exc))) from None
        return value


def _default_source_quality(collection: str) -> dict[str, Any] | None:
    """The quality band of a source that names none: Landsat ``QA_PIXEL``, Sentinel-2 ``SCL``; else None."""
    if collection.startswith("landsat"):
        return {"band": "QA_PIXEL", "rules": {"preset": "landsat_c2_qa_pixel"}, "nodata": 1}
    if collection.startswith("sentinel-2"):
        return {"band": "SCL", "rules": {"preset": "scl"}, "nodata": 0}
    return None


class SourceConfig(_Strict):
    """One source of a cube with several: its collection, providers, bands by role and quality band.

    ``bands`` maps each band role (a cube band's ``common_name``) to the band's name in this
    source's products; ``quality`` defaults to ``QA_PIXEL`` for Landsat and ``SCL`` for
    Sentinel-2 collections.
    """

    name: str
    collection: str
    providers: list[str] = Field(default_factory=list, max_length=MAX_PROVIDERS)
    bands: dict[str, str] = Field(max_length=MAX_BANDS)
    quality: QualityConfig

    @model_validator(mode="before")
    @classmethod
    def _default_quality(cls, value: Any) -> Any:
        if isinstance(value, dict) and "quality" not in value and isinstance(value.get("collection"), str):
            default = _default_source_quality(value["collection"])
            if default is not None:
                return {**value, "quality": default}
        return value

    @field_validator("name")
    @classmethod
    def _check_source_name(cls, value: str) -> str:
        return _check_name(value, "source name")

    @field_validator("collection")
    @classmethod
    def _check_collection(cls, value: str) -> str:
        if value == "sentinel-2-l1c":
            raise ValueError("a cube source must be Level-2 (sentinel-2-l1c goes through Sen2Cor, single-source only)")
        return _check_name(value, "collection")

    @field_validator("providers")
    @classmethod
    def _check_provider_names(cls, value: list[str]) -> list[str]:
        return _check_provider_names(value)

    @field_validator("bands")
    @classmethod
    def _check_band_names(cls, value: dict[str, str]) -> dict[str, str]:
        _raise_any([((role,), m) for role, name in value.items() if (m := _name_problem(name, "source band name"))])
        return value

    @model_validator(mode="after")
    def _check_radsat(self) -> SourceConfig:
        if self.quality.radsat and not self.collection.startswith("landsat"):
            raise _problem(f"QA_RADSAT is a Landsat band; collection {quoted(self.collection)} has none", "quality")
        return self

    @property
    def is_landsat(self) -> bool:
        """True for a Landsat collection."""
        return self.collection.startswith("landsat")

    @property
    def is_sentinel2(self) -> bool:
        """True for a Sentinel-2 collection."""
        return self.collection.startswith("sentinel-2")


class AoiConfig(_Strict):
    """An area of interest in EPSG:4326: a bbox ``[minlon, minlat, maxlon, maxlat]`` or a GeoJSON geometry."""

    bbox: tuple[float, float, float, float] | None = None
    geometry: dict[str, Any] | None = None

    @field_validator("bbox")
    @classmethod
    def _check_bbox(cls, value: tuple[float, float, float, float] | None) -> tuple[float, float, float, float] | None:
        if value is None:
            return value
        minlon, minlat, maxlon, maxlat = value
        if not (-180 <= minlon < maxlon <= 180 and -90 <= minlat < maxlat <= 90):
            raise ValueError(
                f"bbox {list(value)} must be [minlon, minlat, maxlon, maxlat] with -180 <= minlon < maxlon <= 180 "
                "and -90 <= minlat < maxlat <= 90 (an area, not a line or a point)"
            )
        return value

    @field_validator("geometry")
    @classmethod
    def _check_geometry(cls, value: dict[str, Any] | None) -> dict[str, Any] | None:
        if value is None:
            return value
        try:
            geometry = shape(value)
        except Exception as exc:  # shapely raises many types for malformed GeoJSON
            raise ValueError(f"not a GeoJSON geometry ({type(exc).__name__}: {shortened(str(exc), 120)})") from None
        if geometry.geom_type not in ("Polygon", "MultiPolygon"):
            raise ValueError(f"must be a Polygon or MultiPolygon, got {quoted(geometry.geom_type)}")
        if geometry.is_empty or not geometry.is_valid or not geometry.area > 0:
            raise ValueError("must be a valid polygon of non-zero area (closed rings that do not cross themselves)")
        minlon, minlat, maxlon, maxlat = geometry.bounds
        if not (-180 <= minlon and maxlon <= 180 and -90 <= minlat and maxlat <= 90):
            raise ValueError(f"coordinates must be lon/lat in EPSG:4326; bounds are {[minlon, minlat, maxlon, maxlat]}")
        return value

    @model_validator(mode="after")
    def _one_of(self) -> AoiConfig:
        if (self.bbox is None) == (self.geometry is None):
            raise ValueError("give exactly one of 'bbox' or 'geometry'")
        return self

    def shape(self) -> BaseGeometry:
        """Return the area as a shapely geometry in EPSG:4326."""
        return box(*self.bbox) if self.bbox is not None else shape(self.geometry)


def _temporal_schema(value: Any) -> TemporalSchema:
    """The ``TemporalSchema`` of a cube's ``temporal`` value: a step string or ``{step, restart}``."""
    if isinstance(value, TemporalSchema):
        return value
    if isinstance(value, str):
        value = {"step": value}
    if not isinstance(value, dict):
        raise _problem(f"expected a step like '16D' or a mapping {{step, restart}}, got {quoted(value)}")
    _raise_any(
        [
            ((key,) if isinstance(key, str) else (), f"unknown field {quoted(key)} (fields: step, restart)")
            for key in value
            if key not in ("step", "restart")
        ]
    )
    step, restart = value.get("step", "16D"), value.get("restart", "yearly")
    if restart not in ("yearly", "none"):
        raise _problem(f"restart {quoted(restart)}: expected 'yearly' or 'none'", "restart")
    try:
        return TemporalSchema(step=step, restart=restart)
    except InvalidCubeConfig as exc:
        raise _problem(str(exc), "step") from None


class CubeConfig(_Strict):
    """A data cube: its source collection, bands, quality rules, grid, tiles, periods and composites."""

    name: str
    title: str = Field("", max_length=200)
    description: str = Field("", max_length=10_000)
    collection: str
    providers: list[str] = Field(
        default_factory=list, max_length=MAX_PROVIDERS
    )  # empty: the registry's providers of the collection
    grid: GridConfig
    tiles: list[str] | None = Field(None, max_length=MAX_TILES_PER_CUBE)
    aoi: AoiConfig | None = None
    start_date: date
    end_date: date
    temporal: TemporalSchema = Field(default_factory=TemporalSchema)
    bands: list[BandConfig] = Field(min_length=1, max_length=MAX_BANDS)
    quality: QualityConfig
    indexes: dict[str, str] = Field(default_factory=dict, max_length=MAX_INDEXES)
    composites: list[str] = Field(default_factory=lambda: ["LCF"])
    composite_options: dict[str, dict[str, Any]] = Field(default_factory=dict)  # MAXNDVI / BAP / GMED options
    dtype: str = "int16"
    nodata: float = Field(-9999, allow_inf_nan=True)
    source_resolution: float | None = Field(None, gt=0)  # which product resolution to read; default: the grid's
    max_cloud_cover: float | None = Field(None, ge=0, le=100)
    # cube-builder options
    apply_valid_range: bool = False  # values outside a band's valid range become nodata (else clipped)
    block_size: StrictInt | None = None  # GeoTIFF block side of the cube's scene files; default 512
    reuse_data_cube: str | None = None  # blend the merges of this other cube of the file instead of merging
    native_grid: bool = False  # merge: keep each scene on its own grid (no warp), in the tile's CRS only
    compression: str = DEFAULT_COMPRESSION  # codec of the merges' and composites' COGs (raster/cog.py)
    # several sources on one grid: each scene classified by its source's quality, bands matched by role
    sources: list[SourceConfig] | None = None
    bandpass_adjustment: Literal["hls", "none"] | None = None  # default: hls when Landsat meets Sentinel-2

    model_config = ConfigDict(extra="forbid", frozen=True, arbitrary_types_allowed=True, allow_inf_nan=False)
    _reused_cube: CubeConfig | None = PrivateAttr(None)

    @property
    def reused_cube(self) -> CubeConfig | None:
        """The cube whose merges this cube blends (``reuse_data_cube``), once the whole file is checked."""
        return self._reused_cube

    @model_validator(mode="before")
    @classmethod
    def _sources_fill_collection_and_quality(cls, value: Any) -> Any:
        if not isinstance(value, dict) or value.get("sources") is None:
            return value
        given = [name for name in ("collection", "providers", "quality") if name in value]
        if given:
            raise _problem(
                f"a cube with sources takes {', '.join(given)} from each source (sources[].{given[0]}); "
                "remove the cube-level one",
                given[0],
            )
        sources = value["sources"]
        first = sources[0] if isinstance(sources, list) and sources and isinstance(sources[0], dict) else {}
        return {
            **value,
            "collection": first.get("collection", "unknown"),
            "quality": {"band": SOURCES_QUALITY_BAND, "rules": {"preset": "quality_class"}, "nodata": 0},
        }

    @field_validator("name")
    @classmethod
    def _check_cube_name(cls, value: str) -> str:
        if not _CUBE_NAME.fullmatch(value):
            raise ValueError(
                f"{quoted(value)} must be 1 to 63 lower-case letters, digits and '_', starting with a letter "
                "(it becomes a Dagster asset key prefix)"
            )
        return value

    @field_validator("compression")
    @classmethod
    def _check_compression(cls, value: str) -> str:
        if value.upper() not in COMPRESSIONS:
            raise ValueError(f"compression {quoted(value)} is not one of {', '.join(COMPRESSIONS)}")
        return value.upper()

    @field_validator("collection")
    @classmethod
    def _check_collection(cls, value: str) -> str:
        return _check_name(value, "collection")

    @field_validator("providers")
    @classmethod
    def _check_provider_names(cls, value: list[str]) -> list[str]:
        return _check_provider_names(value)

    @field_validator("tiles")
    @classmethod
    def _check_tiles(cls, value: list[str] | None, info: ValidationInfo) -> list[str] | None:
        if value is None:
            return value
        grid = info.data.get("grid")
        problems = [((i,), f"tile {quoted(value[i])} repeats tiles[{j}]") for i, j in _repeats(value).items()]
        for position, name in enumerate(value if grid is not None else ()):
            try:
                grid.definition.tile_by_name(name)
            except InvalidCubeConfig as exc:
                problems.append(((position,), str(exc)))
        _raise_any(sorted(problems))
        return value

    @field_validator("start_date", "end_date")
    @classmethod
    def _check_year(cls, value: date, info: ValidationInfo) -> date:
        if not FIRST_YEAR <= value.year <= LAST_YEAR:
            raise ValueError(f"{value} is outside the years {FIRST_YEAR}..{LAST_YEAR}")
        start = info.data.get("start_date")
        if info.field_name == "end_date" and start is not None and value < start:
            raise ValueError(f"end_date {value} precedes start_date {start}")
        return value

    @field_validator("temporal", mode="before")
    @classmethod
    def _temporal(cls, value: Any) -> TemporalSchema:
        return _temporal_schema(value)

    @field_validator("bands")
    @classmethod
    def _check_bands(cls, value: list[BandConfig]) -> list[BandConfig]:
        names = [band.name for band in value]
        problems = [((i, "name"), f"band {quoted(names[i])} repeats bands[{j}]") for i, j in _repeats(names).items()]
        common = [band.common_name for band in value]
        problems += [
            ((i, "common_name"), f"common name {quoted(common[i])} repeats bands[{j}]")
            for i, j in _repeats(common).items()
            if common[i] is not None
        ]
        problems += [
            (
                (i, "common_name"),
                f"common name {quoted(band.common_name)} is the name of bands[{names.index(band.common_name)}]",
            )
            for i, band in enumerate(value)
            if band.common_name in names and names.index(band.common_name) != i
        ]
        _raise_any(problems)
        return value

    @field_validator("quality")
    @classmethod
    def _check_quality_band(cls, value: QualityConfig, info: ValidationInfo) -> QualityConfig:
        bands = info.data.get("bands") or []
        if value.band in {band.name for band in bands}:
            raise _problem(f"quality band {quoted(value.band)} is also listed as a spectral band", "band")
        return value

    @field_validator("indexes")
    @classmethod
    def _check_indexes(cls, value: dict[str, str], info: ValidationInfo) -> dict[str, str]:
        bands = info.data.get("bands")
        quality = info.data.get("quality")
        taken = {band.name for band in bands or []} | {quality.band if quality else None} | set(RESERVED_BAND_NAMES)
        inputs = [name for band in bands or [] for name in (band.name, band.common_name) if name]
        problems = []
        for name, expression in value.items():
            if message := _name_problem(name, "index name"):
                problems.append(((name,), message))
            elif name in taken:
                problems.append(((name,), f"index name {quoted(name)} is already a band name or reserved"))
            elif bands is not None:
                try:
                    compile_expression(expression, inputs)
                except InvalidExpression as exc:
                    problems.append(((name,), shortened(str(exc))))
        _raise_any(problems)
        return value

    @field_validator("composites")
    @classmethod
    def _check_composites(cls, value: list[str]) -> list[str]:
        unknown = [name for name in value if not is_composite_function(name)]
        if unknown:
            raise ValueError(
                f"unknown composite functions {quoted(unknown)}; expected some of {list(COMPOSITE_FUNCTIONS)}"
                " or a percentile P0..P100"
            )
        _raise_any([((i,), f"{value[i]} repeats composites[{j}]") for i, j in _repeats(value).items()])
        return value

    @field_validator("block_size")
    @classmethod
    def _check_block_size(cls, value: int | None) -> int | None:
        if value is not None and not (MIN_BLOCK_SIZE <= value <= MAX_BLOCK_SIZE and value % 16 == 0):
            raise ValueError(
                f"block size {value} must be a multiple of 16 in {MIN_BLOCK_SIZE}..{MAX_BLOCK_SIZE} (GeoTIFF tiles)"
            )
        return value

    @field_validator("reuse_data_cube")
    @classmethod
    def _check_reused_cube_name(cls, value: str | None) -> str | None:
        if value is not None and not _CUBE_NAME.fullmatch(value):
            raise ValueError(f"{quoted(value)} is not a cube name")
        return value

    @field_validator("dtype")
    @classmethod
    def _check_dtype(cls, value: str) -> str:
        if value not in _DTYPES:
            raise ValueError(f"dtype {quoted(value)} not one of {list(_DTYPES)}")
        return value

    @field_validator("nodata")
    @classmethod
    def _check_nodata(cls, value: float, info: ValidationInfo) -> float:
        dtype = info.data.get("dtype")
        if dtype is None:
            return value
        kind = np.dtype(dtype)
        if kind.kind in "iu":
            limits = np.iinfo(kind)
            if not (math.isfinite(value) and value == int(value) and limits.min <= value <= limits.max):
                raise ValueError(
                    f"nodata {value} cannot be stored in {dtype} (whole numbers {limits.min}..{limits.max})"
                )
        elif not math.isnan(value) and not abs(value) <= float(np.finfo(kind).max):
            raise ValueError(f"nodata {value} cannot be stored in {dtype} (a finite {dtype} or .nan)")
        return value

    @field_validator("sources")
    @classmethod
    def _check_sources(cls, value: list[SourceConfig] | None) -> list[SourceConfig] | None:
        if value is None:
            return value
        if not value:
            raise ValueError("sources: give at least one source, or leave sources out and give a collection")
        if len(value) > MAX_SOURCES:
            raise ValueError(
                f"{len(value)} sources, more than {MAX_SOURCES} (each is one bit of the uint8 DATASOURCE band)"
            )
        names = [source.name for source in value]
        _raise_any(
            [((i, "name"), f"source {quoted(names[i])} repeats sources[{j}]") for i, j in _repeats(names).items()]
        )
        return value

    @model_validator(mode="after")
    def _check_source_bands(self) -> CubeConfig:
        if self.sources is None:
            return self
        problems: list[tuple[tuple[str | int, ...], str]] = []
        roles = [band.common_name for band in self.bands]
        problems += [
            (("bands", i, "common_name"), f"a cube with sources matches bands by role: give band {band.name} one")
            for i, band in enumerate(self.bands)
            if band.common_name is None
        ]
        problems += [
            (("bands", i, "source"), f"in a cube with sources each source names band {band.name} (sources[].bands)")
            for i, band in enumerate(self.bands)
            if band.source is not None
        ]
        for i, source in enumerate(self.sources):
            problems += [
                (("sources", i, "bands"), f"band role {quoted(role)} (bands[{b}], {self.bands[b].name}) is missing")
                for b, role in enumerate(roles)
                if role is not None and role not in source.bands
            ]
            problems += [
                (("sources", i, "bands", role), f"{quoted(role)} is not the common_name of a cube band ({roles})")
                for role in source.bands
                if role not in roles
            ]
        if self.landsat_bandpass == "hls" and any(s.is_landsat for s in self.sources):
            problems += [
                (("bands", i, "common_name"), f"bandpass_adjustment hls has no coefficients for role {quoted(role)}")
                for i, role in enumerate(roles)
                if role is not None and role not in HLS_MSI_TO_OLI
            ]
        _raise_any(problems)
        return self

    @property
    def landsat_bandpass(self) -> str:
        """The adjustment Landsat reflectance of this cube goes through: ``"hls"`` or ``"none"``.

        ``bandpass_adjustment`` when given; otherwise ``"hls"`` when the cube's sources mix
        Landsat and Sentinel-2, else ``"none"``.
        """
        if self.bandpass_adjustment is not None:
            return self.bandpass_adjustment
        sources = self.sources or []
        mixed = any(s.is_landsat for s in sources) and any(s.is_sentinel2 for s in sources)
        return "hls" if mixed else "none"

    @property
    def source_names(self) -> list[str]:
        """The cube's source names in order (bit i of DATASOURCE is source i); none without ``sources``."""
        return [source.name for source in self.sources or []]

    def source_views(self) -> list[tuple[str | None, CubeConfig]]:
        """``(source name, source_view)`` of every source in order; ``[(None, self)]`` for a cube without sources."""
        if not self.sources:
            return [(None, self)]
        return [(source.name, self.source_view(source.name)) for source in self.sources]

    def source_view(self, name: str) -> CubeConfig:
        """This cube as its source ``name`` alone: its collection, providers, bands' product names and quality.

        What finding, fetching and reading the source's scenes need (the cube's name, grid, bands
        and storage stay the cube's); ``bandpass_adjustment`` is the cube's resolved
        (``landsat_bandpass``).

        Returns:
            A ``CubeConfig`` without ``sources``, not validated again (its parts were).

        Raises:
            InvalidCubeConfig: if the cube has no source ``name``.
        """
        source = next((s for s in self.sources or [] if s.name == name), None)
        if source is None:
            raise InvalidCubeConfig(f"cube {self.name!r}: no source {name!r}; sources: {self.source_names}")
        bands = [band.model_copy(update={"source": source.bands[band.common_name or ""]}) for band in self.bands]
        return self.model_copy(
            update={
                "collection": source.collection,
                "providers": list(source.providers),
                "bands": bands,
                "quality": source.quality,
                "sources": None,
                "bandpass_adjustment": self.landsat_bandpass,
            }
        )

    @model_validator(mode="after")
    def _check_valid_ranges(self) -> CubeConfig:
        problems = []
        if self.quality.radsat and not self.collection.startswith("landsat"):
            problems.append(
                (("quality", "radsat"), f"QA_RADSAT is a Landsat band; collection {quoted(self.collection)} has none")
            )
        for position, band in enumerate(self.bands):
            if band.valid_range is None:
                continue
            low, high = band.valid_range
            if not math.isnan(self.nodata) and low <= self.nodata <= high:
                problems.append(
                    (
                        ("bands", position, "valid_range"),
                        f"the cube's nodata {self.nodata:g} lies inside the valid range {list(band.valid_range)}: "
                        "valid pixels could not be told from nodata",
                    )
                )
            kind = np.dtype(self.dtype)
            if kind.kind in "iu" and (low > np.iinfo(kind).max or high < np.iinfo(kind).min):
                problems.append(
                    (("bands", position, "valid_range"), f"{list(band.valid_range)} holds no value of {self.dtype}")
                )
        _raise_any(problems)
        return self

    def band_storage(self, band: BandConfig) -> BandStorage:
        """How the cube stores ``band``: its dtype, nodata, the band's valid range and ``apply_valid_range``."""
        return BandStorage(self.dtype, self.nodata, band.valid_range, self.apply_valid_range)

    @property
    def index_nodata(self) -> float:
        """The nodata of the cube's index bands (int16, signed like an index): the cube's nodata when
        int16 can hold it, else −9999."""
        fits = not math.isnan(self.nodata) and self.nodata == int(self.nodata) and -32768 <= self.nodata <= 32767
        return self.nodata if fits else -9999

    @property
    def file_block_size(self) -> int:
        """The GeoTIFF block side of the cube's scene files: ``block_size``, else 512."""
        return self.block_size or DEFAULT_BLOCK_SIZE

    @model_validator(mode="after")
    def _check_composite_options(self) -> CubeConfig:
        for name in self.composite_options:
            if name not in self.composites or name not in CUBE_FUNCTION_NAMES:
                raise _problem(
                    f"options for {quoted(name)}, which is not one of the cube's MAXNDVI, BAP or GMED",
                    "composite_options",
                )
        for name in self.composites:
            if name in CUBE_FUNCTION_NAMES:
                try:
                    check_cube_function_options(
                        name, self.composite_options.get(name, {}), [b.name for b in self.bands], list(self.indexes)
                    )
                except ValueError as exc:
                    raise _problem(str(exc), "composite_options", name) from None
        return self

    @model_validator(mode="after")
    def _check_tiles_and_periods(self) -> CubeConfig:
        if (self.tiles is None) == (self.aoi is None):
            raise ValueError("give exactly one of 'tiles' or 'aoi'")
        where = "tiles" if self.tiles is not None else "aoi"
        try:
            tiles = self.tile_list
        except InvalidCubeConfig as exc:
            raise _problem(str(exc), where) from None
        if not tiles:
            raise _problem("the area intersects no tile of the grid", where)
        repeated = _repeats(tile.name for tile in tiles)
        if repeated:
            i, j = next(iter(repeated.items()))
            raise _problem(
                f"tiles ({tiles[j].col}, {tiles[j].row}) and ({tiles[i].col}, {tiles[i].row}) are both named "
                f"{quoted(tiles[i].name)}; give the format fixed widths",
                "grid",
                "name_format",
            )
        partitions = len(tiles) * len(self.periods)
        if partitions > MAX_PARTITIONS_PER_CUBE:
            raise _problem(
                f"{len(tiles):,} tiles × {len(self.periods):,} periods = {partitions:,} partitions, "
                f"more than the limit of {MAX_PARTITIONS_PER_CUBE:,} per cube"
            )
        return self

    @cached_property
    def grid_definition(self) -> Grid:
        """The cube's grid."""
        return self.grid.definition

    @cached_property
    def tile_list(self) -> list[Tile]:
        """The cube's tiles: those listed, or every grid tile intersecting the AOI.

        Raises:
            InvalidCubeConfig: when a listed name is not a tile name of the grid, or the AOI spans
                more than ``MAX_TILES_PER_CUBE`` tiles or cannot be placed on the grid.
        """
        grid = self.grid_definition
        if self.tiles is not None:
            return [grid.tile_by_name(name) for name in self.tiles]
        return grid.tiles_intersecting(self.aoi.shape(), "EPSG:4326", max_tiles=MAX_TILES_PER_CUBE)  # type: ignore[union-attr]  # the model validator requires an aoi when tiles is not given

    @cached_property
    def periods(self) -> list[Period]:
        """Every period of the cube between its start and end dates."""
        return self.temporal.periods(self.start_date, self.end_date)

    def period(self, key: str) -> Period:
        """Return the period whose key is ``key``.

        Raises:
            InvalidCubeConfig: if no period of this cube starts on that date.
        """
        for period in self.periods:
            if period.key == key:
                return period
        raise InvalidCubeConfig(f"cube {self.name!r}: no period starts on {key!r}")

    def tile(self, name: str) -> Tile:
        """Return the cube tile called ``name``.

        Raises:
            InvalidCubeConfig: if the tile is not one of this cube's tiles.
        """
        for tile in self.tile_list:
            if tile.name == name:
                return tile
        raise InvalidCubeConfig(f"cube {self.name!r}: tile {name!r} is not one of its tiles")

    @property
    def band_names(self) -> list[str]:
        """The spectral band names, in declared order."""
        return [b.name for b in self.bands]

    def band_by_common_name(self, common_name: str) -> BandConfig | None:
        """Return the band whose common name is ``common_name``, or None."""
        return next((b for b in self.bands if b.common_name == common_name), None)

    @property
    def read_resolution(self) -> float:
        """The source product resolution to read: ``source_resolution`` or the grid's pixel size."""
        return self.source_resolution or self.grid_definition.resolution


class ProviderConfig(_Strict):
    """A provider: a driver and its options (``root`` for ``local``; scenes for ``simulator``;
    ``url``, asset mapping, retries and credentials for ``stac``, see ``providers/stac.py``)."""

    name: str
    driver: Literal["local", "simulator", "stac"]
    description: str = Field("", max_length=10_000)
    options: dict[str, Any] = Field(default_factory=dict)

    @field_validator("name")
    @classmethod
    def _check_provider_name(cls, value: str) -> str:
        return _check_name(value, "provider name")

    @model_validator(mode="after")
    def _check_driver_options(self) -> ProviderConfig:
        if self.driver == "stac":
            from cube_assets.errors import ProviderError
            from cube_assets.providers.stac import parse_stac_options

            try:
                parse_stac_options(self.options, f"provider {self.name}")
            except ProviderError as exc:
                raise _problem(shortened(str(exc)), "options") from None
        elif self.driver == "simulator":
            from cube_assets.errors import ProviderError
            from cube_assets.providers.simulated import simulated_scenes

            try:
                simulated_scenes(self.options)
            except ProviderError as exc:
                raise _problem(shortened(str(exc)), "options") from None
        return self


class ProjectConfig(_Strict):
    """The whole cube file: providers and cubes."""

    providers: list[ProviderConfig] = Field(default_factory=list, max_length=MAX_PROVIDERS)
    cubes: list[CubeConfig] = Field(min_length=1, max_length=MAX_CUBES)

    @field_validator("providers")
    @classmethod
    def _check_provider_names(cls, value: list[ProviderConfig]) -> list[ProviderConfig]:
        names = [provider.name for provider in value]
        _raise_any(
            [((i, "name"), f"provider {quoted(names[i])} repeats providers[{j}]") for i, j in _repeats(names).items()]
        )
        return value

    @field_validator("cubes")
    @classmethod
    def _check_cubes(cls, value: list[CubeConfig], info: ValidationInfo) -> list[CubeConfig]:
        names = [cube.name for cube in value]
        problems = [((i, "name"), f"cube {quoted(names[i])} repeats cubes[{j}]") for i, j in _repeats(names).items()]
        reuse = _reuse_problems(value)
        problems += reuse
        if not reuse:
            by_name = {cube.name: cube for cube in value}
            for cube in value:
                cube._reused_cube = by_name[cube.reuse_data_cube] if cube.reuse_data_cube else None
        declared = info.data.get("providers")
        if declared is not None:
            known = {provider.name for provider in declared}
            problems += [
                ((i, "providers", j), f"unknown provider {quoted(name)}; declared: {sorted(known)}")
                for i, cube in enumerate(value)
                for j, name in enumerate(cube.providers)
                if name not in known
            ]
            problems += [
                ((i, "sources", k, "providers", j), f"unknown provider {quoted(name)}; declared: {sorted(known)}")
                for i, cube in enumerate(value)
                for k, source in enumerate(cube.sources or [])
                for j, name in enumerate(source.providers)
                if name not in known
            ]
        _raise_any(problems)
        return value

    def cube(self, name: str) -> CubeConfig:
        """Return the cube called ``name``.

        Raises:
            InvalidCubeConfig: when there is none.
        """
        for cube in self.cubes:
            if cube.name == name:
                return cube
        raise InvalidCubeConfig(f"no cube called {quoted(name)}; cubes: {[c.name for c in self.cubes]}")

    def provider(self, name: str) -> ProviderConfig:
        """Return the provider called ``name``.

        Raises:
            InvalidCubeConfig: when there is none.
        """
        for provider in self.providers:
            if provider.name == name:
                return provider
        raise InvalidCubeConfig(f"no provider called {quoted(name)}")


def _reuse_problems(cubes: list[CubeConfig]) -> list[tuple[tuple[str | int, ...], str]]:
    """What makes each cube's ``reuse_data_cube`` unusable: an unknown cube, a chain, another grid or bands."""
    by_name = {cube.name: cube for cube in cubes}
    problems: list[tuple[tuple[str | int, ...], str]] = []
    for position, cube in enumerate(cubes):
        if cube.reuse_data_cube is None:
            continue
        at = (position, "reuse_data_cube")
        source = by_name.get(cube.reuse_data_cube)
        if source is None or source is cube:
            what = "itself" if source is cube else "no cube of this file"
            problems.append((at, f"{quoted(cube.reuse_data_cube)} is {what}; name another cube of the file"))
            continue
        if source.reuse_data_cube is not None:
            problems.append(
                (at, f"cube {source.name} reuses {source.reuse_data_cube} itself; name the cube that merges")
            )
        mismatched = [
            name
            for name, mine, theirs in (
                ("grid", cube.grid.model_dump(), source.grid.model_dump()),
                ("quality.band", cube.quality.band, source.quality.band),
                ("dtype", cube.dtype, source.dtype),
                ("nodata", cube.nodata, source.nodata),
                ("native_grid", cube.native_grid, source.native_grid),
                ("apply_valid_range", cube.apply_valid_range, source.apply_valid_range),
                (
                    "bands' valid_range",
                    {band.name: band.valid_range for band in cube.bands},
                    {band.name: band.valid_range for band in source.bands if band.name in cube.band_names},
                ),
            )
            if mine != theirs and not (name == "nodata" and math.isnan(mine) and math.isnan(theirs))
        ]
        if mismatched:
            problems.append((at, f"cube {source.name} differs in {', '.join(mismatched)}; the merges must be the same"))
        missing = [name for name in cube.band_names if name not in source.band_names]
        if missing:
            problems.append((at, f"bands {missing} are not bands of cube {source.name} ({source.band_names})"))
        tiles = {tile.name for tile in source.tile_list}
        outside = [tile.name for tile in cube.tile_list if tile.name not in tiles]
        if outside:
            problems.append((at, f"tiles {outside[:10]} are not tiles of cube {source.name}"))
    return problems


DEMO_CONFIG = Path(__file__).parent / "cubes" / "demo.yaml"


@dataclass(frozen=True)
class CubeFileCheck:
    """The outcome of checking a cube file: its configuration, or every problem found in it."""

    path: Path
    config: ProjectConfig | None
    problems: tuple[str, ...] = ()
    cause: BaseException | None = field(default=None, repr=False, compare=False)

    def message(self) -> str:
        """Return the problems as one message: at most ``MAX_PROBLEMS_IN_MESSAGE`` lines, then how many more."""
        lines = list(self.problems[:MAX_PROBLEMS_IN_MESSAGE])
        if len(self.problems) > MAX_PROBLEMS_IN_MESSAGE:
            more = len(self.problems) - MAX_PROBLEMS_IN_MESSAGE
            lines.append(
                f"{self.path}: … and {more:,} more problems (`cube-assets config check {self.path}` lists them all)"
            )
        return "\n".join(lines)


def check_project_config(path: str | Path = DEMO_CONFIG) -> CubeFileCheck:
    """Read and validate a cube YAML file, collecting every problem instead of stopping at the first.

    Returns:
        A ``CubeFileCheck`` with the ``ProjectConfig`` (grids, tiles and periods built) and no
        problems, or with ``config=None`` and one line per problem, each
        ``FILE: field.path: what is wrong`` quoting at most about 200 characters of input.
    """
    path = Path(path)
    try:
        raw = read_cube_file(path)
    except InvalidCubeConfig as exc:
        return CubeFileCheck(path, None, (str(exc),), exc)
    try:
        config = ProjectConfig.model_validate(raw)
    except ValidationError as exc:
        return CubeFileCheck(path, None, tuple(_validation_problems(path, exc)), exc)
    return CubeFileCheck(path, config)


def load_project_config(path: str | Path = DEMO_CONFIG) -> ProjectConfig:
    """Parse and validate a cube YAML file.

    Returns:
        The validated ``ProjectConfig``; grids, tiles and periods are built eagerly so that
        a bad grid or tile name fails here, not in the middle of a run.

    Raises:
        InvalidCubeConfig: naming the file and listing every problem found, one per line, as
            ``FILE: cubes[0].temporal.step: what is wrong``.
    """
    check = check_project_config(path)
    if check.config is None:
        raise InvalidCubeConfig(check.message()) from check.cause
    return check.config


def _validation_problems(path: Path, exc: ValidationError) -> list[str]:
    lines = []
    for error in exc.errors(include_url=False):
        loc = tuple(error["loc"])
        cause = (error.get("ctx") or {}).get("error")
        if isinstance(cause, _Problems):
            lines += [_problem_line(path, loc + at, message) for at, message in cause.problems]
        elif isinstance(cause, ValueError):
            lines.append(_problem_line(path, loc, shortened(str(cause))))
        else:
            message = error["msg"]
            value = error.get("input")
            # Providers hold credentials and an unknown key may be a misplaced one: neither is echoed.
            echo = error["type"] not in ("missing", "extra_forbidden") and loc[:1] != ("providers",)
            if echo and (value is None or isinstance(value, (str, int, float))):
                message += f" (got {quoted(value)})"
            lines.append(_problem_line(path, loc, message))
    return lines


def _problem_line(path: Path, loc: tuple[str | int, ...], message: str) -> str:
    where = field_path(loc)
    return f"{path}: {where}: {message}" if where else f"{path}: {message}"


def field_path(loc: Iterable[str | int]) -> str:
    """Return a pydantic location as a field path: ``("cubes", 0, "temporal", "step")`` is ``cubes[0].temporal.step``.

    Returns:
        The path; keys that are not plain names are quoted in brackets, at most 60 characters.
    """
    parts = []
    for item in loc:
        if isinstance(item, int):
            parts.append(f"[{item}]")
        elif _PLAIN_KEY.fullmatch(str(item)):
            parts.append(f".{item}" if parts else str(item))
        else:
            parts.append(f"[{quoted(str(item), 60)}]")
    return "".join(parts)
