"""The simulated Sentinel-2 L2A products: layout, georeferencing, radiometry, SCL and metadata."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest
import rasterio
import shapely
from pyproj import Transformer
from shapely.geometry import Point

from cube_assets.formats.sentinel2_safe import SafeProduct, open_safe
from cube_assets.formats.simulator import (
    SimulatedScene,
    simulate_archive,
    simulate_l2a_product,
)

EPSG = 32723  # UTM 23S, tile 23LLF in central Brazil
ULX, ULY = 300000.0, 8800000.0
SENSING = datetime(2024, 1, 5, 13, 32, 29, tzinfo=UTC)
SIZE = 512


@dataclass(frozen=True)
class Simulated:
    product: SafeProduct
    scl: np.ndarray  # 20 m
    dn: dict[str, np.ndarray]  # band → DN on its own grid


def reproject(transform, geometry):
    """``geometry`` with its coordinates passed through a pyproj ``Transformer.transform``."""
    return shapely.transform(geometry, lambda xy: np.column_stack(transform(xy[:, 0], xy[:, 1])))


def _read(product: SafeProduct) -> Simulated:
    dn = {}
    for band, files in product.band_files.items():
        with rasterio.open(files[min(files)]) as src:
            dn[band] = src.read(1)
    return Simulated(product=product, scl=dn.pop("SCL"), dn=dn)


def _simulate(archive: Path, **overrides) -> Path:
    arguments = dict(
        tile_id="T23LLF",
        epsg=EPSG,
        ulx=ULX,
        uly=ULY,
        size_px=SIZE,
        sensing_time=SENSING,
        seed=11,
        cloud_fraction=0.3,
        swath_edge=True,
    )
    arguments.update(overrides)
    return simulate_l2a_product(archive, **arguments)


@pytest.fixture(scope="module")
def simulated(tmp_path_factory: pytest.TempPathFactory) -> Simulated:
    return _read(open_safe(_simulate(tmp_path_factory.mktemp("archive"))))


def _reflectance(sim: Simulated, band: str) -> np.ndarray:
    scale, offset = sim.product.metadata.scale_and_offset(band)
    return sim.dn[band] * scale + offset


def _scl_at(sim: Simulated, factor: int) -> np.ndarray:
    """The 20 m SCL repeated onto a grid ``factor`` times finer."""
    return np.repeat(np.repeat(sim.scl, factor, axis=0), factor, axis=1)


# -- layout and metadata ---------------------------------------------------------------------


def test_product_folder_is_named_like_a_real_product(simulated: Simulated) -> None:
    assert simulated.product.path.name == "S2B_MSIL2A_20240105T133229_N0510_R081_T23LLF_20240105T160000.SAFE"


def test_parser_reads_the_simulated_product_metadata(simulated: Simulated) -> None:
    metadata = simulated.product.metadata

    assert metadata.product_id == "S2B_MSIL2A_20240105T133229_N0510_R081_T23LLF_20240105T160000"
    assert metadata.product_type == "L2A"
    assert metadata.spacecraft == "S2B"
    assert metadata.sensing_time == SENSING
    assert metadata.processing_baseline == "05.10"
    assert metadata.baseline_version == (5, 10)
    assert metadata.tile_id == "T23LLF"
    assert metadata.quantification_value == 10000.0
    assert set(metadata.band_offsets.values()) == {-1000.0}
    assert len(metadata.band_offsets) == 13
    assert metadata.relative_orbit == 81


def test_parser_reads_the_simulated_tile_metadata(simulated: Simulated) -> None:
    tile = simulated.product.tile_metadata

    assert tile.tile_id == "T23LLF"
    assert tile.epsg == EPSG
    assert tile.sensing_time == SENSING
    assert dict(tile.sizes) == {10: (SIZE, SIZE), 20: (SIZE // 2, SIZE // 2)}
    assert set(tile.origins.values()) == {(ULX, ULY)}


def test_bands_are_written_at_their_native_resolution_only(simulated: Simulated) -> None:
    files = simulated.product.band_files

    assert {band: sorted(by_res) for band, by_res in files.items()} == {
        "B02": [10], "B03": [10], "B04": [10], "B08": [10], "B8A": [20], "B11": [20], "SCL": [20],
    }  # fmt: skip
    assert files["B04"][10].parent.name == "R10m"
    assert files["B04"][10].name == "T23LLF_20240105T133229_B04_10m.jp2"
    assert files["B11"][20].parent.name == "R20m"
    assert files["SCL"][20].name == "T23LLF_20240105T133229_SCL_20m.jp2"
    assert simulated.product.pvi_path is not None and simulated.product.pvi_path.parent.name == "QI_DATA"


@pytest.mark.parametrize(("band", "resolution"), [("B04", 10), ("B8A", 20), ("SCL", 20)])
def test_jp2_files_carry_the_tile_georeferencing(simulated: Simulated, band: str, resolution: int) -> None:
    with rasterio.open(simulated.product.band_path(band)) as src:
        assert src.driver == "JP2OpenJPEG"
        assert src.crs.to_epsg() == EPSG
        assert src.transform == simulated.product.tile_metadata.transform(resolution)
        assert src.shape == simulated.product.tile_metadata.shape(resolution)
        assert src.dtypes[0] == ("uint8" if band == "SCL" else "uint16")


def test_bands_are_stored_losslessly(tmp_path: Path) -> None:
    """Re-reading gives back exactly the DNs: a lossy codec would smear the SCL classes."""
    product = open_safe(_simulate(tmp_path, size_px=128, bands=("B04",)))
    with rasterio.open(product.band_path("SCL")) as src:
        scl = src.read(1)

    assert set(np.unique(scl)) <= {0, 3, 4, 5, 6, 8, 9, 10}


# -- SCL and cloud cover ---------------------------------------------------------------------


def test_cloud_cover_in_the_xml_is_counted_from_the_scl(simulated: Simulated) -> None:
    scl = simulated.scl
    valid = np.count_nonzero(scl)
    cloudy = np.count_nonzero(np.isin(scl, (8, 9, 10)))

    assert simulated.product.metadata.cloud_cover == pytest.approx(100.0 * cloudy / valid, abs=1e-6)
    assert simulated.product.metadata.nodata_pixel_percentage == pytest.approx(
        100.0 * np.count_nonzero(scl == 0) / scl.size, abs=1e-6
    )


def test_cloud_fraction_is_the_share_of_valid_pixels(simulated: Simulated) -> None:
    assert simulated.product.metadata.cloud_cover == pytest.approx(30.0, abs=0.5)


def test_scl_has_the_classes_of_a_real_scene(simulated: Simulated) -> None:
    classes = set(np.unique(simulated.scl).tolist())

    assert {0, 3, 4, 5, 6, 8, 9, 10} <= classes
    assert classes <= {0, 3, 4, 5, 6, 8, 9, 10}


def test_no_clouds_when_cloud_fraction_is_zero(tmp_path: Path) -> None:
    sim = _read(open_safe(_simulate(tmp_path, size_px=128, cloud_fraction=0.0)))

    assert sim.product.metadata.cloud_cover == 0.0
    assert not np.isin(sim.scl, (3, 8, 9, 10)).any()


def _dilate(mask: np.ndarray, radius: int) -> np.ndarray:
    """``mask`` grown by ``radius`` pixels in every direction (a square structuring element)."""
    out = mask.copy()
    for _ in range(radius):
        rows = out.copy()
        rows[1:] |= out[:-1]
        rows[:-1] |= out[1:]
        out = rows.copy()
        out[:, 1:] |= rows[:, :-1]
        out[:, :-1] |= rows[:, 1:]
    return out


def test_cloud_shadows_lie_within_a_kilometre_of_clouds(simulated: Simulated) -> None:
    shadow = simulated.scl == 3
    opaque_cloud = np.isin(simulated.scl, (8, 9))

    assert shadow.sum() > 100
    assert _dilate(opaque_cloud, 51)[shadow].all()  # 51 px x 20 m ≈ 1 km
    assert not _dilate(opaque_cloud, 2)[shadow].all(), "shadows must be displaced, not a rim"


# -- swath edge and footprint ----------------------------------------------------------------


def test_outside_the_swath_every_band_is_zero(simulated: Simulated) -> None:
    for band, dn in simulated.dn.items():
        nodata = _scl_at(simulated, dn.shape[0] // simulated.scl.shape[0]) == 0
        assert np.array_equal(dn == 0, nodata), band


def test_swath_edge_is_diagonal_on_the_right(simulated: Simulated) -> None:
    nodata = simulated.scl == 0
    rows = nodata.shape[0]
    first_nodata = [int(np.argmax(row)) if row.any() else rows for row in nodata]

    for r in range(rows):  # nodata is a run reaching the right edge of every row
        assert nodata[r, first_nodata[r] :].all()
    assert abs(first_nodata[0] - first_nodata[-1]) >= 0.08 * rows - 2
    assert 0.1 < nodata.mean() < 0.6


def test_without_swath_edge_every_pixel_is_valid(tmp_path: Path) -> None:
    sim = _read(open_safe(_simulate(tmp_path, size_px=128, swath_edge=False)))
    to_utm = Transformer.from_crs(4326, EPSG, always_xy=True).transform

    assert np.count_nonzero(sim.scl == 0) == 0
    assert sim.product.metadata.nodata_pixel_percentage == 0.0
    assert reproject(to_utm, sim.product.metadata.footprint).area == pytest.approx(1280.0**2, rel=1e-4)


def test_footprint_is_the_valid_data_area_in_lon_lat(simulated: Simulated) -> None:
    footprint = simulated.product.metadata.footprint
    to_utm = Transformer.from_crs(4326, EPSG, always_xy=True).transform
    to_lonlat = Transformer.from_crs(EPSG, 4326, always_xy=True).transform
    valid_area = np.count_nonzero(simulated.scl) * 20.0**2

    assert reproject(to_utm, footprint).area == pytest.approx(valid_area, rel=0.01)
    assert -47 < footprint.centroid.x < -46 and -11 < footprint.centroid.y < -10  # lon, lat order
    row = SIZE // 4  # 20 m pixels: half-way down the SCL
    valid_col = 5
    nodata_col = simulated.scl.shape[1] - 5
    assert simulated.scl[row, valid_col] != 0 and simulated.scl[row, nodata_col] == 0
    for col, expected in ((valid_col, True), (nodata_col, False)):
        lon, lat = to_lonlat(ULX + (col + 0.5) * 20.0, ULY - (row + 0.5) * 20.0)
        assert footprint.contains(Point(lon, lat)) is expected


# -- radiometry ------------------------------------------------------------------------------


def test_clouds_are_bright_in_every_band(simulated: Simulated) -> None:
    for band in simulated.dn:
        high_cloud = _scl_at(simulated, simulated.dn[band].shape[0] // simulated.scl.shape[0]) == 9
        assert np.median(_reflectance(simulated, band)[high_cloud]) > 0.35, band


def test_surfaces_have_their_typical_reflectance(simulated: Simulated) -> None:
    scl10 = _scl_at(simulated, 2)
    red, nir, blue = (_reflectance(simulated, b) for b in ("B04", "B08", "B02"))
    ndvi = (nir - red) / (nir + red)

    assert np.median(ndvi[scl10 == 4]) > 0.5  # vegetation
    assert np.median(nir[scl10 == 6]) < 0.05  # water absorbs near infrared
    assert np.median(blue[scl10 == 9]) > 0.6  # thick cloud
    clear_land_nir = np.median(nir[np.isin(scl10, (4, 5))])
    assert np.median(nir[scl10 == 3]) < 0.5 * clear_land_nir  # shadows are dark


def test_digital_numbers_carry_the_1000_offset(simulated: Simulated) -> None:
    scl10 = _scl_at(simulated, 2)
    water_dn = simulated.dn["B08"][scl10 == 6]

    # Water reflects ~1.5 % in NIR: DN ≈ 0.015 * 10000 + 1000, far from the 150 it would be without.
    assert 1050 < np.median(water_dn) < 1400


# -- determinism and the landscape -----------------------------------------------------------


def _digest(product_dir: Path) -> dict[str, str]:
    return {
        str(path.relative_to(product_dir)): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(product_dir.rglob("*"))
        if path.is_file()
    }


def test_same_seed_gives_the_same_bytes(tmp_path: Path) -> None:
    first = _digest(_simulate(tmp_path / "a", size_px=128))
    second = _digest(_simulate(tmp_path / "b", size_px=128))

    assert first == second
    assert len(first) == 10  # 6 bands, SCL, PVI, MTD_TL, MTD_MSIL2A


def test_another_seed_gives_other_clouds(tmp_path: Path) -> None:
    first = _read(open_safe(_simulate(tmp_path / "a", size_px=128, seed=1)))
    second = _read(open_safe(_simulate(tmp_path / "b", size_px=128, seed=2)))

    assert not np.array_equal(np.isin(first.scl, (8, 9, 10)), np.isin(second.scl, (8, 9, 10)))


def test_scenes_of_one_tile_share_the_ground(tmp_path: Path, simulated: Simulated) -> None:
    later = _read(open_safe(_simulate(tmp_path, seed=99, sensing_time=datetime(2024, 2, 14, 13, 32, 29, tzinfo=UTC))))
    clear = np.isin(simulated.scl, (4, 5, 6)) & np.isin(later.scl, (4, 5, 6))

    assert clear.sum() > 1000
    assert np.mean((simulated.scl == 6)[clear] == (later.scl == 6)[clear]) > 0.99


def test_resolution_sets_every_pixel_size(tmp_path: Path) -> None:
    product = open_safe(_simulate(tmp_path, size_px=64, resolution=20, bands=("B04", "B11")))

    assert {band: sorted(files) for band, files in product.band_files.items()} == {
        "B04": [20], "B11": [40], "SCL": [40],
    }  # fmt: skip
    assert product.band_path("B11").parent.name == "R40m"
    with rasterio.open(product.band_path("B11")) as src:
        assert src.res == (40.0, 40.0) and src.shape == (32, 32)


def test_60m_bands_need_a_size_divisible_by_6(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"multiple of 6"):
        _simulate(tmp_path, size_px=128, bands=("B01",))
    product = open_safe(_simulate(tmp_path, size_px=132, bands=("B01", "B04")))
    assert sorted(product.band_files["B01"]) == [60]


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"size_px": 127}, "must be even"),
        ({"sensing_time": datetime(2024, 1, 5)}, "timezone-aware"),
        ({"bands": ("B10",)}, "cannot simulate bands"),
        ({"cloud_fraction": 1.5}, r"not in \[0, 1\]"),
    ],
)
def test_bad_arguments_are_refused(tmp_path: Path, overrides: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        _simulate(tmp_path, **overrides)
    assert not any(tmp_path.iterdir())


# -- archives --------------------------------------------------------------------------------


def _scene(day: int, seed: int) -> SimulatedScene:
    return SimulatedScene(
        tile_id="23LLF",
        epsg=EPSG,
        ulx=ULX,
        uly=ULY,
        size_px=64,
        sensing_time=datetime(2024, 1, day, 13, 32, 29, tzinfo=UTC),
        seed=seed,
        cloud_fraction=0.2,
        swath_edge=False,
    )


def test_simulate_archive_writes_each_scene_once(tmp_path: Path) -> None:
    scenes = [_scene(5, 1), _scene(15, 2)]
    first = simulate_archive(tmp_path, scenes)
    stamps = {p: (p / "MTD_MSIL2A.xml").stat().st_mtime_ns for p in first}

    second = simulate_archive(tmp_path, scenes)

    assert first == second == [tmp_path / s.product_name for s in scenes]
    assert {p: (p / "MTD_MSIL2A.xml").stat().st_mtime_ns for p in second} == stamps
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(s.product_name for s in scenes)


def test_simulate_archive_replaces_an_incomplete_product(tmp_path: Path) -> None:
    scene = _scene(5, 1)
    [product] = simulate_archive(tmp_path, [scene])
    (product / "MTD_MSIL2A.xml").unlink()

    simulate_archive(tmp_path, [scene])

    assert open_safe(product).metadata.tile_id == "T23LLF"
    assert [p.name for p in tmp_path.iterdir()] == [scene.product_name]  # no temporary leftovers


def test_simulate_archive_refuses_two_scenes_with_one_name(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"several scenes would write"):
        simulate_archive(tmp_path, [_scene(5, 1), _scene(5, 2)])
