"""Names from a hostile provider never become paths outside the target folder.

A STAC API (the loopback server of ``fixtures_stac``, nothing mocked) serves Items whose id,
``scene_id_property`` value, asset keys or asset file names try to climb out of the folder
the scene is fetched into; a local archive holds a Landsat product whose MTL names it
``../victim``. Each is refused with a :class:`ProviderError` naming the provider and the Item
(or scene), before anything is written, and no file appears anywhere outside the target.
"""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest
import rasterio
from rasterio.transform import from_origin
from shapely.geometry import box, mapping

from cube_assets.errors import InvalidScene, ProviderError
from cube_assets.names import name_problem
from cube_assets.providers.base import SENTINEL2_L2A, SceneRef
from cube_assets.providers.chain import search_and_fetch
from cube_assets.providers.local import LANDSAT_FORMAT, PRODUCT_MANIFEST, LocalArchiveProvider, read_product_manifest
from cube_assets.providers.raw_store import RawStore, RawStoreError
from cube_assets.providers.stac import StacProvider, build_stac_provider

AREA = box(10.0, 10.0, 10.1, 10.1)
WINDOW = (datetime(2024, 1, 1, tzinfo=UTC), datetime(2024, 2, 1, tzinfo=UTC))
GOOD_ID = "S2B_MSIL2A_20240105T100000_N0510_R122_T32PQU_20240105T120000"

#: Every class of hostile name; ``{outside}`` is replaced by an absolute path beside the target.
HOSTILE_NAMES = {
    "dot-dot-segments": "../../../x",
    "absolute": "/abs/x",
    "absolute-beside-target": "{outside}/x",
    "backslashes": "..\\..\\x",
    "drive-letter": "C:\\x",
    "nul": "x\x00y",
    "newline-at-end": "S2B_X\n",
    "control-character": "x\x1by",
    "slash": "a/b",
    "dot": ".",
    "dot-dot": "..",
    "hidden": ".x",
    "too-long": "A" * 256,
    "non-ascii": "x\u2215y",
}


def _hostile(name: str, tmp_path: Path) -> str:
    return HOSTILE_NAMES[name].replace("{outside}", str(tmp_path / "outside"))


def _tree(folder: Path) -> dict[str, str]:
    """Every file and folder under ``folder`` with the SHA-256 of its bytes (``dir`` for folders)."""
    found = {}
    for path in sorted(folder.rglob("*")):
        found[str(path.relative_to(folder))] = "dir" if path.is_dir() else hashlib.sha256(path.read_bytes()).hexdigest()
    return found


def _assert_nothing_escaped(tmp_path: Path, before: dict[str, str]) -> None:
    assert _tree(tmp_path) == before
    assert not Path("/abs/x").exists()
    assert not (tmp_path.parent / "x").exists() and not (tmp_path.parent.parent / "x").exists()


def _geotiff_bytes(tmp_path: Path) -> bytes:
    """A real 8×8 uint16 GeoTIFF (written with rasterio), as a band file a STAC asset serves."""
    path = tmp_path / "band.tif"
    profile = {
        "driver": "GTiff",
        "width": 8,
        "height": 8,
        "count": 1,
        "dtype": "uint16",
        "crs": "EPSG:32632",
        "transform": from_origin(500000, 1110000, 10, 10),
    }
    with rasterio.open(path, "w", **profile) as dataset:
        dataset.write(np.arange(64, dtype="uint16").reshape(1, 8, 8))
    data = path.read_bytes()
    path.unlink()
    return data


def _item(item_id: str, assets: dict | None = None, properties: dict | None = None) -> dict:
    return {
        "type": "Feature",
        "stac_version": "1.0.0",
        "id": item_id,
        "collection": SENTINEL2_L2A,
        "geometry": mapping(AREA),
        "bbox": list(AREA.bounds),
        "properties": {"datetime": "2024-01-05T10:00:00Z", "eo:cloud_cover": 5.0, **(properties or {})},
        "assets": assets or {},
        "links": [],
    }


def _provider(url: str, **options) -> StacProvider:
    return build_stac_provider("hostile", {"url": url, "retries": 0, "backoff_s": 0, **options}, {})


