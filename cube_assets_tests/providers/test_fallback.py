"""Provider chains: a failing provider hands each scene to the next one, after its own retries.

Two STAC APIs on the loopback test server serve the same real Items; their assets are the same
real rasters under different routes, so one provider's files can be broken and not the other's.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
from shapely.geometry import box

from cube_assets.errors import ProviderError
from cube_assets.providers.base import SENTINEL2_L2A
from cube_assets.providers.chain import search_and_fetch
from cube_assets.providers.raw_store import RawStore
from cube_assets.providers.stac import build_stac_provider
from cube_assets_tests.fixtures_stac import REAL_S2_ASSET_FILES, real_sentinel2_items

TILE = box(27.4, -7.8, 27.5, -7.7)
WINDOW = (datetime(2020, 6, 20, tzinfo=UTC), datetime(2020, 6, 22, tzinfo=UTC))  # one scene: 2020-06-21
SCENE_ID = "S2A_MSIL2A_20200621T080611_R078_T35MNM_20200823T125142"


@pytest.fixture
def two_providers(stac_server, real_data):
    """``primary`` then ``mirror``: same Items, files at /files/primary/… and /files/mirror/…."""
    apis = {}
    for name in ("primary", "mirror"):
        items = stac_server.asset_files(real_sentinel2_items(real_data), REAL_S2_ASSET_FILES, prefix=f"{name}/")
        apis[name] = stac_server.add_api(name, items)
    options = {"retries": 2, "backoff_s": 0, "timeout_s": 0.3}
    return [build_stac_provider(name, {"url": api.url, **options}, {}) for name, api in apis.items()]


def _fetch(providers, tmp_path: Path, bands=("B04", "SCL")):
    store = RawStore(tmp_path / "raw")
    return search_and_fetch(
        providers, SENTINEL2_L2A, TILE, *WINDOW, tmp_path / "unused", store=store, bands=list(bands)
    ), store


@pytest.mark.parametrize(
    ("fault", "attempts", "reported"),
    [
        ({"status": 500}, 3, "HTTP 500"),
        ({"mode": "truncate"}, 3, "ChunkedEncodingError"),
        ({"mode": "corrupt"}, 3, "checksum mismatch"),
        ({"mode": "stall", "delay_s": 1.0}, 3, "ReadTimeout"),
        ({"status": 202}, 1, "not online yet"),
    ],
    ids=["http-500", "truncated-body", "wrong-checksum", "timeout", "offline-product"],
)
def test_failing_provider_falls_through_to_the_next(
    stac_server, two_providers, real_data, tmp_path, fault, attempts, reported
):
    broken = f"/files/primary/{REAL_S2_ASSET_FILES['B04']}"
    stac_server.fail(broken, times=None, **fault)

    [fetched], store = _fetch(two_providers, tmp_path)

    assert fetched.scene.scene_id == SCENE_ID
    assert fetched.provider == "mirror"
    assert len(fetched.failures) == 1 and fetched.failures[0].startswith("primary: ")
    assert reported in fetched.failures[0]
    assert len(stac_server.requests_to(broken)) == attempts  # the primary's own retries came first
    assert fetched.bands["B04"].read_bytes() == (real_data / REAL_S2_ASSET_FILES["B04"]).read_bytes()
    # The mirror sent the whole file: a partial download of another provider is never resumed.
    assert [r.headers.get("range") for r in stac_server.requests_to(f"/files/mirror/{REAL_S2_ASSET_FILES['B04']}")] == [
        None
    ]
    assert [p.name for p in fetched.path.iterdir() if p.name.startswith(".")] == []


def test_bands_already_stored_by_the_failing_provider_are_replaced_by_the_next_ones(
    stac_server, two_providers, tmp_path
):
    stac_server.fail(f"/files/primary/{REAL_S2_ASSET_FILES['B04']}", status=500, times=None)

    [fetched], store = _fetch(two_providers, tmp_path, bands=("SCL", "B04"))  # SCL comes first from primary

    stored = store.load(fetched.scene, ["SCL", "B04"], offline=True)
    assert stored.provider == "mirror"
    assert {band: entry["provider"] for band, entry in stored.properties.items()} == {"SCL": "mirror", "B04": "mirror"}
    assert len(stac_server.requests_to(f"/files/primary/{REAL_S2_ASSET_FILES['SCL']}")) == 1


def test_provider_whose_search_fails_is_skipped(stac_server, two_providers, tmp_path):
    stac_server.fail("/apis/primary/search", status=503, times=None)

    [fetched], _ = _fetch(two_providers, tmp_path)

    assert fetched.provider == "mirror"
    assert stac_server.requests_to(f"/files/primary/{REAL_S2_ASSET_FILES['B04']}") == []


def test_scene_no_provider_delivers_names_every_failure(stac_server, two_providers, tmp_path):
    for name in ("primary", "mirror"):
        stac_server.fail(f"/files/{name}/{REAL_S2_ASSET_FILES['SCL']}", status=500, times=None)

    with pytest.raises(
        ProviderError, match=rf"{SCENE_ID}: no provider could deliver it \(primary: .*HTTP 500.*; mirror: .*HTTP 500"
    ):
        _fetch(two_providers, tmp_path)


def test_every_search_failing_is_an_error(stac_server, two_providers, tmp_path):
    stac_server.fail("/apis/", status=500, times=None)
    with pytest.raises(ProviderError, match="every provider failed to search sentinel-2-l2a"):
        _fetch(two_providers, tmp_path)
