"""Scene stages on real products: surface reflectance and publishing (COGs, quicklook, footprint).

The real Sentinel-2 L2A T29UNU (baseline 04.00, 40 % nodata at the swath edge) and the real,
decimated Landsat 8 C2 L2 scene; a simulated L2A product where a preview (PVI) is needed, as
the real sample has none.
"""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest
import rasterio
import shapely
from pyproj import Transformer
from rasterio.enums import Resampling
from shapely.geometry import box, mapping, shape

from cube_assets.cube_config import CubeConfig
from cube_assets.errors import InvalidScene
from cube_assets.formats.landsat import parse_mtl
from cube_assets.formats.sentinel2_safe import open_safe
from cube_assets.formats.simulator import simulate_l2a_product
from cube_assets.manifests import RawScene
from cube_assets.raster.codecs import DEFAULT_COMPRESSION
from cube_assets.raster.cog import is_valid_cog
from cube_assets.raster.footprint import iou, valid_data_footprint
from cube_assets.raster.masks import (
    LANDSAT_C2_QA_PIXEL_RULES,
    QualityClass,
    classify_quality,
    radsat_saturated,
    rescale_landsat_c2,
)
from cube_assets.steps.scenes import publish_scene, reflectance_for_cube_scene, reflectance_for_scene
from cube_assets.storage.raster_store import LocalRasterStore

pytestmark = [pytest.mark.real_data, pytest.mark.filterwarnings("ignore::rasterio.errors.NotGeoreferencedWarning")]

T29UNU_ID = "S2A_MSIL2A_20221005T115411_N0400_R023_T29UNU_20221005T164454"
LANDSAT_ID = "LC08_L2SP_008059_20191201_20200825_02_T1"
LANDSAT_FOLDER = "stactools-landsat/tests/data-files/assets3"
L1C_T46RER = "stactools-sentinel2/tests/data-files/S2A_MSIL1C_20210908T042701_N0301_R133_T46RER_20210908T070248.SAFE"


def _cube(**overrides) -> CubeConfig:
    cube = {
        "name": "ireland",
        "collection": "sentinel-2-l2a",
        "providers": ["archive"],
        "grid": {
            "kind": "user",
            "name": "U29N60",
            "crs": 32629,
            "origin": [499980, 5900040],
            "tile_size": [1830, 1830],
            "resolution": 60,
        },
        "tiles": ["000000"],
        "start_date": "2022-10-01",
        "end_date": "2022-10-10",
        "bands": [
            {"name": "B02", "common_name": "blue"},
            {"name": "B03", "common_name": "green"},
            {"name": "B04", "common_name": "red"},
            {"name": "B8A", "common_name": "nir"},
        ],
        "quality": {"band": "SCL", "rules": {"preset": "scl"}, "nodata": 0},
        "indexes": {"NDVI": "10000 * (nir - red) / (nir + red)"},
    }
    if "sources" in overrides:  # the sources give collection, providers and quality
        cube = {k: v for k, v in cube.items() if k not in ("collection", "providers", "quality")}
    return CubeConfig.model_validate({**cube, **overrides})


def _scene(scene_id: str, path: Path, footprint, when: datetime) -> RawScene:
    return RawScene.model_validate(
        {
            "scene_id": scene_id,
            "collection": "sentinel-2-l2a",
            "datetime": when.isoformat(),
            "provider": "archive",
            "path": str(path),
            "cloud_cover": 50.0,
            "footprint": footprint,
        }
    )


def _utm_iou(a, b, epsg: int) -> float:
    to_utm = Transformer.from_crs(4326, epsg, always_xy=True)
    return iou(
        *(shapely.transform(g, lambda xy: np.column_stack(to_utm.transform(xy[:, 0], xy[:, 1]))) for g in (a, b))
    )


