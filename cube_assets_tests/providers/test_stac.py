"""The ``stac`` driver against the loopback server: real recorded Earth Search exchanges and real Items.

The internet is replaced by ``cube_assets_tests.fixtures_stac`` (recorded responses of the real
APIs, real Items with hrefs rewritten to real rasters served on 127.0.0.1).
"""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime
from pathlib import Path

import pytest
from shapely.geometry import Point, box, shape

from cube_assets.errors import ProviderError
from cube_assets.providers.base import SENTINEL2_L2A
from cube_assets.providers.registry import EXAMPLES_DIR, read_provider_file
from cube_assets.providers.stac import StacProvider, build_stac_provider, parse_stac_options
from cube_assets_tests.fixtures_stac import REAL_S2_ASSET_FILES, real_sentinel2_items

EARTH_SEARCH = "https://earth-search.aws.element84.com/v1"
TILE_35MNM = box(27.4, -7.8, 27.5, -7.7)
JUNE = (datetime(2020, 6, 1, tzinfo=UTC), datetime(2020, 7, 1, tzinfo=UTC))


def _provider(url: str, name: str = "pc", **options) -> StacProvider:
    return build_stac_provider(name, {"url": url, "retries": 1, "backoff_s": 0, **options}, {})


def _june_items(real_data: Path, max_cloud: float | None = None) -> list[str]:
    """The ids of the real Items of June 2020, computed from the Items themselves."""
    ids = []
    for item in real_sentinel2_items(real_data):
        when = datetime.fromisoformat(item["properties"]["datetime"].replace("Z", "+00:00"))
        if JUNE[0] <= when < JUNE[1] and (max_cloud is None or item["properties"]["eo:cloud_cover"] <= max_cloud):
            ids.append(item["id"])
    return ids


@pytest.fixture
def pc_api(stac_server, real_data):
    """The 13 real Planetary Computer Items of 35MNM served by a test STAC API, assets on real rasters."""
    items = stac_server.asset_files(real_sentinel2_items(real_data), REAL_S2_ASSET_FILES)
    return stac_server.add_api("pc", items)


# --------------------------------------------------------------------------------------------
# Recorded Earth Search exchanges


@pytest.mark.filterwarnings("ignore::pystac_client.warnings.DoesNotConformTo")
def test_recorded_cql2_filter_search_follows_next_pages(stac_server) -> None:
    """pystac-client on our session replays the real CQL2-JSON search and its POST ``next`` paging.

    The recorded answers show Earth Search ignoring the filter (it does not declare the filter
    conformance class): Items up to 57 % cloud cover came back. That is why ``StacProvider``
    applies the cloud-cover rule again on its side (next test, and ``select_scenes``).
    """
    from pystac_client import Client
    from pystac_client.stac_api_io import StacApiIO

    provider = _provider(stac_server.replay_url(EARTH_SEARCH), "earth-search")
    stac_io = StacApiIO(max_retries=None)
    stac_io.session = provider.http.api_session
    client = Client.open(stac_server.replay_url(EARTH_SEARCH), stac_io=stac_io)
    search = client.search(
        filter={"op": "lte", "args": [{"property": "eo:cloud_cover"}, 40]}, filter_lang="cql2-json", max_items=20
    )

    items = list(search.items_as_dicts())

    assert len(items) == 20 and len({i["id"] for i in items}) == 20
    covers = [i["properties"]["eo:cloud_cover"] for i in items if "eo:cloud_cover" in i["properties"]]
    assert max(covers) > 40  # the filter was not applied by the server
    posts = stac_server.requests_to("/replay/earth-search.aws.element84.com/v1/search", "POST")
    assert [sorted(p.json()) for p in posts] == [["filter", "filter-lang"], ["next"]]


def test_recorded_multi_collection_search_yields_only_the_asked_collection(stac_server) -> None:
    """The recorded answer holds a Sentinel-2 and a Landsat Item; a sentinel-2-l2a search keeps one scene."""
    stac_server.lenient_replay = True  # our request body differs from the recorded one; pages are matched by token
    options = read_provider_file(EXAMPLES_DIR / "earth-search.json").driver_options()
    provider = build_stac_provider("earth-search", {**options, "url": stac_server.replay_url(EARTH_SEARCH)}, {})
    day = (datetime(2023, 10, 8, tzinfo=UTC), datetime(2023, 10, 9, tzinfo=UTC))

    scenes = provider.search(SENTINEL2_L2A, Point(-105.1019, 40.1672).buffer(0.01), *day)

    assert [s.scene_id for s in scenes] == ["S2A_MSIL2A_20231008T175231_N0509_R141_T13TDE_20231008T233154"]
    scene = scenes[0]
    assert scene.properties["stac_item_id"] == "S2A_13TDE_20231008_0_L2A"
    assert scene.cloud_cover == pytest.approx(0.000299)
    assert len(stac_server.requests_to("/replay/earth-search.aws.element84.com/v1/search", "POST")) == 2
    # The example's asset mapping finds the cube's band names among Earth Search's common-name keys.
    files = provider.band_files(scene)
    assert files["B04"].href.endswith("/B04.tif") and files["SCL"].href.endswith("/SCL.tif")
    assert files["B04"].href.startswith(stac_server.base_url)  # rewritten: nothing points at the internet