def _band_asset(stac_server, tmp_path: Path, route: str = "bands/B04.tif") -> dict:
    url = stac_server.serve_file(_geotiff_bytes(tmp_path), route)
    return {"href": url, "type": "image/tiff; application=geotiff", "roles": ["data"]}


# -- Item ids ------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", sorted(HOSTILE_NAMES))
def test_stac_search_refuses_an_item_whose_id_cannot_be_a_folder_name(stac_server, tmp_path, kind) -> None:
    hostile = _hostile(kind, tmp_path)
    api = stac_server.add_api("hostile", [_item(hostile)])
    before = _tree(tmp_path)

    with pytest.raises(ProviderError) as refused:
        _provider(api.url).search(SENTINEL2_L2A, AREA, *WINDOW)

    assert type(refused.value) is ProviderError
    message = str(refused.value)
    assert message.startswith("hostile: Item id ") and repr(hostile)[:150] in message
    assert "cannot be a file or folder name" in message and len(message) < 400
    _assert_nothing_escaped(tmp_path, before)


@pytest.mark.parametrize("kind", ["dot-dot-segments", "absolute", "absolute-beside-target", "backslashes", "nul"])
def test_search_and_fetch_without_a_store_writes_nothing_for_a_hostile_item_id(stac_server, tmp_path, kind) -> None:
    hostile = _hostile(kind, tmp_path)
    api = stac_server.add_api("hostile", [_item(hostile, {"B04": _band_asset(stac_server, tmp_path)})])
    raw_dir = tmp_path / "raw" / SENTINEL2_L2A
    raw_dir.mkdir(parents=True)
    before = _tree(tmp_path)

    with pytest.raises(ProviderError, match=r"every provider failed to search .*hostile: Item id ") as refused:
        search_and_fetch([_provider(api.url, assets={"B04": "B04"})], SENTINEL2_L2A, AREA, *WINDOW, raw_dir)

    assert repr(hostile)[:150] in str(refused.value)
    _assert_nothing_escaped(tmp_path, before)
    assert list(raw_dir.iterdir()) == []


@pytest.mark.parametrize(
    "kind", ["dot-dot-segments", "absolute-beside-target", "backslashes", "newline-at-end", "too-long"]
)
def test_stac_fetch_refuses_a_scene_id_that_bypassed_the_search(stac_server, tmp_path, kind) -> None:
    """A SceneRef made by other code than ``scene_from_item`` is checked again where the folder is made."""
    hostile = _hostile(kind, tmp_path)
    item = _item(GOOD_ID, {"B04": _band_asset(stac_server, tmp_path)})
    api = stac_server.add_api("hostile", [item])
    provider = _provider(api.url, assets={"B04": "B04"})
    good = provider.scene_from_item(api.items[0], SENTINEL2_L2A)
    scene = SceneRef(
        **{**good.__dict__, "scene_id": hostile, "properties": {**good.properties, "stac_item_id": hostile}}
    )
    target = tmp_path / "raw" / SENTINEL2_L2A
    target.mkdir(parents=True)
    before = _tree(tmp_path)

    with pytest.raises(
        ProviderError, match=r"^hostile: Item .*: scene id .*cannot be a file or folder name"
    ) as refused:
        provider.fetch(scene, target)

    assert repr(hostile)[:150] in str(refused.value)
    _assert_nothing_escaped(tmp_path, before)
    assert stac_server.requests_to("/files/") == []


def test_stac_scene_id_property_that_climbs_out_is_refused_naming_item_and_property(stac_server, tmp_path) -> None:
    api = stac_server.add_api("hostile", [_item(GOOD_ID, properties={"s2:product_uri": "../../victim.SAFE"})])
    before = _tree(tmp_path)

    with pytest.raises(ProviderError, match=rf"^hostile: Item {GOOD_ID}: s2:product_uri '\.\./\.\./victim' cannot be"):
        _provider(api.url, scene_id_property="s2:product_uri").search(SENTINEL2_L2A, AREA, *WINDOW)

    _assert_nothing_escaped(tmp_path, before)


