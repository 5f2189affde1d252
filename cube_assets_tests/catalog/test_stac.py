"""STAC: products as Collections and images as Items (eo, raster, projection), validated offline.

Validation is offline: pystac validates the core STAC 1.1.0 schema with the JSON schemas it
ships, and :func:`validate_stac` checks the extension fields against schemas written in
``cube_assets/catalog/stac.py`` from the extensions' specifications (pystac ships no extension
schemas and would fetch them from the internet, which the tests must not use). odc-stac is not
installed here; the test that reads pixels through the exported items uses what odc-stac uses
(``proj:code``, ``proj:transform``, ``proj:shape`` and the asset href) with rasterio
(``cube_assets_tests/client/test_stac_export.py``).
"""

from __future__ import annotations

import copy
import datetime as dt
import json
from types import SimpleNamespace
from typing import Any

import pystac
import pytest
import shapely.geometry

from cube_assets.catalog.stac import (
    DATACUBE_SCHEMA,
    EO_SCHEMA,
    PROJECTION_SCHEMA,
    RASTER_SCHEMA,
    StacValidationError,
    band_scale_offset,
    image_item_dict,
    image_to_item,
    product_to_collection,
    validate_stac,
)
from cube_assets.client import Catalog, Image, Product
from cube_assets_tests.client.objects_fixtures import LCF, catalog, filled  # noqa: F401 - fixtures

UTC = dt.UTC
BDC_ALBERS = (
    "+proj=aea +lat_0=-12 +lon_0=-54 +lat_1=-2 +lat_2=-22 +x_0=5000000 +y_0=10000000 +ellps=GRS80 +units=m +no_defs"
)


def _item(filled: Catalog, image_id: str) -> dict[str, Any]:
    image = Image.get(image_id, catalog=filled)
    assert image is not None
    bands = {band.name: band for band in Product.get(image.product_id, catalog=filled).bands()}  # type: ignore[union-attr]  # the product was saved by the fixture
    return image_to_item(image, bands, collection_href="../collection.json").to_dict(
        include_self_link=False, transform_hrefs=False
    )


def test_a_composite_becomes_an_item_with_eo_raster_and_projection(filled: Catalog) -> None:
    item = _item(filled, "lcf_B_202303")

    assert set(item["stac_extensions"]) >= {EO_SCHEMA, RASTER_SCHEMA, PROJECTION_SCHEMA}
    properties = item["properties"]
    assert properties["start_datetime"] == "2023-03-01T00:00:00Z"
    assert properties["end_datetime"] == "2023-03-16T23:00:00Z"
    assert properties["eo:cloud_cover"] == pytest.approx(15.0)
    assert properties["proj:code"] == "EPSG:4326"
    assert properties["proj:transform"] == [0.01, 0.0, -45.0, 0.0, -0.01, -9.0]  # affine order, from GDAL's
    assert properties["proj:shape"] == [100, 100]
    assert properties["proj:bbox"] == pytest.approx([-45.0, -10.0, -44.0, -9.0])
    assert properties["cube_assets:tile"] == "B" and properties["cube_assets:period_start"] == "2023-03-01"
    assert item["collection"] == LCF and item["bbox"] == [-45.0, -10.0, -44.0, -9.0]
    assert {"rel": "collection", "href": "../collection.json", "type": "application/json"} in item["links"]
    red = item["assets"]["B04"]
    assert red["href"] == "/data/lcf/B/1_B04.tif" and red["file:size"] == 5000
    assert red["type"] == "image/tiff; application=geotiff; profile=cloud-optimized"
    assert red["eo:bands"] == [
        {"name": "B04", "common_name": "red", "description": "red", "center_wavelength": 0.665,
         "full_width_half_max": pytest.approx(0.03)}
    ]  # fmt: skip
    assert red["raster:bands"] == [{"nodata": -9999.0, "data_type": "int16", "spatial_resolution": 10.0}]
    assert "eo:bands" not in item["assets"]["SCL"]
    assert item["assets"]["SCL"]["raster:bands"] == [{"nodata": 0.0, "data_type": "uint8", "spatial_resolution": 10.0}]


def test_an_instant_image_has_a_datetime_and_no_span(filled: Catalog) -> None:
    item = _item(filled, "S2B_20240208")

    assert item["properties"]["datetime"] == "2024-02-08T13:10:00Z"
    assert "start_datetime" not in item["properties"] and "eo:cloud_cover" not in item["properties"]
    assert "raster:bands" not in item["assets"]["B04"]  # the source product has no band rows


