"""The examples of the Image, ImageCollection and ImageUpload reference, run with only their imports changed.

``import descarteslabs as dl`` and ``dl.catalog.X`` become imports from ``cube_assets.client``;
the reference's ``DLTile`` (absent here: tiles come from this project's grids) becomes a
:class:`~cube_assets.client.GeoContext` over the scenes. Each test asserts what the example's
output implies for the data of ``conftest.py``.
"""

from __future__ import annotations

import collections
import os
from pathlib import Path

import numpy as np
import pytest
import rasterio

from cube_assets.client import Catalog, GeoContext, Image, ImageCollection, Product
from cube_assets.client import properties as p
from cube_assets.client.items import Collection
from cube_assets_tests.compat.conftest import (
    ORIGIN,
    PIXEL,
    RT,
    SCENES,
    SIZE,
    TRANSPARENT_ROWS,
    alpha_values,
    band_values,
)

FIRST = f"{RT}:{next(iter(SCENES))}"


@pytest.fixture
def in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Run the example in an empty working directory (downloads default to it)."""
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    return work


def _tile() -> GeoContext:
    west, north = ORIGIN
    return GeoContext((west, north - SIZE * PIXEL, west + SIZE * PIXEL, north), "EPSG:32631", resolution=PIXEL)


def test_coverage_of_a_buffered_footprint_is_a_fraction(guide_catalog: Catalog) -> None:
    image = Image.get(FIRST)
    covered = image.coverage(image.geometry.buffer(1))  # type: ignore[union-attr]  # saved by the fixture

    assert 0 < covered < 0.001  # a 240 m scene in a 1 degree buffer
    assert image.coverage(image.geometry) == pytest.approx(1.0)  # type: ignore[union-attr]  # saved by the fixture


def test_delete_by_id_is_a_classmethod_returning_whether_it_deleted(guide_catalog: Catalog) -> None:
    first = Image.get(FIRST)
    assert first is not None
    Image(id="my-image-id", product_id=RT, acquired="2020-01-01", geometry=first.geometry, cs_code="EPSG:32631").save()

    assert Image.delete("my-image-id") is True
    assert Image.exists("my-image-id") is False
    assert Image.delete("my-image-id") is False


def test_download_names_the_file_after_the_image_and_bands(guide_catalog: Catalog, in_tmp: Path) -> None:
    image = Image.get(FIRST)
    path = image.download("red green blue", resolution=120.0)  # type: ignore[union-attr]  # saved by the fixture

    assert Path(path) == in_tmp / f"{FIRST}-red-green-blue.tif"
    assert os.listdir(".") == [f"{FIRST}-red-green-blue.tif"]
    with rasterio.open(path) as src:
        assert (src.count, src.res, src.width) == (3, (120.0, 120.0), 2)


def test_download_to_a_formatted_path_creates_its_folders(guide_catalog: Catalog, in_tmp: Path) -> None:
    image = Image.get(FIRST)
    assert image is not None
    target = f"rasters/{image.geocontext.resolution}-{image.id}.tif"
    path = image.download("nir swir1", target)

    assert Path(path) == Path(f"rasters/(30.0, 30.0)-{FIRST}.tif")  # resolution is an (x, y) pair here
    with rasterio.open(path) as src:
        written = src.read(1)
    rows = TRANSPARENT_ROWS
    np.testing.assert_array_equal(written[rows:], band_values(0, 4)[rows:])
    assert (written[:rows] == 0).all()  # masked by the alpha band, written as 0 (the band has no nodata)
    with pytest.raises(ValueError, match="JPEG holds"):
        image.download("nir swir1", "rasters/two-bands.jpg")  # JPEG has 1 or 3 bands


def test_make_valid_name_replaces_each_run_of_invalid_characters(guide_catalog: Catalog) -> None:
    from cube_assets.client import Band, SpectralBand

    name = "This is ań @#$^*% ïñvalid name!!!!"
    band = SpectralBand()
    band.name = Band.make_valid_name(name)

    assert band.name == "This_is_a_valid_name_"


def test_ndarray_at_a_coarser_resolution_is_masked_by_the_alpha_band(guide_catalog: Catalog) -> None:
    image = Image.get(FIRST)
    arr = image.ndarray("red green blue", resolution=120.0)  # type: ignore[union-attr]  # saved by the fixture

    assert type(arr) is np.ma.MaskedArray
    assert arr.shape == (3, 2, 2)
    red_band = arr[0]
    assert red_band.mask[0].all() and not red_band.mask[1].any()  # alpha is 0 on the top 120 m
    assert red_band[1, 0] in band_values(0, 3)[TRANSPARENT_ROWS:, :4]  # nearest of the 4 x 4 source pixels


def test_ndarray_mask_alpha_false_keeps_transparent_pixels(guide_catalog: Catalog) -> None:
    image = Image.get(FIRST)
    arr = image.ndarray("red", mask_alpha=False)  # type: ignore[union-attr]  # saved by the fixture

    assert not np.ma.getmaskarray(arr).any()
    np.testing.assert_array_equal(arr.data[0], band_values(0, 3))
    with pytest.raises(ValueError, match="processing_level"):
        image.ndarray("red", processing_level="toa")  # type: ignore[union-attr]  # saved by the fixture


def test_search_with_a_limit_iterates_results(guide_catalog: Catalog) -> None:
    search = Image.search().limit(10)
    names = [result.name for result in search]

    assert len(names) == 10 and set(names) & set(SCENES)


def _images() -> ImageCollection:
    tile = _tile()
    product = Product.get(RT)
    return product.images().intersects(tile).limit(5).collect()  # type: ignore[union-attr, no-any-return]  # saved by the fixture


def test_collection_download_writes_one_file_per_image(guide_catalog: Catalog, in_tmp: Path) -> None:
    tile = _tile()
    images = _images()
    paths = images.download("red green blue", tile, "rasters")

    assert [str(path) for path in paths] == [f"rasters/{image.id}-red-green-blue.tif" for image in images]
    explicit = [f"{tile.shape[0]}/l8-{image.date:%Y-%m-%d-%H:%m}.tif" for image in images]
    written = images.download("nir red", tile, explicit)
    assert [str(path) for path in written] == explicit


def test_download_mosaic_writes_one_file(guide_catalog: Catalog, in_tmp: Path) -> None:
    images = _images()
    path = images.download_mosaic("nir red", mask_alpha=False)

    assert Path(path) == in_tmp / "mosaic-nir-red.tif"
    with rasterio.open(path) as src:
        np.testing.assert_array_equal(src.read(1), band_values(len(images) - 1, 4))  # the last image wins
    png = images.download_mosaic("red green blue", dest="mosaics/{}.png".format("tile"))
    assert Path(png) == Path("mosaics/tile.png") and (in_tmp / "mosaics/tile.png").is_file()


def test_mosaic_lets_the_image_below_show_through_alpha(guide_catalog: Catalog) -> None:
    images = _images()
    mosaic = images.mosaic("red")
    stack = images.stack("red")

    rows = TRANSPARENT_ROWS
    assert mosaic.mask[0, :rows].all() and not mosaic.mask[0, rows:].any()  # transparent in every image
    assert stack.shape == (5, 1, SIZE, SIZE) and stack.mask[:, 0, :rows].all() and not stack.mask[:, 0, rows:].any()
    np.testing.assert_array_equal(mosaic.data[0, rows:], band_values(len(images) - 1, 3)[rows:])
    assert (alpha_values()[rows:] == 1).all()


def test_filter_coverage_keeps_images_covering_enough(guide_catalog: Catalog) -> None:
    images = _images()
    filtered_images = images.filter_coverage(images.geocontext, 0.01)

    assert len(filtered_images) == len(images) == 5  # every scene covers the tile it was searched by
    assert (
        len(
            images.filter_coverage(
                images.geocontext.assign(resolution=1.0).assign(crs="EPSG:4326", resolution=1.0), 0.5
            )
        )
        == 0
    )


def test_filter_with_a_property_expression(guide_catalog: Catalog) -> None:
    images = _images()

    clear = images.filter(p.cloud_fraction < 0.2)
    assert isinstance(clear, ImageCollection)
    assert sorted(image.cloud_fraction for image in clear) == [0.05, 0.10, 0.15]
    assert len(images.filter((p.acquired > "2017-01-01") & ~(p.cloud_fraction > 0.4))) == 3


def test_map_of_images_is_an_image_collection(guide_catalog: Catalog) -> None:
    images = _images()

    assert isinstance(images.map(lambda image: image), ImageCollection)
    assert images.map(lambda image: image.name) == list(SCENES)


def test_scaling_parameters_is_a_method(guide_catalog: Catalog) -> None:
    images = _images()

    assert images.scaling_parameters(["red", "green"], scaling="display") == ([(0, 10000, 0, 255)] * 2, "Byte")
    assert images[0].scaling_parameters(["red"]) == (None, "UInt16")


FooBar = collections.namedtuple("FooBar", ["foo", "bar"])
X = collections.namedtuple("X", "x")


def test_groupby_yields_groups_in_key_order() -> None:
    c = Collection([FooBar("a", True), FooBar("b", False), FooBar("a", False)])

    assert [(group, list(items)) for group, items in c.groupby("foo")] == [
        ("a", [FooBar(foo="a", bar=True), FooBar(foo="a", bar=False)]),
        ("b", [FooBar(foo="b", bar=False)]),
    ]
    assert [(group, list(items)) for group, items in c.groupby("bar")] == [
        (False, [FooBar(foo="b", bar=False), FooBar(foo="a", bar=False)]),
        (True, [FooBar(foo="a", bar=True)]),
    ]


def test_sorted_by_dotted_predicates() -> None:
    c = Collection([FooBar(1, X("one")), FooBar(2, X("two")), FooBar(3, X("three"))])

    assert list(c.sorted("foo")) == [FooBar(1, X("one")), FooBar(2, X("two")), FooBar(3, X("three"))]
    assert list(c.sorted("bar.x")) == [FooBar(1, X("one")), FooBar(3, X("three")), FooBar(2, X("two"))]


def test_sort_of_a_product_search_collection(guide_catalog: Catalog) -> None:
    collection = Product.search().collect()
    sorted_collection = collection.sort("created", ascending=False)

    created = [product.created for product in sorted_collection]
    assert created == sorted(created, reverse=True) and len(created) == len(collection) > 5


def test_each_chains_calls_pipes_and_combines() -> None:
    c = Collection(["one", "two", "three", "four"])

    assert list(c.each.capitalize()) == ["One", "Two", "Three", "Four"]
    assert list(c.each.capitalize()[:2]) == ["On", "Tw", "Th", "Fo"]
    assert list(c.each.capitalize().pipe(len)) == [3, 3, 5, 4]
    assert list(c.each.capitalize().pipe(len).combine(set)) == [3, 4, 5]


def test_image_upload_search_by_status(guide_catalog: Catalog) -> None:
    from cube_assets.client import ImageUpload, ImageUploadStatus
    from cube_assets.client import properties as p

    failing = Image(product=RT, name="broken", acquired="2020-01-01")
    upload = failing.upload_ndarray(np.zeros((2, 4, 4), dtype=np.uint16), raster_meta=_tile())  # 2 bands for 13
    upload.wait_for_completion(timeout=60)

    search = ImageUpload.search().filter(p.status == ImageUploadStatus.FAILURE)
    found = [result for result in search]
    assert [result.id for result in found] == [upload.id]
    assert found[0].image_id == f"{RT}:broken" and found[0].errors[0]["error_type"] == "InvalidRaster"
    assert [event["event_type"] for event in found[0].events] == ["queued", "running", "error"]
    with pytest.raises(NotImplementedError):
        ImageUpload.delete(upload.id)