# -- asset keys and file names ------------------------------------------------------------------


@pytest.mark.parametrize(
    "kind", ["dot-dot-segments", "absolute-beside-target", "backslashes", "nul", "hidden", "too-long"]
)
def test_stac_fetch_refuses_an_asset_key_that_cannot_be_a_file_name(stac_server, tmp_path, kind) -> None:
    hostile = _hostile(kind, tmp_path)
    api = stac_server.add_api("hostile", [_item(GOOD_ID, {hostile: _band_asset(stac_server, tmp_path)})])
    provider = _provider(api.url)
    [scene] = provider.search(SENTINEL2_L2A, AREA, *WINDOW)
    target = tmp_path / "raw" / SENTINEL2_L2A
    target.mkdir(parents=True)
    before = _tree(tmp_path)

    with pytest.raises(ProviderError, match=rf"^hostile: Item '{GOOD_ID}': asset key ") as refused:
        provider.fetch(scene, target)

    assert repr(hostile)[:150] in str(refused.value)
    _assert_nothing_escaped(tmp_path, before)
    assert stac_server.requests_to("/files/") == []


def test_stac_band_files_never_offer_an_asset_key_that_cannot_be_a_band_name(stac_server, tmp_path) -> None:
    keys = [_hostile(kind, tmp_path) for kind in ("dot-dot-segments", "backslashes", "hidden")]
    api = stac_server.add_api(
        "hostile", [_item(GOOD_ID, {key: _band_asset(stac_server, tmp_path) for key in [*keys, "B04"]})]
    )
    provider = _provider(api.url)
    [scene] = provider.search(SENTINEL2_L2A, AREA, *WINDOW)

    offered = provider.band_files(scene)

    assert "B04" in offered and not set(keys) & set(offered)
    assert all(name_problem(band) is None for band in offered)


@pytest.mark.parametrize(
    "route",
    ["a\\..\\..\\evil.tif", "..%2F..%2Fevil.tif", "evil.tif\x00.sh", "%2Fabs%2Fevil.tif"],
    ids=["backslash-segments", "encoded-dot-dot", "nul-in-name", "encoded-absolute"],
)
def test_stac_asset_href_file_name_never_names_the_stored_file(stac_server, tmp_path, route) -> None:
    """Only the band name and a fixed-form suffix name a stored file; the href's file name never does."""
    api = stac_server.add_api("hostile", [_item(GOOD_ID, {"B04": _band_asset(stac_server, tmp_path, route)})])
    provider = _provider(api.url, assets={"B04": "B04"})
    [scene] = provider.search(SENTINEL2_L2A, AREA, *WINDOW)
    target = tmp_path / "raw" / SENTINEL2_L2A
    target.mkdir(parents=True)
    before = _tree(tmp_path)

    folder = provider.fetch(scene, target)

    assert folder == target / GOOD_ID
    stored = sorted(p.name for p in folder.iterdir())
    assert stored == sorted([PRODUCT_MANIFEST, "item.json", read_product_manifest(folder).bands["B04"]])
    assert read_product_manifest(folder).bands["B04"].startswith("B04.") and all(
        name_problem(n) is None for n in stored
    )
    after = _tree(tmp_path)
    assert {path for path in after if path not in before} <= {
        str(Path("raw", SENTINEL2_L2A, p)) for p in [GOOD_ID, f".{GOOD_ID}.lock", *(f"{GOOD_ID}/{n}" for n in stored)]
    }
    _assert_nothing_escaped(tmp_path, after)


def test_stac_options_refuse_a_band_name_that_cannot_be_a_file_name() -> None:
    with pytest.raises(
        ProviderError, match=r"^provider hostile: option assets: .*band '\.\./B04' cannot be a file name"
    ):
        build_stac_provider("hostile", {"url": "https://stac.example", "assets": {"../B04": "B04"}}, {})


# -- the raw store and local archives ---------------------------------------------------------


