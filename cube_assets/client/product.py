"""A product of the catalog: a data cube's composites or merges, or a source collection, with its bands and images."""

from __future__ import annotations

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from cube_assets.catalog import models
from cube_assets.catalog.expressions import properties as p
from cube_assets.catalog.models import MAX_PROPERTIES, MAX_TAGS
from cube_assets.catalog.repository import ProductRecord, upsert_product
from cube_assets.client import coercers
from cube_assets.client.attributes import Attribute
from cube_assets.client.bands import Band
from cube_assets.client.base import CatalogObject
from cube_assets.client.connection import bind_to_catalogs
from cube_assets.client.image import Image
from cube_assets.client.search import ListedSearch, ObjectSearch
from cube_assets.errors import CatalogError


class Product(CatalogObject):
    """A product: a data cube's composites or merges, or a source collection; it has bands and images."""

    _model = models.Product
    _what = "product"

    id = Attribute(
        coercers.identifier, kind="string", immutable=True, nullable=False, doc="Unique id, e.g. ``s2_16d-LCF``."
    )
    name = Attribute(coercers.identifier, kind="string", doc="Display name.")
    description = Attribute(coercers.text, kind="string", default=str, nullable=False, doc="Free text.")
    start_datetime = Attribute(
        coercers.aware_datetime, kind="datetime", doc="Start of the time the product covers (aware)."
    )
    end_datetime = Attribute(
        coercers.aware_datetime, kind="datetime", doc="End of the time the product covers (aware)."
    )
    tags = Attribute(
        coercers.tags, kind="tags", default=list, nullable=False, doc=f"At most {MAX_TAGS} distinct strings."
    )
    properties = Attribute(
        coercers.properties,
        kind="json",
        default=dict,
        nullable=False,
        doc=f"Extra JSON properties (at most {MAX_PROPERTIES}).",
    )
    created = Attribute(
        coercers.aware_datetime, kind="datetime", readonly=True, doc="When the product was first stored (UTC)."
    )
    modified = Attribute(coercers.aware_datetime, kind="datetime", readonly=True, doc="When it was last changed (UTC).")

    def _records(self) -> ProductRecord:
        self._required("id", "name")
        return ProductRecord(
            id=self.id,
            name=self.name,
            description=self.description,
            start_datetime=self.start_datetime,
            end_datetime=self.end_datetime,
            tags=list(self.tags),
            properties=self.properties,
        )

    def _write(self, session: Session, records: ProductRecord) -> None:
        upsert_product(session, records)

    def _check_deletable(self, session: Session) -> None:
        images = session.execute(
            select(func.count()).select_from(models.Image).where(models.Image.product_id == self.id)
        ).scalar_one()
        if images:
            raise CatalogError(f"{self._label()} still has {images} image(s); delete them first")

    def images(self) -> ObjectSearch[Image]:
        """Return a search of this product's images.

        Raises:
            CatalogError: if the product has no id.
        """
        self._required("id")
        return Image.search(catalog=self.catalog).filter(p.product_id == self.id)

    def bands(self) -> ListedSearch[Band]:
        """Return a search of the product's bands, ordered by ``band_index`` (each of its own Band subclass).

        The search can be refined (``.filter(p.type == BandType.CLASS).sort("name")``) and also
        reads as a list (``len``, indexing, iteration).

        Raises:
            CatalogError: if the product has no id.
        """
        self._required("id")
        search = ListedSearch(Band, self.catalog).filter(p.product_id == self.id)
        return search.sort("band_index")  # type: ignore[return-value]  # sort returns type(self), a ListedSearch

    def get_band(self, name: str) -> Band | None:
        """Return the product's band ``name``, or None."""
        self._required("id")
        return Band.get(f"{self.id}:{name}", catalog=self.catalog)


bind_to_catalogs("products", Product)


__all__ = ["Product"]
