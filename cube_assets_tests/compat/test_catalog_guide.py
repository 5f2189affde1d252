"""The catalog guide's examples, each run as written with only its import lines changed.

``from descarteslabs.catalog import X`` becomes ``from cube_assets.client import X``. Each test
names the guide's cell (``In [n]``) and asserts what the cell's output implies for the data of
``conftest.py``. Where this catalog cannot answer as the guide's servers did (object ids are not
prefixed with an organization; every image here was created after 2019), the assertion says so.
"""

from __future__ import annotations

import datetime as dt
import random

import numpy as np
import pytest

from cube_assets.client import Catalog, Image, Product
from cube_assets.client import properties as p
from cube_assets_tests.compat.conftest import CLASSES, GEOMETRY, MONTHLY, PRODUCTS, RT, SCENES, SPECTRAL, T1

UTC = dt.UTC


def _starts_before(day: str) -> set[str]:
    return {pid for pid, (start, _) in PRODUCTS.items() if start < day}


def test_in_1_counts_products_with_data_before_2016(guide_catalog: Catalog) -> None:
    search = Product.search().filter(p.start_datetime < "2016-01-01")

    assert search.count() == len(_starts_before("2016-01-01")) == 8


def test_in_2_adds_a_second_filter(guide_catalog: Catalog) -> None:
    search = Product.search().filter(p.start_datetime < "2016-01-01")
    search = search.filter(p.end_datetime > "2000-01-01")

    expected = {pid for pid in _starts_before("2016-01-01") if PRODUCTS[pid][1] and PRODUCTS[pid][1] > "2000-01-01"}
    assert search.count() == len(expected) == 6


def test_in_3_sorts_and_limits_the_oldest_three(guide_catalog: Catalog) -> None:
    search = Product.search().filter(p.start_datetime < "2016-01-01").filter(p.end_datetime > "2000-01-01")
    oldest_search = search.sort("start_datetime").limit(3)
    printed = []
    for result in oldest_search:
        printed.append(result.id)

    assert printed == [
        "e7e4fc5b0afd45d32c623697cb5a4437d3f09ade:daily-weather:cfsr-v1",
        "fcd57a7bf668c5b65d49c5e32130a2c0a5281322:daily-weather:cfsr-v1:dev-v0",
        "daily-weather:gsod-interpolated:v0",
    ]


def test_in_4_gets_a_product_by_id(guide_catalog: Catalog) -> None:
    landsat8_collection1 = Product.get("landsat:LC08:01:RT:TOAR")

    assert landsat8_collection1 is not None
    assert landsat8_collection1.id == RT and landsat8_collection1.name == "Landsat 8 Collection 1 Real-Time"


def test_in_5_lists_the_first_four_bands(guide_catalog: Catalog) -> None:
    landsat8_collection1 = Product.get("landsat:LC08:01:RT:TOAR")
    bands = list(landsat8_collection1.bands().limit(4))  # type: ignore[union-attr]  # the fixture saved it

    assert [(type(b).__name__, b.name, b.id, b.product_id) for b in bands] == [
        ("SpectralBand", name, f"{RT}:{name}", RT) for name in SPECTRAL[:4]
    ]


def test_in_6_filters_class_bands_and_sorts_them_by_name(guide_catalog: Catalog) -> None:
    from cube_assets.client import BandType

    landsat8_collection1 = Product.get("landsat:LC08:01:RT:TOAR")
    bands = list(landsat8_collection1.bands().filter(p.type == BandType.CLASS).sort("name"))  # type: ignore[union-attr]  # the fixture saved it

    assert [(type(b).__name__, b.name) for b in bands] == [("ClassBand", name) for name in sorted(CLASSES)]


def _images_in_2017() -> object:
    geometry = GEOMETRY
    search = Product.get("landsat:LC08:01:RT:TOAR").images()  # type: ignore[union-attr]  # the fixture saved it
    search = search.intersects(geometry)
    return search.filter((p.acquired > "2017-01-01") & (p.acquired < "2018-01-01"))


def test_in_7_finds_images_by_product_geometry_and_dates(guide_catalog: Catalog) -> None:
    from cube_assets.client import Image  # noqa: F401 - the cell's own import
    from cube_assets.client import properties as p

    geometry = GEOMETRY
    search = Product.get("landsat:LC08:01:RT:TOAR").images()  # type: ignore[union-attr]  # the fixture saved it
    search = search.intersects(geometry)
    search = search.filter((p.acquired > "2017-01-01") & (p.acquired < "2018-01-01"))

    assert search.count() == 3
    assert sorted(image.name for image in search) == [name for name in SCENES if "2017" in name]


