"""Streaming downloads against the loopback test server: resume, verification, retries, timeouts, credentials."""

from __future__ import annotations

import hashlib
import logging

import pytest

from cube_assets.errors import ProviderError
from cube_assets.providers.credentials import Credentials, credentials_from_spec
from cube_assets.providers.http import DownloadError, HttpClient, RemoteFile
from cube_assets.providers.multihash import file_multihash
from cube_assets.providers.retry import RetryPolicy
from cube_assets.redaction import redact_url
from cube_assets_tests.fixtures_stac import REAL_S2_ASSET_FILES, StacTestServer

B04 = REAL_S2_ASSET_FILES["B04"]
FAST = RetryPolicy(attempts=3, backoff_s=0.5, backoff_factor=2.0, backoff_max_s=10.0, read_timeout_s=5.0)


@pytest.fixture
def sleeps() -> list[float]:
    """The backoff delays a client asked for (recorded instead of slept)."""
    return []


@pytest.fixture
def client(sleeps: list[float]) -> HttpClient:
    with HttpClient("mirror", retry=FAST, sleep=sleeps.append) as http:
        yield http


def _remote(server: StacTestServer, route: str = B04, *, checksum: bool = True) -> tuple[RemoteFile, bytes]:
    data = (server.real_data / route).read_bytes()
    url = server.serve_file(server.real_data / route, route)
    return RemoteFile(url, len(data), file_multihash(server.real_data / route) if checksum else None), data


# --------------------------------------------------------------------------------------------
# Redaction of the URLs downloads show


def test_redacted_url_drops_user_info_and_query_values() -> None:
    assert redact_url("https://user:pw@host.example:8443/a/b.tif?sig=XYZ&se=2024") == (
        "https://host.example:8443/a/b.tif?sig=***&se=***"
    )


# --------------------------------------------------------------------------------------------
# Downloads


def test_download_streams_the_exact_bytes_and_verifies_them(stac_server, client, tmp_path) -> None:
    remote, data = _remote(stac_server)
    result = client.download(remote, tmp_path / "B04.jp2")
    assert (tmp_path / "B04.jp2").read_bytes() == data
    assert (result.size, result.attempts, result.resumed_from) == (len(data), 1, 0)
    assert list(tmp_path.iterdir()) == [tmp_path / "B04.jp2"]  # no partial file left


def test_partial_file_is_resumed_with_a_range_request(stac_server, client, tmp_path) -> None:
    remote, data = _remote(stac_server)
    (tmp_path / ".B04.jp2.part").write_bytes(data[:1000])

    result = client.download(remote, tmp_path / "B04.jp2")

    assert (tmp_path / "B04.jp2").read_bytes() == data
    assert result.resumed_from == 1000
    assert [r.headers.get("range") for r in stac_server.requests_to(remote.href)] == ["bytes=1000-"]


def test_truncated_body_is_retried_from_where_it_stopped(stac_server, client, sleeps, tmp_path) -> None:
    remote, data = _remote(stac_server)
    stac_server.fail(remote.href, mode="truncate", times=1)

    result = client.download(remote, tmp_path / "B04.jp2")

    assert (tmp_path / "B04.jp2").read_bytes() == data
    ranges = [r.headers.get("range") for r in stac_server.requests_to(remote.href)]
    # Whole chunks received before the cut are kept (the server cut at half the file).
    assert ranges == [None, f"bytes={result.resumed_from}-"]
    assert 0 < result.resumed_from <= len(data) // 2
    assert (result.attempts, sleeps) == (2, [0.5])


def test_server_errors_are_retried_with_exponential_backoff(stac_server, client, sleeps, tmp_path) -> None:
    remote, data = _remote(stac_server)
    stac_server.fail(remote.href, status=503, times=2)

    result = client.download(remote, tmp_path / "B04.jp2")

    assert result.attempts == 3
    assert sleeps == [0.5, 1.0]
    assert (tmp_path / "B04.jp2").read_bytes() == data


def test_retry_after_header_sets_the_wait(stac_server, client, sleeps, tmp_path) -> None:
    remote, _ = _remote(stac_server)
    stac_server.fail(remote.href, status=429, times=1, retry_after="7")
    client.download(remote, tmp_path / "B04.jp2")
    assert sleeps == [7.0]


def test_persistent_server_error_fails_after_the_policy_attempts(stac_server, client, tmp_path) -> None:
    remote, _ = _remote(stac_server)
    stac_server.fail(remote.href, status=500, times=None)

    with pytest.raises(
        DownloadError, match=r"mirror: .*B04_60m.jp2: failed after 3 attempts: HTTP 500; HTTP 500; HTTP 500"
    ):
        client.download(remote, tmp_path / "B04.jp2")

    assert len(stac_server.requests_to(remote.href)) == 3
    assert not (tmp_path / "B04.jp2").exists()


def test_missing_file_fails_at_once_without_retrying(stac_server, client, sleeps, tmp_path) -> None:
    with pytest.raises(DownloadError, match="HTTP 404"):
        client.download(RemoteFile(stac_server.url("files/nowhere.tif")), tmp_path / "x.tif")
    assert len(stac_server.requests_to("/files/nowhere.tif")) == 1 and sleeps == []


