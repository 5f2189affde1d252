"""The API's Items are the ones ``export-stac`` writes: byte for byte, but for links and asset hrefs as served.

A search page builds its Items from read-only views of the rows (``ObjectSearch.views``), the
export and ``GET .../items/{id}`` from ``Image`` objects; both go through ``item_document``. Each
test runs on the SQLite and on the PostgreSQL test cube.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import pytest
import shapely.geometry

from cube_assets.client import Catalog, Image
from cube_assets.client.stac_export import export_static_catalog, item_context, item_document
from cube_assets.service.hrefs import AssetHrefs
from cube_assets_tests.service.conftest import RunningApi


@pytest.fixture(params=["sqlite", "postgresql"])
def api(request: pytest.FixtureRequest) -> RunningApi:
    running: RunningApi = request.getfixturevalue("stac_api" if request.param == "sqlite" else "stac_api_pg")
    return running


def _exported(catalog: Catalog, folder: Path) -> dict[str, dict[str, Any]]:
    export_static_catalog(catalog, folder)
    items = {}
    for path in folder.glob("*/*/*.json"):
        document = json.loads(path.read_text(encoding="utf-8"))
        items[document["id"]] = document
    return items


def _as_served(document: dict[str, Any]) -> bytes:
    """The Item without its links, with asset hrefs as the API gives them, as JSON bytes (key order kept)."""
    served = {key: value for key, value in document.items() if key != "links"}
    hrefs = AssetHrefs()
    served["assets"] = {name: {**asset, "href": hrefs.href(asset["href"])} for name, asset in served["assets"].items()}
    return json.dumps(served).encode()


def _without_links(document: dict[str, Any]) -> bytes:
    return json.dumps({key: value for key, value in document.items() if key != "links"}).encode()


def test_search_pages_hold_the_exported_items(api: RunningApi, tmp_path: Path) -> None:
    exported = _exported(api.catalog, tmp_path / "stac")
    features: list[dict[str, Any]] = []
    body: dict[str, Any] | None = {"limit": 7}
    while body is not None:  # several pages: views of each page's rows
        page = httpx.post(f"{api.url}search", json=body, timeout=60).raise_for_status().json()
        features.extend(page["features"])
        following = [link for link in page["links"] if link["rel"] == "next"]
        body = following[0]["body"] if following else None

    assert len(features) == len(exported) > 7
    for feature in features:
        assert _without_links(feature) == _as_served(exported[feature["id"]]), feature["id"]


def test_an_item_read_alone_is_the_exported_item(api: RunningApi, tmp_path: Path) -> None:
    exported = _exported(api.catalog, tmp_path / "stac")
    some = sorted(exported)[:: max(1, len(exported) // 5)]

    for item_id in some:
        collection = exported[item_id]["collection"]
        item = httpx.get(f"{api.url}collections/{collection}/items/{item_id}", timeout=60).raise_for_status().json()
        assert _without_links(item) == _as_served(exported[item_id])


def test_views_hold_the_values_of_the_images(api: RunningApi) -> None:
    search = Image.search(api.catalog).sort("id")
    images, views = list(search), list(search.views())

    assert [view.id for view in views] == [image.id for image in images]
    contexts = {image.product_id: item_context(image.product()) for image in images}
    for image, view in zip(images, views, strict=True):
        assert view.files == image.files and view.geotransform == image.geotransform
        assert view.geometry == image.geometry and shapely.geometry.shape(view.footprint_geojson()) == image.geometry
        context = contexts[image.product_id]
        assert json.dumps(item_document(view, context)) == json.dumps(item_document(image, context))
