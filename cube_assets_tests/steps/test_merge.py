"""The merge step (``steps.merge.merge_date``) window by window, against the whole-tile merge it replaced.

The whole-tile merge is kept as the benchmark's reference (``benchmarks/reference_merge.py``:
the former ``merge_scenes_to_tile`` and ``merge_date``, every band of the tile in memory, COGs
through rio-cogeo). The windowed merge must give exactly its pixels, nodata, grid and
statistics, on the real T29UNU product and on three overlapping synthetic scenes in another
CRS than the tile, and the same whatever the window size.
"""

from __future__ import annotations

import importlib.util
import shutil
from collections.abc import Callable, Mapping
from datetime import date
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import rasterio
from affine import Affine
from pyproj import Transformer
from rasterio.warp import transform_bounds
from shapely.geometry import mapping

from cube_assets.cube_config import CubeConfig
from cube_assets.errors import InvalidScene
from cube_assets.formats.sentinel2_safe import open_safe
from cube_assets.manifests import RawScene, ReflectanceScene, SceneRasters
from cube_assets.raster.cog import is_valid_cog
from cube_assets.steps.merge import merge_date
from cube_assets.steps.scenes import reflectance_for_scene
from cube_assets.storage.raster_store import LocalRasterStore
from cube_assets_tests.conftest import REPO_ROOT

BDC_ALBERS = (
    "+proj=aea +lat_0=-12 +lon_0=-54 +lat_1=-2 +lat_2=-22 +x_0=5000000 +y_0=10000000 +ellps=GRS80 +units=m +no_defs"
)
STATISTICS = ("scenes", "efficacy", "cloud_ratio", "valid_pixels", "clear_pixels", "total_pixels")
DAY = date(2024, 1, 4)


def _load_reference_merge_date() -> Callable[..., dict[str, Any]]:
    """``benchmarks/reference_merge.py::reference_merge_date`` (the benchmarks folder is not a package)."""
    path = REPO_ROOT / "benchmarks" / "reference_merge.py"
    spec = importlib.util.spec_from_file_location("reference_merge", path)
    assert spec is not None and spec.loader is not None, path
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.reference_merge_date


reference_merge_date = _load_reference_merge_date()


def _outputs(entry: Mapping[str, Any]) -> dict[str, str]:
    return {**entry["bands"], "quality": entry["quality"], "DATASOURCE": entry["datasource"]}


