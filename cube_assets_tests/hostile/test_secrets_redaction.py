"""Every place that shows a URL shows it through ``redact_url``: no password, token or signature.

Database URLs are tried against the real PostgreSQL test server (trust authentication, so any
password is accepted and the URL really connects); S3 against the loopback S3 server's store
class. Nothing is mocked.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from dagster import AssetKey, asset, instance_for_test, materialize
from shapely.geometry import box
from sqlalchemy import make_url, text

from cube_assets.catalog.database import create_catalog_engine
from cube_assets.checks import missing_files
from cube_assets.client import Catalog
from cube_assets.errors import CatalogError, ProviderError
from cube_assets.io_managers.catalog import CatalogIOManager
from cube_assets.providers.base import Provider, SceneRef
from cube_assets.providers.chain import search_and_fetch
from cube_assets.redaction import SECRET_QUERY_KEYS, is_secret_query_key, redact_url, redact_urls_in_text
from cube_assets.steps.catalog_records import CatalogBatch
from cube_assets.storage.raster_store import LocalRasterStore
from cube_assets.storage.s3_store import S3RasterStore

SECRET = "Zq9-SECRET-value-4471"
#: The query-parameter names the security docs promise to mask, in the cases people write them.
PROMISED_KEYS = (
    "password",
    "pass",
    "passwd",
    "secret",
    "token",
    "access_token",
    "api_key",
    "apikey",
    "key",
    "sig",
    "signature",
    "X-Amz-Signature",
    "X-Amz-Credential",
    "X-Amz-Security-Token",
    "PASSWORD",
    "Api_Key",
)


# --------------------------------------------------------------------------------------------
# The function


@pytest.mark.parametrize("key", PROMISED_KEYS)
def test_secret_query_value_of_a_database_url_is_masked(key: str) -> None:
    shown = redact_url(f"postgresql+psycopg://cube@db.internal:5432/catalog?sslmode=require&{key}={SECRET}")
    assert SECRET not in shown
    assert shown == f"postgresql+psycopg://cube@db.internal:5432/catalog?sslmode=require&{key}=***"


@pytest.mark.parametrize("key", PROMISED_KEYS)
def test_secret_query_names_are_recognized_whatever_their_case(key: str) -> None:
    assert is_secret_query_key(key)
    assert key.lower() in SECRET_QUERY_KEYS


@pytest.mark.parametrize("key", ["sslmode", "options", "application_name", "connect_timeout"])
def test_ordinary_database_query_values_are_kept(key: str) -> None:
    assert redact_url(f"postgresql://h/db?{key}=visible") == f"postgresql://h/db?{key}=visible"


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        (f"postgresql://cube:{SECRET}@db:5432/catalog", "postgresql://cube:***@db:5432/catalog"),
        # Unencoded "@", "/" and ":" in a password: user info runs to the last "@" before the query.
        (f"postgresql://cube:a@{SECRET}@db/catalog", "postgresql://cube:***@db/catalog"),
        (f"postgresql://cube:a/{SECRET}@db/catalog", "postgresql://cube:***@db/catalog"),
        (f"postgresql://cube:a:{SECRET}@db/catalog", "postgresql://cube:***@db/catalog"),
        (f"postgresql://cube:{SECRET}@db/catalog#{SECRET}", "postgresql://cube:***@db/catalog"),
        (
            f"https://user:{SECRET}@stac.example:8443/a/B04.tif?se=2024&sig={SECRET}",
            "https://stac.example:8443/a/B04.tif?se=***&sig=***",
        ),
        # A signed URL may name its signature anything: every web query value is masked, bare ones too.
        (
            f"https://bucket.example/B04.tif?X-Custom={SECRET}&{SECRET}",
            "https://bucket.example/B04.tif?X-Custom=***&***",
        ),
        (f"https://stac.example/items#access_token={SECRET}", "https://stac.example/items"),
        (f"s3://bucket/key.tif?versionId={SECRET}", "s3://bucket/key.tif?versionId=***"),
    ],
    ids=["userinfo", "at-sign", "slash", "colon", "fragment", "web-userinfo", "web-any-query", "web-fragment", "s3"],
)
def test_redacted_url_hides_the_secret_and_keeps_where_it_points(url: str, shown: str) -> None:
    assert redact_url(url) == shown
    assert SECRET not in redact_url(url)


def test_sqlalchemy_url_objects_are_rendered_with_password_and_query_secrets_hidden() -> None:
    url = make_url(f"postgresql+psycopg://cube:{SECRET}@db/catalog?token={SECRET}&sslmode=require")
    assert redact_url(url) == "postgresql+psycopg://cube:***@db/catalog?sslmode=require&token=***"


def test_urls_inside_a_message_are_redacted_and_the_rest_kept() -> None:
    message = f"APIError: 403 for https://stac.example/search?token={SECRET} (via postgresql://u:{SECRET}@db/c)"
    assert (
        redact_urls_in_text(message)
        == "APIError: 403 for https://stac.example/search?token=*** (via postgresql://u:***@db/c)"
    )


@pytest.mark.parametrize("value", ["/data/catalog.sqlite", "sqlite:////data/with@sign/catalog.sqlite", "no url here"])
def test_text_without_a_secret_is_returned_unchanged(value: str) -> None:
    assert redact_url(value) == value


# --------------------------------------------------------------------------------------------
# The catalog engine, Catalog and the catalog IO manager, on a real PostgreSQL server


@pytest.fixture
def url_with_query_password(postgresql_schema_url: str) -> str:
    """The test schema's URL with a password as a query parameter (libpq's ``?password=``)."""
    return make_url(postgresql_schema_url).update_query_dict({"password": SECRET}).render_as_string(hide_password=False)


def test_engine_connects_with_a_query_password_but_holds_and_shows_none(url_with_query_password: str) -> None:
    engine = create_catalog_engine(url_with_query_password)
    try:
        with engine.connect() as connection:
            assert connection.execute(text("SELECT 1")).scalar() == 1
        shown = [repr(engine), str(engine.url), repr(engine.url), engine.url.render_as_string(hide_password=True)]
    finally:
        engine.dispose()
    assert [s for s in shown if SECRET in s] == []
    assert "password" not in engine.url.query


def test_engine_still_uses_the_user_info_password_and_hides_it(postgresql_schema_url: str) -> None:
    url = make_url(postgresql_schema_url).set(password=SECRET).render_as_string(hide_password=False)
    engine = create_catalog_engine(url)
    try:
        with engine.connect() as connection:
            assert connection.execute(text("SELECT 1")).scalar() == 1
        assert engine.url.password == SECRET and SECRET not in repr(engine)
    finally:
        engine.dispose()


def test_catalog_url_and_repr_show_no_query_password(url_with_query_password: str) -> None:
    with Catalog(url_with_query_password) as catalog:
        shown = (catalog.url, repr(catalog))
    assert SECRET not in shown[0] and SECRET not in shown[1]
    assert "password" not in catalog.url and "search_path" in catalog.url, "moved to the connect arguments"


@pytest.mark.parametrize("where", ["query", "userinfo", "userinfo-with-encoded-at-sign"])
def test_catalog_io_manager_metadata_shows_no_password(postgresql_schema_url: str, tmp_path: Path, where: str) -> None:
    parsed = make_url(postgresql_schema_url)
    if where == "query":
        url = parsed.update_query_dict({"password": SECRET}).render_as_string(hide_password=False)
    else:
        password = SECRET if where == "userinfo" else f"a@{SECRET}"
        url = parsed.set(password=password).render_as_string(hide_password=False)

    @asset(io_manager_key="catalog_io_manager")
    def catalog_item() -> CatalogBatch:
        return CatalogBatch(products=(), bands={}, images=())

    with instance_for_test(temp_dir=str(tmp_path)) as instance:
        result = materialize(
            [catalog_item], instance=instance, resources={"catalog_io_manager": CatalogIOManager(url=url)}
        )
        assert result.success
        shown = str(
            instance.get_latest_materialization_event(AssetKey("catalog_item"))
            .asset_materialization.metadata["catalog"]
            .value
        )
    assert SECRET not in shown
    assert f"{parsed.host}:{parsed.port}/{parsed.database}" in shown


# --------------------------------------------------------------------------------------------
# Error messages that quote a URL


@pytest.mark.parametrize(
    "url",
    [
        f"postgresql://u:{SECRET[:8]}@{SECRET[8:]}:99@127.0.0.1/db",  # SQLAlchemy reads "99@127.0.0.1" as the port
        f"postgresql://u:{SECRET[:8]}@{SECRET[8:]}@127.0.0.1/db",  # ... or "{SECRET[8:]}@127.0.0.1" as the host
        f"not a url {SECRET}",
        f"postgresql:/u:{SECRET}@db/c",
        f"mysql://u:{SECRET}@db/c?token={SECRET}",
    ],
    ids=["unreadable-port", "at-sign-in-host", "unparseable", "scheme-typo", "unsupported-backend"],
)
def test_catalog_url_errors_name_the_url_without_its_secret(url: str) -> None:
    with pytest.raises(CatalogError, match="catalog URL") as raised:
        create_catalog_engine(url)
    chain = [
        raised.value,
        raised.value.__cause__,
        raised.value.__context__ if not raised.value.__suppress_context__ else None,
    ]
    leaked = [str(e) for e in chain if e is not None and any(part in str(e) for part in (SECRET[:8], SECRET[8:]))]
    assert leaked == []


def test_sqlite_url_with_a_password_is_refused_before_any_folder_is_made(tmp_path: Path) -> None:
    with pytest.raises(CatalogError, match="SQLite takes no password") as raised:
        create_catalog_engine(f"sqlite:///{tmp_path}/new/catalog.sqlite?password={SECRET}")
    assert SECRET not in str(raised.value) and "new/catalog.sqlite" in str(raised.value)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    "endpoint",
    [
        f"http://AKIA:{SECRET}@127.0.0.1:9000",
        f"https://minio.example?X-Amz-Security-Token={SECRET}",
        f"ftp://{SECRET}@host",
    ],
    ids=["userinfo", "query", "scheme"],
)
def test_s3_endpoint_with_credentials_in_it_is_refused_without_repeating_them(endpoint: str) -> None:
    with pytest.raises(ValueError, match="S3 endpoint_url") as raised:
        S3RasterStore("bucket", endpoint_url=endpoint)
    assert SECRET not in str(raised.value)


def test_s3_store_refuses_a_signed_http_uri_without_repeating_its_signature() -> None:
    store = S3RasterStore("bucket", endpoint_url="http://127.0.0.1:9000")
    with pytest.raises(ValueError, match="is not an s3:// URI") as raised:
        store.size(f"https://bucket.example/B04.tif?X-Amz-Signature={SECRET}")
    assert SECRET not in str(raised.value) and "X-Amz-Signature=***" in str(raised.value)


def test_files_exist_check_names_a_missing_signed_href_without_its_signature(tmp_path: Path) -> None:
    images = [{"id": "img-1", "files": {"B04": f"https://bucket.example/B04.tif?sig={SECRET}"}}]
    missing = missing_files(images, LocalRasterStore(tmp_path))
    assert len(missing) == 1 and "img-1/B04: https://bucket.example/B04.tif?sig=***" in missing[0]
    assert SECRET not in missing[0]


# --------------------------------------------------------------------------------------------
# The provider chain: failures are logged and recorded in run metadata


class _SignedHrefProvider(Provider):
    """A provider whose scene lives at a signed URL that cannot be read, failing as GDAL does."""

    name = "signed"

    def search(self, collection, geometry, start, end, max_cloud_cover=None):  # type: ignore[no-untyped-def]  # a stand-in provider with the protocol's signature
        return [
            SceneRef(
                provider=self.name,
                collection=collection,
                scene_id="S2_SIGNED",
                datetime=start,
                footprint=geometry,
                cloud_cover=0.0,
                href=f"https://bucket.example/S2_SIGNED.tif?X-Amz-Signature={SECRET}",
            )
        ]

    def fetch(self, scene: SceneRef, destination_dir: Path) -> Path:
        raise OSError(f"'/vsicurl/{scene.href}' not recognized as being in a supported file format")


def test_chain_failures_quote_no_signature_in_logs_or_errors(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    start = datetime(2024, 1, 1, tzinfo=UTC)
    with pytest.raises(ProviderError, match="S2_SIGNED: no provider could deliver it") as raised:
        search_and_fetch(
            [_SignedHrefProvider()], "sentinel-2-l2a", box(0, 0, 1, 1), start, start + timedelta(days=1), tmp_path
        )
    assert "X-Amz-Signature=***" in str(raised.value)
    assert SECRET not in str(raised.value) and SECRET not in caplog.text
    assert list(tmp_path.iterdir()) == []