def test_in_8_excludes_cloudy_images(guide_catalog: Catalog) -> None:
    search = _images_in_2017()
    search = search.filter(p.cloud_fraction < 0.2)  # type: ignore[attr-defined]  # a search

    assert search.count() == 2


def test_in_9_accepts_a_naive_datetime_as_utc(guide_catalog: Catalog) -> None:
    from datetime import datetime

    search = _images_in_2017().filter(p.cloud_fraction < 0.2)  # type: ignore[attr-defined]  # a search
    search = search.filter(p.created < datetime(2019, 1, 1))

    assert search.count() == 0  # every image here was created by this test, after 2019
    assert _images_in_2017().filter(p.created > datetime(2019, 1, 1)).count() == 3  # type: ignore[attr-defined]  # a search


def test_in_10_summarizes_a_products_images(guide_catalog: Catalog) -> None:
    from cube_assets.client import Image
    from cube_assets.client import properties as p

    search = Image.search().filter(p.product_id == "landsat:LC08:01:T1:TOAR")
    summary = search.summary()

    sizes = [size for month in MONTHLY.values() for size in month]
    assert summary.count == len(sizes) == 8
    assert summary.bytes == sum(sizes)
    assert summary.products == [T1]


def test_in_11_summarizes_by_month(guide_catalog: Catalog) -> None:
    search = Image.search().filter(p.product_id == "landsat:LC08:01:T1:TOAR")
    summaries = search.summary_interval(interval="month", start_datetime="2017-01-01", end_datetime="2017-06-01")

    assert [(s.interval_start, s.count, s.bytes) for s in summaries] == [
        (dt.datetime(2017, month, 1, tzinfo=UTC), len(sizes), sum(sizes)) for month, sizes in MONTHLY.items()
    ]


def _new_product() -> Product:
    product_id = "guide-example-product_" + str(random.randint(1000, 9999))
    product = Product(id=product_id)
    product.name = "Example product"
    product.save()
    return product


def test_in_12_creates_a_product(guide_catalog: Catalog) -> None:
    from cube_assets.client import Product

    product_id = "guide-example-product_" + str(random.randint(1000, 9999))
    product = Product(id=product_id)
    product.name = "Example product"
    product.save()

    assert product.id == product_id  # no organization prefix here: there are no organizations
    assert Product.exists(product_id)


def test_in_13_has_a_created_timestamp_in_utc(guide_catalog: Catalog) -> None:
    product = _new_product()

    assert isinstance(product.created, dt.datetime) and product.created.utcoffset() == dt.timedelta(0)


def test_in_14_parses_assigned_timestamps(guide_catalog: Catalog) -> None:
    product = _new_product()
    product.start_datetime = "2012-01-01"
    product.end_datetime = "2015-01-01"
    product.save()

    assert product.start_datetime == dt.datetime(2012, 1, 1, 0, 0, tzinfo=UTC)
    assert Product.get(product.id).end_datetime == dt.datetime(2015, 1, 1, tzinfo=UTC)  # type: ignore[union-attr]  # saved just before


def test_in_15_moves_modified_on_save(guide_catalog: Catalog) -> None:
    product = _new_product()
    created = product.created
    product.start_datetime = "2012-01-01"
    product.save()

    assert product.modified >= created and product.modified.utcoffset() == dt.timedelta(0)


def _blue(product: Product) -> object:
    from cube_assets.client import DataType, Resolution, ResolutionUnit, SpectralBand

    band = SpectralBand(name="blue", product=product)
    band.data_type = DataType.UINT16
    band.data_range = (0, 10000)
    band.display_range = (0, 4000)
    band.resolution = Resolution(unit=ResolutionUnit.METERS, value=60)
    band.band_index = 0
    band.save()
    return band


