"""Declared raster sizes are checked against what the product can be, before any pixel is read.

The hostile files are real sparse GeoTIFFs: a header declaring 1,000,000 x 1,000,000 pixels in
a few hundred KB (no tile written). That no pixel is read is shown by recording every ``read``
of a rasterio dataset or warped view (the readers' only way to pixels; the spy delegates, it
mocks nothing) and, for the translators that read inside GDAL, by a bound on the time far
above the refusal's milliseconds and far below the hours a read of 10^12 pixels takes.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
import pytest
from affine import Affine
from shapely.geometry import mapping, shape

from cube_assets.errors import InvalidRaster, InvalidScene
from cube_assets.manifests import RawScene
from cube_assets.providers.raw_store import CorruptFile, RawStore, verify_file
from cube_assets.providers.stac import build_stac_provider
from cube_assets.raster.cog import cog_from_file
from cube_assets.raster.inputs import open_input
from cube_assets.raster.product_limits import ANY_SCENE, LANDSAT_C2, SENTINEL2, ProductLimits
from cube_assets.raster.reflectance import copy_band, write_landsat_reflectance, write_reflectance
from cube_assets.raster.warp import DATASOURCE, merge_scenes_to_files
from cube_assets.steps.scenes import reflectance_for_scene
from cube_assets.storage.raster_store import LocalRasterStore
from cube_assets_tests.fixtures_stac import REAL_LANDSAT_ASSET_FILES, REAL_S2_ASSET_FILES
from cube_assets_tests.hostile.hostile_rasters import (
    ORIGIN,
    UTM29,
    declared_only,
    everything_in,
    pixel_reads,
    write_geotiff,
)
from cube_assets_tests.steps.test_scenes_stac import EARTH_SEARCH_S2_FILES, S2_CUBE, earth_search_l2a

GENEROUS_SECONDS = 60  # the refusal takes milliseconds; reading what the header declares takes hours


def _merge(source: Path, out: Path) -> object:
    """Merge one scene whose B04 is ``source`` and whose SCL is a sound 64 px raster on the T29UNU tile."""
    scl = write_geotiff(source.parent / "scl.tif", np.full((64, 64), 4, dtype=np.uint8))
    return merge_scenes_to_files(
        [{"SCL": str(scl), "B04": str(source)}],
        bands=["B04"],
        quality_band="SCL",
        quality_rules={"preset": "scl"},
        dst_crs=UTM29,
        dst_transform=Affine(10, 0, ORIGIN[0], 0, -10, ORIGIN[1]),
        dst_shape=(64, 64),
        band_nodata={"SCL": 0, "B04": 0},
        out_paths={name: out / f"merge_{name}.tif" for name in ("SCL", "B04", DATASOURCE)},
        warp_block=64,
        window_size=64,
    )


READERS: dict[str, tuple[Callable[[Path, Path], object], type[Exception]]] = {
    "write_reflectance": (
        lambda src, out: write_reflectance(src, out / "sr_B04.tif", add_offset=-1000, quantification=10000),
        InvalidRaster,
    ),
    "write_landsat_reflectance": (
        lambda src, out: write_landsat_reflectance(src, out / "sr_SR_B4.tif", scale=2.75e-5, offset=-0.2),
        InvalidRaster,
    ),
    "copy_band": (lambda src, out: copy_band(src, out / "sr_SCL.tif", nodata=0), InvalidRaster),
    "cog_from_file[rio-cogeo]": (lambda src, out: cog_from_file(src, out / "B04.tif", limits=ANY_SCENE), InvalidRaster),
    "cog_from_file[gdal]": (
        lambda src, out: cog_from_file(src, out / "B04.tif", limits=ANY_SCENE, driver="gdal"),
        InvalidRaster,
    ),
    "merge_scenes_to_files": (_merge, InvalidScene),
    "verify_file": (lambda src, out: verify_file(src), CorruptFile),
}


@pytest.mark.parametrize("reader", list(READERS))
def test_a_header_declaring_a_million_pixels_a_side_is_refused_before_any_pixel_is_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, reader: str
) -> None:
    hostile = declared_only(tmp_path / "T29UNU_B04_huge.tif", 1_000_000, 1_000_000, 10.0)
    assert hostile.stat().st_size < 1_000_000
    out = tmp_path / "out"
    out.mkdir()
    call, error = READERS[reader]

    started = time.monotonic()
    with pixel_reads(monkeypatch) as reads, pytest.raises(error) as refused:
        call(hostile, out)

    assert time.monotonic() - started < GENEROUS_SECONDS
    assert reads == [], "pixels were read before the size was refused"
    assert "T29UNU_B04_huge.tif" in str(refused.value)
    assert "declares 1000000 x 1000000 px" in str(refused.value)
    assert everything_in(out) == []


@pytest.mark.parametrize("reader", ["copy_band", "merge_scenes_to_files"])
def test_the_read_recorder_sees_the_reads_of_a_sound_band(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, reader: str
) -> None:
    sound = write_geotiff(tmp_path / "T29UNU_B04.tif", np.full((64, 64), 1200, dtype=np.uint16))
    out = tmp_path / "out"
    out.mkdir()

    with pixel_reads(monkeypatch) as reads:
        READERS[reader][0](sound, out)

    assert any(str(sound) in name for name in reads)  # a file, or a WarpedVRT(file)
    assert everything_in(out) != []


@pytest.mark.parametrize(
    ("width", "pixel_size", "crs", "limits", "rule"),
    [
        (10_980, 20.0, UTM29, SENTINEL2, "km footprint of Sentinel-2"),  # S2's pixel count, twice its ground
        (20_000, 1.0, UTM29, SENTINEL2, "10980 px a side"),  # 20 km of ground, too many pixels
        (6_000, 60.0, UTM29, LANDSAT_C2, "km footprint of Landsat"),  # 360 km of Landsat
        (2_000, 0.001, "EPSG:4326", SENTINEL2, "km footprint of Sentinel-2"),  # 2 degrees, 222 km
        (1_900, 50.0, UTM29, SENTINEL2.narrowed_to([1830, 1830], "item"), "1830 x 1830 px its STAC Item declares"),
        (30_000, 10.0, UTM29, ANY_SCENE, "20000 px a side"),
    ],
    ids=["s2-pixels-at-20m", "s2-tiny-pixels", "landsat-ground", "s2-in-degrees", "stac-proj-shape", "any-scene"],
)
def test_a_band_declaring_more_than_its_product_can_be_is_refused_naming_the_rule(
    tmp_path: Path, width: int, pixel_size: float, crs: str, limits: ProductLimits, rule: str
) -> None:
    hostile = declared_only(tmp_path / "band.tif", width, width, pixel_size, crs=crs)
    out = tmp_path / "out"
    out.mkdir()

    with pytest.raises(InvalidRaster, match=rule) as refused:
        copy_band(hostile, out / "sr_SCL.tif", limits=limits)

    assert str(hostile) in str(refused.value)
    assert everything_in(out) == []


def test_a_band_exactly_the_size_of_a_sentinel2_tile_is_accepted_and_one_two_percent_larger_is_not(
    tmp_path: Path,
) -> None:
    with open_input(declared_only(tmp_path / "tile.tif", 10_980, 10_980, 10.0), limits=SENTINEL2) as dataset:
        assert (dataset.width, dataset.height) == (10_980, 10_980)
    with pytest.raises(InvalidRaster, match="larger.tif: declares 11200 x 11200 px"):
        with open_input(declared_only(tmp_path / "larger.tif", 11_200, 11_200, 10.0), limits=SENTINEL2):
            pass


def test_real_products_fit_their_own_limits_and_a_landsat_band_is_not_a_sentinel2_band(real_data: Path) -> None:
    for name in ("B04", "SCL"):  # 1830 px at 60 m and 5490 px at 20 m: the whole 109.8 km tile
        with open_input(real_data / REAL_S2_ASSET_FILES[name], limits=SENTINEL2) as dataset:
            assert abs(dataset.width * dataset.res[0] - 109_800) < 1
    landsat = real_data / REAL_LANDSAT_ASSET_FILES["red"]  # 228 x 232 km
    with open_input(landsat, limits=LANDSAT_C2):
        pass
    with pytest.raises(InvalidRaster, match=r"covering 227\.7 x 232\.2 km, more than the 109\.8 km footprint"):
        with open_input(landsat, limits=SENTINEL2):
            pass


@pytest.mark.parametrize(
    "shape", ["10980", [0, 10980], [10980], [10980.5, 10980], [True, 5], {"rows": 1}, [10980, 10980, 1]]
)
def test_a_malformed_proj_shape_is_refused_naming_the_field(shape: object) -> None:
    with pytest.raises(InvalidRaster, match=r"^STAC Item X: assets\.red\.proj:shape: .* is not \[rows, columns\]"):
        SENTINEL2.narrowed_to(shape, "STAC Item X: assets.red.proj:shape")


@pytest.mark.real_data
def test_a_stac_band_larger_than_its_items_proj_shape_is_refused_and_nothing_is_written(
    stac_server, real_data, tmp_path
) -> None:
    item = earth_search_l2a(real_data)
    item["assets"]["red"]["proj:shape"] = [915, 915]  # the file served is the real 1830 px 60 m band
    api = stac_server.add_api("api", stac_server.asset_files([item], EARTH_SEARCH_S2_FILES))
    provider = build_stac_provider("api", {"url": api.url, "retries": 0}, {})
    moment = datetime.fromisoformat(item["properties"]["datetime"].replace("Z", "+00:00"))
    [scene] = provider.search(
        S2_CUBE.collection,
        shape(item["geometry"]).representative_point().buffer(0.01),
        moment - timedelta(days=1),
        moment + timedelta(days=1),
    )
    stored = RawStore(tmp_path / "raw").load(scene, ["B04", "B8A", "SCL"], provider)
    entry = RawScene(
        scene_id=scene.scene_id,
        collection=scene.collection,
        datetime=scene.datetime,
        provider="api",
        path=str(stored.path),
        cloud_cover=scene.cloud_cover,
        footprint=mapping(scene.footprint),
    )
    cubes = tmp_path / "cubes"

    with pytest.raises(
        InvalidRaster, match=r"declares 1830 x 1830 px, more than the 915 x 915 px its STAC Item declares"
    ) as refused:
        reflectance_for_scene(S2_CUBE, entry, LocalRasterStore(cubes))

    assert str(stored.bands["B04"]) in str(refused.value)
    assert [name for name in everything_in(cubes) if not name.startswith(".staging")] == []
    assert everything_in(cubes / ".staging") == []
