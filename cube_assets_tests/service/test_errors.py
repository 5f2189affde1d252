"""Bad requests get a 400 whose JSON body names the parameter; unknown collections and items a 404; no secret leaks."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from cube_assets.client import Catalog
from cube_assets.service.app import create_app
from cube_assets.service.settings import ServiceSettings
from cube_assets_tests.service.conftest import LCF, MERGE, RunningApi, free_port, serve


@pytest.fixture
def http(stac_api: RunningApi) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=stac_api.url, timeout=30) as client:
        yield client


def assert_bad(response: httpx.Response, parameter: str) -> None:
    assert response.status_code == 400, response.text
    body = response.json()
    assert body["code"] == "InvalidParameter" and body["parameter"] == parameter, body
    assert body["description"].startswith(f"{parameter}")


@pytest.mark.parametrize(
    ("query", "parameter"),
    [
        ({"bbox": "1,2,3"}, "bbox"),
        ({"bbox": "a,b,c,d"}, "bbox"),
        ({"bbox": "10,50,0,40"}, "bbox"),
        ({"bbox": "0,-95,1,1"}, "bbox"),
        ({"datetime": "2024-13-01T00:00:00Z"}, "datetime"),
        ({"datetime": "2024-01-01"}, "datetime"),
        ({"datetime": "2024-02-01T00:00:00Z/2024-01-01T00:00:00Z"}, "datetime"),
        ({"datetime": "../.."}, "datetime"),
        ({"limit": "0"}, "limit"),
        ({"limit": "-3"}, "limit"),
        ({"limit": "many"}, "limit"),
        ({"filter": "eo:cloud_cover <<< 3"}, "filter"),
        ({"filter": "no_such_property = 3"}, "filter"),
        ({"filter": "eo:cloud_cover = 'cloudy'"}, "filter"),
        ({"filter-lang": "cql3", "filter": "id = 'x'"}, "filter-lang"),
        ({"sortby": "-no_such_property"}, "sortby"),
        ({"intersects": "{not json"}, "intersects"),
        ({"query": '{"eo:cloud_cover": {"near": 3}}'}, "query"),
        ({"token": "not-a-token"}, "token"),
    ],
)
def test_a_malformed_get_parameter_is_a_400_naming_it(
    http: httpx.Client, query: dict[str, str], parameter: str
) -> None:
    assert_bad(http.get("search", params=query), parameter)


@pytest.mark.parametrize(
    ("body", "parameter"),
    [
        ({"bbox": [1, 2, 3]}, "bbox"),
        ({"datetime": "yesterday"}, "datetime"),
        ({"limit": 0}, "limit"),
        ({"limit": "ten"}, "limit"),
        ({"filter": {"op": "=", "args": [{"property": "eo:cloud_cover"}]}}, "filter"),
        ({"filter": {"op": "unknown_op", "args": []}}, "filter"),
        ({"filter": "collection = "}, "filter"),
        ({"intersects": {"type": "Polygon", "coordinates": [[[0, 0], [1, 1]]]}}, "intersects"),
        ({"bbox": [0, 0, 1, 1], "intersects": {"type": "Point", "coordinates": [0, 0]}}, "intersects"),
        ({"sortby": [{"field": "properties.eo:cloud_cover", "direction": "asc"}, {"field": "id"}]}, "sortby"),
    ],
)
def test_a_malformed_post_parameter_is_a_400_naming_it(
    http: httpx.Client, body: dict[str, Any], parameter: str
) -> None:
    assert_bad(http.post("search", json=body), parameter)


def test_items_of_a_collection_check_their_parameters_too(http: httpx.Client) -> None:
    assert_bad(http.get(f"collections/{LCF}/items", params={"bbox": "1,2"}), "bbox")
    assert_bad(http.get(f"collections/{LCF}/items", params={"limit": "0"}), "limit")


@pytest.mark.parametrize(
    "path",
    ["collections/nope", "collections/nope/items", "collections/nope/items/x", f"collections/{LCF}/items/nope",
     f"collections/{MERGE}/items/s2_test_024017_20240101_LCF", "collections/nope/queryables"],
)  # fmt: skip
def test_unknown_collections_and_items_are_404(http: httpx.Client, path: str) -> None:
    response = http.get(path)

    assert response.status_code == 404, response.text
    assert response.json()["code"] == "NotFoundError"


def test_a_limit_over_the_maximum_returns_the_maximum(cube_catalog: Catalog) -> None:
    api = serve(create_app(ServiceSettings(catalog_url="unused", max_limit=5), catalog=cube_catalog), cube_catalog)
    try:
        found = httpx.get(f"{api.url}search", params={"limit": 1000}).json()
    finally:
        api.stop()

    assert found["numberReturned"] == 5
    assert any(link["rel"] == "next" for link in found["links"])


@pytest.mark.parametrize(
    "hostile",
    ["x' OR '1'='1", "x'); DROP TABLE images; --", 's2_test-LCF" OR 1=1 --'],
)
def test_values_reach_sql_bound_never_as_text(http: httpx.Client, hostile: str) -> None:
    quoted = hostile.replace("'", "''")
    by_filter = http.get("search", params={"filter": f"collection = '{quoted}'"})
    by_ids = http.post("search", json={"ids": [hostile], "collections": [hostile]})

    assert by_filter.status_code == 200 and by_filter.json()["features"] == []
    assert by_ids.status_code == 200 and by_ids.json()["features"] == []
    assert http.get("search", params={"limit": 100}).json()["numberReturned"] > 0  # the tables are still there


def test_a_database_failure_names_neither_the_database_url_nor_its_password(caplog: pytest.LogCaptureFixture) -> None:
    url = f"postgresql+psycopg://cube_reader:s3cr3t-pw@127.0.0.1:{free_port()}/cubes"
    catalog = Catalog(url, migrate=False)
    api = serve(create_app(ServiceSettings(catalog_url=url), catalog=catalog), catalog)
    try:
        with caplog.at_level(logging.DEBUG):
            responses = [httpx.get(f"{api.url}{path}", timeout=30) for path in ("collections", "search", "")]
    finally:
        api.stop()
        catalog.close()

    for response in responses:
        assert response.status_code == 503, response.text
        assert response.json()["code"] == "CatalogUnavailable"
        for secret in ("s3cr3t-pw", "cube_reader", "127.0.0.1:", "cubes"):
            assert secret not in response.text.replace(api.url, "")
    assert "s3cr3t-pw" not in caplog.text and "cube_reader" not in caplog.text