def test_offline_product_answer_202_fails_at_once(stac_server, client, tmp_path) -> None:
    remote, _ = _remote(stac_server)
    stac_server.fail(remote.href, status=202, times=None)
    with pytest.raises(DownloadError, match="not online yet"):
        client.download(remote, tmp_path / "B04.jp2")
    assert len(stac_server.requests_to(remote.href)) == 1


def test_corrupt_bytes_fail_the_checksum_and_are_fetched_again(stac_server, client, tmp_path) -> None:
    remote, data = _remote(stac_server)
    stac_server.fail(remote.href, mode="corrupt", times=1)

    result = client.download(remote, tmp_path / "B04.jp2")

    assert result.attempts == 2
    assert (tmp_path / "B04.jp2").read_bytes() == data
    # The corrupt partial file was discarded, so the second attempt started from scratch.
    assert [r.headers.get("range") for r in stac_server.requests_to(remote.href)] == [None, None]


def test_wrong_checksum_never_produces_the_file(stac_server, client, tmp_path) -> None:
    remote, _ = _remote(stac_server)
    wrong = RemoteFile(remote.href, remote.size, "1220" + hashlib.sha256(b"something else").hexdigest())

    with pytest.raises(DownloadError, match="checksum mismatch"):
        client.download(wrong, tmp_path / "B04.jp2")

    assert list(tmp_path.iterdir()) == []


def test_size_different_from_file_size_fails(stac_server, client, tmp_path) -> None:
    remote, _ = _remote(stac_server, checksum=False)
    with pytest.raises(DownloadError, match=f"expected {remote.size + 1}"):
        client.download(RemoteFile(remote.href, remote.size + 1), tmp_path / "B04.jp2")


def test_read_timeout_is_retried(stac_server, sleeps, tmp_path) -> None:
    remote, data = _remote(stac_server)
    stac_server.fail(remote.href, mode="stall", delay_s=1.5, times=1)
    policy = RetryPolicy(attempts=2, backoff_s=0.0, read_timeout_s=0.3)

    with HttpClient("mirror", retry=policy, sleep=sleeps.append) as http:
        result = http.download(remote, tmp_path / "B04.jp2")

    assert result.attempts == 2
    assert (tmp_path / "B04.jp2").read_bytes() == data


def test_basic_credentials_are_sent_to_their_host_only(stac_server, tmp_path, caplog) -> None:
    remote, _ = _remote(stac_server)
    stac_server.require_basic("/files/stactools-sentinel2", "alice", "pa55-w0rd-XYZ")
    credentials = credentials_from_spec(
        {"type": "basic", "username": {"env": "U"}, "password": {"env": "P"}, "allow_insecure_loopback": True},
        {"U": "alice", "P": "pa55-w0rd-XYZ"},
        "provider mirror",
        "127.0.0.1",
    )
    caplog.set_level(logging.DEBUG)
    with HttpClient("mirror", credentials, FAST) as http:
        http.download(remote, tmp_path / "B04.jp2")
        other_host = remote.href.replace("127.0.0.1", "localhost")
        with pytest.raises(DownloadError, match="HTTP 401") as refused:
            http.download(RemoteFile(other_host, remote.size), tmp_path / "other.jp2")

    received = [r.headers.get("authorization") for r in stac_server.requests_to(remote.href)]
    assert received[0].startswith("Basic ") and received[1] is None
    assert "pa55-w0rd-XYZ" not in caplog.text and "pa55-w0rd-XYZ" not in str(refused.value)


def test_oauth2_password_grant_token_is_obtained_and_used(stac_server, tmp_path) -> None:
    remote, data = _remote(stac_server)
    stac_server.add_oauth_user("bob", "0auth-S3cret")
    stac_server.require_bearer("/files/")
    credentials = credentials_from_spec(
        {
            "type": "oauth2_password",
            "token_url": stac_server.token_url,
            "client_id": "cdse-public",
            "allow_insecure_loopback": True,
            "username": {"env": "U"},
            "password": {"env": "P"},
        },
        {"U": "bob", "P": "0auth-S3cret"},
        "provider cdse",
        "127.0.0.1",
    )
    with HttpClient("cdse", credentials, FAST) as http:
        http.download(remote, tmp_path / "B04.jp2")

    assert (tmp_path / "B04.jp2").read_bytes() == data
    token_request = stac_server.requests_to("/oauth/token")[0].body.decode()
    assert "grant_type=password" in token_request and "client_id=cdse-public" in token_request
    sent = stac_server.requests_to(remote.href)[0].headers["authorization"]
    assert sent.removeprefix("Bearer ") in stac_server.tokens


def test_wrong_oauth2_password_is_reported_without_the_password(stac_server, tmp_path) -> None:
    remote, _ = _remote(stac_server)
    stac_server.add_oauth_user("bob", "right")
    credentials = credentials_from_spec(
        {
            "type": "oauth2_password",
            "token_url": stac_server.token_url,
            "username": {"env": "U"},
            "password": {"env": "P"},
            "allow_insecure_loopback": True,
        },
        {"U": "bob", "P": "wr0ng-pass"},
        "provider cdse",
        "127.0.0.1",
    )
    with (
        HttpClient("cdse", credentials, FAST) as http,
        pytest.raises(ProviderError, match="token request .* refused: HTTP 401") as raised,
    ):
        http.download(remote, tmp_path / "B04.jp2")
    assert "wr0ng-pass" not in str(raised.value)
    assert isinstance(credentials, Credentials)
