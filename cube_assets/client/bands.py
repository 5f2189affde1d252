"""The bands of a product: the abstract :class:`Band` and its kinds.

Spectral, microwave, mask, class, generic and derived bands, with the catalog guide's names
beside this project's (``wavelength_nm_min`` for ``wavelength_min`` in µm, ``physical_range_unit``
for ``unit``).
"""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar

from sqlalchemy import tuple_, update
from sqlalchemy.orm import Session

from cube_assets.catalog import models
from cube_assets.catalog.expressions import properties as p
from cube_assets.catalog.models import BAND_DATA_TYPES
from cube_assets.catalog.repository import BandRecord, upsert_bands
from cube_assets.client import coercers
from cube_assets.client.attributes import Alias, Attribute
from cube_assets.client.base import CatalogObject, InProduct, ObjectT
from cube_assets.client.connection import Catalog, bind_to_catalogs
from cube_assets.client.enums import Resolution, ResolutionUnit
from cube_assets.client.search import ObjectSearch
from cube_assets.errors import CatalogError


class Band(InProduct, CatalogObject):
    """A band of a product; use its subclasses :class:`SpectralBand`, :class:`MicrowaveBand`,
    :class:`MaskBand`, :class:`ClassBand`, :class:`GenericBand` and :class:`DerivedBand`.

    Its id is ``"{product_id}:{name}"``. ``data_range`` is the range of stored values,
    ``display_range`` the range to stretch for display, ``resolution`` a
    :class:`~cube_assets.client.enums.Resolution` (a float, in metres unless its unit says
    degrees), ``band_index`` the band's position in the product (unique per product). The
    constructor takes ``product=`` (a Product) for ``product_id``; ``get`` on a subclass finds
    only bands of its type.
    """

    _model = models.Band
    _what = "band"
    _default_order = (("product_id", True), ("band_index", True))
    band_type: ClassVar[str | None] = None

    product_id = Attribute(coercers.identifier, kind="string", immutable=True, nullable=False, doc="The product's id.")
    name = Attribute(
        coercers.identifier, kind="string", immutable=True, nullable=False, doc="Unique within the product."
    )
    type = Attribute(
        coercers.text, kind="string", readonly=True, doc="spectral, mask, class or generic (from the class)."
    )
    data_type = Attribute(coercers.data_type, kind="string", doc=f"One of {', '.join(BAND_DATA_TYPES)}.")
    data_range = Attribute(coercers.value_range, doc="(min, max) of the stored values.")
    display_range = Attribute(coercers.value_range, doc="(min, max) to stretch for display.")
    nodata = Attribute(coercers.number(), kind="number", doc="The value marking missing pixels.")
    resolution = Attribute(coercers.resolution, kind="number", doc="Pixel size (a Resolution; a number is metres).")
    band_index = Attribute(coercers.integer(0), kind="number", doc="Position of the band in the product (0-based).")
    description = Attribute(coercers.text, kind="string", default=str, nullable=False, doc="Free text.")

    def __init__(self, *, catalog: Catalog | None = None, **attributes: Any) -> None:
        if type(self) is Band:
            raise CatalogError(
                "Band is abstract: create a SpectralBand, MicrowaveBand, MaskBand, ClassBand, GenericBand"
                " or DerivedBand"
            )
        self._take_product(attributes)
        if "id" in attributes:
            band_id = attributes.pop("id")
            attributes.update(self._id_attributes(band_id))
        super().__init__(catalog=catalog, **attributes)
        self._values["type"] = self.band_type

    @property
    def id(self) -> str | None:
        """``"{product_id}:{name}"``, or None until both are set."""
        if self._values.get("product_id") is None or self._values.get("name") is None:
            return None
        return f"{self._values['product_id']}:{self._values['name']}"

    def _label(self) -> str:
        return f"band {self.id!r}" if self.id is not None else "new band"

    @classmethod
    def _key(cls, id: str) -> tuple[Any, ...]:
        if not isinstance(id, str) or ":" not in id:
            raise CatalogError(f"band id must be 'product_id:band_name', got {id!r}")
        product_id, name = id.rsplit(":", 1)
        if not product_id or not name:
            raise CatalogError(f"band id must be 'product_id:band_name', got {id!r}")
        return (product_id, name)

    @classmethod
    def _id_attributes(cls, id: str) -> dict[str, Any]:
        product_id, name = cls._key(id)
        return {"product_id": product_id, "name": name}

    def _identity(self) -> tuple[Any, ...]:
        return (self._values["product_id"], self._values["name"])

    @classmethod
    def _keys_clause(cls, keys: list[tuple[Any, ...]]) -> Any:
        clause = tuple_(models.Band.product_id, models.Band.name).in_(keys)
        band_type = getattr(cls, "band_type", None)
        return clause if band_type is None else clause & (models.Band.type == band_type)

    @classmethod
    def _class_for(cls, row: Any) -> type[Any]:
        target = _BAND_CLASSES.get(row.type)
        if target is None:
            raise CatalogError(f"band {row.product_id}:{row.name} has unknown type {row.type!r}")
        if cls is not Band and target is not cls:
            raise CatalogError(f"band {row.product_id}:{row.name} is a {target.__name__}, not a {cls.__name__}")
        return target

    @classmethod
    def _tiebreak(cls) -> list[Any]:
        return [models.Band.product_id, models.Band.name]

    _converted_columns = frozenset({"data_range", "display_range", "physical_range", "resolution"})

    @classmethod
    def _read_column(cls, row: Any, attribute: Attribute) -> Any:
        value = super()._read_column(row, attribute)
        if attribute.name in ("data_range", "display_range", "physical_range") and value is not None:
            return tuple(value)
        if attribute.name == "resolution" and value is not None:
            return Resolution(value, row.resolution_unit or ResolutionUnit.METERS)
        return value

    @classmethod
    def search(cls: type[ObjectT], catalog: Catalog | None = None) -> ObjectSearch[ObjectT]:
        """Return a search over bands; on a subclass, only bands of that type."""
        search = ObjectSearch(cls, cls._resolve_catalog(catalog))
        band_type = getattr(cls, "band_type", None)
        return search.filter(p.type == band_type) if band_type is not None else search

    def _records(self) -> BandRecord:
        self._required("product_id", "name", "data_type", "resolution", "band_index")
        if ":" in self.name:
            raise CatalogError(f"{self._label()}: band names cannot contain ':' (it separates the band id)")
        fields = {
            name: self._values.get(name)
            for name in (
                "name",
                "data_type",
                "band_index",
                "data_range",
                "display_range",
                "nodata",
                "description",
                *self._extra_columns,
            )
        }
        resolution = self.resolution
        fields["resolution"] = float(resolution)
        unit = getattr(resolution, "unit", ResolutionUnit.METERS)
        fields["resolution_unit"] = None if unit == ResolutionUnit.METERS else str(unit)
        return BandRecord(type=self.band_type, **fields)  # type: ignore[arg-type]  # BandRecord checks the fields itself and names them

    _extra_columns: ClassVar[tuple[str, ...]] = ()

    def _write(self, session: Session, records: BandRecord) -> None:
        upsert_bands(session, self.product_id, [records])