def assert_same_merge(expected: Mapping[str, Any], actual: Mapping[str, Any]) -> None:
    """Same statistics, and every output file the same pixels, type, nodata, grid and first overview."""
    assert {key: actual[key] for key in STATISTICS} == {key: expected[key] for key in STATISTICS}
    want, got = _outputs(expected), _outputs(actual)
    assert set(got) == set(want)
    for name in want:
        with rasterio.open(want[name]) as a, rasterio.open(got[name]) as b:
            assert (b.dtypes, b.nodata, b.shape, b.crs, b.transform) == (
                a.dtypes,
                a.nodata,
                a.shape,
                a.crs,
                a.transform,
            ), name
            pixels_a, pixels_b = a.read(1), b.read(1)
            assert np.array_equal(pixels_a, pixels_b), f"{name}: {np.count_nonzero(pixels_a != pixels_b)} pixels differ"
            assert b.overviews(1) == a.overviews(1), name  # average for spectral bands, nearest otherwise, as before
            factor = a.overviews(1)[0]
            shape = (a.height // factor, a.width // factor)
            assert np.array_equal(a.read(1, out_shape=shape), b.read(1, out_shape=shape)), f"{name}: overview differs"


def _cube(grid: dict[str, Any], bands: list[dict[str, Any]], **extra: Any) -> CubeConfig:
    return CubeConfig.model_validate(
        {
            "name": "merge_test",
            "collection": "sentinel-2-l2a",
            "providers": ["archive"],
            "grid": grid,
            "tiles": ["000000"],
            "start_date": "2022-01-01",
            "end_date": "2024-12-31",
            "bands": bands,
            "quality": {"band": "SCL", "rules": {"preset": "scl"}, "nodata": 0},
            **extra,
        }
    )


# -- three synthetic scenes in UTM 23S over a tile of the BDC Albers projection -------------------

SYNTHETIC_CUBE = _cube(
    {
        "kind": "user",
        "name": "ALBERS10",
        "crs": BDC_ALBERS,
        "origin": [5920780, 9592720],
        "tile_size": [2500, 2300],
        "resolution": 10,
    },
    [{"name": "B02", "resampling": "nearest"}, {"name": "B04"}, {"name": "B08", "resampling": "cubic"}],
)
SCENE_BLOCK = 256


def _write(path: Path, array: np.ndarray, transform: Affine, nodata: float) -> str:
    with rasterio.open(
        path,
        "w",
        driver="GTiff",
        width=array.shape[1],
        height=array.shape[0],
        count=1,
        dtype=array.dtype,
        crs="EPSG:32723",
        transform=transform,
        nodata=nodata,
        tiled=True,
        blockxsize=SCENE_BLOCK,
        blockysize=SCENE_BLOCK,
        compress="deflate",
    ) as dst:
        dst.write(array, 1)
    return str(path)


def _synthetic_scene(
    folder: Path, name: str, seed: int, west: float, east: float, south: float, north: float
) -> SceneRasters:
    """A scene of SCL (cloud, shadow and nodata blobs, a slanted nodata edge) and three int16 bands.

    Band values are smooth with noise; 0.3 % of the pixels with a valid SCL are nodata in one
    band only, so spectral nodata must reach the merged quality band.
    """
    rng = np.random.default_rng(seed)
    width, height = int((east - west) // 10), int((north - south) // 10)
    coarse = rng.choice(
        np.array([0, 3, 4, 4, 4, 5, 5, 6, 8, 9, 10], dtype=np.uint8), size=(height // 37 + 1, width // 37 + 1)
    )
    scl = np.kron(coarse, np.ones((37, 37), dtype=np.uint8))[:height, :width]
    rows, cols = np.mgrid[0:height, 0:width]
    scl[(cols + 0.4 * rows) > 0.9 * width + 0.2 * height + 150 * seed % 400] = 0  # a swath edge
    folder = folder / name
    folder.mkdir(parents=True)
    transform = Affine(10, 0, west, 0, -10, north)
    bands = {}
    for offset, band in enumerate(("B02", "B04", "B08")):
        values = (300 + 900 * offset + 0.3 * cols + 0.2 * rows + rng.integers(-60, 60, (height, width))).astype(
            np.int16
        )
        values[scl == 0] = -9999
        values[(rng.random((height, width)) < 0.003) & (scl != 0)] = -9999
        bands[band] = _write(folder / f"{band}.tif", values, transform, -9999)
    return SceneRasters(scene_id=f"scene_{name}", bands=bands, quality=_write(folder / "SCL.tif", scl, transform, 0))


@pytest.fixture(scope="module")
def synthetic_scenes(tmp_path_factory) -> list[SceneRasters]:
    """Scenes A (west), B (east, overlapping A) and C (everything), in that priority order."""
    folder = tmp_path_factory.mktemp("synthetic_scenes")
    tile = SYNTHETIC_CUBE.tile("000000")
    west, south, east, north = (round(v, -1) for v in transform_bounds(tile.crs, "EPSG:32723", *tile.bounds))
    width = east - west
    return [
        _synthetic_scene(folder, "a", 1, west - 1000, west + 0.6 * width, south - 1000, north + 1000),
        _synthetic_scene(folder, "b", 2, west + 0.4 * width, east + 1000, south - 1000, north + 1000),
        _synthetic_scene(folder, "c", 3, west - 500, east + 500, south - 500, north + 500),
    ]


@pytest.fixture(scope="module")
def synthetic_reference(tmp_path_factory, synthetic_scenes) -> dict[str, Any]:
    store = LocalRasterStore(tmp_path_factory.mktemp("reference"))
    return reference_merge_date(
        SYNTHETIC_CUBE, SYNTHETIC_CUBE.tile("000000"), DAY, [s.model_dump() for s in synthetic_scenes], store
    )


def test_windowed_merge_of_three_scenes_equals_the_whole_tile_merge(
    tmp_path, synthetic_scenes, synthetic_reference
) -> None:
    merge = merge_date(
        SYNTHETIC_CUBE, SYNTHETIC_CUBE.tile("000000"), DAY, synthetic_scenes, LocalRasterStore(tmp_path)
    ).model_dump(mode="json")

    with rasterio.open(merge["datasource"]) as datasource, rasterio.open(merge["quality"]) as quality:
        sources, scl = datasource.read(1), quality.read(1)
    assert set(np.unique(sources)) == {0, 1, 2, 255}  # every scene wins somewhere, some pixels have none
    winners = sources != 255
    assert np.count_nonzero(winners & (scl == 0)) > 1000  # spectral nodata propagated into the quality band
    assert 0 < merge["clear_pixels"] < merge["valid_pixels"] < merge["total_pixels"] == 2500 * 2300
    assert_same_merge(synthetic_reference, merge)
    for uri in _outputs(merge).values():
        assert is_valid_cog(uri)


@pytest.mark.parametrize(
    "window_size", [2048, 3072]
)  # 2048: smaller than the tile, does not divide it; 3072: one window
def test_merge_pixels_and_statistics_do_not_depend_on_the_window_size(
    tmp_path, synthetic_scenes, synthetic_reference, window_size
) -> None:
    merge = merge_date(
        SYNTHETIC_CUBE,
        SYNTHETIC_CUBE.tile("000000"),
        DAY,
        synthetic_scenes,
        LocalRasterStore(tmp_path),
        window_size=window_size,
    ).model_dump(mode="json")

    assert_same_merge(synthetic_reference, merge)


def _corrupt_block_under(path: str, x: float, y: float) -> None:
    """Overwrite the compressed bytes of the block of ``path`` that holds the point ``(x, y)``."""
    with rasterio.open(path) as src:
        row, col = src.index(x, y)
        name = f"{col // SCENE_BLOCK}_{row // SCENE_BLOCK}"
        offset = int(src.get_tag_item(f"BLOCK_OFFSET_{name}", "TIFF", bidx=1))
        size = int(src.get_tag_item(f"BLOCK_SIZE_{name}", "TIFF", bidx=1))
    with open(path, "r+b") as file:
        file.seek(offset)
        file.write(b"\xff" * size)


def test_an_unreadable_scene_block_names_the_file_and_publishes_nothing(tmp_path, synthetic_scenes) -> None:
    scenes = list(synthetic_scenes)
    broken = tmp_path / "broken_B04.tif"
    shutil.copyfile(scenes[0].bands["B04"], broken)
    scenes[0] = scenes[0].model_copy(update={"bands": {**scenes[0].bands, "B04": str(broken)}})
    tile = SYNTHETIC_CUBE.tile("000000")
    x, y = tile.transform * (300, 1800)  # the second row of 1024 px windows, where scene A has data
    _corrupt_block_under(str(broken), *Transformer.from_crs(tile.crs, 32723, always_xy=True).transform(x, y))
    store = LocalRasterStore(tmp_path / "store")

    with pytest.raises(InvalidScene) as raised:
        merge_date(SYNTHETIC_CUBE, tile, DAY, scenes, store)

    message = str(raised.value)
    assert str(broken) in message and "band B04" in message
    assert "rows 1024..2047" in message  # mid-way: the first row of windows was merged and written
    assert [p for p in (tmp_path / "store").rglob("*") if p.is_file()] == []  # nothing published, no staging left


# -- the real T29UNU L2A product on a 30 m grid of the Irish Transverse Mercator -------------------

T29UNU_ID = "S2A_MSIL2A_20221005T115411_N0400_R023_T29UNU_20221005T164454"
REAL_CUBE = _cube(
    {
        "kind": "user",
        "name": "ITM30",
        "crs": 2157,
        "origin": [529980, 728280],
        "tile_size": [2600, 2300],
        "resolution": 30,
    },
    [{"name": "B02", "resampling": "nearest"}, {"name": "B04"}, {"name": "B8A"}],
    source_resolution=60,
)


@pytest.fixture(scope="module")
def t29unu_reflectance(tmp_path_factory, t29unu_safe) -> ReflectanceScene:
    metadata = open_safe(t29unu_safe).metadata
    scene = RawScene.model_validate(
        {
            "scene_id": T29UNU_ID,
            "collection": "sentinel-2-l2a",
            "provider": "archive",
            "path": str(t29unu_safe),
            "datetime": "2022-10-05T11:54:11+00:00",
            "cloud_cover": 59.8,
            "footprint": mapping(metadata.footprint),
        }
    )
    return reflectance_for_scene(REAL_CUBE, scene, LocalRasterStore(tmp_path_factory.mktemp("t29unu_sr")))


@pytest.mark.real_data
def test_windowed_merge_of_the_real_t29unu_equals_the_whole_tile_merge(tmp_path, t29unu_reflectance) -> None:
    tile, day = REAL_CUBE.tile("000000"), date(2022, 10, 5)
    reference = reference_merge_date(
        REAL_CUBE, tile, day, [t29unu_reflectance.model_dump()], LocalRasterStore(tmp_path / "reference")
    )

    merges = [
        merge_date(
            REAL_CUBE, tile, day, [t29unu_reflectance], LocalRasterStore(tmp_path / f"windows_{size}"), window_size=size
        ).model_dump(mode="json")
        for size in (1024, 2048)
    ]

    with rasterio.open(merges[0]["datasource"]) as datasource:
        covered = datasource.read(1) == 0
    assert 0.2 < covered.mean() < 0.95  # the tile holds the swath edge and the sea of nodata beyond it
    assert 10 < reference["efficacy"] < 60 and reference["cloud_ratio"] > 50
    for merge in merges:
        assert_same_merge(reference, merge)
