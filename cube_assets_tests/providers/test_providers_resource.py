"""``ProvidersResource`` with ``stac`` providers: from the cube file or the registry, online and offline.

STAC APIs are the loopback test server (real Items, real rasters); the Dagster run is real
(``dagster.materialize`` on a temporary instance).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
from dagster import AssetKey, instance_for_test, materialize

from cube_assets.assets import build_cube_assets
from cube_assets.catalog.database import create_catalog_engine, default_catalog_url, session_factory, upgrade_schema
from cube_assets.cube_config import load_project_config
from cube_assets.definitions import build_definitions
from cube_assets.errors import InvalidCubeConfig, ProviderError
from cube_assets.partitions import partition_key
from cube_assets.providers.raw_store import SceneNotStored
from cube_assets.providers.registry import load_providers, parse_provider_definition, set_priority
from cube_assets.resources.providers import ProvidersResource
from cube_assets_tests.conftest import write_cube_file
from cube_assets_tests.fixtures_stac import REAL_S2_ASSET_FILES, real_sentinel2_items

PASSWORD = "Pw-6f1e2d-must-never-leak"
OLD_PASSWORD = "Old-9a8b7c-must-never-leak"
PERIOD = "2020-06-01"
# A 256 × 256 px tile of 60 m inside MGRS 35MNM (UTM 35S), June 2020 in monthly periods.
CUBE = {
    "name": "stac_cube",
    "collection": "sentinel-2-l2a",
    "grid": {
        "kind": "user",
        "name": "T35S60",
        "crs": 32735,
        "origin": [560000, 9150000],
        "tile_size": [256, 256],
        "resolution": 60,
    },
    "tiles": ["000000"],
    "start_date": "2020-06-01",
    "end_date": "2020-06-30",
    "temporal": {"step": "1M", "restart": "yearly"},
    "bands": [{"name": "B04", "common_name": "red"}, {"name": "B8A", "common_name": "nir"}],
    "quality": {"band": "SCL", "rules": {"preset": "scl"}, "nodata": 0},
}
JUNE_SCENES = 6  # the real 35MNM Items of June 2020


def _basic(user_var: str, password_var: str) -> dict:
    # The loopback test server speaks http: credentials go there only with this opt-in.
    return {
        "type": "basic",
        "username": {"env": user_var},
        "password": {"env": password_var},
        "allow_insecure_loopback": True,
    }


@pytest.fixture
def secure_api(stac_server, real_data):
    """An API and its files that answer 401 without alice's password."""
    items = stac_server.asset_files(real_sentinel2_items(real_data), REAL_S2_ASSET_FILES, prefix="secure/")
    api = stac_server.add_api("secure", items)
    stac_server.require_basic("/apis/secure", "alice", PASSWORD)
    stac_server.require_basic("/files/secure/", "alice", PASSWORD)
    return api


def test_raw_scene_run_says_who_served_each_scene_and_never_shows_a_password(
    stac_server, secure_api, tmp_path, monkeypatch, caplog
) -> None:
    monkeypatch.setenv("STAC_USER", "alice")
    monkeypatch.setenv("STAC_PASSWORD", PASSWORD)
    monkeypatch.setenv("STAC_OLD_PASSWORD", OLD_PASSWORD)
    options = {"url": secure_api.url, "retries": 0}
    config = write_cube_file(
        tmp_path,
        {**CUBE, "providers": ["stale", "secure"]},
        [
            # First in line, with an outdated password: refused (HTTP 401), the run goes on with "secure".
            {
                "name": "stale",
                "driver": "stac",
                "options": {**options, "credentials": _basic("STAC_USER", "STAC_OLD_PASSWORD")},
            },
            {
                "name": "secure",
                "driver": "stac",
                "options": {**options, "credentials": _basic("STAC_USER", "STAC_PASSWORD")},
            },
        ],
    )
    defs = build_definitions(config, tmp_path / "data")
    cube = load_project_config(config).cube("stac_cube")
    raw_scene = next(a for a in build_cube_assets(cube) if a.key.path[-1] == "raw_scene")
    caplog.set_level(logging.DEBUG)
    (tmp_path / "home").mkdir()

    with instance_for_test(temp_dir=str(tmp_path / "home")) as instance:
        result = materialize(
            [raw_scene], partition_key=partition_key("000000", PERIOD), instance=instance, resources=defs.resources
        )
        assert result.success
        event = instance.get_latest_materialization_event(AssetKey(["stac_cube", "raw_scene"]))
        metadata = {key: value.value for key, value in event.asset_materialization.metadata.items()}
        run_log = "\n".join(str(record) for record in instance.all_logs(result.run_id))

    assert len(metadata["scenes"]) == JUNE_SCENES and set(metadata["scenes"].values()) == {"secure"}
    assert metadata["provider_failures"] == {}  # "stale" failed to search, so it never offered a scene
    assert "provider stale: search failed" in caplog.text and "401" in caplog.text
    # The password reached the server (or nothing would have been served)…
    assert all(
        r.headers.get("authorization", "").startswith("Basic ") for r in stac_server.requests_to("/files/secure/")
    )
    # …and nowhere else: logs, Dagster's event log and metadata, the manifest, the raw store.
    written = [
        p.read_text(errors="replace")
        for p in (tmp_path / "data").rglob("*")
        if p.is_file() and p.suffix in (".json", ".yaml", ".sqlite")
    ]
    for secret in (PASSWORD, OLD_PASSWORD):
        assert secret not in caplog.text
        assert secret not in run_log
        assert secret not in json.dumps(metadata, default=str)
        assert not any(secret in text for text in written)