# -- the real T29UNU ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def t29unu(tmp_path_factory, t29unu_safe):
    """Publish T29UNU with its MTD footprint, then again without one (the COGs are reused)."""
    store = LocalRasterStore(tmp_path_factory.mktemp("t29unu"))
    cube = _cube()
    metadata = open_safe(t29unu_safe).metadata
    scene = _scene(T29UNU_ID, t29unu_safe, mapping(metadata.footprint), metadata.sensing_time)
    sr = reflectance_for_scene(cube, scene, store)
    reflectance = sr.model_dump()
    published = publish_scene(cube, sr, store).model_dump()
    footprint_file = json.loads(Path(published["footprint_file"]).read_text())
    fallback = publish_scene(cube, sr.model_copy(update={"footprint": None}), store).model_dump()
    return {
        "store": store,
        "reflectance": reflectance,
        "published": published,
        "footprint_file": footprint_file,
        "fallback": fallback,
    }


@pytest.fixture(scope="module")
def b02_outline(t29unu_safe):
    return valid_data_footprint(open_safe(t29unu_safe).band_path("B02", 60), nodata=0)


def test_the_mtd_footprint_matches_the_valid_outline_of_b02(t29unu, t29unu_safe, b02_outline):
    published = t29unu["published"]
    mtd = open_safe(t29unu_safe).metadata.footprint

    assert published["footprint_source"] == "product_metadata"
    assert shape(published["footprint"]).equals(mtd)
    assert t29unu["footprint_file"]["geometry"] == published["footprint"]
    assert t29unu["footprint_file"]["properties"] == {"source": "product_metadata"}
    assert _utm_iou(mtd, b02_outline, 32629) >= 0.95


def test_without_metadata_the_footprint_is_the_valid_outline_not_the_bounding_box(t29unu, t29unu_safe, b02_outline):
    fallback = t29unu["fallback"]
    outline = shape(fallback["footprint"])
    product = open_safe(t29unu_safe)
    frame = Transformer.from_crs(32629, 4326, always_xy=True).transform_bounds(*product.tile_metadata.bounds())

    assert fallback["footprint_source"] == "valid_data_outline"
    assert json.loads(Path(fallback["footprint_file"]).read_text())["properties"] == {"source": "valid_data_outline"}
    assert _utm_iou(outline, product.metadata.footprint, 32629) >= 0.95
    assert _utm_iou(outline, b02_outline, 32629) >= 0.95
    # about 40 % of the tile is outside the swath: the bounding box would be far off
    assert _utm_iou(outline, box(*frame), 32629) < 0.7


def test_baseline_04_offset_is_applied(t29unu, t29unu_safe):
    reflectance = t29unu["reflectance"]
    with (
        rasterio.open(open_safe(t29unu_safe).band_path("B04", 60)) as src,
        rasterio.open(reflectance["bands"]["B04"]) as sr,
    ):
        dn, values = src.read(1).astype(int), sr.read(1).astype(int)

    assert reflectance["radiometry"]["offsets"] == {"B02": -1000.0, "B03": -1000.0, "B04": -1000.0, "B8A": -1000.0}
    assert reflectance["radiometry"]["processing_baseline"] == "04.00"
    assert np.array_equal(values[dn >= 1000], dn[dn >= 1000] - 1000)
    assert (values[dn < 1000] == -9999).all()  # outside the swath (0) and the rare negative reflectance


def test_cogs_are_validated_512_px_tiles_with_overviews(t29unu):
    published = t29unu["published"]
    for uri, predictor in (
        (published["bands"]["B04"], 2),
        (published["quality"], 2),
        (published["indexes"]["NDVI"], 2),
    ):
        assert is_valid_cog(uri)
        with rasterio.open(uri) as cog:
            assert cog.block_shapes == [(512, 512)]
            structure = cog.tags(ns="IMAGE_STRUCTURE")
            assert (structure["LAYOUT"], structure["COMPRESSION"], structure["PREDICTOR"]) == (
                "COG",
                DEFAULT_COMPRESSION,
                str(predictor),
            )
            assert cog.overviews(1) == [2, 4]
    with rasterio.open(published["quality"]) as scl, rasterio.open(t29unu["reflectance"]["quality"]) as source:
        assert np.array_equal(scl.read(1), source.read(1)) and scl.nodata == 0


