"""Scenes fetched band by band through a ``stac`` provider: raw store → surface reflectance → COG.

Real Items (Earth Search v1 Items recorded in the pystac-client cassettes, Planetary Computer
and USGS Items from odc-stac) are served by the loopback STAC server with their band assets
rewritten to real rasters (T29UNU 60 m JPEG 2000, the decimated Landsat 8 C2 L2 GeoTIFFs). The
expected reflectance is computed here from the source rasters read with rasterio and the
rule each Item implies, independently of the code under test.
"""

from __future__ import annotations

import copy
import json
import zipfile
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
import pytest
import rasterio
import yaml
from shapely.geometry import mapping, shape

from cube_assets.cube_config import CubeConfig
from cube_assets.errors import InvalidScene
from cube_assets.formats.sentinel2_safe import parse_product_metadata
from cube_assets.formats.stac_item import asset_key_for_band, processing_baseline, sentinel2_radiometry
from cube_assets.manifests import RawScene
from cube_assets.providers.raw_store import RawStore
from cube_assets.providers.stac import build_stac_provider
from cube_assets.raster.cog import is_valid_cog
from cube_assets.steps.scenes import publish_scene, reflectance_for_scene
from cube_assets.storage.raster_store import LocalRasterStore
from cube_assets_tests.fixtures_stac import (
    CASSETTES,
    LANDSAT_ITEM,
    REAL_LANDSAT_ASSET_FILES,
    REAL_S2_ASSET_FILES,
    T29UNU_IMG,
    real_sentinel2_items,
)

pytestmark = [pytest.mark.real_data, pytest.mark.filterwarnings("ignore::rasterio.errors.NotGeoreferencedWarning")]

#: Earth Search asset keys → the real 60 m T29UNU rasters of the same bands.
EARTH_SEARCH_S2_FILES = {
    "blue": REAL_S2_ASSET_FILES["B02"],
    "green": REAL_S2_ASSET_FILES["B03"],
    "red": REAL_S2_ASSET_FILES["B04"],
    "nir08": REAL_S2_ASSET_FILES["B8A"],
    "swir16": REAL_S2_ASSET_FILES["B11"],
    "scl": REAL_S2_ASSET_FILES["SCL"],
}
S2_BANDS = [{"name": "B04", "common_name": "red"}, {"name": "B8A", "common_name": "nir"}]
LANDSAT_BANDS = [
    {"name": "red", "source": "SR_B4", "common_name": "red"},
    {"name": "nir", "source": "SR_B5", "common_name": "nir"},
]
S2_SOURCES = {"B04": REAL_S2_ASSET_FILES["B04"], "B8A": REAL_S2_ASSET_FILES["B8A"]}
LANDSAT_SOURCES = {"red": REAL_LANDSAT_ASSET_FILES["red"], "nir": REAL_LANDSAT_ASSET_FILES["nir08"]}


def recorded_item(real_data: Path, cassette: str, item_id: str) -> dict:
    """A real Item from a recorded STAC API answer (a copy)."""
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    for interaction in yaml.load((real_data / CASSETTES / cassette).read_text(), Loader=loader)["interactions"]:
        try:
            body = json.loads(interaction["response"]["body"]["string"])
        except ValueError:
            continue
        for feature in body.get("features", []) if isinstance(body, dict) else []:
            if feature["id"] == item_id:
                return copy.deepcopy(feature)
    raise AssertionError(f"{item_id} not in {cassette}")


def earth_search_l2a(real_data: Path) -> dict:
    """S2A_13TDE_20231008_0_L2A: baseline 05.09, ``earthsearch:boa_offset_applied: true``, raster offset −0.1."""
    return recorded_item(real_data, "test_item_search/test_multiple_collections.yaml", "S2A_13TDE_20231008_0_L2A")


def earth_search_c1_l2a(real_data: Path) -> dict:
    """S2B_T20EPT_20250731T131905_L2A (collection sentinel-2-c1-l2a): baseline 05.11, no flag, raster offset −0.1."""
    return recorded_item(
        real_data, "test_cli/TestCLISearch.test_filter[inprocess].yaml", "S2B_T20EPT_20250731T131905_L2A"
    )


def earth_search_landsat(real_data: Path) -> dict:
    """LC08_L2SP_033032_20231008_02_T1: raster:bands scale 2.75e-5, offset −0.2, qa_pixel nodata 1."""
    return recorded_item(
        real_data, "test_item_search/test_multiple_collections.yaml", "LC08_L2SP_033032_20231008_02_T1"
    )