def test_cloud_cover_limit_holds_even_when_the_api_does_not_apply_it(stac_server) -> None:
    stac_server.lenient_replay = True
    provider = _provider(stac_server.replay_url(EARTH_SEARCH), "earth-search")
    day = (datetime(2023, 10, 8, tzinfo=UTC), datetime(2023, 10, 9, tzinfo=UTC))

    scenes = provider.search(SENTINEL2_L2A, Point(-105.1019, 40.1672).buffer(0.01), *day, max_cloud_cover=0.0001)

    assert scenes == []  # the recorded answer still holds the 0.000299 % scene
    body = stac_server.requests_to("/replay/earth-search.aws.element84.com/v1/search", "POST")[0].json()
    assert body["query"] == {"eo:cloud_cover": {"lte": 0.0001}}  # Earth Search declares query, not filter


# --------------------------------------------------------------------------------------------
# A STAC API over real Items


def test_search_returns_every_item_of_the_window_across_pages(stac_server, pc_api, real_data) -> None:
    provider = _provider(pc_api.url, page_size=2)

    scenes = provider.search(SENTINEL2_L2A, TILE_35MNM, *JUNE)

    expected = _june_items(real_data)
    assert sorted(s.scene_id for s in scenes) == sorted(expected)
    assert [s.datetime for s in scenes] == sorted(s.datetime for s in scenes)
    posts = stac_server.requests_to(f"{pc_api.url}/search", "POST")
    assert len(posts) == math.ceil(len(expected) / 2)
    assert posts[1].json()["next"] == "offset:2"


def test_cloud_cover_limit_is_sent_as_a_cql2_filter(stac_server, pc_api, real_data) -> None:
    scenes = _provider(pc_api.url).search(SENTINEL2_L2A, TILE_35MNM, *JUNE, max_cloud_cover=1.1)

    assert sorted(s.scene_id for s in scenes) == sorted(_june_items(real_data, 1.1))
    body = stac_server.requests_to(f"{pc_api.url}/search", "POST")[0].json()
    assert body["filter"] == {"op": "<=", "args": [{"property": "eo:cloud_cover"}, 1.1]}
    assert body["filter-lang"] == "cql2-json"
    assert body["collections"] == ["sentinel-2-l2a"] and shape(body["intersects"]).equals(TILE_35MNM)


def test_api_without_filter_gets_the_query_extension(stac_server, real_data) -> None:
    conformance = [c for c in stac_server.add_api("x").conformance if "filter" not in c and "cql2" not in c]
    api = stac_server.add_api("old", real_sentinel2_items(real_data), conformance=conformance)

    scenes = _provider(api.url).search(SENTINEL2_L2A, TILE_35MNM, *JUNE, max_cloud_cover=1.1)

    assert sorted(s.scene_id for s in scenes) == sorted(_june_items(real_data, 1.1))
    body = stac_server.requests_to(f"{api.url}/search", "POST")[0].json()
    assert body["query"] == {"eo:cloud_cover": {"lte": 1.1}} and "filter" not in body


def test_search_window_is_half_open(stac_server, pc_api) -> None:
    end = datetime(2020, 6, 26, 8, 6, 9, 24000, tzinfo=UTC)  # exactly the 2020-06-26 acquisition
    scenes = _provider(pc_api.url).search(SENTINEL2_L2A, TILE_35MNM, datetime(2020, 6, 21, tzinfo=UTC), end)
    assert [s.scene_id for s in scenes] == ["S2A_MSIL2A_20200621T080611_R078_T35MNM_20200823T125142"]


def test_collection_names_are_translated(stac_server, real_data) -> None:
    items = real_sentinel2_items(real_data)
    for item in items:
        item["collection"] = "S2_L2A-1"
    api = stac_server.add_api("bdc", items)

    scenes = _provider(api.url, collections={SENTINEL2_L2A: "S2_L2A-1"}).search(SENTINEL2_L2A, TILE_35MNM, *JUNE)

    assert {s.collection for s in scenes} == {SENTINEL2_L2A} and len(scenes) == len(_june_items(real_data))
    assert stac_server.requests_to(f"{api.url}/search")[0].json()["collections"] == ["S2_L2A-1"]


