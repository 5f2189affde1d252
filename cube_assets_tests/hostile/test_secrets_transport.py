"""Provider credentials travel over https only; plain http only to loopback hosts, and only when opted in.

Requests go to the real loopback STAC test server (``fixtures_stac``), which records the headers
it received, and to a small loopback redirector written here. Hosts such as ``stac.example`` are
never contacted: the refusal happens before any connection is made, which is what the tests
check (no DNS, no network).
"""

from __future__ import annotations

import base64
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from cube_assets.errors import ProviderError
from cube_assets.providers.credentials import (
    check_credentials_spec,
    credentials_from_spec,
    credentials_may_travel_to,
    is_loopback_host,
)
from cube_assets.providers.http import HttpClient, RemoteFile
from cube_assets.providers.retry import RetryPolicy
from cube_assets.providers.stac import build_stac_provider
from cube_assets_tests.fixtures_stac import REAL_S2_ASSET_FILES, StacTestServer

TOKEN = "bearer-T0ken-8812"
PASSWORD = "basic-Pa55-8812"
FAST = RetryPolicy(attempts=1, read_timeout_s=10.0)
ENVIRON = {"TOKEN": TOKEN, "USER": "alice", "PASSWORD": PASSWORD, "KEY": TOKEN}
#: Every kind of credentials that rides on the request itself, with the header the server sees and its value.
KINDS = {
    "bearer": ({"type": "bearer", "token": {"env": "TOKEN"}}, ("authorization", f"Bearer {TOKEN}")),
    "basic": (
        {"type": "basic", "username": {"env": "USER"}, "password": {"env": "PASSWORD"}},
        ("authorization", "Basic " + base64.b64encode(f"alice:{PASSWORD}".encode()).decode()),
    ),
    "header": ({"type": "header", "header": "X-Api-Key", "value": {"env": "KEY"}}, ("x-api-key", TOKEN)),
}


def _client(spec: dict, hosts: list[str], **extra: object) -> HttpClient:
    credentials = credentials_from_spec({**spec, "hosts": hosts, **extra}, ENVIRON, "provider secure", None)
    return HttpClient("secure", credentials, FAST)


@pytest.fixture
def served_file(stac_server: StacTestServer) -> RemoteFile:
    route = REAL_S2_ASSET_FILES["B04"]
    return RemoteFile(stac_server.serve_file(stac_server.real_data / route, route))


# --------------------------------------------------------------------------------------------
# Sending to the loopback test server


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_credentials_are_not_sent_over_http_without_the_opt_in(
    kind: str, stac_server, served_file, tmp_path: Path
) -> None:
    spec, _header = KINDS[kind]
    with _client(spec, ["127.0.0.1"]) as http, pytest.raises(ProviderError, match="sent over https only") as refused:
        http.download(served_file, tmp_path / "B04.jp2")
    assert "secure" in str(refused.value) and served_file.href in str(refused.value)
    assert stac_server.requests_to(served_file.href) == [], "nothing at all was sent"
    assert list(tmp_path.iterdir()) == [], "no file, no partial file"


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_opted_in_credentials_reach_a_loopback_http_server(kind: str, stac_server, served_file, tmp_path: Path) -> None:
    spec, (header, value) = KINDS[kind]
    with _client(spec, ["127.0.0.1"], allow_insecure_loopback=True) as http:
        http.download(served_file, tmp_path / "B04.jp2")
    assert [r.headers.get(header) for r in stac_server.requests_to(served_file.href)] == [value]
    assert (tmp_path / "B04.jp2").stat().st_size > 0


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_opt_in_does_not_let_credentials_go_over_http_to_another_host(kind: str, tmp_path: Path) -> None:
    spec, _header = KINDS[kind]
    url = "http://stac.example/files/B04.jp2?token=abc"
    with _client(spec, ["stac.example"], allow_insecure_loopback=True) as http, pytest.raises(ProviderError) as refused:
        http.download(RemoteFile(url), tmp_path / "B04.jp2")
    assert "http://stac.example/files/B04.jp2?token=***" in str(refused.value)
    assert "abc" not in str(refused.value)
    assert list(tmp_path.iterdir()) == []


def test_requests_to_hosts_without_credentials_still_go_anonymously_over_http(
    stac_server, served_file, tmp_path: Path
) -> None:
    spec, _header = KINDS["bearer"]
    with _client(spec, ["stac.example"]) as http:
        http.download(served_file, tmp_path / "B04.jp2")
    assert [r.headers.get("authorization") for r in stac_server.requests_to(served_file.href)] == [None]