def _cube(collection: str, bands: list[dict], quality: dict, indexes: dict | None = None) -> CubeConfig:
    return CubeConfig.model_validate(
        {
            "name": "stac_scenes",
            "collection": collection,
            "providers": ["api"],
            "grid": {
                "kind": "user",
                "name": "G60",
                "crs": 32629,
                "origin": [499980, 5900040],
                "tile_size": [256, 256],
                "resolution": 60,
            },
            "tiles": ["000000"],
            "start_date": "2020-01-01",
            "end_date": "2025-12-31",
            "bands": bands,
            "quality": quality,
            "indexes": {"NDVI": "10000 * (nir - red) / (nir + red)"} if indexes is None else indexes,
        }
    )


S2_CUBE = _cube("sentinel-2-l2a", S2_BANDS, {"band": "SCL", "rules": {"preset": "scl"}, "nodata": 0})
LANDSAT_CUBE = _cube(
    "landsat-c2-l2", LANDSAT_BANDS, {"band": "QA_PIXEL", "rules": {"preset": "landsat_c2_qa_pixel"}, "nodata": 1}
)


def _fetch_and_publish(
    stac_server, tmp_path: Path, item: dict, files: dict | None, cube: CubeConfig, options: dict | None = None
):
    """Serve ``item`` (assets → real ``files``; ``None``: as it is), search it, store its bands, compute
    reflectance and publish it."""
    api = stac_server.add_api("api", [item] if files is None else stac_server.asset_files([item], files))
    provider = build_stac_provider("api", {"url": api.url, "retries": 0, **(options or {})}, {})
    footprint = shape(item["geometry"])
    moment = datetime.fromisoformat(item["properties"]["datetime"].replace("Z", "+00:00"))
    [scene] = provider.search(
        cube.collection,
        footprint.representative_point().buffer(0.01),
        moment - timedelta(days=1),
        moment + timedelta(days=1),
    )
    bands = [band.source_band for band in cube.bands] + [cube.quality.band]
    stored = RawStore(tmp_path / "raw").load(scene, bands, provider)
    entry = RawScene.model_validate(
        {
            "scene_id": scene.scene_id,
            "collection": scene.collection,
            "datetime": scene.datetime.isoformat(),
            "provider": "api",
            "path": str(stored.path),
            "cloud_cover": scene.cloud_cover,
            "footprint": mapping(scene.footprint),
        }
    )
    store = LocalRasterStore(tmp_path / "cubes")
    reflectance = reflectance_for_scene(cube, entry, store)
    return stored, reflectance.model_dump(), publish_scene(cube, reflectance, store).model_dump(), store


def _read(path) -> np.ndarray:
    with rasterio.open(path) as dataset:
        return dataset.read(1)


def _expected_sentinel2(dn: np.ndarray, add_offset: float) -> np.ndarray:
    """(DN + offset) / 10000 × 10000; DN 0 and negative results are nodata (−9999)."""
    values = dn.astype(np.int64) + int(add_offset)
    return np.where((dn == 0) | (values < 0), -9999, np.minimum(values, 32767))


def _expected_landsat(dn: np.ndarray) -> np.ndarray:
    """(DN × 2.75e-5 − 0.2) × 10000 rounded, clipped to 0–10000; DN 0 is nodata (−9999)."""
    values = np.clip(np.rint((dn.astype(np.float64) * 2.75e-5 - 0.2) * 10000), 0, 10000).astype(np.int64)
    return np.where(dn == 0, -9999, values)


def _assert_sampled_points_equal(published: np.ndarray, expected: np.ndarray) -> None:
    """Every pixel equal, and spot checks at 200 valid pixels spread over the image."""
    assert published.shape == expected.shape
    valid = np.flatnonzero(expected != -9999)
    assert valid.size > 1000
    sample = valid[np.linspace(0, valid.size - 1, 200).astype(int)]
    assert published.ravel()[sample].tolist() == expected.ravel()[sample].tolist()
    np.testing.assert_array_equal(published, expected)


