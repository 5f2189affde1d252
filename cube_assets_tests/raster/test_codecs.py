"""Every codec a cube can choose is lossless and read by GDAL, rasterio, odc-stac and rio-tiler.

The COGs are written as the merge and blend steps write them (``cog_from_file`` with GDAL's COG
driver, from a staged GeoTIFF) from a real Sentinel-2 band (T29UNU B04, 60 m). DEFLATE stays in
the list: cubes written before the default changed must keep reading. GDAL's command-line tool
(``gdalinfo``, Debian's ``gdal-bin``: ``make system-packages``) reads the files with another
build of GDAL than rasterio's wheel.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pystac
import pytest
import rasterio
import rasterio.features
import rasterio.warp
from rasterio.coords import BoundingBox
from rasterio.windows import Window

from cube_assets.raster.codecs import COMPRESSIONS, DEFAULT_COMPRESSION, DEFAULT_LEVELS, compression_options
from cube_assets.raster.cog import cog_driver_options, cog_from_file, is_valid_cog
from cube_assets.raster.windowed_io import output_profile
from cube_assets_tests.fixtures_stac import REAL_S2_ASSET_FILES

SIZE = 1024


@pytest.fixture(scope="module")
def staged_band(tmp_path_factory: pytest.TempPathFactory, real_data: Path) -> tuple[Path, np.ndarray]:
    """An uncompressed tiled int16 GeoTIFF of real reflectance (a staged merge), and its pixels."""
    folder = tmp_path_factory.mktemp("codecs")
    with rasterio.open(real_data / REAL_S2_ASSET_FILES["B04"]) as source:
        values = source.read(1, window=Window(600, 600, SIZE, SIZE)).astype(np.int32) - 1000
        crs, transform = source.crs, source.window_transform(Window(600, 600, SIZE, SIZE))
    values = np.where(values < -1000, -9999, values).astype(np.int16)
    profile = output_profile(np.int16, -9999, crs=crs, transform=transform, shape=(SIZE, SIZE), compress=False)
    path = folder / "staged_B04.tif"
    with rasterio.open(path, "w", **profile) as out:
        out.write(values, 1)
    return path, values


@pytest.fixture(scope="module", params=COMPRESSIONS)
def cog_of_codec(
    request: pytest.FixtureRequest, staged_band: tuple[Path, np.ndarray], tmp_path_factory: pytest.TempPathFactory
) -> tuple[str, Path, np.ndarray]:
    codec = request.param
    staged, values = staged_band
    path = cog_from_file(staged, tmp_path_factory.mktemp(codec) / "B04.tif", compress=codec, driver="gdal")
    return codec, path, values


def test_every_codec_writes_a_valid_lossless_cog_rasterio_reads(cog_of_codec: tuple[str, Path, np.ndarray]) -> None:
    codec, path, values = cog_of_codec

    assert is_valid_cog(path)
    with rasterio.open(path) as cog:
        assert cog.compression.name == codec.lower()
        assert cog.overviews(1) == [2]
        np.testing.assert_array_equal(cog.read(1), values)


def test_gdals_command_line_reads_every_codec(cog_of_codec: tuple[str, Path, np.ndarray]) -> None:
    codec, path, values = cog_of_codec
    gdalinfo = shutil.which("gdalinfo")
    if gdalinfo is None:
        if os.environ.get("CI") == "true":
            pytest.fail("gdalinfo is not installed (make system-packages installs gdal-bin)")
        pytest.skip("gdalinfo is not installed (make system-packages installs gdal-bin)")

    info = json.loads(subprocess.run([gdalinfo, "-json", "-stats", str(path)], check=True, capture_output=True).stdout)

    assert info["metadata"]["IMAGE_STRUCTURE"]["COMPRESSION"] == codec
    band = info["bands"][0]
    valid = values[values != -9999]
    assert band["minimum"] == valid.min() and band["maximum"] == valid.max()
    assert band["mean"] == pytest.approx(valid.mean(), abs=1e-3)  # gdalinfo rounds to 3 decimals


def test_odc_stac_loads_every_codec_through_a_static_stac_item(cog_of_codec: tuple[str, Path, np.ndarray]) -> None:
    import odc.stac

    codec, path, values = cog_of_codec
    with rasterio.open(path) as cog:
        bounds, crs, transform = cog.bounds, cog.crs, cog.transform
    geometry = rasterio.warp.transform_geom(crs, "EPSG:4326", _box(bounds))
    item = pystac.Item(
        id=f"codec-{codec}",
        geometry=geometry,
        bbox=list(rasterio.features.bounds(geometry)),
        datetime=None,
        start_datetime=pystac.utils.str_to_datetime("2024-01-01T00:00:00Z"),
        end_datetime=pystac.utils.str_to_datetime("2024-01-16T23:59:59Z"),
        properties={},
        stac_extensions=["https://stac-extensions.github.io/projection/v2.0.0/schema.json"],
    )
    item.properties.update(
        {"proj:code": crs.to_string(), "proj:shape": [SIZE, SIZE], "proj:transform": list(transform)[:6]}
    )
    item.add_asset("B04", pystac.Asset(href=str(path), media_type=pystac.MediaType.COG, roles=["data"]))
    item = pystac.Item.from_dict(json.loads(json.dumps(item.to_dict())))  # as a static catalogue's file gives it

    loaded = odc.stac.load([item], bands=["B04"], chunks=None)

    np.testing.assert_array_equal(loaded["B04"].isel(time=0).values, values)


def test_rio_tiler_reads_every_codec_as_the_tile_server_does(cog_of_codec: tuple[str, Path, np.ndarray]) -> None:
    from rio_tiler.io import Reader

    codec, path, values = cog_of_codec
    with Reader(str(path)) as reader:
        assert reader.dataset.compression.name == codec.lower()
        image = reader.read(indexes=1)

    np.testing.assert_array_equal(image.data[0], values)
    np.testing.assert_array_equal(image.mask == 0, values == -9999)


def test_the_default_codec_and_its_level_write_at_most_deflates_size(
    staged_band: tuple[Path, np.ndarray], tmp_path: Path
) -> None:
    staged, _ = staged_band
    default = cog_from_file(staged, tmp_path / "default.tif", driver="gdal")
    deflate = cog_from_file(staged, tmp_path / "deflate.tif", compress="DEFLATE", level=6, driver="gdal")

    with rasterio.open(default) as cog:
        assert cog.compression.name == DEFAULT_COMPRESSION.lower()
    assert default.stat().st_size <= deflate.stat().st_size * 1.02


def test_compression_options_name_each_codecs_level_and_predictor() -> None:
    assert compression_options("deflate", np.int16, level=3) == {"compress": "deflate", "predictor": 2, "zlevel": 3}
    assert compression_options("ZSTD", np.float32) == {
        "compress": "zstd",
        "predictor": 3,
        "zstd_level": DEFAULT_LEVELS["ZSTD"],
    }
    assert compression_options("lerc_zstd", np.uint8) == {
        "compress": "lerc_zstd",
        "zstd_level": DEFAULT_LEVELS["LERC_ZSTD"],
        "max_z_error": 0,
    }


@pytest.mark.parametrize(
    ("compress", "level", "message"),
    [
        ("LZW", None, "compress 'LZW' is not one of"),
        ("ZSTD", 0, "level 0 of ZSTD is not in 1..22"),
        ("DEFLATE", 13, "level 13 of DEFLATE"),
    ],
)
def test_compression_options_refuse_an_unknown_codec_or_level(compress: str, level: int | None, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        compression_options(compress, np.int16, level=level)


def test_cog_driver_options_are_what_gdal_translate_gets() -> None:
    options = cog_driver_options(
        np.int16, width=10560, height=10560, compress="ZSTD", level=1, overview_resampling="average"
    )

    assert options == {
        "COMPRESS": "ZSTD",
        "LEVEL": "1",
        "PREDICTOR": "STANDARD",
        "BLOCKSIZE": "512",
        "OVERVIEW_RESAMPLING": "AVERAGE",
        "NUM_THREADS": "ALL_CPUS",
    }


def _box(bounds: BoundingBox) -> dict[str, object]:
    left, bottom, right, top = bounds
    return {
        "type": "Polygon",
        "coordinates": [[[left, bottom], [right, bottom], [right, top], [left, top], [left, bottom]]],
    }
