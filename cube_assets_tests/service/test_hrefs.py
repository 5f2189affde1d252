"""Asset hrefs as clients reach them: local files as file:// URIs of absolute paths, S3 as s3:// or presigned https."""

from __future__ import annotations

import os
from pathlib import Path
from urllib.parse import quote_from_bytes

import httpx
import pytest

from cube_assets.client import Catalog
from cube_assets.service.app import create_app
from cube_assets.service.hrefs import AssetHrefs
from cube_assets.service.settings import ServiceSettings
from cube_assets_tests.fixtures_s3 import S3Server
from cube_assets_tests.service.conftest import serve


def test_local_paths_become_file_uris_of_absolute_paths(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    hrefs = AssetHrefs()

    assert hrefs.href("cube/B04.tif") == (tmp_path / "cube" / "B04.tif").as_uri()
    assert hrefs.href("/data/a b.tif") == "file:///data/a%20b.tif"
    assert hrefs.href("s3://bucket/key/B04.tif") == "s3://bucket/key/B04.tif"
    assert hrefs.href("https://example.org/B04.tif") == "https://example.org/B04.tif"


@pytest.mark.parametrize(
    "location",
    [
        "/data/cube/B04.tif",
        "/data/a b.tif",
        "/data/./cube/B04.tif",
        "/data/cube/../B04.tif",
        "/data/cube/..",
        "/data/cube/.",
        "/data//cube/B04.tif",
        "/data/cube/",
        "/data/.hidden/..x/B04.tif",
        "/data/ç/B04.tif",
        "/data/x%20y/B04~1_a-b.tif",
        "/",
    ],
)
def test_a_local_path_is_the_uri_of_its_absolute_path(location: str) -> None:
    # Plain absolute paths skip abspath and quoting: they must give what the full rule gives.
    assert AssetHrefs().href(location) == "file://" + quote_from_bytes(os.fsencode(os.path.abspath(location)))


@pytest.fixture
def s3_credentials(s3_server: S3Server, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", s3_server.access_key_id)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", s3_server.secret_access_key)
    monkeypatch.setenv("AWS_REGION", s3_server.region)


def test_presigned_urls_read_the_object_without_credentials(
    s3_server: S3Server, s3_bucket: str, s3_credentials: None
) -> None:
    s3_server.client().put_object(Bucket=s3_bucket, Key="cube/B04.tif", Body=b"pixels")

    url = AssetHrefs(presign=True, endpoint_url=s3_server.endpoint_url).href(f"s3://{s3_bucket}/cube/B04.tif")

    assert url.startswith(f"{s3_server.endpoint_url}/{s3_bucket}/cube/B04.tif?") and "Signature" in url
    assert httpx.get(url).content == b"pixels"
    assert httpx.get(url.split("?")[0]).status_code == 403  # the object is not public: the signature opens it


def test_the_api_presigns_s3_assets_with_presign(
    cube_catalog: Catalog, s3_server: S3Server, s3_credentials: None
) -> None:
    settings = ServiceSettings(catalog_url="unused", presign=True, s3_endpoint_url=s3_server.endpoint_url)
    api = serve(create_app(settings, catalog=cube_catalog), cube_catalog)
    try:
        merge = httpx.get(f"{api.url}collections/s2_test-merge/items/s2_test_023017_20240104").json()
        composite = httpx.get(f"{api.url}collections/s2_test-LCF/items/s2_test_023017_20240101_LCF").json()
    finally:
        api.stop()

    href = merge["assets"]["B04"]["href"]
    assert href.startswith(f"{s3_server.endpoint_url}/cube-bucket/023017/20240104_B04.tif?")
    assert "X-Amz-Signature" in href or "Signature" in href
    local = composite["assets"]["B04"]["href"]
    assert local.startswith("file:///") and os.path.isfile(local.removeprefix("file://"))


def test_without_presign_s3_assets_stay_s3_uris(cube_catalog: Catalog) -> None:
    api = serve(create_app(ServiceSettings(catalog_url="unused"), catalog=cube_catalog), cube_catalog)
    try:
        merge = httpx.get(f"{api.url}collections/s2_test-merge/items/s2_test_023017_20240104").json()
    finally:
        api.stop()

    assert merge["assets"]["B04"]["href"] == "s3://cube-bucket/023017/20240104_B04.tif"