def test_the_quicklook_is_768_px_rgb_with_transparent_nodata(t29unu):
    with rasterio.open(t29unu["published"]["quicklook"]) as png:
        assert png.driver == "PNG" and (png.count, png.height, png.width) == (4, 768, 768)
        rgba = png.read()
    bands = t29unu["reflectance"]["bands"]
    reflectance = {}
    for name in ("B04", "B03", "B02"):
        with rasterio.open(bands[name]) as src:
            reflectance[name] = src.read(1, out_shape=(768, 768), resampling=Resampling.nearest).astype(float)
    missing = np.logical_or.reduce([band == -9999 for band in reflectance.values()])

    transparent = rgba[3] == 0
    assert np.array_equal(transparent, missing)
    assert 0.40 < transparent.mean() < 0.43  # the swath edge (40 %) and a few negative reflectances
    assert (rgba[:3, transparent] == 0).all()
    # No display range is known for a scene: the 2nd..98th percentile of the three bands' valid pixels.
    low, high = np.percentile(np.concatenate([band[~missing] for band in reflectance.values()]), [2, 98])
    for channel, name in enumerate(("B04", "B03", "B02")):  # onto 0..255, rounded half up
        expected = np.clip(np.floor((reflectance[name] - low) * 255 / (high - low) + 0.5), 0, 255)
        assert np.array_equal(rgba[channel][~transparent], expected[~transparent])


def _assert_copy_of(copied_path: str, source: Path, size: int) -> None:
    with rasterio.open(copied_path) as copied, rasterio.open(source) as scl:
        assert (copied.width, copied.height) == (size, size)
        assert copied.transform == scl.transform and copied.nodata == 0
        assert np.array_equal(copied.read(1), scl.read(1))


def test_scl_is_read_at_60_m_for_a_60_m_cube(t29unu, t29unu_safe):
    _assert_copy_of(t29unu["reflectance"]["quality"], next(t29unu_safe.rglob("*_SCL_60m.jp2")), 1830)


def test_scl_is_read_at_20_m_for_a_20_m_cube(tmp_path, t29unu_safe):
    cube = _cube(source_resolution=20, bands=[{"name": "B02", "common_name": "blue"}], indexes={})
    metadata = open_safe(t29unu_safe).metadata
    scene = _scene(T29UNU_ID, t29unu_safe, mapping(metadata.footprint), metadata.sensing_time)

    reflectance = reflectance_for_scene(cube, scene, LocalRasterStore(tmp_path)).model_dump()

    _assert_copy_of(reflectance["quality"], next(t29unu_safe.rglob("*_SCL_20m.jp2")), 5490)
    with rasterio.open(reflectance["bands"]["B02"]) as b02:  # only the 60 m file exists: the coarser one is read
        assert b02.res == (60.0, 60.0)


# -- a product with a preview --------------------------------------------------------------------


def test_the_products_pvi_is_the_quicklook(tmp_path):
    when = datetime(2024, 1, 5, 13, 32, 29, tzinfo=UTC)
    safe = simulate_l2a_product(
        tmp_path / "archive",
        tile_id="T23LLF",
        epsg=32723,
        ulx=300000,
        uly=8800000,
        size_px=512,
        sensing_time=when,
        seed=4,
        bands=("B02", "B03", "B04", "B08"),
        cloud_fraction=0.2,
        swath_edge=True,
    )
    product = open_safe(safe)
    assert product.pvi_path is not None
    cube = _cube(
        grid={
            "kind": "user",
            "name": "U23S10",
            "crs": 32723,
            "origin": [300000, 8800000],
            "tile_size": [512, 512],
            "resolution": 10,
        },
        bands=[
            {"name": b, "common_name": c}
            for b, c in (("B02", "blue"), ("B03", "green"), ("B04", "red"), ("B08", "nir"))
        ],
    )
    scene = _scene(product.product_id, safe, mapping(product.metadata.footprint), when)
    store = LocalRasterStore(tmp_path / "data")

    sr = reflectance_for_scene(cube, scene, store)
    reflectance, published = sr.model_dump(), publish_scene(cube, sr, store).model_dump()

    assert reflectance["pvi"] == str(product.pvi_path)
    with rasterio.open(product.pvi_path) as pvi, rasterio.open(published["quicklook"]) as png:
        preview, rgba = pvi.read(), png.read()
    assert rgba.shape == (4, *preview.shape[1:])  # the preview's own size (16 px), not 512 px of bands
    has_data = (preview != 0).all(axis=0)
    assert 0 < has_data.mean() < 1  # the swath edge is in the preview
    assert np.array_equal(rgba[:3, has_data], preview[:, has_data])
    assert (rgba[3] == np.where(has_data, 255, 0)).all()


