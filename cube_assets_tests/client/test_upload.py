"""Tests of uploading arrays and files: COGs in the store, the image in the catalog, failures with reasons.

Every test runs on SQLite and on PostgreSQL (the ``engine`` fixture of this folder's conftest).
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np
import pytest
import rasterio
import shapely.geometry
from sqlalchemy import Engine, func, select

from cube_assets.catalog.database import session_factory
from cube_assets.catalog.models import Image, ImageFile
from cube_assets.catalog.repository import BandRecord, ProductRecord, image_files, upsert_bands, upsert_product
from cube_assets.client.geocontext import GeoContext
from cube_assets.client.upload import UploadStatus, upload_files, upload_ndarray
from cube_assets.errors import CatalogError
from cube_assets.raster.cog import is_valid_cog
from cube_assets.storage.raster_store import LocalRasterStore

PRODUCT = "uploads:test"
RGB_PRODUCT = "uploads:rgb"
NODATA = -9999
ACQUIRED = dt.datetime(2024, 1, 9, 13, 12, tzinfo=dt.UTC)
CONTEXT = GeoContext((200_000, 8_247_000, 203_000, 8_250_000), "EPSG:32723", resolution=10)  # 300 x 300
RGB_BYTE = "rasterio/tests/data/RGB.byte.tif"


@pytest.fixture
def catalog(engine: Engine) -> Engine:
    """The migrated catalog with an Int16 red/nir product and a Byte RGB product."""
    with session_factory(engine).begin() as session:
        upsert_product(session, ProductRecord(id=PRODUCT, name="Uploads"))
        upsert_bands(
            session,
            PRODUCT,
            [
                BandRecord(name="red", type="spectral", data_type="Int16", resolution=10, band_index=0, nodata=NODATA),
                BandRecord(name="nir", type="spectral", data_type="Int16", resolution=10, band_index=1, nodata=NODATA),
            ],
        )
        upsert_product(session, ProductRecord(id=RGB_PRODUCT, name="RGB"))
        upsert_bands(
            session,
            RGB_PRODUCT,
            [
                BandRecord(name=name, type="spectral", data_type="UInt8", resolution=300, band_index=index, nodata=0)
                for index, name in enumerate(("red", "green", "blue"))
            ],
        )
    return engine


@pytest.fixture
def store(tmp_path: Path) -> LocalRasterStore:
    """A raster store on the local filesystem."""
    return LocalRasterStore(tmp_path / "store")


def pixels(seed: int = 0) -> np.ndarray:
    """Two bands of int16 reflectance on CONTEXT's grid."""
    return np.random.default_rng(seed).integers(0, 10000, (2, *CONTEXT.shape)).astype(np.int16)


def image_fields(image_id: str = "upload-1", **overrides: object) -> dict:
    return {"id": image_id, "product_id": PRODUCT, "acquired": ACQUIRED, **overrides}


def image_count(engine: Engine) -> int:
    with session_factory(engine)() as session:
        return session.scalar(select(func.count()).select_from(Image))


def test_upload_ndarray_publishes_cogs_and_registers_the_image(catalog: Engine, store: LocalRasterStore) -> None:
    array = pixels()

    upload = upload_ndarray(store, catalog, image_fields(), array, raster_meta=CONTEXT.raster_info(), overviews=[2, 4])

    assert upload.status == UploadStatus.SUCCESS and upload.error is None
    assert set(upload.files) == {"red", "nir"}
    for index, band in enumerate(("red", "nir")):
        href = upload.files[band]
        assert href == str(store.path(f"uploads/{PRODUCT}/upload-1/upload-1_{band}.tif"))
        assert is_valid_cog(href)
        with rasterio.open(href) as written:
            assert written.overviews(1) == [2, 4]
            assert (written.dtypes[0], written.nodata, written.crs) == ("int16", NODATA, CONTEXT.crs)
            assert written.transform == CONTEXT.transform
            np.testing.assert_array_equal(written.read(1), array[index])
    with session_factory(catalog)() as session:
        assert image_files(session, "upload-1") == upload.files
        image = session.get(Image, "upload-1")
        assert (image.crs, image.width, image.height) == ("EPSG:32723", 300, 300)
        assert image.geotransform == list(CONTEXT.geotransform)
        footprint = shapely.geometry.shape(image.geometry)
        west, south, east, north = CONTEXT.bbox_4326
        assert footprint.contains(shapely.geometry.Point((west + east) / 2, (south + north) / 2))
        sizes = {row.band: row.size_bytes for row in session.scalars(select(ImageFile))}
        assert sizes == {band: Path(href).stat().st_size for band, href in upload.files.items()}