def _nanometres(micrometres: float) -> float:
    return round(micrometres * 1000.0, 9)


def _micrometres(nanometres: float) -> float:
    if isinstance(nanometres, bool) or not isinstance(nanometres, int | float):
        raise CatalogError(f"a wavelength in nanometres must be a number, got {nanometres!r}")
    return nanometres / 1000.0


class SpectralBand(Band):
    """A band of reflectance or radiance, with its wavelengths in micrometres (``*_nm_*``: in nanometres)."""

    band_type = "spectral"
    _extra_columns = ("wavelength_min", "wavelength_max", "wavelength_center", "wavelength_fwhm")
    wavelength_min = Attribute(coercers.number(positive=True), kind="number", doc="Lower wavelength (µm).")
    wavelength_max = Attribute(coercers.number(positive=True), kind="number", doc="Upper wavelength (µm).")
    wavelength_center = Attribute(coercers.number(positive=True), kind="number", doc="Center wavelength (µm).")
    wavelength_fwhm = Attribute(coercers.number(positive=True), kind="number", doc="Full width at half maximum (µm).")
    wavelength_nm_min = Alias("wavelength_min", read=_nanometres, write=_micrometres, doc="Lower wavelength (nm).")
    wavelength_nm_max = Alias("wavelength_max", read=_nanometres, write=_micrometres, doc="Upper wavelength (nm).")
    wavelength_nm_center = Alias(
        "wavelength_center", read=_nanometres, write=_micrometres, doc="Center wavelength (nm)."
    )
    wavelength_nm_fwhm = Alias(
        "wavelength_fwhm", read=_nanometres, write=_micrometres, doc="Full width at half maximum (nm)."
    )