# -- Landsat Collection 2 Level-2 ------------------------------------------------------------------

LANDSAT_CUBE = {
    "name": "landsat",
    "collection": "landsat-c2-l2",
    "grid": {
        "kind": "user",
        "name": "U18N",
        "crs": 32618,
        "origin": [378285, 275715],
        "tile_size": [512, 512],
        "resolution": 450,
    },
    "bands": [
        {"name": "blue", "source": "B2", "common_name": "blue"},
        {"name": "green", "source": "SR_B3", "common_name": "green"},
        {"name": "red", "source": "B4", "common_name": "red"},
        {"name": "nir", "source": "B5", "common_name": "nir"},
    ],
    "quality": {"band": "QA_PIXEL", "rules": {"preset": "landsat_c2_qa_pixel"}, "nodata": 1},
    "indexes": {"NDVI": "10000 * (nir - red) / (nir + red)"},
}


@pytest.fixture(scope="module")
def landsat(tmp_path_factory, real_data):
    folder = real_data / LANDSAT_FOLDER
    metadata = parse_mtl(folder)
    cube = _cube(**LANDSAT_CUBE)
    scene = _scene(LANDSAT_ID, folder, mapping(metadata.frame), metadata.acquired).model_copy(
        update={"collection": "landsat-c2-l2"}
    )
    store = LocalRasterStore(tmp_path_factory.mktemp("landsat"))
    reflectance = reflectance_for_scene(cube, scene, store)
    return folder, metadata, reflectance.model_dump(), publish_scene(cube, reflectance, store).model_dump()


def test_landsat_bands_are_read_with_the_mtl_scale_and_offset(landsat):
    folder, _, reflectance, _ = landsat

    assert reflectance["radiometry"]["scales"] == {"blue": 2.75e-5, "green": 2.75e-5, "red": 2.75e-5, "nir": 2.75e-5}
    assert reflectance["radiometry"]["offsets"]["nir"] == -0.2
    with rasterio.open(folder / f"{LANDSAT_ID}_SR_B5.TIF") as src, rasterio.open(reflectance["bands"]["nir"]) as sr:
        dn, values = src.read(1), sr.read(1)
    assert np.array_equal(values, rescale_landsat_c2(dn, scale=2.75e-5, offset=-0.2, nodata_out=-9999))
    plain = (dn > 7300) & (dn < 40000)
    assert np.array_equal(values[plain], np.rint((dn[plain] * 2.75e-5 - 0.2) * 10000))
    assert ((values == -9999) == (dn == 0)).all()


