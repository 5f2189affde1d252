"""Rasters from outside that are truncated, lack a CRS, or put one band of a scene elsewhere.

Every reader of scene files raises an error naming the file and what is wrong, and leaves no
output or temporary file in the destination folder. The files are real: GeoTIFFs written with
rasterio and cut short, the real T29UNU JPEG 2000 band cut short (a copy in ``tmp_path``), and
writers really killed with SIGKILL half-way for the stale-write cleanup.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import numpy as np
import pytest
import rasterio
from affine import Affine
from rasterio.warp import transform_bounds

from cube_assets.atomic import is_temporary_name
from cube_assets.errors import InvalidRaster, InvalidScene
from cube_assets.raster.cog import cog_from_file
from cube_assets.raster.indexes import compile_expression, write_index
from cube_assets.raster.reflectance import copy_band, write_landsat_reflectance, write_reflectance
from cube_assets.raster.warp import DATASOURCE, merge_scenes_to_files
from cube_assets.storage.cleanup import clean_stale_writes
from cube_assets.storage.raster_store import LocalRasterStore
from cube_assets_tests.conftest import REPO_ROOT
from cube_assets_tests.fixtures_stac import REAL_S2_ASSET_FILES
from cube_assets_tests.hostile.hostile_rasters import ORIGIN, UTM29, cog_layout, cut, everything_in, write_geotiff

pytestmark = pytest.mark.filterwarnings("ignore::rasterio.errors.NotGeoreferencedWarning")

NDVI = compile_expression("10000 * (nir - red) / (nir + red)", ["nir", "red"])

#: Each reader of scene files, called as ``reader(bad file, sound file on the same grid, output folder)``.
READERS: dict[str, Callable[[Path, Path, Path], object]] = {
    "write_reflectance": lambda bad, sound, out: write_reflectance(
        bad, out / "sr_B04.tif", add_offset=-1000, quantification=10000
    ),
    "write_landsat_reflectance": lambda bad, sound, out: write_landsat_reflectance(
        bad, out / "sr_SR_B4.tif", scale=2.75e-5, offset=-0.2
    ),
    "copy_band": lambda bad, sound, out: copy_band(bad, out / "sr_SCL.tif", nodata=0),
    "cog_from_file[rio-cogeo]": lambda bad, sound, out: cog_from_file(bad, out / "B04.tif"),
    "cog_from_file[gdal]": lambda bad, sound, out: cog_from_file(bad, out / "B04.tif", driver="gdal"),
    "write_index": lambda bad, sound, out: write_index(NDVI, {"red": bad, "nir": sound}, out / "NDVI.tif", nodata=0),
}


# --------------------------------------------------------------------------------------------
# Truncated files


def _cog_cut(keep: float) -> Callable[[Path, Path], tuple[Path, Path]]:
    def make(folder: Path, real_data: Path) -> tuple[Path, Path]:
        sound = cog_layout(folder / "T29UNU_B04_whole.tif")
        return cut(sound, folder / "T29UNU_B04.tif", keep), sound

    return make


def _real_jp2_cut(folder: Path, real_data: Path) -> tuple[Path, Path]:
    sound = real_data / REAL_S2_ASSET_FILES["B04"]
    return cut(sound, folder / sound.name, 0.5), sound


TRUNCATIONS: dict[str, Callable[[Path, Path], tuple[Path, Path]]] = {
    "geotiff-cut-in-half": _cog_cut(0.5),
    "geotiff-last-tiles-missing": _cog_cut(0.97),
    "geotiff-header-cut": _cog_cut(0.002),
    "real-jp2-cut-in-half": _real_jp2_cut,
}


@pytest.mark.parametrize("truncation", list(TRUNCATIONS))
@pytest.mark.parametrize("reader", list(READERS))
def test_a_truncated_raster_is_refused_naming_the_file_and_nothing_is_written(
    tmp_path: Path, real_data: Path, reader: str, truncation: str
) -> None:
    bad, sound = TRUNCATIONS[truncation](tmp_path, real_data)
    out = tmp_path / "out"
    out.mkdir()

    with pytest.raises(InvalidRaster) as refused:
        READERS[reader](bad, sound, out)

    message = str(refused.value)
    assert message.startswith(f"{bad}: ")
    assert any(what in message for what in ("cannot be opened", "band 1 cannot be read", "all bands cannot be read"))
    assert everything_in(out) == []


def test_the_read_error_of_a_truncated_band_names_the_band_and_gdals_reason(tmp_path: Path, real_data: Path) -> None:
    bad, _ = _cog_cut(0.5)(tmp_path, real_data)

    with pytest.raises(
        InvalidRaster, match=r"T29UNU_B04\.tif: band 1 cannot be read \(truncated or corrupt\?\): .*TIFFReadEncodedTile"
    ):
        copy_band(bad, tmp_path / "sr_SCL.tif")
    assert not (tmp_path / "sr_SCL.tif").exists()


# --------------------------------------------------------------------------------------------
# No CRS


def _no_crs(folder: Path, georeferenced: bool) -> tuple[Path, Path]:
    values = np.full((64, 64), 1200, dtype=np.uint16)
    sound = write_geotiff(folder / "sound.tif", values)
    transform = None if georeferenced else Affine.identity()
    return write_geotiff(folder / "T29UNU_B04.tif", values, crs=None, transform=transform), sound


@pytest.mark.parametrize("georeferenced", [True, False], ids=["geotransform-without-crs", "plain-tiff"])
@pytest.mark.parametrize("reader", list(READERS))
def test_a_raster_without_a_crs_is_refused_naming_the_file_and_nothing_is_written(
    tmp_path: Path, reader: str, georeferenced: bool
) -> None:
    bad, sound = _no_crs(tmp_path, georeferenced)
    out = tmp_path / "out"
    out.mkdir()

    with pytest.raises(InvalidRaster, match="has no CRS") as refused:
        READERS[reader](bad, sound, out)

    assert str(refused.value).startswith(f"{bad}: ")
    assert everything_in(out) == []


def test_a_merge_scene_band_without_a_crs_is_refused_before_the_merge_starts(tmp_path: Path) -> None:
    bad, _ = _no_crs(tmp_path, georeferenced=True)
    scl = write_geotiff(tmp_path / "T29UNU_SCL.tif", np.full((64, 64), 4, dtype=np.uint8))
    out = tmp_path / "out"
    out.mkdir()

    with pytest.raises(InvalidScene, match=rf"merge scene 0: band B04 file {bad}: has no CRS"):
        _merge([{"SCL": scl, "B04": bad}], out)
    assert everything_in(out) == []


# --------------------------------------------------------------------------------------------
# One band of a scene elsewhere

TILE = Affine(10, 0, ORIGIN[0], 0, -10, ORIGIN[1])  # 64 x 64 px of the T29UNU tile, in its CRS


def _merge(scenes: list[dict[str, Path]], out: Path) -> object:
    return merge_scenes_to_files(
        [{band: str(path) for band, path in scene.items()} for scene in scenes],
        bands=["B04"],
        quality_band="SCL",
        quality_rules={"preset": "scl"},
        dst_crs=UTM29,
        dst_transform=TILE,
        dst_shape=(64, 64),
        band_nodata={"SCL": 0, "B04": 0},
        out_paths={name: out / f"merge_{name}.tif" for name in ("SCL", "B04", DATASOURCE)},
        warp_block=64,
        window_size=64,
    )


def _band(path: Path, crs: str, transform: Affine, value: int = 1200, dtype: type = np.uint16) -> Path:
    return write_geotiff(path, np.full((64, 64), value, dtype=dtype), crs=crs, transform=transform)


def _same_ground_in_degrees() -> Affine:
    """64 x 64 px in EPSG:4326 over the ground of ``TILE``."""
    west, south, east, north = transform_bounds(
        UTM29, "EPSG:4326", ORIGIN[0], ORIGIN[1] - 640, ORIGIN[0] + 640, ORIGIN[1]
    )
    return Affine((east - west) / 64, 0, west, 0, -(north - south) / 64, north)


ELSEWHERE = {
    # The tile's coordinates read in UTM zone 1: the same numbers, half the globe away.
    "another-utm-zone": ("EPSG:32601", TILE, "EPSG:32601"),
    "same-crs-500-km-east": (UTM29, Affine(10, 0, ORIGIN[0] + 500_000, 0, -10, ORIGIN[1]), "EPSG:32629"),
    "degrees-at-null-island": ("EPSG:4326", Affine(0.001, 0, 0, 0, -0.001, 0.064), "EPSG:4326"),
}


@pytest.mark.parametrize("elsewhere", list(ELSEWHERE))
def test_a_band_not_on_the_ground_of_its_scene_is_refused_naming_both_files_and_crss(
    tmp_path: Path, elsewhere: str
) -> None:
    crs, transform, crs_text = ELSEWHERE[elsewhere]
    scl = _band(tmp_path / "T29UNU_SCL.tif", UTM29, TILE, value=4, dtype=np.uint8)
    b04 = _band(tmp_path / "T29UNU_B04.tif", crs, transform)
    out = tmp_path / "out"
    out.mkdir()

    with pytest.raises(InvalidScene) as refused:
        _merge([{"SCL": scl, "B04": b04}], out)

    message = str(refused.value)
    assert message.startswith(f"merge scene 0: band B04 file {b04} ({crs_text}, bounds (")
    assert f"quality band SCL file {scl} (EPSG:32629, bounds (499980, 5899400, 500620, 5900040))" in message
    assert everything_in(out) == []


def test_a_band_on_the_same_ground_in_another_crs_is_merged(tmp_path: Path) -> None:
    scl = _band(tmp_path / "T29UNU_SCL.tif", UTM29, TILE, value=4, dtype=np.uint8)
    b04 = _band(tmp_path / "T29UNU_B04.tif", "EPSG:4326", _same_ground_in_degrees())
    out = tmp_path / "out"
    out.mkdir()

    statistics = _merge([{"SCL": scl, "B04": b04}], out)

    assert statistics.efficacy > 90
    with rasterio.open(out / "merge_B04.tif") as merged:
        assert (merged.read(1) == 1200).mean() > 0.9


def test_a_whole_scene_beside_the_tile_still_gives_an_empty_merge(tmp_path: Path) -> None:
    beside = Affine(10, 0, ORIGIN[0] + 500_000, 0, -10, ORIGIN[1])
    scl = _band(tmp_path / "T29UNU_SCL.tif", UTM29, beside, value=4, dtype=np.uint8)
    b04 = _band(tmp_path / "T29UNU_B04.tif", UTM29, beside)
    out = tmp_path / "out"
    out.mkdir()

    statistics = _merge([{"SCL": scl, "B04": b04}], out)

    assert (statistics.efficacy, statistics.valid_pixels) == (0.0, 0)
    assert sorted(p.name for p in out.iterdir()) == ["merge_B04.tif", "merge_DATASOURCE.tif", "merge_SCL.tif"]


# --------------------------------------------------------------------------------------------
# Writers killed half-way leave temporary files that the stale-write cleanup removes

WRITERS = {
    # write_reflectance pauses after its first block; its output is an atomic_path temporary.
    "write_reflectance": """
        import cube_assets.raster.reflectance as reflectance
        real, calls = reflectance.scale_to_reflectance, []
        def pausing(*args, **kwargs):
            calls.append(1)
            if len(calls) == 2:
                print("WRITING", flush=True)
                time.sleep(600)
            return real(*args, **kwargs)
        reflectance.scale_to_reflectance = pausing
        reflectance.write_reflectance(
            source, folder / "S2A_T29UNU_B04.tif", add_offset=-1000, quantification=10000, block_size=256
        )
    """,
    # A merge whose COG step is slow: killed while its staging GeoTIFFs wait to be finalized.
    "merge_scenes_to_files": """
        from affine import Affine
        from cube_assets.raster.warp import DATASOURCE, merge_scenes_to_files
        def finalize(tmp, destination):
            print("WRITING", flush=True)
            time.sleep(600)
        merge_scenes_to_files(
            [{"SCL": str(source), "B04": str(source)}], bands=["B04"], quality_band="SCL",
            quality_rules={"preset": "scl"}, dst_crs="EPSG:32629",
            dst_transform=Affine(10, 0, 499980, 0, -10, 5900040), dst_shape=(512, 512),
            band_nodata={"SCL": 0, "B04": 0},
            out_paths={n: folder / f"merge_{n}.tif" for n in ("SCL", "B04", DATASOURCE)},
            finalize=finalize, threads=1,
        )
    """,
}


def _kill_while_writing(writer: str, source: Path, folder: Path) -> None:
    """Run ``writer`` in a child process writing into ``folder``, and SIGKILL it once it is half-way."""
    script = "import sys, time\nfrom pathlib import Path\nsource, folder = Path(sys.argv[1]), Path(sys.argv[2])\n"
    script += textwrap.dedent(WRITERS[writer])
    child = subprocess.Popen(
        [sys.executable, "-c", script, str(source), str(folder)],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(REPO_ROOT)},
    )
    try:
        assert child.stdout is not None and child.stdout.readline().strip() == "WRITING"
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait()


def _age(path: Path, seconds: float) -> None:
    when = time.time() - seconds
    os.utime(path, (when, when))


@pytest.mark.parametrize("writer", list(WRITERS))
def test_temporary_files_of_a_killed_writer_are_removed_by_the_stale_write_cleanup(tmp_path: Path, writer: str) -> None:
    store = LocalRasterStore(tmp_path / "data")
    folder = store.path("cube/T29UNU/2022-10-05")
    folder.mkdir(parents=True)
    finished = write_geotiff(folder / "cube_T29UNU_20221005_B8A.tif", np.ones((8, 8), dtype=np.uint16))
    source = cog_layout(tmp_path / "T29UNU_B04.tif", size=512)

    _kill_while_writing(writer, source, folder)

    leftovers = [name for name in everything_in(folder) if name != finished.name]
    assert leftovers and all(name.startswith(".") and is_temporary_name(name) for name in leftovers)
    assert clean_stale_writes(store).temporaries_removed == (), "a temporary file younger than a day is kept"
    for path in folder.iterdir():
        _age(path, 2 * 24 * 3600)

    report = clean_stale_writes(store, older_than=timedelta(hours=24))

    assert sorted(p.name for p in report.temporaries_removed) == sorted(leftovers)
    assert everything_in(folder) == [finished.name]
    with rasterio.open(finished) as kept:
        assert kept.read(1).sum() == 64


def test_the_cleanup_leaves_finished_files_and_lock_files_with_temporary_looking_names(tmp_path: Path) -> None:
    store = LocalRasterStore(tmp_path / "data")
    folder = store.path("raw/sentinel-2-l2a")
    folder.mkdir(parents=True)
    kept = [".S2A_T29UNU.lock", "S2A_T29UNU_B04.tmp.tif", ".B04.tmp.tif", "tmpabc12345.tif", ".hidden"]
    for name in kept:
        (folder / name).write_bytes(b"x")
        _age(folder / name, 30 * 24 * 3600)
    shutil.copy(folder / ".hidden", folder / ".S2A_T29UNU.0123456789ab.tmp")
    _age(folder / ".S2A_T29UNU.0123456789ab.tmp", 30 * 24 * 3600)

    report = clean_stale_writes(store)

    assert report.temporaries_removed == (folder / ".S2A_T29UNU.0123456789ab.tmp",)
    assert everything_in(folder) == sorted(kept)
