"""pystac-client against the served API gives the same images, in the same order, as the catalog's own searches.

Each case is a pystac-client search and the ``Catalog(...).images`` search a Python user would
write for it; pages are small (4 items), so every case also walks several ``next`` links.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import shapely.geometry
from pystac_client import Client

from cube_assets.catalog.expressions import p
from cube_assets.client import Catalog, File, Image
from cube_assets.service.app import create_app
from cube_assets.service.settings import ServiceSettings
from cube_assets_tests.service.conftest import (
    CRS,
    LCF,
    MERGE,
    SCENES,
    RunningApi,
    build_cube_catalog,
    serve,
    tile_footprint,
)

UTC = dt.UTC
T1, T2 = tile_footprint("023017"), tile_footprint("024017")
INSIDE_T2 = shapely.geometry.box(*T2.centroid.buffer(0.0003).bounds)


def overlap(start: Any, end: Any) -> Any:
    """Images whose time span (acquired..acquired_end, or the instant acquired) meets start..end."""
    conditions = []
    if end is not None:
        conditions.append(p.acquired <= end)
    if start is not None:
        conditions.append((p.acquired_end >= start) | ((p.acquired_end == None) & (p.acquired >= start)))  # noqa: E711 - builds IS NULL
    expression = conditions[0]
    for condition in conditions[1:]:
        expression = expression & condition
    return expression


Case = tuple[str, dict[str, Any], Callable[[Any], Any]]
CASES: list[Case] = [
    ("everything", {}, lambda s: s),
    ("one collection", {"collections": [LCF]}, lambda s: s.filter(p.product_id == LCF)),
    ("two collections, GET", {"collections": [MERGE, SCENES], "method": "GET"},
     lambda s: s.filter(p.product_id.in_([MERGE, SCENES]))),
    ("bbox of a tile", {"bbox": list(T1.bounds), "collections": [MERGE]},
     lambda s: s.filter(p.product_id == MERGE).intersects(shapely.geometry.box(*T1.bounds))),
    ("intersects a polygon", {"intersects": INSIDE_T2.__geo_interface__}, lambda s: s.intersects(INSIDE_T2)),
    ("closed datetime range", {"datetime": "2024-01-10T00:00:00Z/2024-02-01T00:00:00Z"},
     lambda s: s.filter(overlap("2024-01-10T00:00:00Z", "2024-02-01T00:00:00Z"))),
    ("open-ended datetime range", {"datetime": "2024-02-10T00:00:00Z/.."},
     lambda s: s.filter(overlap("2024-02-10T00:00:00Z", None))),
    ("open-started datetime range, GET", {"datetime": "../2024-01-20T00:00:00Z", "method": "GET"},
     lambda s: s.filter(overlap(None, "2024-01-20T00:00:00Z"))),
    ("instant", {"datetime": "2024-01-04T13:00:00Z"},
     lambda s: s.filter(overlap("2024-01-04T13:00:00Z", "2024-01-04T13:00:00Z"))),
    ("ids", {"ids": ["s2_test_023017_20240104", "s2_test_024017_20240101_LCF", "missing"]},
     lambda s: s.filter(p.id.in_(["s2_test_023017_20240104", "s2_test_024017_20240101_LCF", "missing"]))),
    ("query cloud cover", {"query": {"eo:cloud_cover": {"lt": 30}}}, lambda s: s.filter(p.cloud_fraction < 0.3)),
    ("CQL2 text and", {"filter": "eo:cloud_cover < 20 AND collection = 's2_test-merge'", "filter_lang": "cql2-text"},
     lambda s: s.filter((p.cloud_fraction < 0.2) & (p.product_id == MERGE))),
    ("CQL2 JSON or", {"filter": {"op": "or", "args": [
        {"op": ">", "args": [{"property": "eo:cloud_cover"}, 60]},
        {"op": "=", "args": [{"property": "collection"}, SCENES]}]}},
     lambda s: s.filter((p.cloud_fraction > 0.6) | (p.product_id == SCENES))),
    ("CQL2 is null", {"filter": {"op": "isNull", "args": [{"property": "eo:cloud_cover"}]}},
     lambda s: s.filter(p.cloud_fraction == None)),  # noqa: E711 - builds IS NULL
    ("CQL2 tile, GET", {"filter": "\"cube_assets:tile\" = '024017'", "method": "GET"},
     lambda s: s.filter(p.tile == "024017")),
    ("CQL2 like prefix", {"filter": "id LIKE 's2\\_test\\_024017\\_%'"},
     lambda s: s.filter(p.id.prefix("s2_test_024017_"))),
    ("CQL2 t_intersects",
     {"filter": "T_INTERSECTS(datetime, INTERVAL('2024-01-17T00:00:00Z', '2024-01-31T00:00:00Z'))"},
     lambda s: s.filter(overlap("2024-01-17T00:00:00Z", "2024-01-31T00:00:00Z"))),
    ("CQL2 s_intersects and collection", {"filter": {"op": "and", "args": [
        {"op": "s_intersects", "args": [{"property": "geometry"}, INSIDE_T2.__geo_interface__]},
        {"op": "=", "args": [{"property": "collection"}, LCF]}]}},
     lambda s: s.filter(p.product_id == LCF).intersects(INSIDE_T2)),
    ("sort by cloud cover descending (nulls last)", {"sortby": "-eo:cloud_cover"},
     lambda s: s.sort("cloud_fraction", ascending=False)),
    ("sort by id descending, GET", {"sortby": "-id", "collections": [LCF], "method": "GET"},
     lambda s: s.filter(p.product_id == LCF).sort("id", ascending=False)),
    ("sort by tile (nullable)", {"sortby": [{"field": "cube_assets:tile", "direction": "asc"}]},
     lambda s: s.sort("tile")),
    ("bbox, datetime and cloud filter together", {
        "bbox": list(T2.bounds), "datetime": "2024-01-15T00:00:00Z/2024-03-01T00:00:00Z",
        "filter": "eo:cloud_cover <= 50"},
     lambda s: s.filter(overlap("2024-01-15T00:00:00Z", "2024-03-01T00:00:00Z")).filter(p.cloud_fraction <= 0.5)
     .intersects(shapely.geometry.box(*T2.bounds))),
]  # fmt: skip


def api_ids(api: RunningApi, arguments: dict[str, Any]) -> list[str]:
    client = Client.open(api.url)
    return [item.id for item in client.search(limit=4, **arguments).items()]


@pytest.mark.parametrize(("name", "arguments", "catalog_search"), CASES, ids=[case[0] for case in CASES])
def test_pystac_client_finds_what_the_catalog_finds_on_sqlite(
    stac_api: RunningApi, name: str, arguments: dict[str, Any], catalog_search: Callable[[Any], Any]
) -> None:
    expected = [image.id for image in catalog_search(stac_api.catalog.images.search())]

    assert api_ids(stac_api, arguments) == expected


@pytest.mark.parametrize(("name", "arguments", "catalog_search"), CASES, ids=[case[0] for case in CASES])
def test_pystac_client_finds_what_the_catalog_finds_on_postgresql(
    stac_api_pg: RunningApi, name: str, arguments: dict[str, Any], catalog_search: Callable[[Any], Any]
) -> None:
    expected = [image.id for image in catalog_search(stac_api_pg.catalog.images.search())]

    assert api_ids(stac_api_pg, arguments) == expected


def test_the_cases_are_not_trivial(cube_catalog: Catalog) -> None:
    sizes = [len(list(search(cube_catalog.images.search()))) for _, _, search in CASES]

    assert len(CASES) >= 20
    assert sum(1 for size in sizes if size > 4) >= 10  # at least half of them span two pages or more
    assert all(size > 0 for size in sizes)


@pytest.fixture
def changing_api(tmp_path: Path) -> Iterator[RunningApi]:
    """A test cube of its own, which the test may change, served on loopback."""
    catalog = build_cube_catalog(f"sqlite:///{tmp_path}/catalog.sqlite", tmp_path)
    running = serve(create_app(ServiceSettings(catalog_url="unused"), catalog=catalog), catalog)
    yield running
    running.stop()
    catalog.close()


def upsert_merge(catalog: Catalog, image_id: str, acquired: dt.datetime, cloud: float) -> None:
    Image(catalog=catalog, id=image_id, product_id=MERGE, acquired=acquired, geometry=T1, crs=CRS, tile="023017",
          cloud_fraction=cloud, files={"B04": File(f"/data/{image_id}_B04.tif", 10)}).save()  # fmt: skip


def test_paging_stays_correct_while_images_are_upserted_between_pages(changing_api: RunningApi) -> None:
    catalog = changing_api.catalog
    pages = Client.open(changing_api.url).search(collections=[MERGE], limit=5).pages()
    seen = [[item.id for item in next(pages).items]]
    upsert_merge(catalog, "early_one", dt.datetime(2023, 12, 1, tzinfo=UTC), 0.1)  # before the cursor: not seen
    upsert_merge(catalog, "late_one", dt.datetime(2024, 3, 1, tzinfo=UTC), 0.2)  # after it: seen
    seen_image = catalog.images.get(seen[0][0])
    seen_image.cloud_fraction = 0.99  # an image already seen changes: not seen twice
    seen_image.save()
    seen.append([item.id for item in next(pages).items])
    upsert_merge(catalog, "later_one", dt.datetime(2024, 3, 2, tzinfo=UTC), 0.3)
    seen.extend([item.id for item in page.items] for page in pages)

    walked = [image_id for page in seen for image_id in page]
    final = [image.id for image in catalog.images.search().filter(p.product_id == MERGE)]
    assert len(seen) >= 4 and all(len(page) == 5 for page in seen[:-1])
    assert walked == [image_id for image_id in final if image_id != "early_one"]
    assert walked[-2:] == ["late_one", "later_one"]