@pytest.mark.parametrize("kind", ["dot-dot-segments", "newline-at-end", "control-character", "too-long"])
def test_raw_store_refuses_a_scene_id_that_cannot_be_a_folder_name(tmp_path, kind) -> None:
    hostile = _hostile(kind, tmp_path)
    scene = SceneRef("x", SENTINEL2_L2A, hostile, WINDOW[0], AREA, None, "https://stac.example/item")
    before = _tree(tmp_path)

    with pytest.raises(RawStoreError, match=r"^raw store: scene id .* cannot be a file or folder name") as refused:
        RawStore(tmp_path / "raw").load(scene, ["B04"], None)

    assert repr(hostile)[:150] in str(refused.value)
    _assert_nothing_escaped(tmp_path, before)


def _landsat_scene(archive: Path, scene_id: str) -> SceneRef:
    product = archive / "LC09_folder"
    product.mkdir(parents=True)
    (product / "LC09_MTL.json").write_text("{}")
    return SceneRef("local", "landsat-c2-l2", scene_id, WINDOW[0], AREA, None, str(product), {"format": LANDSAT_FORMAT})


@pytest.mark.parametrize(
    "hostile",
    ["../victim", "..", "vic\\..\\..\\tim", "victim\n"],
    ids=["dot-dot", "dot-dot-alone", "backslashes", "newline"],
)
def test_local_fetch_of_a_landsat_product_named_to_climb_out_neither_writes_nor_removes_outside(
    tmp_path, hostile
) -> None:
    """The copy of a Landsat product is named after the MTL's product id; an incomplete folder of
    that name used to be removed first, so ``../victim`` would have deleted a folder outside."""
    scene = _landsat_scene(tmp_path / "archive", hostile)
    victim = tmp_path / "victim"
    victim.mkdir()
    (victim / "precious.txt").write_bytes(b"not a product, but somebody's")
    (tmp_path / "dest").mkdir()
    before = _tree(tmp_path)

    with pytest.raises(ProviderError, match=r"^local: scene .*: product folder .* cannot be a file or folder name"):
        LocalArchiveProvider(tmp_path / "archive").fetch(scene, tmp_path / "dest")

    assert _tree(tmp_path) == before
    assert (victim / "precious.txt").read_bytes() == b"not a product, but somebody's"


@pytest.mark.parametrize(
    ("relative", "reason"),
    [
        ("..\\B04.tif", "climbs out of the product folder"),
        ("sub\\B04.tif", "uses '\\' as a separator"),
        ("B04\x00.tif", "must be letters"),
        ("C:/B04.tif", "has an absolute path"),
        ("./B04.tif", "relative folder reference"),
        ("a//B04.tif", "is empty"),
    ],
    ids=["backslash-dot-dot", "backslash", "nul", "drive-letter", "dot-component", "empty-component"],
)
def test_a_manifest_band_path_that_is_not_a_plain_relative_path_is_refused(tmp_path, relative, reason) -> None:
    folder = tmp_path / "P1"
    folder.mkdir()
    (folder / "B04.tif").write_bytes(_geotiff_bytes(tmp_path))
    manifest = {
        "id": "P1",
        "collection": SENTINEL2_L2A,
        "datetime": "2024-01-05T10:00:00Z",
        "footprint": mapping(AREA),
        "cloud_cover": None,
        "bands": {"B04": relative},
    }
    (folder / PRODUCT_MANIFEST).write_text(json.dumps(manifest))

    with pytest.raises(InvalidScene) as refused:
        read_product_manifest(folder)

    assert type(refused.value) is InvalidScene
    assert str(refused.value).startswith("P1/product.json: band 'B04' file ") and reason in str(refused.value)
    assert repr(relative) in str(refused.value)


def test_every_hostile_name_fails_the_one_rule_and_real_product_names_pass(real_data) -> None:
    assert all(name_problem(name) is not None for name in HOSTILE_NAMES.values())
    real = [p.name for p in (real_data / "stactools-sentinel2" / "tests" / "data-files").rglob("*")]
    real += [p.name for p in (real_data / "stactools-landsat" / "tests" / "data-files").rglob("*")]
    assert len(real) > 40 and [name for name in real if name_problem(name) is not None] == []
