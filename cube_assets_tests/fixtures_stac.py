"""A STAC test server on loopback: recorded real API exchanges, real Items, real rasters, injected faults.

Nothing here reaches the internet: the server listens on ``127.0.0.1`` on a free port, and
every URL it hands out (in replayed responses too) points back at itself.

What it serves (``server = stac_server`` fixture, a :class:`StacTestServer`):

* **Replays** of the real STAC API exchanges recorded by pystac-client's test suite (the VCR
  cassettes in ``../shared/data/real/pystac-client/``) under ``/replay/{original host}/…``:
  ``server.replay_url("https://earth-search.aws.element84.com/v1")``. A request is answered
  with the recorded response whose method, path, query and JSON body are equal; URLs in the
  replayed bodies are rewritten to this server (unrecorded hosts to ``/unavailable/…``, a 404).
  With ``server.lenient_replay = True`` a request that matches nothing exactly gets the
  recorded page with the same paging token (``next`` in the body, ``token`` in the query),
  which lets a client that sends different search parameters walk the recorded pages.
* **STAC APIs** built from Items you give it: ``api = server.add_api("pc", items)`` serves a
  landing page (item search, CQL2-JSON filter and query conformance), ``/conformance``,
  ``/collections``, ``/collections/{id}``, ``/collections/{id}/items/{id}`` and ``/search``
  (GET and POST; ``collections``, ``ids``, ``bbox``, ``intersects``, ``datetime``, ``limit``,
  CQL2-JSON ``filter``, ``query``) sorted by datetime (newest first) then id, with paging by a
  ``next`` token in a POST ``next`` link (as Earth Search does) or ``token`` in a GET link.
  ``api.url`` is its root; ``api.items`` the served Items; ``api.add_items(...)`` adds more.
* **Files** with ``Range`` support (``206``/``416``) and ``HEAD``: ``server.serve_file(path)``
  returns the URL; :meth:`StacTestServer.asset_files` rewrites an Item's asset hrefs to real
  rasters (adding ``file:size`` and a SHA2-256 ``file:checksum``) and every other asset to a 404.
  :func:`real_sentinel2_items` and :func:`real_landsat_items` load the real odc-stac Items.
* **Faults**: ``server.fail(prefix, status=500, times=1)``, ``mode="truncate"`` (announces the
  full length, sends half, closes), ``mode="corrupt"`` (same length, bytes flipped),
  ``mode="stall"`` (waits ``delay_s`` before answering). ``times=None`` means every request.
* **Auth**: ``server.require_basic(prefix, user, password)``, ``server.require_bearer(prefix)``
  with tokens from the OAuth2 password-grant endpoint ``server.token_url`` for the users of
  ``server.add_oauth_user(user, password)``.
* **Requests log**: ``server.requests`` (method, path, query, headers, body) to assert what a
  client sent, e.g. the ``Range`` header of a resumed download.

Register with ``pytest_plugins = ["cube_assets_tests.fixtures_stac"]`` (done in the root
``conftest.py``); the ``stac_server`` fixture starts a fresh server per test.
"""

from __future__ import annotations

import base64
import copy
import functools
import hashlib
import json
import re
import secrets
import threading
import time
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, quote, urlsplit

import pytest
import yaml
from shapely.geometry import box, shape