class MicrowaveBand(Band):
    """A band of the microwave spectrum (SAR, passive radar): centre ``frequency`` and ``bandwidth`` in GHz."""

    band_type = "microwave"
    _extra_columns = ("frequency", "bandwidth")
    frequency = Attribute(coercers.number(positive=True), kind="number", doc="Centre frequency (GHz).")
    bandwidth = Attribute(coercers.number(positive=True), kind="number", doc="Bandwidth (GHz).")


class MaskBand(Band):
    """A mask band; ``is_alpha`` marks the band that is the image's alpha (transparency) channel."""

    band_type = "mask"
    is_alpha = Attribute(coercers.boolean, default=lambda: False, nullable=False, doc="Whether it is an alpha band.")

    def _records(self) -> BandRecord:
        # A mask is binary: its data and display ranges are [0, 1] unless given.
        record = super()._records()
        return dataclasses.replace(
            record, data_range=record.data_range or (0.0, 1.0), display_range=record.display_range or (0.0, 1.0)
        )

    def _write(self, session: Session, records: BandRecord) -> None:
        upsert_bands(session, self.product_id, [records])
        session.execute(
            update(models.Band)
            .where(models.Band.product_id == self.product_id, models.Band.name == self.name)
            .where(models.Band.is_alpha.is_distinct_from(self.is_alpha))
            .values(is_alpha=self.is_alpha)
        )


class ClassBand(Band):
    """A classification band: ``class_labels`` maps pixel values to names, ``colormap`` to colours."""

    band_type = "class"
    _extra_columns = ("class_labels", "colormap", "colormap_name")
    class_labels = Attribute(coercers.class_labels, doc="Pixel value → label.")
    colormap = Attribute(coercers.colormap, doc="Pixel value → [r, g, b, a].")
    colormap_name = Attribute(coercers.identifier, kind="string", doc="Name of a standard colormap.")


class GenericBand(Band):
    """Any other band: a count, an index, a date; ``physical_range`` and ``unit`` say what values mean."""

    band_type = "generic"
    _extra_columns = ("physical_range", "unit", "colormap", "colormap_name")
    physical_range = Attribute(coercers.value_range, doc="(min, max) in physical units that data_range maps to.")
    unit = Attribute(coercers.identifier, kind="string", doc="Unit of the physical values.")
    physical_range_unit = Alias("unit", doc="The catalog guide's name of ``unit``.")
    colormap = Attribute(coercers.colormap, doc="Pixel value → [r, g, b, a].")
    colormap_name = Attribute(coercers.identifier, kind="string", doc="Name of a standard colormap.")


class DerivedBand(Band):
    """A band computed from others when the product was made (an index, a ratio); it has no attributes of its own."""

    band_type = "derived"


_BAND_CLASSES: dict[str, type[Band]] = {
    cls.band_type: cls
    for cls in (SpectralBand, MicrowaveBand, MaskBand, ClassBand, GenericBand, DerivedBand)
    if cls.band_type
}


bind_to_catalogs("bands", Band)


__all__ = ["Band", "ClassBand", "DerivedBand", "GenericBand", "MaskBand", "MicrowaveBand", "SpectralBand"]