def test_uploading_again_replaces_the_pixels_under_the_same_row(catalog: Engine, store: LocalRasterStore) -> None:
    first = upload_ndarray(store, catalog, image_fields(), pixels(0), raster_meta=CONTEXT)
    second = upload_ndarray(store, catalog, image_fields(), pixels(1), raster_meta=CONTEXT)

    assert second.status == UploadStatus.SUCCESS
    assert second.files == first.files
    assert image_count(catalog) == 1
    with rasterio.open(second.files["nir"]) as written:
        np.testing.assert_array_equal(written.read(1), pixels(1)[1])


def test_default_overviews_give_a_valid_cog(catalog: Engine, store: LocalRasterStore) -> None:
    upload = upload_ndarray(store, catalog, image_fields(), pixels(), geotransform=CONTEXT.geotransform, crs=32723)

    assert upload.status == UploadStatus.SUCCESS
    assert is_valid_cog(upload.files["red"])


def test_masked_pixels_are_written_as_the_bands_nodata(catalog: Engine, store: LocalRasterStore) -> None:
    array = np.ma.MaskedArray(pixels().astype(np.float32), mask=False)
    array.mask[:, :10, :] = True
    array.data[:, :10, :] = np.nan  # masked NaN is fine: it is not written

    upload = upload_ndarray(store, catalog, image_fields(), array, raster_meta=CONTEXT)

    assert upload.status == UploadStatus.SUCCESS, upload.error
    with rasterio.open(upload.files["red"]) as written:
        values = written.read(1)
    assert (values[:10] == NODATA).all()
    np.testing.assert_array_equal(values[10:], pixels()[0, 10:])


def test_a_shape_that_does_not_match_the_grid_fails_without_writing(catalog: Engine, store: LocalRasterStore) -> None:
    upload = upload_ndarray(store, catalog, image_fields(), pixels()[:, :250], raster_meta=CONTEXT.raster_info())

    assert upload.status == UploadStatus.FAILURE
    assert "(y, x) = (250, 300), but raster_meta describes (300, 300)" in upload.error
    assert "upload-1" in upload.error
    assert upload.files == {}
    assert not (store.root / "uploads").exists()
    assert image_count(catalog) == 0


def test_non_finite_floats_into_an_integer_band_fail_with_the_reason(catalog: Engine, store: LocalRasterStore) -> None:
    array = pixels().astype(np.float64)
    array[0, 5, 5] = np.nan

    upload = upload_ndarray(store, catalog, image_fields(), array, raster_meta=CONTEXT)

    assert upload.status == UploadStatus.FAILURE
    assert "band 'red' (Int16): 1 NaN or infinite values cannot be stored in int16" in upload.error
    assert image_count(catalog) == 0
    assert not (store.root / "uploads").exists()


def test_values_out_of_the_band_type_fail(catalog: Engine, store: LocalRasterStore) -> None:
    array = pixels().astype(np.int32)
    array[1, 0, 0] = 40_000

    upload = upload_ndarray(store, catalog, image_fields(), array, raster_meta=CONTEXT)

    assert upload.status == UploadStatus.FAILURE
    assert "band 'nir' (Int16): values" in upload.error and "do not fit int16" in upload.error


def test_a_missing_product_fails_and_raise_for_status_raises(catalog: Engine, store: LocalRasterStore) -> None:
    upload = upload_ndarray(store, catalog, image_fields(product_id="nowhere"), pixels(), raster_meta=CONTEXT)

    assert upload.status == UploadStatus.FAILURE
    assert "product 'nowhere' is not in the catalog" in upload.error
    with pytest.raises(CatalogError, match="nowhere"):
        upload.raise_for_status()


def test_a_band_count_other_than_the_products_fails(catalog: Engine, store: LocalRasterStore) -> None:
    upload = upload_ndarray(store, catalog, image_fields(), pixels()[0], raster_meta=CONTEXT)

    assert upload.status == UploadStatus.FAILURE
    assert "1 band(s) of pixels for the 2 band(s) ['red', 'nir']" in upload.error