T29UNU_IMG = (
    "stactools-sentinel2/tests/data-files/S2A_MSIL2A_20221005T115411_N0400_R023_T29UNU_20221005T164454.SAFE"
    "/GRANULE/L2A_T29UNU_A038058_20221005T115407/IMG_DATA"
)
#: Asset key of a Sentinel-2 L2A Item → a real raster of the same band (60 m T29UNU JPEG 2000).
REAL_S2_ASSET_FILES: dict[str, str] = {
    "B02": f"{T29UNU_IMG}/R60m/T29UNU_20221005T115411_B02_60m.jp2",
    "B03": f"{T29UNU_IMG}/R60m/T29UNU_20221005T115411_B03_60m.jp2",
    "B04": f"{T29UNU_IMG}/R60m/T29UNU_20221005T115411_B04_60m.jp2",
    "B8A": f"{T29UNU_IMG}/R60m/T29UNU_20221005T115411_B8A_60m.jp2",
    "B11": f"{T29UNU_IMG}/R60m/T29UNU_20221005T115411_B11_60m.jp2",
    "SCL": f"{T29UNU_IMG}/R60m/T29UNU_20221005T115411_SCL_60m.jp2",
}
LANDSAT_ASSETS = "stactools-landsat/tests/data-files/assets3/LC08_L2SP_008059_20191201_20200825_02_T1"
#: Asset key of a USGS Landsat C2 L2 Item → a real (decimated) Landsat 8 C2 L2 GeoTIFF.
REAL_LANDSAT_ASSET_FILES: dict[str, str] = {
    "blue": f"{LANDSAT_ASSETS}_SR_B2.TIF",
    "green": f"{LANDSAT_ASSETS}_SR_B3.TIF",
    "red": f"{LANDSAT_ASSETS}_SR_B4.TIF",
    "nir08": f"{LANDSAT_ASSETS}_SR_B5.TIF",
    "swir16": f"{LANDSAT_ASSETS}_SR_B6.TIF",
    "swir22": f"{LANDSAT_ASSETS}_SR_B7.TIF",
    "qa_pixel": f"{LANDSAT_ASSETS}_QA_PIXEL.TIF",
}
CASSETTES = "pystac-client/tests/cassettes"
SENTINEL2_ITEMS = "odc-stac/tests/data/site2-2020_jun_jul-35MNM.geojson"
LANDSAT_ITEM = "odc-stac/tests/data/LC08_L2SP_028030_20200114_20200824_02_T1_SR.json"
CONFORMANCE = [
    "https://api.stacspec.org/v1.0.0/core",
    "https://api.stacspec.org/v1.0.0/collections",
    "https://api.stacspec.org/v1.0.0/ogcapi-features",
    "https://api.stacspec.org/v1.0.0/item-search",
    "https://api.stacspec.org/v1.0.0/item-search#query",
    "https://api.stacspec.org/v1.0.0-rc.2/item-search#filter",
    "http://www.opengis.net/spec/cql2/1.0/conf/cql2-json",
    "http://www.opengis.net/spec/cql2/1.0/conf/basic-cql2",
    "http://www.opengis.net/spec/ogcapi-features-3/1.0/conf/filter",
]


def real_sentinel2_items(real_data: Path) -> list[dict[str, Any]]:
    """The 13 real Planetary Computer Sentinel-2 L2A Items of MGRS tile 35MNM, June–July 2020 (copies)."""
    return copy.deepcopy(_load_json(real_data / SENTINEL2_ITEMS))["features"]


def real_landsat_items(real_data: Path) -> list[dict[str, Any]]:
    """A real USGS Landsat 8 C2 L2 SR Item (with real ``file:checksum`` values of the full-size files)."""
    return [copy.deepcopy(_load_json(real_data / LANDSAT_ITEM))]


@functools.cache
def _load_json(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text())


@functools.cache
def _load_cassette(path: Path) -> list[dict[str, Any]]:
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    return yaml.load(path.read_text(), Loader=loader)["interactions"]


@functools.cache
def _file_digest(path: Path) -> tuple[int, str]:
    data = path.read_bytes()
    return len(data), "1220" + hashlib.sha256(data).hexdigest()


# --------------------------------------------------------------------------------------------
# Small CQL2-JSON and query-extension evaluators (enough for STAC search tests)


class BadRequest(Exception):
    """A search the test server refuses with HTTP 400."""


def _cql2_value(argument: Any, item: Mapping[str, Any]) -> Any:
    if isinstance(argument, Mapping):
        if "property" in argument:
            name = argument["property"]
            if name in ("id", "collection"):
                return item.get(name)
            return (item.get("properties") or {}).get(name)
        if "timestamp" in argument or "date" in argument:
            return datetime.fromisoformat(str(argument.get("timestamp") or argument.get("date")).replace("Z", "+00:00"))
        if "op" in argument:
            return cql2_matches(argument, item)
        if "type" in argument and "coordinates" in argument:
            return shape(argument)
    return argument


