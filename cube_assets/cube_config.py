"""Cube declarations: one YAML file lists the cubes and the providers that feed them.

See ``cube_assets/cubes/demo.yaml`` for a complete example and docs/configuration.md for every field.
"""

from __future__ import annotations

import re
from datetime import date
from functools import cached_property
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from shapely.geometry import box, shape
from shapely.geometry.base import BaseGeometry

from cube_assets.errors import InvalidCubeConfig
from cube_assets.grids import Grid, Tile, bdc_grid, user_grid, utm_grid
from cube_assets.temporal import Period, TemporalSchema

_CUBE_NAME = re.compile(r"^[a-z][a-z0-9_]{0,62}$")
COMPOSITE_FUNCTIONS = ("LCF", "MED", "AVG")
_DTYPES = ("uint8", "int16", "uint16", "int32", "float32")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class GridConfig(_Strict):
    """Which grid the cube's tiles come from."""

    kind: Literal["bdc", "utm", "user"]
    size: str = "SM"  # bdc
    zone: int | None = None  # utm
    hemisphere: str = "N"  # utm
    name: str | None = None  # user
    crs: str | int | None = None  # user
    origin: tuple[float, float] | None = None  # user
    tile_size: tuple[int, int] | None = None  # user
    resolution: float | None = None  # user
    name_format: str = "{col:03d}{row:03d}"

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
        return user_grid(self.name, self.crs, self.origin, self.tile_size, self.resolution, self.name_format)  # type: ignore[arg-type]


class BandConfig(_Strict):
    """One spectral band of the cube and where it comes from in the source products."""

    name: str
    source: str | None = None  # band name in the source product; defaults to ``name``
    common_name: str | None = None  # blue, green, red, nir, swir16 … (used by indexes and quicklooks)
    resampling: str = "bilinear"

    @property
    def source_band(self) -> str:
        """The band's name in the source product."""
        return self.source or self.name


class QualityConfig(_Strict):
    """The quality band and how its values classify into clear / not clear / nodata."""

    band: str
    rules: dict[str, Any] = Field(default_factory=lambda: {"preset": "scl"})
    nodata: int = 0


class AoiConfig(_Strict):
    """An area of interest in EPSG:4326: a bbox ``[minlon, minlat, maxlon, maxlat]`` or a GeoJSON geometry."""

    bbox: tuple[float, float, float, float] | None = None
    geometry: dict[str, Any] | None = None

    @model_validator(mode="after")
    def _one_of(self) -> AoiConfig:
        if (self.bbox is None) == (self.geometry is None):
            raise ValueError("give exactly one of 'bbox' or 'geometry'")
        return self

    def shape(self) -> BaseGeometry:
        """Return the area as a shapely geometry in EPSG:4326."""
        return box(*self.bbox) if self.bbox is not None else shape(self.geometry)


