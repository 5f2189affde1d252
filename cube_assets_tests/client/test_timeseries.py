"""Pixel time series: one point per image, or a polygon's mean and median, read from the cube's COGs.

The cube is ``cube_assets_tests/service/synthetic_cube.py``'s: every pixel's value is known from
its period, merge and column, so each test computes what the series must hold. The S3 test reads
the same COGs uploaded to the moto S3 server (``/vsis3/``).
"""

from __future__ import annotations

import datetime as dt
import os
import shutil

import numpy as np
import pytest
import rasterio
import shapely.geometry
from rasterio.warp import transform_geom

from cube_assets.catalog.expressions import properties as p
from cube_assets.client import Catalog, Image
from cube_assets.client.timeseries import (
    BandScale,
    Observation,
    band_scale,
    gdal_href,
    point_lonlat,
    point_timeseries,
)
from cube_assets.errors import CatalogError
from cube_assets.raster.dataset_pool import DatasetPool
from cube_assets_tests.service.synthetic_cube import CUBE, EPSG, SyntheticCube, build_synthetic_cube


@pytest.fixture(scope="module")
def cube(tmp_path_factory: pytest.TempPathFactory) -> SyntheticCube:
    return build_synthetic_cube(tmp_path_factory.mktemp("synthetic"), tiles=2, periods=3, merges_per_period=2)


@pytest.fixture()
def catalog(cube: SyntheticCube):
    catalog = Catalog(cube.catalog_url)
    yield catalog
    catalog.close()


def _images(catalog: Catalog, product: str):
    return Image.search(catalog=catalog).filter(p.product_id == product).collect()


def test_point_series_of_merges_has_raw_and_physical_values_and_quality_per_date(cube, catalog) -> None:
    lon, lat = cube.lonlat(1, 40, 200)  # tile 1, row 40 (outside the cloud square), column 200

    series = _images(catalog, f"{CUBE}-merge").timeseries((lon, lat), "B04 B08")

    assert [v.image_id for v in series] == [
        f"{CUBE}_000001_{day:%Y%m%d}" for start in cube.period_starts for day in cube.merge_dates[start]
    ]
    for index, value in enumerate(series):
        period_index, merge_index = divmod(index, 2)
        expected = cube.merge_value("B04", period_index, merge_index, 200)
        assert value.raw["B04"] == expected
        assert value.physical["B04"] == pytest.approx(expected / 10000)
        assert value.raw["B08"] == cube.merge_value("B08", period_index, merge_index, 200)
        assert value.flags["quality"] == 4 and value.flags["quality_class"] == "clear" and value.flags["clear"]


def test_point_series_marks_cloudy_and_nodata_observations(cube, catalog) -> None:
    cloudy_point = cube.lonlat(0, 128, 128)  # inside the cloud square of odd merges
    nodata_point = cube.lonlat(0, 3, 10)  # the nodata rows of merge 0

    cloudy = _images(catalog, f"{CUBE}-merge").timeseries(cloudy_point, ["B04"])
    missing = _images(catalog, f"{CUBE}-merge").timeseries(nodata_point, ["B04"])

    assert [v.flags["quality_class"] for v in cloudy] == ["clear", "not_clear"] * 3
    assert [v.flags["clear"] for v in cloudy] == [True, False] * 3
    assert [v.raw["B04"] is None for v in missing] == [True, False] * 3
    assert [v.flags["quality_class"] for v in missing] == ["nodata", "clear"] * 3
    assert missing[0].flags["valid"] is False and missing[0].physical["B04"] is None


def test_point_series_of_lcf_carries_observation_counts_and_provenance(cube, catalog) -> None:
    point = cube.lonlat(0, 128, 128)  # merge 1 is cloudy there: LCF takes merge 0

    series = _images(catalog, f"{CUBE}-LCF").timeseries(point, "B04")

    assert len(series) == 3
    for period_index, value in enumerate(series):
        first_day = cube.merge_dates[cube.period_starts[period_index]][0]
        assert value.raw["B04"] == cube.merge_value("B04", period_index, 0, 128)
        assert value.flags["clear_observations"] == 1 and value.flags["total_observations"] == 2
        assert value.flags["provenance_doy"] == first_day.timetuple().tm_yday
        assert value.flags["provenance_date"] == first_day.isoformat()
        assert value.flags["clear"] is True
        assert value.acquired_end is not None and value.acquired.date() == cube.period_starts[period_index]


def test_a_point_outside_every_image_gives_an_empty_series(catalog) -> None:
    assert _images(catalog, f"{CUBE}-merge").timeseries((10.0, 10.0), "B04") == []


