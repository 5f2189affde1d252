"""S3RasterStore against a real S3 API server (moto's standalone server, HTTP on loopback).

Nothing is mocked: boto3 uploads over HTTP and GDAL reads ``/vsis3/`` over HTTP. Faults are
injected through botocore's own event hooks on the store's client (a part upload that fails, a
look at the bucket just before ``CompleteMultipartUpload``).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import rasterio
from affine import Affine
from rasterio.windows import Window

from cube_assets.raster.cog import COG_CONTENT_TYPE, is_valid_cog, write_cog
from cube_assets.resources.storage import RasterStoreResource
from cube_assets.storage.raster_store import LocalRasterStore, RasterStore
from cube_assets.storage.s3_store import MIN_MULTIPART_CHUNKSIZE, S3RasterStore
from cube_assets_tests.fixtures_s3 import S3Server

TRANSFORM = Affine(10, 0, 200000, 0, -10, 8250000)


def _cog(folder: Path, name: str = "band.tif", size: int = 1024) -> tuple[Path, np.ndarray]:
    rng = np.random.default_rng(7)
    array = rng.integers(0, 10000, size=(size, size), dtype=np.int16)
    return write_cog(array, folder / name, crs=32723, transform=TRANSFORM, nodata=-9999), array


def _random_file(path: Path, size: int) -> bytes:
    data = np.random.default_rng(3).integers(0, 256, size=size, dtype=np.uint8).tobytes()
    path.write_bytes(data)
    return data


def test_s3_store_satisfies_the_raster_store_protocol(s3_server: S3Server, s3_bucket: str) -> None:
    assert isinstance(s3_server.store(s3_bucket), RasterStore)
    assert isinstance(LocalRasterStore("/tmp"), RasterStore)


def test_published_cog_is_read_back_over_vsis3_with_its_content_type(
    s3_server: S3Server, s3_bucket: str, tmp_path: Path
) -> None:
    store = s3_server.store(s3_bucket, prefix="cubes/v1")
    local, array = _cog(tmp_path)
    uri = store.publish(local, "small/000000/2024-01-04/merge_B04.tif", content_type=COG_CONTENT_TYPE)

    assert uri == f"s3://{s3_bucket}/cubes/v1/small/000000/2024-01-04/merge_B04.tif"
    assert store.gdal_path(uri) == f"/vsis3/{s3_bucket}/cubes/v1/small/000000/2024-01-04/merge_B04.tif"
    assert not local.exists(), "publish consumes the staged file"
    assert store.content_type("small/000000/2024-01-04/merge_B04.tif") == COG_CONTENT_TYPE
    with store.gdal_environment():
        assert is_valid_cog(store.gdal_path(uri))
        with rasterio.open(store.gdal_path(uri)) as src:
            window = src.read(1, window=Window(300, 200, 64, 32))
            assert src.crs.to_epsg() == 32723
    np.testing.assert_array_equal(window, array[200:232, 300:364])


def test_gdal_reads_windows_with_range_requests_not_whole_objects(
    s3_server: S3Server, s3_bucket: str, tmp_path: Path
) -> None:
    store = s3_server.store(s3_bucket)
    uri = store.publish(_cog(tmp_path, size=2048)[0], "big.tif")
    with store.gdal_environment(), rasterio.open(store.gdal_path(uri)) as src:
        src.read(1, window=Window(0, 0, 256, 256))

    statuses = s3_server.requests("GET", f"/{s3_bucket}/big.tif")
    assert statuses, "GDAL made no GET request"
    assert set(statuses) == {206}, f"every GET must be a range request (206 Partial Content), got {statuses}"


def test_large_files_are_uploaded_in_parts(s3_server: S3Server, s3_bucket: str, tmp_path: Path) -> None:
    store = s3_server.store(
        s3_bucket, multipart_threshold=MIN_MULTIPART_CHUNKSIZE, multipart_chunksize=MIN_MULTIPART_CHUNKSIZE
    )
    data = _random_file(tmp_path / "big.bin", 2 * MIN_MULTIPART_CHUNKSIZE + 1000)

    uri = store.publish(tmp_path / "big.bin", "parts/big.bin")

    # A multipart object's ETag is "{md5 of the part md5s}-{number of parts}".
    etag = s3_server.client().head_object(Bucket=s3_bucket, Key="parts/big.bin")["ETag"].strip('"')
    assert etag.endswith("-3")
    assert store.read_bytes("parts/big.bin") == data
    assert store.size(uri) == len(data)


def test_a_multipart_object_is_invisible_until_its_upload_completes(
    s3_server: S3Server, s3_bucket: str, tmp_path: Path
) -> None:
    store = s3_server.store(s3_bucket, multipart_threshold=1024)
    store.write_bytes("item.tif", b"previous complete version")
    _random_file(tmp_path / "new.tif", 200_000)
    seen_before_completion: list[bytes] = []

    def look_at_the_bucket(**_kwargs: object) -> None:
        # Every part is uploaded; the object is not yet completed.
        seen_before_completion.append(store.read_bytes("item.tif"))

    store.client.meta.events.register("before-call.s3.CompleteMultipartUpload", look_at_the_bucket)
    store.publish(tmp_path / "new.tif", "item.tif")

    assert seen_before_completion == [b"previous complete version"]
    assert store.size(store.uri("item.tif")) == 200_000


def test_a_failed_multipart_upload_leaves_nothing_under_the_key(
    s3_server: S3Server, s3_bucket: str, tmp_path: Path
) -> None:
    store = s3_server.store(
        s3_bucket,
        multipart_threshold=MIN_MULTIPART_CHUNKSIZE,
        multipart_chunksize=MIN_MULTIPART_CHUNKSIZE,
        max_concurrency=1,
    )
    _random_file(tmp_path / "big.bin", 2 * MIN_MULTIPART_CHUNKSIZE + 1000)
    parts: list[int] = []

    def fail_the_second_part(params: dict, **_kwargs: object) -> None:
        parts.append(params["PartNumber"])
        if params["PartNumber"] == 2:
            raise ConnectionResetError("injected: connection lost during part 2")

    store.client.meta.events.register("before-parameter-build.s3.UploadPart", fail_the_second_part)
    with pytest.raises(OSError, match="parts/big.bin"):
        store.publish(tmp_path / "big.bin", "parts/big.bin")

    assert 2 in parts
    assert not store.exists("parts/big.bin")
    assert s3_server.object_keys(s3_bucket) == []
    assert s3_server.incomplete_uploads(s3_bucket) == [], "boto3 aborts the failed multipart upload"
    assert (tmp_path / "big.bin").exists(), "a failed publish keeps the staged file"


def test_bytes_round_trip_under_the_prefix(s3_server: S3Server, s3_bucket: str) -> None:
    store = s3_server.store(s3_bucket, prefix="/run-7/")
    uri = store.write_bytes(
        "small/_manifests/tile_merge/000000/2024-01-01.json", b'{"merges": []}', content_type="application/json"
    )

    assert uri == f"s3://{s3_bucket}/run-7/small/_manifests/tile_merge/000000/2024-01-01.json"
    assert s3_server.object_keys(s3_bucket) == ["run-7/small/_manifests/tile_merge/000000/2024-01-01.json"]
    assert store.read_bytes("small/_manifests/tile_merge/000000/2024-01-01.json") == b'{"merges": []}'
    assert store.content_type("small/_manifests/tile_merge/000000/2024-01-01.json") == "application/json"
    assert store.exists("small/_manifests/tile_merge/000000/2024-01-01.json")
    assert not store.exists("small/_manifests/tile_merge/000000/2024-01-17.json")


def test_missing_objects_raise_file_not_found_naming_the_uri(s3_server: S3Server, s3_bucket: str) -> None:
    store = s3_server.store(s3_bucket)
    with pytest.raises(FileNotFoundError, match=f"s3://{s3_bucket}/nothing/here.json"):
        store.read_bytes("nothing/here.json")
    with pytest.raises(FileNotFoundError, match=f"s3://{s3_bucket}/nothing/here.tif"):
        store.size(f"s3://{s3_bucket}/nothing/here.tif")


def test_staging_dir_is_local_and_removed_on_exit(s3_server: S3Server, s3_bucket: str, tmp_path: Path) -> None:
    store = s3_server.store(s3_bucket, staging_root=tmp_path / "staging")
    with store.staging_dir() as staging:
        (staging / "part.tif").write_bytes(b"x")
        assert staging.parent == tmp_path / "staging"
    assert not staging.exists()


@pytest.mark.parametrize("key", ["/absolute.tif", "a/../../escape.tif", ""])
def test_keys_that_escape_the_prefix_are_refused(key: str) -> None:
    with pytest.raises(ValueError, match="store key"):
        S3RasterStore("bucket", "prefix").uri(key)


def test_gdal_path_refuses_a_non_s3_uri() -> None:
    with pytest.raises(ValueError, match="/data/a.tif"):
        S3RasterStore("bucket").gdal_path("/data/a.tif")


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ({"bucket": ""}, "bucket"),
        ({"bucket": "a/b"}, "bucket"),
        ({"bucket": "b", "endpoint_url": "127.0.0.1:9000"}, "endpoint_url"),
        ({"bucket": "b", "multipart_chunksize": 1024}, "multipart_chunksize"),
    ],
)
def test_invalid_settings_are_refused_naming_the_setting(arguments: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        S3RasterStore(**arguments)


def test_gdal_options_for_an_http_s3_compatible_server() -> None:
    options = S3RasterStore("bucket", endpoint_url="http://127.0.0.1:9000", region="sa-east-1").gdal_options()
    assert options["AWS_S3_ENDPOINT"] == "127.0.0.1:9000"
    assert options["AWS_HTTPS"] == "NO"
    assert options["AWS_VIRTUAL_HOSTING"] == "FALSE"
    assert options["AWS_REGION"] == "sa-east-1"
    assert options["GDAL_DISABLE_READDIR_ON_OPEN"] == "EMPTY_DIR"
    assert ".tif" in options["CPL_VSIL_CURL_ALLOWED_EXTENSIONS"].split(",")


def test_gdal_options_for_aws_keep_virtual_hosting_and_https() -> None:
    options = S3RasterStore("bucket").gdal_options()
    assert not {"AWS_S3_ENDPOINT", "AWS_HTTPS", "AWS_VIRTUAL_HOSTING"} & set(options)


def test_gdal_environment_does_not_leak_credentials_into_the_process_environment(
    s3_server: S3Server, s3_bucket: str
) -> None:
    before = {k: v for k, v in os.environ.items() if k.startswith("AWS_")}
    with s3_server.store(s3_bucket).gdal_environment():
        assert rasterio.env.getenv()["AWS_ACCESS_KEY_ID"] == s3_server.access_key_id
    assert {k: v for k, v in os.environ.items() if k.startswith("AWS_")} == before


def test_resource_builds_an_s3_store_from_its_fields(s3_server: S3Server, s3_bucket: str, tmp_path: Path) -> None:
    resource = RasterStoreResource(
        backend="s3",
        bucket=s3_bucket,
        prefix="p",
        endpoint_url=s3_server.endpoint_url,
        region=s3_server.region,
        access_key_id=s3_server.access_key_id,
        secret_access_key=s3_server.secret_access_key,
    )
    store = resource.get_store()
    assert isinstance(store, S3RasterStore)
    store.write_bytes("k.json", b"{}")
    assert s3_server.object_keys(s3_bucket) == ["p/k.json"]


@pytest.mark.parametrize(
    ("fields", "message"),
    [({"backend": "gcs"}, "'gcs'"), ({"backend": "s3"}, "bucket"), ({"backend": "local"}, "root")],
)
def test_resource_refuses_an_incomplete_configuration(fields: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        RasterStoreResource(**fields).get_store()