@pytest.mark.parametrize(
    ("item_of", "options", "add_offset", "rule"),
    [
        # Earth Search says the offset is already in the files: −0.1 in raster:bands must not apply again.
        (earth_search_l2a, {}, 0, "earthsearch:boa_offset_applied"),
        # The c1 collection keeps ESA's DNs and says so with raster:bands offset −0.1 (−1000 DN).
        (earth_search_c1_l2a, {"collections": {"sentinel-2-l2a": "sentinel-2-c1-l2a"}}, -1000, "raster:bands offset"),
    ],
    ids=["earth-search-l2a-offset-already-applied", "earth-search-c1-l2a-offset-from-raster-bands"],
)
def test_earth_search_scene_goes_from_raw_store_to_cog_with_the_offset_applied_once(
    stac_server, real_data, tmp_path, item_of, options, add_offset, rule
) -> None:
    stored, reflectance, published, store = _fetch_and_publish(
        stac_server, tmp_path, item_of(real_data), EARTH_SEARCH_S2_FILES, S2_CUBE, options
    )

    # Earth Search keys its assets red/nir08/scl; the cube's B04/B8A/SCL were found through them.
    manifest = json.loads((stored.path / "product.json").read_text())
    assert {b: e["asset"] for b, e in manifest["properties"]["raw_store"]["bands"].items()} == {
        "B04": "red",
        "B8A": "nir08",
        "SCL": "scl",
    }
    assert (stored.path / "item.json").is_file()
    for band, source in S2_SOURCES.items():
        assert reflectance["radiometry"]["offsets"][band] == add_offset
        assert reflectance["radiometry"]["bands"][band]["rule"].startswith(rule)
        cog = store.gdal_path(published["bands"][band])
        assert is_valid_cog(cog)
        _assert_sampled_points_equal(_read(cog), _expected_sentinel2(_read(real_data / source), add_offset))
    # The quality band is the SCL, unchanged.
    np.testing.assert_array_equal(
        _read(store.gdal_path(published["quality"])), _read(real_data / REAL_S2_ASSET_FILES["SCL"])
    )


def test_planetary_computer_baseline_02_12_scene_is_read_without_offset(stac_server, real_data, tmp_path) -> None:
    [item] = [i for i in real_sentinel2_items(real_data) if i["id"].startswith("S2A_MSIL2A_20200621")]
    stored, reflectance, published, store = _fetch_and_publish(
        stac_server, tmp_path, item, REAL_S2_ASSET_FILES, S2_CUBE
    )

    assert reflectance["radiometry"]["bands"]["B04"]["rule"].startswith("processing baseline 02.12")
    for band, source in S2_SOURCES.items():
        _assert_sampled_points_equal(
            _read(store.gdal_path(published["bands"][band])), _expected_sentinel2(_read(real_data / source), 0)
        )


@pytest.mark.parametrize(
    ("item_of", "options", "rule"),
    [
        (earth_search_landsat, {}, "raster:bands scale and offset"),
        (
            lambda real_data: json.loads((real_data / LANDSAT_ITEM).read_text()),
            {"collections": {"landsat-c2-l2": "landsat-c2l2-sr"}},
            "Landsat C2 L2 surface-reflectance constants",
        ),
    ],
    ids=["earth-search-raster-bands", "usgs-item-without-raster-bands"],
)
def test_landsat_scene_is_read_with_the_c2_scale_and_offset(
    stac_server, real_data, tmp_path, item_of, options, rule
) -> None:
    stored, reflectance, published, store = _fetch_and_publish(
        stac_server, tmp_path, item_of(real_data), REAL_LANDSAT_ASSET_FILES, LANDSAT_CUBE, options
    )

    manifest = json.loads((stored.path / "product.json").read_text())
    assert {b: e["asset"] for b, e in manifest["properties"]["raw_store"]["bands"].items()} == {
        "SR_B4": "red",
        "SR_B5": "nir08",
        "QA_PIXEL": "qa_pixel",
    }
    for band, source in LANDSAT_SOURCES.items():
        assert reflectance["radiometry"]["bands"][band]["rule"] == rule
        _assert_sampled_points_equal(
            _read(store.gdal_path(published["bands"][band])), _expected_landsat(_read(real_data / source))
        )
    with rasterio.open(store.gdal_path(published["quality"])) as quality:
        assert quality.nodata == 1
        np.testing.assert_array_equal(quality.read(1), _read(real_data / REAL_LANDSAT_ASSET_FILES["qa_pixel"]))


def test_a_thermal_landsat_band_is_refused(stac_server, real_data, tmp_path) -> None:
    # No index: NDVI needs nir and red, which this cube lacks (refused when the cube is validated).
    cube = _cube(
        "landsat-c2-l2",
        [{"name": "st", "source": "lwir11"}],
        {"band": "QA_PIXEL", "rules": {"preset": "landsat_c2_qa_pixel"}, "nodata": 1},
        indexes={},
    )
    files = {**REAL_LANDSAT_ASSET_FILES, "lwir11": REAL_LANDSAT_ASSET_FILES["red"]}
    with pytest.raises(
        InvalidScene,
        match="LC08_L2SP_033032_20231008_02_T1 band lwir11: asset lwir11 is not a surface-reflectance band",
    ):
        _fetch_and_publish(stac_server, tmp_path, earth_search_landsat(real_data), files, cube)