def test_landsat_bands_of_an_hls_cube_are_adjusted_to_sentinel2(tmp_path, real_data):
    folder = real_data / LANDSAT_FOLDER
    metadata = parse_mtl(folder)
    cube = _cube(**LANDSAT_CUBE, bandpass_adjustment="hls")
    scene = _scene(LANDSAT_ID, folder, mapping(metadata.frame), metadata.acquired).model_copy(
        update={"collection": "landsat-c2-l2"}
    )
    reflectance = reflectance_for_scene(cube, scene, LocalRasterStore(tmp_path)).model_dump()

    assert reflectance["radiometry"]["bandpass_adjustment"] == "hls"
    assert reflectance["radiometry"]["scales"]["red"] == pytest.approx(2.75e-5 / 0.9765, rel=1e-12)
    with rasterio.open(folder / f"{LANDSAT_ID}_SR_B4.TIF") as src, rasterio.open(reflectance["bands"]["red"]) as sr:
        dn, values = src.read(1), sr.read(1)
    plain = (dn > 7400) & (dn < 30000)
    assert plain.sum() > 1000
    hls = np.rint(((dn[plain] * 2.75e-5 - 0.2) - 0.0009) / 0.9765 * 10000)  # MSI = (OLI - b) / a
    assert np.array_equal(values[plain], hls)
    assert (values[plain] != np.rint((dn[plain] * 2.75e-5 - 0.2) * 10000)).mean() > 0.5  # not the unadjusted values
    assert ((values == -9999) == (dn == 0)).all()


MIXED_CUBE = {
    **{k: v for k, v in LANDSAT_CUBE.items() if k not in ("collection", "quality")},
    "name": "mixed",
    "bands": [{"name": band["name"], "common_name": band["common_name"]} for band in LANDSAT_CUBE["bands"]],
    "sources": [
        {
            "name": "s2",
            "collection": "sentinel-2-l2a",
            "bands": {"blue": "B02", "green": "B03", "red": "B04", "nir": "B8A"},
        },
        {
            "name": "landsat",
            "collection": "landsat-c2-l2",
            "bands": {"blue": "SR_B2", "green": "SR_B3", "red": "SR_B4", "nir": "SR_B5"},
            "quality": {
                "band": "QA_PIXEL",
                "rules": {"preset": "landsat_c2_qa_pixel"},
                "nodata": 1,
                "radsat": "QA_RADSAT",
            },
        },
    ],
}


def test_a_landsat_scene_of_a_mixed_cube_is_read_by_role_adjusted_and_classified(tmp_path, real_data):
    folder = real_data / LANDSAT_FOLDER
    metadata = parse_mtl(folder)
    cube = _cube(**MIXED_CUBE)
    scene = _scene(LANDSAT_ID, folder, mapping(metadata.frame), metadata.acquired).model_copy(
        update={"collection": "landsat-c2-l2", "source": "landsat"}
    )
    reflectance = reflectance_for_cube_scene(cube, scene, LocalRasterStore(tmp_path))

    assert reflectance.radiometry["bandpass_adjustment"] == "hls"  # Landsat meets Sentinel-2: hls by default
    with rasterio.open(folder / f"{LANDSAT_ID}_SR_B5.TIF") as src, rasterio.open(reflectance.bands["nir"]) as sr:
        dn, nir = src.read(1), sr.read(1)
    plain = (dn > 7400) & (dn < 30000)
    assert np.array_equal(nir[plain], np.rint(((dn[plain] * 2.75e-5 - 0.2) + 0.0001) / 0.9983 * 10000))
    with rasterio.open(folder / f"{LANDSAT_ID}_QA_PIXEL.TIF") as src, rasterio.open(reflectance.quality) as q:
        qa, classes = src.read(1), q.read(1)
        assert q.dtypes[0] == "uint8" and q.nodata == 0
    with rasterio.open(folder / f"{LANDSAT_ID}_QA_RADSAT.TIF") as src:
        saturated = radsat_saturated(src.read(1))
    expected = classify_quality(np.where(saturated, 1, qa).astype(qa.dtype), LANDSAT_C2_QA_PIXEL_RULES)
    np.testing.assert_array_equal(classes, expected)
    unsaturated = ~saturated
    assert (classes[(qa == 21824) & unsaturated] == QualityClass.CLEAR).all()  # clear land
    assert (classes[(qa == 22280) & unsaturated] == QualityClass.NOT_CLEAR).all()  # high-confidence cloud
    assert (classes[saturated] == QualityClass.NODATA).all() and saturated.any()
    assert (classes[qa == 1] == QualityClass.NODATA).all()
    assert reflectance.quality.endswith("QUALITY.tif")