class CubeConfig(_Strict):
    """A data cube: its source collection, bands, quality rules, grid, tiles, periods and composites."""

    name: str
    title: str = ""
    description: str = ""
    collection: str
    providers: list[str] = Field(default_factory=list)  # empty: the registry's providers of the collection
    grid: GridConfig
    tiles: list[str] | None = None
    aoi: AoiConfig | None = None
    start_date: date
    end_date: date
    temporal: TemporalSchema = Field(default_factory=TemporalSchema)
    bands: list[BandConfig] = Field(min_length=1)
    quality: QualityConfig
    indexes: dict[str, str] = Field(default_factory=dict)
    composites: list[str] = Field(default_factory=lambda: ["LCF"])
    dtype: str = "int16"
    nodata: float = -9999
    source_resolution: float | None = None  # which product resolution to read; default: the grid's
    max_cloud_cover: float | None = None

    model_config = ConfigDict(extra="forbid", frozen=True, arbitrary_types_allowed=True)

    @field_validator("name")
    @classmethod
    def _check_name(cls, value: str) -> str:
        if not _CUBE_NAME.match(value):
            raise ValueError(f"{value!r} must be lower-case letters, digits and '_' (it becomes a Dagster asset key prefix)")
        return value

    @field_validator("temporal", mode="before")
    @classmethod
    def _temporal(cls, value: Any) -> Any:
        if isinstance(value, dict):
            return TemporalSchema(**value)
        if isinstance(value, str):
            return TemporalSchema(step=value)
        return value

    @field_validator("composites")
    @classmethod
    def _check_composites(cls, value: list[str]) -> list[str]:
        unknown = sorted(set(value) - set(COMPOSITE_FUNCTIONS))
        if unknown:
            raise ValueError(f"unknown composite functions {unknown}; expected some of {list(COMPOSITE_FUNCTIONS)}")
        return value

    @field_validator("dtype")
    @classmethod
    def _check_dtype(cls, value: str) -> str:
        if value not in _DTYPES:
            raise ValueError(f"dtype {value!r} not one of {list(_DTYPES)}")
        return value

    @model_validator(mode="after")
    def _check(self) -> CubeConfig:
        if self.end_date < self.start_date:
            raise ValueError(f"end_date {self.end_date} precedes start_date {self.start_date}")
        if (self.tiles is None) == (self.aoi is None):
            raise ValueError("give exactly one of 'tiles' or 'aoi'")
        names = [b.name for b in self.bands]
        if len(set(names)) != len(names):
            raise ValueError(f"band names repeat: {names}")
        if self.quality.band in names:
            raise ValueError(f"quality band {self.quality.band!r} is also listed as a spectral band")
        return self

    @cached_property
    def grid_definition(self) -> Grid:
        """The cube's grid."""
        return self.grid.build()

    @cached_property
    def tile_list(self) -> list[Tile]:
        """The cube's tiles: those listed, or every grid tile intersecting the AOI."""
        grid = self.grid_definition
        if self.tiles is not None:
            return [grid.tile_by_name(name) for name in self.tiles]
        return grid.tiles_intersecting(self.aoi.shape(), "EPSG:4326")  # type: ignore[union-attr]

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
    description: str = ""
    options: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _check_stac_options(self) -> ProviderConfig:
        if self.driver == "stac":
            from cube_assets.errors import ProviderError
            from cube_assets.providers.stac import parse_stac_options

            try:
                parse_stac_options(self.options, f"provider {self.name}")
            except ProviderError as exc:
                raise ValueError(str(exc)) from None
        return self


class ProjectConfig(_Strict):
    """The whole cube file: providers and cubes."""

    providers: list[ProviderConfig] = Field(default_factory=list)
    cubes: list[CubeConfig] = Field(min_length=1)

    @model_validator(mode="after")
    def _check(self) -> ProjectConfig:
        known = {p.name for p in self.providers}
        cube_names = [c.name for c in self.cubes]
        if len(set(cube_names)) != len(cube_names):
            raise ValueError(f"cube names repeat: {cube_names}")
        for cube in self.cubes:
            unknown = [p for p in cube.providers if p not in known]
            if unknown:
                raise ValueError(f"cube {cube.name!r} names unknown providers {unknown}; declared: {sorted(known)}")
        return self

    def cube(self, name: str) -> CubeConfig:
        """Return the cube called ``name``.

        Raises:
            InvalidCubeConfig: when there is none.
        """
        for cube in self.cubes:
            if cube.name == name:
                return cube
        raise InvalidCubeConfig(f"no cube called {name!r}; cubes: {[c.name for c in self.cubes]}")

    def provider(self, name: str) -> ProviderConfig:
        """Return the provider called ``name``.

        Raises:
            InvalidCubeConfig: when there is none.
        """
        for provider in self.providers:
            if provider.name == name:
                return provider
        raise InvalidCubeConfig(f"no provider called {name!r}")


DEMO_CONFIG = Path(__file__).parent / "cubes" / "demo.yaml"


def load_project_config(path: str | Path = DEMO_CONFIG) -> ProjectConfig:
    """Parse and validate a cube YAML file.

    Returns:
        The validated ``ProjectConfig``; grids, tiles and periods are built eagerly so that
        a bad grid or tile name fails here, not in the middle of a run.

    Raises:
        InvalidCubeConfig: naming the file and the first problem found.
    """
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise InvalidCubeConfig(f"{path}: cannot read cube file: {exc}") from exc
    try:
        config = ProjectConfig.model_validate(raw)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise InvalidCubeConfig(f"{path}: {where}: {first['msg']}") from exc
    except InvalidCubeConfig as exc:
        raise InvalidCubeConfig(f"{path}: {exc}") from exc
    for cube in config.cubes:
        try:
            if not cube.tile_list:
                raise InvalidCubeConfig(f"cube {cube.name!r} has no tiles (the AOI intersects none)")
            _ = cube.periods
        except InvalidCubeConfig as exc:
            raise InvalidCubeConfig(f"{path}: {exc}") from exc
    return config