# -- the rules on their own -------------------------------------------------------------------


def test_asset_keys_of_real_items_are_found_for_the_products_band_names(real_data) -> None:
    es = earth_search_l2a(real_data)
    assert [asset_key_for_band(es, band) for band in ("B04", "B08", "B8A", "SCL")] == ["red", "nir", "nir08", "scl"]
    pc = real_sentinel2_items(real_data)[0]
    assert [asset_key_for_band(pc, band) for band in ("B04", "SCL")] == ["B04", "SCL"]
    usgs = json.loads((real_data / LANDSAT_ITEM).read_text())
    assert [asset_key_for_band(usgs, band) for band in ("SR_B4", "SR_B5", "QA_PIXEL")] == ["red", "nir08", "qa_pixel"]
    es_landsat = earth_search_landsat(real_data)
    assert [asset_key_for_band(es_landsat, band) for band in ("SR_B2", "SR_B7")] == ["blue", "swir22"]


def test_processing_baseline_comes_from_the_property_or_the_product_name(real_data) -> None:
    pc = real_sentinel2_items(real_data)[0]
    assert processing_baseline(pc) == (2, 12)
    del pc["properties"]["s2:processing_baseline"]
    assert processing_baseline(pc) == (2, 12)  # from s2:product_uri …_N0212_…
    del pc["properties"]["s2:product_uri"]
    assert processing_baseline(pc) is None


def test_a_pc_item_of_baseline_04_without_raster_bands_gets_minus_1000(real_data) -> None:
    item = real_sentinel2_items(real_data)[0]
    item["properties"]["s2:processing_baseline"] = "04.00"  # as Planetary Computer Items since 2022 say
    radiometry = sentinel2_radiometry(item, "B04", "B04")
    assert (radiometry.add_offset, radiometry.quantification) == (-1000.0, 10000.0)


def test_an_item_that_cannot_tell_its_offset_is_refused_naming_it(real_data) -> None:
    item = real_sentinel2_items(real_data)[0]
    for key in ("s2:processing_baseline", "s2:product_uri"):
        del item["properties"][key]
    item["id"] = "S2A_35MNM_20200731"
    with pytest.raises(
        InvalidScene, match="STAC Item S2A_35MNM_20200731 band B04: cannot tell whether BOA_ADD_OFFSET applies"
    ):
        sentinel2_radiometry(item, "B04", "B04")


# -- a zipped .SAFE served as one asset (as the Copernicus Data Space "Product" is) ---------------


def _t29unu_zip(t29unu_safe: Path, destination: Path) -> Path:
    """A zip of the files of the real T29UNU product that reading it needs (metadata, 60 m B04, B8A, SCL)."""
    granule = t29unu_safe / "GRANULE" / Path(T29UNU_IMG).parent.name
    members = [t29unu_safe / "MTD_MSIL2A.xml", t29unu_safe / "manifest.safe", granule / "MTD_TL.xml"]
    members += [
        granule / "IMG_DATA" / "R60m" / f"T29UNU_20221005T115411_{band}_60m.jp2" for band in ("B04", "B8A", "SCL")
    ]
    with zipfile.ZipFile(destination, "w", zipfile.ZIP_STORED) as archive:
        for path in members:
            archive.write(path, f"{t29unu_safe.name}/{path.relative_to(t29unu_safe)}")
    return destination


def _t29unu_item(t29unu_safe: Path, href_route: str) -> dict:
    """A CDSE-like Item of the T29UNU product, made from its own metadata, with a zipped-product asset."""
    metadata = parse_product_metadata(t29unu_safe)
    return {
        "type": "Feature",
        "stac_version": "1.0.0",
        "id": metadata.product_id,
        "collection": "sentinel-2-l2a",
        "geometry": mapping(metadata.footprint),
        "bbox": list(metadata.footprint.bounds),
        "properties": {
            "datetime": metadata.sensing_time.isoformat().replace("+00:00", "Z"),
            "eo:cloud_cover": metadata.cloud_cover,
            "processing:version": metadata.processing_baseline,
        },
        "assets": {"Product": {"href": href_route, "type": "application/zip", "roles": ["data", "archive"]}},
        "links": [],
    }