@pytest.mark.parametrize("image_id", ["lcf_A_202301", "merge_C_202312", "S2A_20240203", "S2B_20240208"])
def test_items_are_valid_stac(filled: Catalog, image_id: str) -> None:
    item = _item(filled, image_id)

    validate_stac(item)
    pystac.Item.from_dict(item).validate(validator=_core_only())  # pystac's own validator, core schema


@pytest.mark.parametrize("image_id", ["lcf_A_202301", "merge_C_202312", "S2A_20240203"])
def test_an_item_dict_is_what_pystac_reads_and_writes_back(filled: Catalog, image_id: str) -> None:
    image = Image.get(image_id, catalog=filled)
    assert image is not None
    bands = {band.name: band for band in Product.get(image.product_id, catalog=filled).bands()}  # type: ignore[union-attr]  # the product was saved by the fixture

    item = image_item_dict(image, bands)

    assert pystac.Item.from_dict(copy.deepcopy(item)).to_dict(include_self_link=False, transform_hrefs=False) == item
    assert item["id"] == image_id and item["links"] == []
    assert set(item["assets"]) == set(image.files)
    validate_stac(item)


def test_an_item_dict_takes_the_stac_version_it_is_given_and_plain_media_types(filled: Catalog) -> None:
    image = Image.get("lcf_A_202301", catalog=filled)
    assert image is not None
    bands = {band.name: band for band in Product.get(image.product_id, catalog=filled).bands()}  # type: ignore[union-attr]  # the product was saved by the fixture

    default = image_item_dict(image, bands)
    older = image_item_dict(image, bands, stac_version="1.0.0")

    assert default["stac_version"] == pystac.get_stac_version() != "1.0.0"
    assert older["stac_version"] == "1.0.0"
    assert {key: value for key, value in older.items() if key != "stac_version"} == {
        key: value for key, value in default.items() if key != "stac_version"
    }
    types = [asset["type"] for asset in default["assets"].values() if "type" in asset]
    assert types and all(type(media) is str for media in types)
    assert str(pystac.MediaType.COG) in types


def _core_only() -> Any:
    from pystac.validation.stac_validator import JsonSchemaSTACValidator

    class CoreOnly(JsonSchemaSTACValidator):
        """pystac's validator without the extension schemas, which it would download."""

        def validate_extension(self, *args: Any, **kwargs: Any) -> None:
            return None

    return CoreOnly()


def test_a_crs_without_an_authority_code_is_given_as_wkt2(catalog: Catalog) -> None:
    catalog.products(id="bdc", name="BDC").save()
    image = catalog.images(id="albers", product_id="bdc", acquired="2024-01-01", crs=BDC_ALBERS,
                           geometry=shapely.geometry.box(-48, -16, -47, -15)).save()  # fmt: skip

    item = image_to_item(image).to_dict(include_self_link=False)

    assert item["properties"]["proj:code"] is None
    assert "Albers" in item["properties"]["proj:wkt2"] or "ALBERS" in item["properties"]["proj:wkt2"].upper()
    validate_stac(item)


def test_a_product_becomes_a_collection_with_item_assets(filled: Catalog) -> None:
    product = Product.get(LCF, catalog=filled)
    assert product is not None

    collection = product_to_collection(product, product.bands(), crs_codes=["EPSG:4326"]).to_dict(
        include_self_link=False
    )

    validate_stac(collection)
    assert collection["license"] == "CC-BY-4.0" and collection["keywords"] == ["cube", "LCF"]
    assert collection["extent"]["temporal"]["interval"] == [["2023-01-01T00:00:00Z", "2023-12-31T23:59:59Z"]]
    assert collection["summaries"] == {"proj:code": ["EPSG:4326"]}
    assets = collection["item_assets"]
    assert list(assets) == ["B04", "B08", "SCL", "CLEAROB", "ALPHA", "quicklook"]
    assert assets["quicklook"]["roles"] == ["thumbnail", "overview"]
    assert assets["B08"]["eo:bands"] == [{"name": "B08", "common_name": "nir", "description": "nir",
                                          "center_wavelength": pytest.approx(0.8425),
                                          "full_width_half_max": pytest.approx(0.115)}]  # fmt: skip
    assert assets["CLEAROB"]["raster:bands"] == [
        {"data_type": "uint8", "spatial_resolution": 10.0, "unit": "observations"}
    ]
    assert assets["ALPHA"]["roles"] == ["data", "data-mask"]
    assert set(collection["stac_extensions"]) == {EO_SCHEMA, RASTER_SCHEMA, PROJECTION_SCHEMA, DATACUBE_SCHEMA}
    dimensions = collection["cube:dimensions"]
    assert dimensions["bands"]["values"] == ["B04", "B08", "SCL", "CLEAROB", "ALPHA"]
    assert dimensions["t"]["extent"] == ["2023-01-01T00:00:00Z", "2023-12-31T23:59:59Z"]
    assert collection["cube_assets:composite_function"] == "LCF"