def cql2_matches(expression: Mapping[str, Any], item: Mapping[str, Any]) -> bool:
    """Evaluate a CQL2-JSON expression (logic, comparisons, isNull, between, in, s_intersects) on an Item.

    Raises:
        BadRequest: for an operator it does not implement.
    """
    op = str(expression.get("op", "")).lower()
    args = expression.get("args", [])
    if op == "and":
        return all(cql2_matches(a, item) for a in args)
    if op == "or":
        return any(cql2_matches(a, item) for a in args)
    if op == "not":
        return not cql2_matches(args[0], item)
    values = [_cql2_value(a, item) for a in args]
    if op == "isnull":
        return values[0] is None
    if op == "s_intersects":
        geometry = shape(item["geometry"])
        return geometry.intersects(values[1] if not isinstance(values[1], str) else shape(json.loads(values[1])))
    if op == "between":
        return values[0] is not None and values[1] <= values[0] <= values[2]
    if op == "in":
        return values[0] in values[1]
    comparisons = {
        "=": lambda a, b: a == b,
        "<>": lambda a, b: a != b,
        "<": lambda a, b: a < b,
        "<=": lambda a, b: a <= b,
        ">": lambda a, b: a > b,
        ">=": lambda a, b: a >= b,
    }
    if op in comparisons:
        if values[0] is None or values[1] is None:
            return False
        return bool(comparisons[op](values[0], values[1]))
    raise BadRequest(f"unsupported CQL2 operator {op!r}")


def query_matches(query: Mapping[str, Mapping[str, Any]], item: Mapping[str, Any]) -> bool:
    """Evaluate a STAC query-extension object on an Item."""
    properties = item.get("properties") or {}
    tests = {
        "eq": lambda a, b: a == b,
        "neq": lambda a, b: a != b,
        "lt": lambda a, b: a < b,
        "lte": lambda a, b: a <= b,
        "gt": lambda a, b: a > b,
        "gte": lambda a, b: a >= b,
        "in": lambda a, b: a in b,
    }
    for name, conditions in query.items():
        value = properties.get(name)
        for operator, operand in conditions.items():
            if operator not in tests:
                raise BadRequest(f"unsupported query operator {operator!r}")
            if value is None or not tests[operator](value, operand):
                return False
    return True


def _parse_instant(text: str) -> datetime | None:
    if text in ("", ".."):
        return None
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def _item_time(item: Mapping[str, Any]) -> datetime:
    properties = item["properties"]
    return datetime.fromisoformat(
        str(properties.get("datetime") or properties["start_datetime"]).replace("Z", "+00:00")
    )


# --------------------------------------------------------------------------------------------
# Server state


@dataclass
class Fault:
    """An injected failure for requests whose path starts with ``prefix``."""

    prefix: str
    mode: str = "status"  # status | truncate | corrupt | stall
    status: int = 500
    times: int | None = 1  # None: every request
    delay_s: float = 0.0
    retry_after: str | None = None
    method: str | None = None
    hits: int = 0


@dataclass(frozen=True)
class RecordedRequest:
    """A request the server received."""

    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        """The body parsed as JSON."""
        return json.loads(self.body or b"null")