def test_in_16_creates_a_spectral_band(guide_catalog: Catalog) -> None:
    from cube_assets.client import DataType, Resolution, ResolutionUnit, SpectralBand

    product = _new_product()
    band = SpectralBand(name="blue", product=product)
    band.data_type = DataType.UINT16
    band.data_range = (0, 10000)
    band.display_range = (0, 4000)
    band.resolution = Resolution(unit=ResolutionUnit.METERS, value=60)
    band.band_index = 0
    band.save()

    assert band.id == f"{product.id}:blue"
    stored = SpectralBand.get(band.id)
    assert stored is not None and stored.data_type == DataType.UINT16 and stored.data_range == (0, 10000)
    assert stored.resolution == 60 and stored.resolution.unit == ResolutionUnit.METERS


def test_in_17_sets_wavelengths_in_nanometres(guide_catalog: Catalog) -> None:
    from cube_assets.client import SpectralBand

    band = _blue(_new_product())
    # These values are in nanometers (nm)
    band.wavelength_nm_min = 452  # type: ignore[attr-defined]  # a SpectralBand
    band.wavelength_nm_max = 512  # type: ignore[attr-defined]  # a SpectralBand
    band.save()  # type: ignore[attr-defined]  # a SpectralBand

    stored = SpectralBand.get(band.id)  # type: ignore[attr-defined]  # a SpectralBand
    assert stored is not None
    assert (stored.wavelength_nm_min, stored.wavelength_nm_max) == (452, 512)
    assert (stored.wavelength_min, stored.wavelength_max) == (0.452, 0.512)  # this project's micrometres


def test_in_18_creates_an_alpha_mask_band(guide_catalog: Catalog) -> None:
    from cube_assets.client import Band, DataType, MaskBand

    product = _new_product()
    band = _blue(product)
    alpha = MaskBand(name="alpha", product=product)
    alpha.is_alpha = True
    alpha.data_type = DataType.UINT16
    alpha.resolution = band.resolution  # type: ignore[attr-defined]  # a SpectralBand
    alpha.band_index = 1
    alpha.save()

    stored = Band.get(f"{product.id}:alpha")
    assert isinstance(stored, MaskBand) and stored.is_alpha is True
    assert stored.data_range == (0, 1) and stored.display_range == (0, 1)  # a mask's implicit ranges
    assert stored.resolution == 60


def test_in_21_uploads_an_ndarray_rastered_from_another_image(guide_catalog: Catalog) -> None:
    from cube_assets.client import DataType, MaskBand, OverviewResampler

    product = _new_product()
    _blue(product)
    alpha = MaskBand(name="alpha", product=product, is_alpha=True, data_type=DataType.UINT16, resolution=60)
    alpha.band_index = 1
    alpha.save()
    # The Scenes client is not part of this project: an Image loads as the guide's Scene does.
    scene = Image.get(f"{RT}:meta_LC08_20170301_v1")
    geoctx = scene.geocontext  # type: ignore[union-attr]  # the fixture saved it
    ndarray, raster_meta = scene.ndarray(  # type: ignore[union-attr]  # the fixture saved it
        "blue",
        geoctx.assign(resolution=60),
        # return georeferencing info we need to re-upload
        raster_info=True,
    )

    image2 = Image(product=product, name="scene2")
    image2.acquired = "2012-01-02"
    upload2 = image2.upload_ndarray(
        ndarray,
        raster_meta=raster_meta,
        # create overviews for 120m and 240m resolution
        overviews=[2, 4],
        overview_resampler=OverviewResampler.AVERAGE,
    )

    upload2.wait_for_completion()
    assert upload2.status == "success", upload2.errors
    assert image2.id == f"{product.id}:scene2" and sorted(image2.files) == ["alpha", "blue"]
    assert (image2.x_pixels, image2.y_pixels) == (4, 4)
    assert ndarray.mask[0, :2].all() and not ndarray.mask[0, 2:].any()  # the source's alpha masked its top half
    loaded = Image.get(image2.id).ndarray("blue")  # type: ignore[union-attr]  # uploaded just before
    np.testing.assert_array_equal(loaded.mask, ndarray.mask)  # the mask came back through the new alpha band
    np.testing.assert_array_equal(loaded.filled(0), ndarray.filled(0))
    assert [u.id for u in image2.image_uploads()] == [upload2.id]


@pytest.mark.parametrize("name", ["blue"])
def test_band_of_another_type_is_not_found_by_its_class(guide_catalog: Catalog, name: str) -> None:
    from cube_assets.client import ClassBand, SpectralBand

    assert ClassBand.get(f"{RT}:{name}") is None
    assert SpectralBand.get(f"{RT}:{name}") is not None