def test_a_band_with_data_and_physical_ranges_gets_scale_and_offset() -> None:
    band = SimpleNamespace(data_range=(0, 10000), physical_range=(0.0, 1.0))

    assert band_scale_offset(band) == (pytest.approx(0.0001), 0.0)  # type: ignore[arg-type]  # a duck-typed band
    assert band_scale_offset(SimpleNamespace(data_range=(0, 10000))) == (None, None)  # type: ignore[arg-type]  # no physical range


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda d: d["properties"].update({"eo:cloud_cover": 150}), "eo:cloud_cover: 150 is greater than the maximum"),
        (lambda d: d["assets"]["B04"]["raster:bands"][0].update({"data_type": "int12"}), "raster:bands/0/data_type"),
        (lambda d: d["properties"].update({"proj:shape": [1, 2, 3]}), "proj:shape"),
        (lambda d: d["properties"].update({"proj:transform": "identity"}), "proj:transform"),
        (lambda d: d["assets"]["B04"]["eo:bands"][0].update({"common_name": "ultraviolet"}), "common_name"),
        (lambda d: d["properties"].update({"eo:sun_angle": 3}), "'eo:sun_angle' does not match"),
        (lambda d: d["stac_extensions"].remove(RASTER_SCHEMA), "stac_extensions lacks .*raster"),
        (lambda d: d.pop("geometry"), "not valid STAC 1.1.0"),
        (lambda d: d["properties"].update({"datetime": "yesterday"}), "not valid STAC 1.1.0"),
        (lambda d: d.update({"stac_version": "0.9.0"}), "stac_version must be 1.1.0"),
    ],
)
def test_validation_catches_bad_core_and_extension_fields(filled: Catalog, change: Any, message: str) -> None:
    item = copy.deepcopy(_item(filled, "lcf_A_202301"))
    change(item)

    with pytest.raises(StacValidationError, match=message):
        validate_stac(item)


_STORED_FOOTPRINTS = [
    {"type": "Polygon", "coordinates": [[[-48, -16], [-47, -16], [-47, -15], [-48, -15], [-48, -16]]]},
    {
        "type": "MultiPolygon",
        "coordinates": [
            [
                [[-48.5, -16.25], [-47.125, -16.25], [-47.125, -15.0625], [-48.5, -15.0625], [-48.5, -16.25]],
                [[-48, -16], [-47.5, -16], [-47.5, -15.5], [-48, -16]],
            ],
            [[[10.1, 1.3], [11.7, 1.3], [11.7, 2.9], [10.1, 1.3]]],
        ],
    },
    {"type": "Polygon", "coordinates": [[[1, 2, 30], [3, 2, 31], [3, 4, 32.5], [1, 2, 30]]]},
]


#: What ``image_item_dict`` reads of an image besides its footprint.
_ITEM_FIELDS = (
    "id", "product_id", "name", "acquired", "acquired_end", "created", "modified", "crs", "geotransform", "width",
    "height", "cloud_fraction", "fill_fraction", "provider", "provider_id", "tile", "period_start", "properties",
    "tags", "files",
)  # fmt: skip


@pytest.mark.parametrize("stored", _STORED_FOOTPRINTS, ids=["integers", "multi-with-hole", "3d"])
def test_an_item_from_a_stored_footprint_is_the_item_from_its_shape(filled: Catalog, stored: dict[str, Any]) -> None:
    # A search's views give the footprint as the catalog stores it; the Item must not depend on which.
    image = Image.get("lcf_A_202301", catalog=filled)
    assert image is not None
    shape = shapely.geometry.shape(stored)
    fields = {name: getattr(image, name) for name in _ITEM_FIELDS}
    from_shape = SimpleNamespace(**fields, geometry=shape)
    from_stored = SimpleNamespace(**fields, geometry=None, footprint_geojson=lambda: copy.deepcopy(stored))

    expected = image_item_dict(from_shape)  # type: ignore[arg-type]  # duck-typed images
    item = image_item_dict(from_stored)  # type: ignore[arg-type]

    assert json.dumps(item) == json.dumps(expected)
    assert item["bbox"] == list(shape.bounds) and all(isinstance(value, float) for value in item["bbox"])