@pytest.fixture
def registry_data_root(stac_server, real_data, tmp_path) -> Path:
    """A data root whose catalog registers ``primary`` (priority 0) and ``mirror`` (1) for sentinel-2-l2a."""
    data_root = tmp_path / "data"
    engine = create_catalog_engine(default_catalog_url(data_root))
    upgrade_schema(engine)
    definitions = []
    for name in ("primary", "mirror"):
        items = stac_server.asset_files(real_sentinel2_items(real_data), REAL_S2_ASSET_FILES, prefix=f"{name}/")
        api = stac_server.add_api(name, items)
        definitions.append(
            parse_provider_definition(
                {"name": name, "driver": "stac", "url": api.url, "options": {"retries": 1, "backoff_s": 0}},
                f"{name}.json",
            )
        )
    with session_factory(engine).begin() as session:
        load_providers(session, definitions)
        set_priority(session, "sentinel-2-l2a", "primary", 0)
        set_priority(session, "sentinel-2-l2a", "mirror", 1)
    engine.dispose()
    return data_root


def _fetch(tmp_path: Path, data_root: Path, *, offline: bool = False) -> list[dict]:
    config = write_cube_file(tmp_path, CUBE, [])  # the cube names no providers: the registry's are used
    cube = load_project_config(config).cube("stac_cube")
    resource = ProvidersResource(config_file=str(config), data_root=str(data_root), offline=offline)
    return resource.fetch_scenes(cube, cube.tile("000000"), cube.period(PERIOD))


def test_cube_without_providers_uses_the_registry_in_priority_order(stac_server, registry_data_root, tmp_path) -> None:
    stac_server.fail(f"/files/primary/{REAL_S2_ASSET_FILES['B8A']}", status=500, times=None)

    entries = _fetch(tmp_path, registry_data_root)

    assert len(entries) == JUNE_SCENES
    assert {e["provider"] for e in entries} == {"mirror"}
    assert all(len(e["provider_failures"]) == 1 and "primary: " in e["provider_failures"][0] for e in entries)
    assert all(sorted(e["raw_bands"]) == ["B04", "B8A", "SCL"] for e in entries)
    assert all(Path(e["raw_bands"]["SCL"]).is_file() for e in entries)


def test_offline_run_uses_only_the_raw_store(stac_server, registry_data_root, tmp_path) -> None:
    online = _fetch(tmp_path, registry_data_root)
    requests_before = len(stac_server.requests)

    offline = _fetch(tmp_path, registry_data_root, offline=True)

    assert len(stac_server.requests) == requests_before
    assert [(e["scene_id"], e["provider"], e["raw_bands"]) for e in offline] == [
        (e["scene_id"], e["provider"], e["raw_bands"]) for e in online
    ]
    first = Path(online[0]["raw_bands"]["B8A"])
    first.unlink()
    with pytest.raises(SceneNotStored, match=rf"{online[0]['scene_id']}: offline and bands \['B8A'\]"):
        _fetch(tmp_path, registry_data_root, offline=True)


def test_empty_registry_is_a_clear_error(tmp_path) -> None:
    with pytest.raises(ProviderError, match="names no providers and the provider registry has no enabled provider"):
        _fetch(tmp_path, tmp_path / "data")


def test_stac_provider_with_bad_options_fails_when_the_cube_file_loads(tmp_path) -> None:
    config = write_cube_file(
        tmp_path,
        {**CUBE, "providers": ["x"]},
        [
            {"name": "x", "driver": "stac", "options": {"url": "ftp://nowhere", "retries": 1}},
        ],
    )
    with pytest.raises(InvalidCubeConfig, match="option url"):
        load_project_config(config)