def test_polygon_series_gives_mean_median_and_clear_pixel_count_per_date(cube, catalog) -> None:
    transform = cube.tile_transform(0)
    x0, y0 = transform * (64, 64)  # pixels 64..191 of tile 0: half inside the cloud square of odd merges
    x1, y1 = transform * (192, 192)
    polygon = transform_geom(
        f"EPSG:{EPSG}", "EPSG:4326", shapely.geometry.mapping(shapely.geometry.box(x0, y1, x1, y0))
    )

    series = _images(catalog, f"{CUBE}-merge").filter(lambda i: i.tile == "000000").timeseries(polygon, ["B04"])

    assert len(series) == 6
    even, odd = series[0], series[1]
    assert even.pixels == pytest.approx(128 * 128, rel=0.03)  # the reprojected box is not exactly the pixel grid
    assert even.clear_pixels == even.valid_pixels == even.pixels
    cols = np.arange(64, 192)
    assert even.raw["B04"]["mean"] == pytest.approx(np.mean(1000 + cols // 64), abs=0.05)
    assert even.raw["B04"]["median"] == pytest.approx(np.median(1000 + cols // 64), abs=0.51)
    assert even.physical["B04"]["mean"] == pytest.approx(even.raw["B04"]["mean"] / 10000)
    # Odd merges are cloudy on pixels 64..191 of both axes: hardly any clear pixel is left inside.
    assert odd.valid_pixels == odd.pixels and odd.clear_pixels < 0.05 * odd.pixels


def test_series_reads_cogs_on_s3_through_vsis3(cube, s3_server, s3_bucket) -> None:
    day = cube.merge_dates[cube.period_starts[0]][0]
    local = cube.root / CUBE / "000000" / day.isoformat() / f"{CUBE}_000000_{day:%Y%m%d}_B04.tif"
    s3_server.client().upload_file(str(local), s3_bucket, "cube/B04.tif")
    observation = Observation(
        "merge", f"{CUBE}-merge", dt.datetime(2024, 1, 1, tzinfo=dt.UTC), {"B04": f"s3://{s3_bucket}/cube/B04.tif"}
    )
    scale = {"B04": BandScale("B04", nodata=-9999, scale=1e-4)}

    with s3_server.store(s3_bucket).gdal_environment():
        series = point_timeseries([observation], ["B04"], *cube.lonlat(0, 40, 70), scale, quality_band=None)

    assert series[0].raw["B04"] == cube.merge_value("B04", 0, 0, 70)
    assert series[0].physical["B04"] == pytest.approx(cube.merge_value("B04", 0, 0, 70) / 10000)


def test_band_scale_maps_data_range_to_physical_range_or_reflectance() -> None:
    class _Band:
        def __init__(self, **fields):
            self.__dict__.update(fields)

    ndvi = band_scale(
        _Band(name="NDVI", type="generic", data_range=(-10000, 10000), physical_range=(-1, 1), nodata=-9999)
    )
    red = band_scale(_Band(name="B04", type="spectral", data_range=(0, 10000), nodata=-9999))
    count = band_scale(_Band(name="CLEAROB", type="generic", nodata=None))

    assert ndvi.physical(5000) == pytest.approx(0.5)
    assert red.physical(2500) == pytest.approx(0.25) and red.unit == "reflectance"
    assert count.physical(3) == 3


def test_bad_places_are_refused_with_what_was_wrong() -> None:
    with pytest.raises(CatalogError, match="latitudes"):
        point_lonlat((0.0, 95.0))
    with pytest.raises(CatalogError, match="Point or a"):
        point_lonlat({"type": "LineString", "coordinates": [[0, 0], [1, 1]]})
    with pytest.raises(CatalogError, match="must be numbers"):
        point_lonlat(("east", 1))
    assert gdal_href("s3://bucket/a/b.tif") == "/vsis3/bucket/a/b.tif"


def test_a_band_the_images_lack_is_named(catalog) -> None:
    with pytest.raises(CatalogError, match="PROVENANCE"):
        _images(catalog, f"{CUBE}-MED").timeseries((0.0, 0.0), ["PROVENANCE"])


def test_a_file_off_the_recorded_grid_is_located_from_its_own_header(cube) -> None:
    day = cube.merge_dates[cube.period_starts[0]][0]
    href = str(cube.root / CUBE / "000000" / day.isoformat() / f"{CUBE}_000000_{day:%Y%m%d}_B04.tif")
    shifted = cube.tile_transform(1).to_gdal()  # the grid of the next tile: a wrong record for this file
    on_grid = Observation("a", "p", dt.datetime(2024, 1, 1, tzinfo=dt.UTC), {"B04": href}, None, "EPSG:32723", shifted)
    scale = {"B04": BandScale("B04", nodata=-9999)}

    series = point_timeseries([on_grid], ["B04"], *cube.lonlat(0, 40, 70), scale, quality_band=None)

    assert series[0].raw["B04"] == cube.merge_value("B04", 0, 0, 70)


def test_a_series_after_a_cog_is_replaced_reads_the_new_file(cube, tmp_path) -> None:
    day = cube.merge_dates[cube.period_starts[0]][0]
    source = cube.root / CUBE / "000000" / day.isoformat() / f"{CUBE}_000000_{day:%Y%m%d}_B04.tif"
    href = tmp_path / "B04.tif"
    shutil.copyfile(source, href)
    observation = Observation("a", "p", dt.datetime(2024, 1, 1, tzinfo=dt.UTC), {"B04": str(href)})
    scale = {"B04": BandScale("B04", nodata=-9999)}
    pool = DatasetPool(capacity=8)
    place = cube.lonlat(0, 40, 70)
    before = point_timeseries([observation], ["B04"], *place, scale, quality_band=None, pool=pool)
    assert len(pool) == 1  # kept open for the next series
    with rasterio.open(source) as src:
        profile, pixels = src.profile, src.read()
    staging = tmp_path / "B04.staging.tif"
    with rasterio.open(staging, "w", **profile) as dst:  # the asset materialized again, then moved into place
        dst.write(pixels + 1)
    os.replace(staging, href)

    after = point_timeseries([observation], ["B04"], *place, scale, quality_band=None, pool=pool)

    assert before[0].raw["B04"] == cube.merge_value("B04", 0, 0, 70)
    assert after[0].raw["B04"] == cube.merge_value("B04", 0, 0, 70) + 1
