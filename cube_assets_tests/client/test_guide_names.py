"""The catalog guide's names on the client objects: aliases, band kinds, Resolution, serialize and update."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import shapely.geometry

from cube_assets.client import (
    Band,
    BandType,
    Catalog,
    DataType,
    DerivedBand,
    Image,
    InvalidAttributeError,
    MicrowaveBand,
    Resolution,
    ResolutionUnit,
    SpectralBand,
)


@pytest.fixture
def catalog(catalog_url: str) -> Iterator[Catalog]:
    """An empty catalog with product ``p``."""
    with Catalog(catalog_url) as opened:
        opened.products(id="p", name="p").save()
        yield opened


def test_image_aliases_read_and_write_this_projects_attributes(catalog: Catalog) -> None:
    image = Image(catalog=catalog, id="p:scene", acquired="2024-01-01", geometry=shapely.geometry.box(0, 0, 1, 1))
    image.update(cs_code="EPSG:4326", geotrans=(0, 1, 0, 1, 0, -1), x_pixels=4, y_pixels=3, extra_properties={"a": 1})
    image.save()

    stored = Image.get("p:scene", catalog=catalog)
    assert stored is not None and (stored.product_id, stored.name) == ("p", "scene")
    assert (stored.crs, stored.geotransform, stored.width, stored.height) == ("EPSG:4326", (0, 1, 0, 1, 0, -1), 4, 3)
    assert stored.properties == {"a": 1} and stored.extra_properties == {"a": 1}
    assert {"cs_code", "geotrans", "x_pixels", "y_pixels", "extra_properties", "crs"} <= set(Image.ATTRIBUTES)


def test_serialize_modified_only_and_update_ignoring_errors(catalog: Catalog) -> None:
    image = Image(catalog=catalog, product_id="p", name="x", acquired="2024-01-01", crs="EPSG:4326")
    image.geometry = shapely.geometry.box(0, 0, 1, 1)
    image.save()

    assert not image.is_modified and image.serialize(modified_only=True) == {}
    image.update(ignore_errors=True, cloud_fraction=0.5, created="2020-01-01", nonsense=1)
    assert image.is_modified and image.serialize(modified_only=True) == {"cloud_fraction": 0.5}
    assert image.serialize(jsonapi_format=True)["data"]["id"] == "p:x"
    with pytest.raises(InvalidAttributeError, match="nonsense"):
        image.update(nonsense=1)


def test_band_kinds_and_units_round_trip(catalog: Catalog) -> None:
    MicrowaveBand(
        catalog=catalog, product_id="p", name="vv", data_type="Float32", resolution=10, band_index=0, frequency=5.405
    ).save()
    DerivedBand(catalog=catalog, product_id="p", name="ndvi", data_type="Float32", resolution=10, band_index=1).save()
    SpectralBand(
        catalog=catalog,
        product_id="p",
        name="b",
        data_type=DataType.BYTE,
        resolution=Resolution(0.0001, ResolutionUnit.DEGREES),
        band_index=2,
        wavelength_nm_fwhm=65,
    ).save()

    bands = {band.name: band for band in Band.search(catalog=catalog)}
    assert (
        type(bands["vv"]) is MicrowaveBand and bands["vv"].frequency == 5.405 and bands["vv"].type == BandType.MICROWAVE
    )
    assert type(bands["ndvi"]) is DerivedBand
    assert bands["b"].data_type == "UInt8"  # GDAL's Byte, under this project's name
    assert bands["b"].resolution == 0.0001 and bands["b"].resolution.unit == ResolutionUnit.DEGREES
    assert bands["b"].wavelength_nm_fwhm == 65 and bands["b"].wavelength_fwhm == 0.065