def test_a_zipped_safe_asset_is_fetched_once_extracted_and_read_with_its_own_offset(
    stac_server, t29unu_safe, real_data, tmp_path
) -> None:
    archive = _t29unu_zip(t29unu_safe, tmp_path / "T29UNU.SAFE.zip")
    url = stac_server.serve_file(archive, "zipped/T29UNU.SAFE.zip")
    item = _t29unu_item(t29unu_safe, url)
    size, checksum = stac_server.file_size_and_checksum("zipped/T29UNU.SAFE.zip")
    item["assets"]["Product"].update({"file:size": size, "file:checksum": checksum})
    options = {"assets": {"B04": "Product", "B8A": "Product", "SCL": "Product"}}

    stored, reflectance, published, store = _fetch_and_publish(stac_server, tmp_path, item, None, S2_CUBE, options)

    assert len(stac_server.requests_to("/files/zipped/")) == 1  # three bands, one download
    assert sorted(p.name for p in stored.path.glob("*.zip")) == ["B04.zip", "B8A.zip", "SCL.zip"]
    assert (stored.path / "B04.zip").stat().st_ino == (stored.path / "SCL.zip").stat().st_ino
    assert (stored.path / t29unu_safe.name / "MTD_MSIL2A.xml").is_file()
    assert [p.name for p in stored.path.iterdir() if p.name.endswith((".extracting", ".stale"))] == []
    # Read through the .SAFE code: baseline 04.00 from MTD_MSIL2A.xml, so −1000, applied once.
    assert reflectance["radiometry"]["processing_baseline"] == "04.00"
    for band, source in S2_SOURCES.items():
        _assert_sampled_points_equal(
            _read(store.gdal_path(published["bands"][band])), _expected_sentinel2(_read(real_data / source), -1000)
        )


# -- through Dagster: raw_scene → surface_reflectance → scene_cog of a cube whose provider is STAC --


def test_cube_assets_materialize_a_stac_scene_into_cogs_with_the_offset_applied_once(
    stac_server, real_data, tmp_path
) -> None:
    """The Earth Search c1 Item over a 256 px tile of 60 m in UTM 20S.

    The cube names B04/B8A/SCL, the API red/nir08/scl.
    """
    from dagster import AssetKey, instance_for_test, materialize

    from cube_assets.assets import build_cube_assets
    from cube_assets.cube_config import load_project_config
    from cube_assets.definitions import build_definitions
    from cube_assets.partitions import partition_key
    from cube_assets_tests.conftest import write_cube_file

    api = stac_server.add_api("es", stac_server.asset_files([earth_search_c1_l2a(real_data)], EARTH_SEARCH_S2_FILES))
    cube = {
        "name": "c1",
        "collection": "sentinel-2-l2a",
        "providers": ["es"],
        "grid": {
            "kind": "user",
            "name": "U20S60",
            "crs": 32720,
            "origin": [690000, 3300000],
            "tile_size": [256, 256],
            "resolution": 60,
        },
        "tiles": ["000000"],
        "start_date": "2025-07-01",
        "end_date": "2025-07-31",
        "temporal": {"step": "1M", "restart": "yearly"},
        "bands": S2_BANDS,
        "quality": {"band": "SCL", "rules": {"preset": "scl"}, "nodata": 0},
        "indexes": {"NDVI": "10000 * (nir - red) / (nir + red)"},
    }
    provider = {
        "name": "es",
        "driver": "stac",
        "options": {"url": api.url, "collections": {"sentinel-2-l2a": "sentinel-2-c1-l2a"}, "retries": 0},
    }
    config = write_cube_file(tmp_path, cube, [provider])
    defs = build_definitions(config, tmp_path / "data")
    stages = [
        a
        for a in build_cube_assets(load_project_config(config).cube("c1"))
        if a.key.path[-1] in ("raw_scene", "surface_reflectance", "scene_cog")
    ]
    (tmp_path / "home").mkdir()

    with instance_for_test(temp_dir=str(tmp_path / "home")) as instance:
        result = materialize(
            stages, partition_key=partition_key("000000", "2025-07-01"), instance=instance, resources=defs.resources
        )
        assert result.success
        raw = instance.get_latest_materialization_event(AssetKey(["c1", "raw_scene"])).asset_materialization.metadata
        cogs = instance.get_latest_materialization_event(AssetKey(["c1", "scene_cog"])).asset_materialization.metadata

    assert raw["scenes"].value == {"S2B_T20EPT_20250731T131905_L2A": "es"}
    [bands] = cogs["cog_paths"].value.values()
    for band, source in S2_SOURCES.items():
        assert is_valid_cog(bands[band])
        _assert_sampled_points_equal(_read(bands[band]), _expected_sentinel2(_read(real_data / source), -1000))