def test_one_band_can_be_uploaded_by_name(catalog: Engine, store: LocalRasterStore) -> None:
    upload = upload_ndarray(store, catalog, image_fields(), pixels()[1], raster_meta=CONTEXT, bands=["nir"])

    assert upload.status == UploadStatus.SUCCESS
    assert set(upload.files) == {"nir"}


def test_a_naive_acquisition_time_fails_before_any_file_is_written(catalog: Engine, store: LocalRasterStore) -> None:
    upload = upload_ndarray(
        store, catalog, image_fields(acquired=dt.datetime(2024, 1, 9)), pixels(), raster_meta=CONTEXT
    )

    assert upload.status == UploadStatus.FAILURE
    assert "acquired" in upload.error and "time zone" in upload.error
    assert not (store.root / "uploads").exists()


def test_a_grid_given_twice_fails(catalog: Engine, store: LocalRasterStore) -> None:
    upload = upload_ndarray(store, catalog, image_fields(), pixels(), raster_meta=CONTEXT, crs=32723)

    assert upload.status == UploadStatus.FAILURE
    assert "not both" in upload.error


def test_upload_files_splits_a_multi_band_file_into_band_cogs(
    catalog: Engine, store: LocalRasterStore, real_data: Path
) -> None:
    source = real_data / RGB_BYTE

    upload = upload_files(store, catalog, image_fields("rgb", product_id=RGB_PRODUCT), [source])

    assert upload.status == UploadStatus.SUCCESS, upload.error
    with rasterio.open(source) as src:
        expected, transform = src.read(), src.transform
    for index, band in enumerate(("red", "green", "blue")):
        assert is_valid_cog(upload.files[band])
        with rasterio.open(upload.files[band]) as written:
            assert written.transform == transform and written.nodata == 0
            np.testing.assert_array_equal(written.read(1), expected[index])
    with session_factory(catalog)() as session:
        assert image_files(session, "rgb") == upload.files


def test_upload_files_refuses_files_on_different_grids(
    catalog: Engine, store: LocalRasterStore, tmp_path: Path, real_data: Path
) -> None:
    upload = upload_ndarray(store, catalog, image_fields(), pixels(), raster_meta=CONTEXT)
    other = tmp_path / "shifted.tif"
    with rasterio.open(upload.files["nir"]) as src:
        profile = {**src.profile, "transform": src.transform * src.transform.translation(1, 0)}
        with rasterio.open(other, "w", **profile) as dst:
            dst.write(src.read())

    failed = upload_files(store, catalog, image_fields("shifted"), {"red": upload.files["red"], "nir": other})

    assert failed.status == UploadStatus.FAILURE
    assert "shifted.tif: grid" in failed.error and "differs from" in failed.error


def test_upload_into_an_s3_store_registers_s3_uris_that_load_back(catalog: Engine, s3_server, s3_bucket: str) -> None:
    """Upload through a real S3 API (the session's moto server), then load the catalog's hrefs from S3."""
    from cube_assets.client.raster_read import stack_files

    store = s3_server.store(s3_bucket, prefix="cubes")
    array = pixels()

    upload = upload_ndarray(store, catalog, image_fields(), array, raster_meta=CONTEXT, overviews=[2])

    assert upload.status == UploadStatus.SUCCESS, upload.error
    assert upload.files["red"] == f"s3://{s3_bucket}/cubes/uploads/{PRODUCT}/upload-1/upload-1_red.tif"
    assert s3_server.object_keys(s3_bucket) == [
        f"cubes/uploads/{PRODUCT}/upload-1/upload-1_nir.tif",
        f"cubes/uploads/{PRODUCT}/upload-1/upload-1_red.tif",
    ]
    with session_factory(catalog)() as session:
        hrefs = image_files(session, "upload-1")
    meta = {band: {"data_type": "Int16", "nodata": NODATA} for band in ("red", "nir")}
    with store.gdal_environment():
        stack = stack_files([hrefs], ["red", "nir"], CONTEXT, meta, max_workers=2)
    np.testing.assert_array_equal(stack.data[0], array)