@dataclass
class StacApi:
    """A STAC API served at ``url`` from ``items``."""

    server: StacTestServer
    name: str
    items: list[dict[str, Any]] = field(default_factory=list)
    max_page_size: int = 1000
    conformance: list[str] = field(default_factory=lambda: list(CONFORMANCE))

    @property
    def url(self) -> str:
        """The API root URL (its landing page)."""
        return f"{self.server.base_url}/apis/{self.name}"

    def add_items(self, items: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
        """Serve ``items`` too (their ``self`` links are set to this API); return the added copies."""
        added = []
        for item in items:
            item = copy.deepcopy(dict(item))
            collection = item.get("collection") or "default"
            item["collection"] = collection
            item["links"] = [
                link
                for link in item.get("links", [])
                if link.get("rel") not in ("self", "root", "parent", "collection")
            ] + [
                {
                    "rel": "self",
                    "href": f"{self.url}/collections/{collection}/items/{item['id']}",
                    "type": "application/geo+json",
                },
                {"rel": "collection", "href": f"{self.url}/collections/{collection}", "type": "application/json"},
                {"rel": "root", "href": self.url, "type": "application/json"},
            ]
            with self.server.lock:
                self.items = [existing for existing in self.items if existing["id"] != item["id"]] + [item]
            added.append(item)
        return added


class StacTestServer:
    """See the module docstring. Start with :meth:`start`, stop with :meth:`stop`."""

    def __init__(self, real_data: Path) -> None:
        self.real_data = real_data
        self.lock = threading.RLock()
        self.requests: list[RecordedRequest] = []
        self.faults: list[Fault] = []
        self.apis: dict[str, StacApi] = {}
        self.files: dict[str, bytes | Path] = {}
        self.lenient_replay = False
        self._replays: dict[str, list[dict[str, Any]]] = {}
        self._basic: list[tuple[str, str, str]] = []
        self._bearer: list[str] = []
        self._oauth_users: dict[str, str] = {}
        self.tokens: set[str] = set()
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self.base_url = ""

    # -- lifecycle -----------------------------------------------------------------------------

    def start(self) -> StacTestServer:
        """Listen on 127.0.0.1 on a free port and serve in a background thread; load the cassettes."""
        server = self

        class Handler(_Handler):
            owner = server

        httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        httpd.daemon_threads = True
        httpd.block_on_close = False
        self._httpd = httpd
        self.base_url = f"http://127.0.0.1:{httpd.server_address[1]}"
        self._thread = threading.Thread(
            target=httpd.serve_forever, kwargs={"poll_interval": 0.02}, name="stac-test-server", daemon=True
        )
        self._thread.start()
        for path in sorted((self.real_data / CASSETTES).rglob("*.yaml")):
            for interaction in _load_cassette(path):
                host = urlsplit(interaction["request"]["uri"]).hostname or ""
                self._replays.setdefault(host, []).append(interaction)
        return self

    def stop(self) -> None:
        """Stop serving and close the socket."""
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None

    # -- content -------------------------------------------------------------------------------

    def url(self, path: str) -> str:
        """The absolute URL of ``path`` on this server."""
        return f"{self.base_url}/{path.lstrip('/')}"

    def replay_url(self, original: str) -> str:
        """Where the recorded API at ``original`` (e.g. ``https://earth-search.aws.element84.com/v1``) is replayed."""
        parts = urlsplit(original)
        return f"{self.base_url}/replay/{parts.hostname}{parts.path}"

    def add_api(self, name: str, items: Iterable[Mapping[str, Any]] = (), **settings: Any) -> StacApi:
        """Serve a STAC API called ``name`` from ``items`` (see :class:`StacApi` for ``settings``)."""
        api = StacApi(self, name, **settings)
        with self.lock:
            self.apis[name] = api
        api.add_items(items)
        return api

    def serve_file(self, source: Path | bytes, route: str | None = None) -> str:
        """Serve a file (or bytes) at ``/files/{route}`` (default: its path under the real data); return its URL."""
        if route is None:
            if isinstance(source, bytes):
                raise ValueError("bytes need a route")
            try:
                route = str(Path(source).relative_to(self.real_data))
            except ValueError:
                route = Path(source).name
        with self.lock:
            self.files[route] = source
        return self.url(f"files/{quote(route)}")

    def file_size_and_checksum(self, route: str) -> tuple[int, str]:
        """Size and SHA2-256 multihash of the file served at ``route``."""
        source = self.files[route]
        if isinstance(source, bytes):
            return len(source), "1220" + hashlib.sha256(source).hexdigest()
        return _file_digest(Path(source))

    def asset_files(
        self,
        items: Iterable[Mapping[str, Any]],
        files: Mapping[str, str],
        *,
        checksums: bool = True,
        prefix: str = "",
    ) -> list[dict[str, Any]]:
        """Copies of ``items`` whose assets point at this server.

        Assets named in ``files`` (asset key → path under the real data) are served from those
        real files at ``/files/{prefix}{path}`` (a distinct ``prefix`` per provider lets a test
        break one provider's files and not another's); with ``checksums`` their ``file:size``
        and ``file:checksum`` become those of the served file (else whatever the Item had
        stays, e.g. the real checksums of the original full-size files). Every other asset
        points at a 404 under ``/unavailable/``.
        """
        rewritten = []
        for item in items:
            item = copy.deepcopy(dict(item))
            for key, asset in item.get("assets", {}).items():
                if key in files:
                    route = prefix + files[key]
                    asset["href"] = self.serve_file(self.real_data / files[key], route)
                    if checksums:
                        asset["file:size"], asset["file:checksum"] = self.file_size_and_checksum(route)
                else:
                    asset["href"] = self.url(f"unavailable/{item['id']}/{key}")
            rewritten.append(item)
        return rewritten

    # -- faults and auth -----------------------------------------------------------------------

    def fail(
        self,
        prefix: str,
        *,
        status: int = 500,
        times: int | None = 1,
        mode: str = "status",
        delay_s: float = 0.0,
        retry_after: str | None = None,
        method: str | None = None,
    ) -> Fault:
        """Make requests under ``prefix`` (a path or a URL of this server) fail; see :class:`Fault`."""
        if prefix.startswith(self.base_url):
            prefix = prefix[len(self.base_url) :]
        prefix = urlsplit(prefix).path or prefix
        fault = Fault(prefix, mode, status, times, delay_s, retry_after, method)
        with self.lock:
            self.faults.append(fault)
        return fault

    def require_basic(self, prefix: str, username: str, password: str) -> None:
        """Answer 401 under ``prefix`` unless the request carries these basic-auth credentials."""
        self._basic.append((self._path(prefix), username, password))

    def require_bearer(self, prefix: str) -> None:
        """Answer 401 under ``prefix`` unless the request carries a token issued by :attr:`token_url`."""
        self._bearer.append(self._path(prefix))

    def add_oauth_user(self, username: str, password: str) -> None:
        """Let ``username``/``password`` obtain tokens from :attr:`token_url` (password grant)."""
        self._oauth_users[username] = password

    @property
    def token_url(self) -> str:
        """The OAuth2 token endpoint (``grant_type=password``)."""
        return self.url("oauth/token")

    def _path(self, prefix: str) -> str:
        return urlsplit(prefix[len(self.base_url) :] if prefix.startswith(self.base_url) else prefix).path

    def requests_to(self, prefix: str, method: str | None = None) -> list[RecordedRequest]:
        """The requests received under ``prefix`` (a path or URL), optionally of one method."""
        path = self._path(prefix)
        with self.lock:
            return [r for r in self.requests if r.path.startswith(path) and method in (None, r.method)]

    def _take_fault(self, method: str, path: str) -> Fault | None:
        with self.lock:
            for fault in self.faults:
                if path.startswith(fault.prefix) and fault.method in (None, method) and fault.times != 0:
                    fault.hits += 1
                    if fault.times is not None:
                        fault.times -= 1
                    return fault
        return None

    # -- replays -------------------------------------------------------------------------------

    def _rewrite_url(self, url: str) -> str:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https", "s3") or not parts.hostname:
            return url
        rest = parts.path + (f"?{parts.query}" if parts.query else "")
        if parts.hostname in self._replays:
            return f"{self.base_url}/replay/{parts.hostname}{rest}"
        return f"{self.base_url}/unavailable/{parts.hostname}{rest}"

    def _rewrite_urls(self, text: str) -> str:
        """Point every ``href`` of a JSON body at this server (conformance URIs and the like stay)."""
        try:
            document = json.loads(text)
        except ValueError:
            return text

        def walk(node: Any) -> Any:
            if isinstance(node, dict):
                return {
                    k: self._rewrite_url(v) if k == "href" and isinstance(v, str) else walk(v) for k, v in node.items()
                }
            if isinstance(node, list):
                return [walk(v) for v in node]
            return node

        return json.dumps(walk(document))

    def _replay(
        self, method: str, host: str, path: str, query: dict[str, list[str]], body: bytes
    ) -> tuple[int, str, str]:
        recorded = self._replays.get(host, [])
        sent = json.loads(body) if body.strip() else None
        candidates = []
        for interaction in recorded:
            request = interaction["request"]
            uri = urlsplit(request["uri"])
            if request["method"] != method or uri.path.rstrip("/") != path.rstrip("/"):
                continue
            recorded_body = json.loads(request["body"]) if request.get("body") else None
            if parse_qs(uri.query) == query and recorded_body == sent:
                return self._replayed(interaction)
            candidates.append((interaction, parse_qs(uri.query), recorded_body))
        if self.lenient_replay:
            sent_body = sent if isinstance(sent, dict) else {}
            token = sent_body.get("next") or (query.get("token") or [None])[0]
            same_page = [
                (interaction, recorded_body or {})
                for interaction, recorded_query, recorded_body in candidates
                if ((recorded_body or {}).get("next") or (recorded_query.get("token") or [None])[0]) == token
            ]
            if same_page:
                # The recorded request most like the one sent: most shared keys, then most equal values.
                def likeness(candidate: tuple[Mapping[str, Any], dict[str, Any]]) -> tuple[int, int]:
                    recorded_body = candidate[1]
                    shared = set(recorded_body) & set(sent_body)
                    return len(shared), sum(recorded_body[k] == sent_body[k] for k in shared)

                return self._replayed(max(same_page, key=likeness)[0])
        expected = [c[2] or c[1] for c in candidates]
        return (
            404,
            "application/json",
            json.dumps(
                {
                    "code": "NotRecorded",
                    "description": f"no recorded {method} {host}{path} with this body",
                    "recorded": expected,
                }
            ),
        )

    def _replayed(self, interaction: Mapping[str, Any]) -> tuple[int, str, str]:
        response = interaction["response"]
        headers = {k.lower(): v for k, v in (response.get("headers") or {}).items()}
        content_type = (headers.get("content-type") or ["application/json"])[0]
        return int(response["status"]["code"]), content_type, self._rewrite_urls(response["body"]["string"])

    # -- the mini STAC API ---------------------------------------------------------------------

    def _api_response(
        self, api: StacApi, method: str, rest: str, query: dict[str, list[str]], body: bytes
    ) -> tuple[int, Any]:
        root = api.url
        if rest in ("", "/"):
            return 200, {
                "type": "Catalog",
                "id": api.name,
                "stac_version": "1.0.0",
                "description": f"test STAC API {api.name}",
                "conformsTo": api.conformance,
                "links": [
                    {"rel": "self", "href": root, "type": "application/json"},
                    {"rel": "root", "href": root, "type": "application/json"},
                    {"rel": "conformance", "href": f"{root}/conformance", "type": "application/json"},
                    {"rel": "data", "href": f"{root}/collections", "type": "application/json"},
                    {"rel": "search", "href": f"{root}/search", "type": "application/geo+json", "method": "GET"},
                    {"rel": "search", "href": f"{root}/search", "type": "application/geo+json", "method": "POST"},
                ],
            }
        if rest == "/conformance":
            return 200, {"conformsTo": api.conformance}
        collections = sorted({item["collection"] for item in api.items})
        if rest == "/collections":
            return 200, {"collections": [self._collection(api, c) for c in collections], "links": []}
        match = re.fullmatch(r"/collections/([^/]+)(?:/items/([^/]+))?", rest)
        if match:
            collection, item_id = match.groups()
            if collection not in collections:
                return 404, {"code": "NotFound", "description": f"no collection {collection}"}
            if item_id is None:
                return 200, self._collection(api, collection)
            found = [i for i in api.items if i["collection"] == collection and i["id"] == item_id]
            return (200, found[0]) if found else (404, {"code": "NotFound", "description": f"no item {item_id}"})
        if rest == "/search":
            if method == "POST":
                try:
                    parameters = json.loads(body or b"{}")
                except ValueError:
                    return 400, {"code": "BadRequest", "description": "body is not JSON"}
            else:
                parameters = {key: values[0] for key, values in query.items()}
            try:
                return 200, self._search(api, method, parameters)
            except (BadRequest, ValueError, KeyError, TypeError) as exc:
                return 400, {"code": "BadRequest", "description": str(exc)}
        return 404, {"code": "NotFound", "description": f"no route {rest}"}

    def _collection(self, api: StacApi, collection: str) -> dict[str, Any]:
        return {
            "type": "Collection",
            "id": collection,
            "stac_version": "1.0.0",
            "description": collection,
            "license": "proprietary",
            "extent": {"spatial": {"bbox": [[-180, -90, 180, 90]]}, "temporal": {"interval": [[None, None]]}},
            "links": [{"rel": "self", "href": f"{api.url}/collections/{collection}"}, {"rel": "root", "href": api.url}],
        }

    def _search(self, api: StacApi, method: str, parameters: dict[str, Any]) -> dict[str, Any]:
        items = list(api.items)
        collections = parameters.get("collections")
        if isinstance(collections, str):
            collections = collections.split(",")
        if collections:
            items = [i for i in items if i["collection"] in collections]
        ids = parameters.get("ids")
        if isinstance(ids, str):
            ids = ids.split(",")
        if ids:
            items = [i for i in items if i["id"] in ids]
        bbox = parameters.get("bbox")
        if isinstance(bbox, str):
            bbox = [float(v) for v in bbox.split(",")]
        if bbox:
            area = box(*bbox[:2], *bbox[-2:])
            items = [i for i in items if shape(i["geometry"]).intersects(area)]
        intersects = parameters.get("intersects")
        if isinstance(intersects, str):
            intersects = json.loads(intersects)
        if intersects:
            area = shape(intersects)
            items = [i for i in items if shape(i["geometry"]).intersects(area)]
        interval = parameters.get("datetime")
        if interval:
            start_text, _, end_text = str(interval).partition("/")
            start, end = _parse_instant(start_text), _parse_instant(end_text if "/" in str(interval) else start_text)
            items = [
                i for i in items if (start is None or _item_time(i) >= start) and (end is None or _item_time(i) <= end)
            ]
        expression = parameters.get("filter")
        if expression:
            language = parameters.get("filter-lang", "cql2-json" if isinstance(expression, dict) else "cql2-text")
            if language != "cql2-json":
                raise BadRequest(f"filter-lang {language} is not supported; use cql2-json")
            if isinstance(expression, str):
                expression = json.loads(expression)
            items = [i for i in items if cql2_matches(expression, i)]
        query = parameters.get("query")
        if query:
            if isinstance(query, str):
                query = json.loads(query)
            items = [i for i in items if query_matches(query, i)]
        items.sort(key=lambda i: i["id"])
        items.sort(key=_item_time, reverse=True)
        limit = min(int(parameters.get("limit") or 10), api.max_page_size)
        token = parameters.get("next") or parameters.get("token")
        offset = int(str(token).removeprefix("offset:")) if token else 0
        page = items[offset : offset + limit]
        links: list[dict[str, Any]] = [{"rel": "root", "href": api.url, "type": "application/json"}]
        if offset + limit < len(items):
            next_token = f"offset:{offset + limit}"
            if method == "POST":
                following = {k: v for k, v in parameters.items() if k != "next"}
                links.append(
                    {
                        "rel": "next",
                        "href": f"{api.url}/search",
                        "method": "POST",
                        "type": "application/geo+json",
                        "body": {**following, "next": next_token},
                        "merge": False,
                    }
                )
            else:
                from urllib.parse import urlencode

                query_string = urlencode({**{k: v for k, v in parameters.items() if k != "token"}, "token": next_token})
                links.append({"rel": "next", "href": f"{api.url}/search?{query_string}", "method": "GET"})
        return {
            "type": "FeatureCollection",
            "features": page,
            "links": links,
            "numberMatched": len(items),
            "numberReturned": len(page),
        }

    # -- auth ----------------------------------------------------------------------------------

    def _authorized(self, path: str, headers: Mapping[str, str]) -> bool:
        authorization = headers.get("authorization", "")
        for prefix, username, password in self._basic:
            if path.startswith(prefix):
                expected = "Basic " + base64.b64encode(f"{username}:{password}".encode()).decode()
                if authorization != expected:
                    return False
        for prefix in self._bearer:
            if path.startswith(prefix):
                token = authorization.removeprefix("Bearer ")
                if not authorization.startswith("Bearer ") or token not in self.tokens:
                    return False
        return True

    def _issue_token(self, body: bytes) -> tuple[int, Any]:
        form = {key: values[0] for key, values in parse_qs(body.decode()).items()}
        if form.get("grant_type") != "password" or self._oauth_users.get(form.get("username", "")) != form.get(
            "password"
        ):
            return 401, {"error": "invalid_grant"}
        token = secrets.token_hex(16)
        with self.lock:
            self.tokens.add(token)
        return 200, {"access_token": token, "token_type": "Bearer", "expires_in": 600}


class _Handler(BaseHTTPRequestHandler):
    owner: StacTestServer
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:  # the base class's name
        pass

    def do_GET(self) -> None:  # http.server's naming
        self._handle("GET")

    def do_HEAD(self) -> None:
        self._handle("HEAD")

    def do_POST(self) -> None:
        self._handle("POST")

    def _handle(self, method: str) -> None:
        owner = self.owner
        parts = urlsplit(self.path)
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        headers = {k.lower(): v for k, v in self.headers.items()}
        query = parse_qs(parts.query)
        with owner.lock:
            owner.requests.append(RecordedRequest(method, parts.path, query, headers, body))
        fault = owner._take_fault(method, parts.path)
        if fault is not None and fault.mode == "stall":
            time.sleep(fault.delay_s)
            fault = None
        if fault is not None and fault.mode == "status":
            extra = {"Retry-After": fault.retry_after} if fault.retry_after else {}
            self._send(fault.status, "application/json", json.dumps({"code": "InjectedFault"}).encode(), method, extra)
            return
        if parts.path == "/oauth/token" and method == "POST":
            status, document = owner._issue_token(body)
            self._send(status, "application/json", json.dumps(document).encode(), method)
            return
        if not owner._authorized(parts.path, headers):
            self._send(
                401, "application/json", b'{"code": "Unauthorized"}', method, {"WWW-Authenticate": 'Basic realm="test"'}
            )
            return
        status, content_type, payload, extra = self._route(method, parts.path, query, body, headers)
        if fault is not None and fault.mode in ("truncate", "corrupt") and status in (200, 206):
            if fault.mode == "corrupt":  # same length, headers intact: only a checksum can tell
                middle = len(payload) // 2
                payload = (
                    payload[:middle] + bytes(b ^ 0xFF for b in payload[middle : middle + 64]) + payload[middle + 64 :]
                )
            else:
                self._send(status, content_type, payload, method, extra, send_bytes=len(payload) // 2)
                return
        self._send(status, content_type, payload, method, extra)

    def _route(
        self, method: str, path: str, query: dict[str, list[str]], body: bytes, headers: Mapping[str, str]
    ) -> tuple[int, str, bytes, dict[str, str]]:
        owner = self.owner
        if path.startswith("/files/"):
            return self._file(path[len("/files/") :], headers)
        if path.startswith("/replay/"):
            host, _, rest = path[len("/replay/") :].partition("/")
            status, content_type, text = owner._replay(method, host, "/" + rest, query, body)
            return status, content_type, text.encode(), {}
        match = re.fullmatch(r"/apis/([^/]+)(/.*)?", path)
        if match and match.group(1) in owner.apis:
            status, document = owner._api_response(
                owner.apis[match.group(1)], method, match.group(2) or "", query, body
            )
            media = (
                "application/geo+json"
                if document.get("type") in ("Feature", "FeatureCollection")
                else "application/json"
            )
            return status, media, json.dumps(document).encode(), {}
        return 404, "application/json", json.dumps({"code": "NotFound", "description": path}).encode(), {}

    def _file(self, route: str, headers: Mapping[str, str]) -> tuple[int, str, bytes, dict[str, str]]:
        from urllib.parse import unquote

        source = self.owner.files.get(unquote(route))
        if source is None:
            return 404, "application/json", b'{"code": "NotFound"}', {}
        data = source if isinstance(source, bytes) else Path(source).read_bytes()
        media = (
            "image/jp2"
            if route.endswith(".jp2")
            else "image/tiff"
            if route.lower().endswith((".tif", ".tiff"))
            else "application/octet-stream"
        )
        extra = {"Accept-Ranges": "bytes"}
        requested = re.fullmatch(r"bytes=(\d+)-(\d*)", headers.get("range", ""))
        if requested:
            start = int(requested.group(1))
            end = int(requested.group(2)) if requested.group(2) else len(data) - 1
            if start >= len(data):
                return 416, media, b"", {**extra, "Content-Range": f"bytes */{len(data)}"}
            end = min(end, len(data) - 1)
            return 206, media, data[start : end + 1], {**extra, "Content-Range": f"bytes {start}-{end}/{len(data)}"}
        return 200, media, data, extra

    def _send(
        self,
        status: int,
        content_type: str,
        payload: bytes,
        method: str,
        extra: Mapping[str, str] | None = None,
        send_bytes: int | None = None,
    ) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(payload)))
        for key, value in (extra or {}).items():
            self.send_header(key, value)
        if send_bytes is not None:
            self.send_header("Connection", "close")
            self.close_connection = True
        self.end_headers()
        if method != "HEAD":
            self.wfile.write(payload if send_bytes is None else payload[:send_bytes])
        self.wfile.flush()


@pytest.fixture
def stac_server(real_data: Path) -> Iterator[StacTestServer]:
    """A fresh :class:`StacTestServer` on 127.0.0.1 (cassettes loaded; no API until ``add_api``)."""
    server = StacTestServer(real_data).start()
    try:
        yield server
    finally:
        server.stop()
