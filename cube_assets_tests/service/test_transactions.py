"""Writes: the Transactions extension exists only with allow_writes, needs the bearer token, uses the catalog."""

from __future__ import annotations

import copy
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from cube_assets.client import Catalog
from cube_assets.errors import CatalogError
from cube_assets.service.app import create_app
from cube_assets.service.settings import ServiceSettings
from cube_assets_tests.service.conftest import LCF, RunningApi, build_cube_catalog, serve

TOKEN = "test-write-token-0123456789"
SOURCE_ITEM = "s2_test_023017_20240101_LCF"


@pytest.fixture
def writable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[RunningApi]:
    monkeypatch.setenv("CUBE_ASSETS_API_TOKEN", TOKEN)
    catalog = build_cube_catalog(f"sqlite:///{tmp_path}/catalog.sqlite", tmp_path)
    running = serve(create_app(ServiceSettings(catalog_url="unused", allow_writes=True), catalog=catalog), catalog)
    yield running
    running.stop()
    catalog.close()


def new_item(api: RunningApi, item_id: str) -> dict:
    item = copy.deepcopy(httpx.get(f"{api.url}collections/{LCF}/items/{SOURCE_ITEM}").json())
    item["id"] = item["properties"]["title"] = item_id
    item["properties"]["eo:cloud_cover"] = 12.5
    return item


def test_without_allow_writes_there_is_no_write_route(stac_api: RunningApi) -> None:
    response = httpx.post(f"{stac_api.url}collections/{LCF}/items", json={"type": "Feature"})

    assert response.status_code == 405
    assert "http://www.opengis.net/spec/ogcapi-features-4/1.0/conf/simpletx" not in httpx.get(stac_api.url).text


def test_allow_writes_without_a_token_in_the_environment_is_refused(
    cube_catalog: Catalog, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("CUBE_ASSETS_API_TOKEN", raising=False)

    with pytest.raises(CatalogError, match="CUBE_ASSETS_API_TOKEN"):
        create_app(ServiceSettings(catalog_url="unused", allow_writes=True), catalog=cube_catalog)


def test_writes_need_the_bearer_token(writable: RunningApi) -> None:
    url = f"{writable.url}collections/{LCF}/items"
    item = new_item(writable, "added_by_api")

    assert httpx.post(url, json=item).status_code == 401
    assert httpx.post(url, json=item, headers={"Authorization": "Bearer wrong"}).status_code == 401
    assert writable.catalog.images.get("added_by_api") is None


def test_an_item_is_created_replaced_and_deleted_through_the_catalog(writable: RunningApi) -> None:
    auth = {"Authorization": f"Bearer {TOKEN}"}
    items = f"{writable.url}collections/{LCF}/items"
    item = new_item(writable, "added_by_api")

    created = httpx.post(items, json=item, headers=auth)
    stored = writable.catalog.images.get("added_by_api")
    item["properties"]["eo:cloud_cover"] = 40.0
    replaced = httpx.put(f"{items}/added_by_api", json=item, headers=auth)
    served = httpx.get(f"{items}/added_by_api").json()
    deleted = httpx.delete(f"{items}/added_by_api", headers=auth)

    assert created.status_code == 201, created.text
    assert stored is not None and stored.cloud_fraction == pytest.approx(0.125) and stored.tile == "023017"
    assert sorted(stored.files) == ["B04", "B08", "SCL", "quicklook"]
    assert replaced.status_code == 200, replaced.text
    assert served["properties"]["eo:cloud_cover"] == pytest.approx(40.0)
    assert deleted.status_code == 204
    assert httpx.get(f"{items}/added_by_api").status_code == 404


def test_a_write_the_catalog_refuses_is_a_400_and_changes_nothing(writable: RunningApi) -> None:
    auth = {"Authorization": f"Bearer {TOKEN}"}
    item = new_item(writable, "bad_cloud")
    item["properties"]["eo:cloud_cover"] = 150

    response = httpx.post(f"{writable.url}collections/{LCF}/items", json=item, headers=auth)

    assert response.status_code == 400 and response.json()["parameter"] == "item", response.text
    assert "cloud_fraction" in response.json()["description"]
    assert writable.catalog.images.get("bad_cloud") is None


def test_creating_an_existing_item_is_a_conflict(writable: RunningApi) -> None:
    auth = {"Authorization": f"Bearer {TOKEN}"}
    item = new_item(writable, SOURCE_ITEM)

    assert httpx.post(f"{writable.url}collections/{LCF}/items", json=item, headers=auth).status_code == 409