def test_a_scene_naming_no_source_of_the_cube_is_refused(tmp_path, real_data):
    folder = real_data / LANDSAT_FOLDER
    metadata = parse_mtl(folder)
    scene = _scene(LANDSAT_ID, folder, mapping(metadata.frame), metadata.acquired)
    with pytest.raises(InvalidScene, match=r"source None is not one of cube mixed's sources \['s2', 'landsat'\]"):
        reflectance_for_cube_scene(_cube(**MIXED_CUBE), scene, LocalRasterStore(tmp_path))


def test_landsat_qa_pixel_is_the_quality_band_with_fill_as_nodata(landsat):
    folder, _, reflectance, published = landsat
    with rasterio.open(folder / f"{LANDSAT_ID}_QA_PIXEL.TIF") as src, rasterio.open(published["quality"]) as qa:
        assert qa.nodata == 1 and qa.dtypes[0] == "uint16"
        assert np.array_equal(qa.read(1), src.read(1))


def test_landsat_footprint_is_the_valid_outline_inside_the_frame(landsat):
    _, metadata, reflectance, published = landsat

    assert reflectance["footprint"] is None  # the MTL only has the frame
    assert published["footprint_source"] == "valid_data_outline"
    outline = shape(published["footprint"])
    assert metadata.frame.buffer(0.01).contains(outline)
    # 69 % of the pixels are not fill; the outline covers that share of the frame, not all of it
    assert 0.6 < outline.area / metadata.frame.area < 0.8
    with rasterio.open(published["quicklook"]) as png:
        assert (png.width, png.height) == (512, 512)  # smaller than 768 px: never enlarged


def test_a_landsat_band_that_is_not_reflectance_is_refused(tmp_path, real_data):
    folder = real_data / LANDSAT_FOLDER
    cube = _cube(**{**LANDSAT_CUBE, "bands": [{"name": "thermal", "source": "ST_B10"}], "indexes": {}})
    scene = _scene(LANDSAT_ID, folder, None, datetime(2019, 12, 1, tzinfo=UTC))

    with pytest.raises(
        InvalidScene, match=rf"{LANDSAT_ID}: cube band thermal reads ST_B10, which is not a surface-reflectance band"
    ):
        reflectance_for_scene(cube, scene, LocalRasterStore(tmp_path))


# -- inputs this stage cannot read alone ---------------------------------------------------------


def test_a_level_1c_product_needs_sen2cor(tmp_path, real_data):
    scene = _scene(
        "S2A_MSIL1C_20210908T042701_N0301_R133_T46RER_20210908T070248",
        real_data / L1C_T46RER,
        None,
        datetime(2021, 9, 8, tzinfo=UTC),
    )

    with pytest.raises(
        InvalidScene, match=r"T46RER.*is Level-1C; it needs Sen2Cor.*sentinel-2-l1c \(this cube's is sentinel-2-l2a\)"
    ):
        reflectance_for_scene(_cube(), scene, LocalRasterStore(tmp_path))


def test_a_folder_that_is_no_known_product_is_named(tmp_path):
    (tmp_path / "mystery").mkdir()
    scene = _scene("mystery", tmp_path / "mystery", None, datetime(2024, 1, 1, tzinfo=UTC))

    with pytest.raises(InvalidScene, match=r"mystery: neither a Sentinel-2 .SAFE nor a Landsat C2 Level-2 folder"):
        reflectance_for_scene(_cube(), scene, LocalRasterStore(tmp_path / "data"))


def test_published_footprints_are_json_and_lon_lat(t29unu):
    geometry = t29unu["published"]["footprint"]
    json.dumps(geometry)
    minx, miny, maxx, maxy = shape(geometry).bounds
    assert -9.1 < minx < maxx < -7.7 and 52.2 < miny < maxy < 53.3
    assert not math.isnan(minx)