class _Redirector(BaseHTTPRequestHandler):
    target = ""

    def do_GET(self) -> None:  # http.server's naming
        self.send_response(302)
        self.send_header("Location", self.target)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def redirector() -> Iterator[str]:
    """A loopback server that redirects every GET to ``http://stac.example/B04.jp2``; yields its URL."""
    handler = type("Redirector", (_Redirector,), {"target": "http://stac.example/B04.jp2"})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/start"
    finally:
        server.shutdown()
        server.server_close()


def test_a_redirect_to_plain_http_on_a_credential_host_is_refused_before_it_is_followed(
    redirector: str, tmp_path: Path
) -> None:
    spec, _header = KINDS["bearer"]
    with _client(spec, ["127.0.0.1", "stac.example"], allow_insecure_loopback=True) as http:
        with pytest.raises(ProviderError, match=r"not to http://stac\.example/B04\.jp2"):
            http.download(RemoteFile(redirector), tmp_path / "B04.jp2")
    assert list(tmp_path.iterdir()) == []


# --------------------------------------------------------------------------------------------
# Declarations refused where they are read


@pytest.mark.parametrize(
    ("url", "extra"),
    [
        ("http://stac.example/v1", {}),
        ("http://stac.example/v1", {"allow_insecure_loopback": True}),
        ("http://127.0.0.1:9/v1", {}),
    ],
    ids=["remote-http", "remote-http-opted-in", "loopback-not-opted-in"],
)
def test_stac_provider_with_credentials_on_an_http_url_is_refused_when_built(url: str, extra: dict) -> None:
    options = {"url": url, "credentials": {**KINDS["bearer"][0], **extra}}
    with pytest.raises(
        ProviderError, match="provider secure: option url: credentials are sent over https only"
    ) as refused:
        build_stac_provider("secure", options, ENVIRON)
    assert TOKEN not in str(refused.value)


def test_stac_provider_with_opted_in_loopback_credentials_is_built() -> None:
    options = {"url": "http://127.0.0.1:9/v1", "credentials": {**KINDS["bearer"][0], "allow_insecure_loopback": True}}
    provider = build_stac_provider("secure", options, ENVIRON)
    assert provider.http.credentials is not None and provider.http.credentials.allow_insecure_loopback
    provider.close()


@pytest.mark.parametrize(
    ("token_url", "extra"),
    [
        ("http://identity.example/token", {}),
        ("http://identity.example/token", {"allow_insecure_loopback": True}),
        ("http://127.0.0.1:9/token", {}),
        ("ftp://identity.example/token", {}),
    ],
    ids=["remote-http", "remote-http-opted-in", "loopback-not-opted-in", "other-scheme"],
)
def test_oauth2_token_url_that_would_send_the_password_in_clear_is_refused(token_url: str, extra: dict) -> None:
    spec = {
        "type": "oauth2_password",
        "token_url": token_url,
        "username": {"env": "USER"},
        "password": {"env": "PASSWORD"},
        **extra,
    }
    with pytest.raises(
        ProviderError, match="provider secure: credentials.token_url: credentials are sent over https only"
    ):
        check_credentials_spec(spec, "provider secure")


@pytest.mark.parametrize("value", ["yes", 1, None])
def test_allow_insecure_loopback_must_be_a_boolean(value: object) -> None:
    with pytest.raises(ProviderError, match="credentials.allow_insecure_loopback must be true or false"):
        check_credentials_spec({**KINDS["bearer"][0], "allow_insecure_loopback": value}, "provider secure")


# --------------------------------------------------------------------------------------------
# The rule itself


@pytest.mark.parametrize("host", ["127.0.0.1", "127.8.9.10", "::1", "[::1]", "localhost", "LOCALHOST", "localhost."])
def test_loopback_hosts_are_recognized(host: str) -> None:
    assert is_loopback_host(host)


@pytest.mark.parametrize(
    "host", ["10.0.0.1", "0.0.0.0", "128.0.0.1", "127.0.0.1.nip.io", "localhost.example", "mylocalhost", "", None]
)
def test_other_hosts_are_not_loopback(host: str | None) -> None:
    assert not is_loopback_host(host)


@pytest.mark.parametrize(
    ("url", "opted_in", "allowed"),
    [
        ("https://stac.example/x", False, True),
        ("HTTPS://stac.example/x", False, True),
        ("http://stac.example/x", False, False),
        ("http://stac.example/x", True, False),
        ("http://127.0.0.1:8080/x", False, False),
        ("http://127.0.0.1:8080/x", True, True),
        ("http://[::1]:8080/x", True, True),
        ("ftp://127.0.0.1/x", True, False),
        ("s3://bucket/x", True, False),
        ("http://[::1/x", True, False),
    ],
)
def test_credentials_travel_over_https_or_opted_in_loopback_http_only(url: str, opted_in: bool, allowed: bool) -> None:
    assert credentials_may_travel_to(url, opted_in) is allowed