def test_band_files_carry_size_and_checksum_and_alternates_are_preferred(stac_server, pc_api) -> None:
    provider = _provider(pc_api.url, assets={"NIR": "B8A"}, alternate="https")
    scene = provider.search(SENTINEL2_L2A, TILE_35MNM, *JUNE)[0]
    files = provider.band_files(scene)

    size, checksum = stac_server.file_size_and_checksum(REAL_S2_ASSET_FILES["B04"])
    assert (files["B04"].size, files["B04"].checksum) == (size, checksum)
    assert files["NIR"].href == files["B8A"].href

    item = json.loads(json.dumps(scene.properties["stac_item"]))
    item["assets"]["B04"]["alternate"] = {"https": {"href": stac_server.url("files/elsewhere.jp2")}}
    alternate_scene = provider.scene_from_item(item, SENTINEL2_L2A)
    assert provider.band_files(alternate_scene)["B04"].href == stac_server.url("files/elsewhere.jp2")


def test_failing_search_is_a_provider_error_naming_the_api(stac_server, pc_api) -> None:
    stac_server.fail(f"{pc_api.url}/search", status=500, times=None)
    with pytest.raises(ProviderError, match=r"pc: search sentinel-2-l2a at http://127.0.0.1:\d+/apis/pc failed"):
        _provider(pc_api.url).search(SENTINEL2_L2A, TILE_35MNM, *JUNE)
    assert len(stac_server.requests_to(f"{pc_api.url}/search")) == 2  # retries=1: two attempts


def test_search_errors_are_retried_before_failing(stac_server, pc_api, real_data) -> None:
    stac_server.fail(f"{pc_api.url}/search", status=502, times=1)
    scenes = _provider(pc_api.url).search(SENTINEL2_L2A, TILE_35MNM, *JUNE)
    assert len(scenes) == len(_june_items(real_data))


def test_url_that_is_not_a_stac_api_is_a_provider_error(stac_server) -> None:
    with pytest.raises(ProviderError, match="nothing-here failed"):
        _provider(stac_server.url("nothing-here")).search(SENTINEL2_L2A, TILE_35MNM, *JUNE)


def test_options_are_validated_with_the_option_named() -> None:
    with pytest.raises(ProviderError, match="option page_size"):
        parse_stac_options({"url": "https://stac.example", "page_size": 0}, "provider x")
    with pytest.raises(ProviderError, match="user info"):
        parse_stac_options({"url": "https://me:pw@stac.example"}, "provider x")
    with pytest.raises(ProviderError, match="option bogus"):
        parse_stac_options({"url": "https://stac.example", "bogus": 1}, "provider x")


def test_fetch_writes_a_cog_per_band_product_that_the_local_driver_reads(stac_server, pc_api, tmp_path) -> None:
    from cube_assets.providers.local import LocalArchiveProvider

    provider = _provider(pc_api.url, assets={"B04": "B04", "SCL": "SCL"})
    scene = provider.search(SENTINEL2_L2A, TILE_35MNM, *JUNE)[0]

    folder = provider.fetch(scene, tmp_path / SENTINEL2_L2A)

    archive = LocalArchiveProvider(tmp_path / SENTINEL2_L2A)
    [found] = archive.search(SENTINEL2_L2A, TILE_35MNM, *JUNE)
    assert found.scene_id == scene.scene_id and found.href == str(folder)
    assert sorted(found.properties["bands"]) == ["B04", "SCL"]
    assert (folder / "item.json").is_file()


def test_real_usgs_checksum_rejects_a_file_that_is_not_the_original(stac_server, real_data, tmp_path) -> None:
    """The USGS Item's real sha2-512 ``file:checksum`` is of the full-size file; the served one is decimated."""
    from cube_assets.providers.http import DownloadError
    from cube_assets_tests.fixtures_stac import REAL_LANDSAT_ASSET_FILES, real_landsat_items

    items = stac_server.asset_files(real_landsat_items(real_data), REAL_LANDSAT_ASSET_FILES, checksums=False)
    api = stac_server.add_api("usgs", items)
    provider = _provider(api.url, "usgs", retries=0)
    scene = provider.scene_from_item(api.items[0], "landsat-c2-l2")

    with pytest.raises(DownloadError, match="checksum mismatch \\(sha2-512\\)"):
        provider.fetch_band(scene, "red", tmp_path / "red.tif")
    assert list(tmp_path.iterdir()) == []
