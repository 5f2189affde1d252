"""Service fixtures: a small cube catalog with real COGs, and the API served over HTTP on loopback.

The cube catalog (:func:`build_cube_catalog`) looks like the demo's: a cube ``s2_test`` with LCF
composites (bands B04, B08, SCL and a quicklook) and merges on two UTM tiles, four 16-day
periods, plus its source scenes; every composite band is a real 32 × 32 COG. It is built once per
session on SQLite (``cube_catalog``) and on the PostgreSQL test server (``cube_catalog_pg``);
``stac_api`` and ``stac_api_pg`` serve them with uvicorn in a thread on a free port.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import shapely.geometry
import uvicorn
from affine import Affine
from fastapi import FastAPI
from fastapi.testclient import TestClient
from pyproj import Transformer

from cube_assets.client import Catalog, ClassBand, File, Image, SpectralBand
from cube_assets.raster.cog import write_cog
from cube_assets.service.app import create_app
from cube_assets.service.settings import ServiceSettings
from cube_assets_tests.service.maps_app import maps_app
from cube_assets_tests.service.synthetic_cube import SyntheticCube, build_synthetic_cube

UTC = dt.UTC
CUBE = "s2_test"
LCF, MERGE, SCENES = f"{CUBE}-LCF", f"{CUBE}-merge", "sentinel-2-l2a"
CRS = "EPSG:32723"
SIZE, RESOLUTION = 32, 10.0
#: Tile name → upper-left corner (x, y) in EPSG:32723; the tiles touch along x = 500320.
TILES = {"023017": (500_000.0, 8_900_320.0), "024017": (500_320.0, 8_900_320.0)}
PERIODS = [dt.date(2024, 1, 1) + dt.timedelta(days=16 * k) for k in range(4)]


def tile_footprint(tile: str) -> shapely.geometry.Polygon:
    """The tile's footprint in EPSG:4326."""
    x, y = TILES[tile]
    to_4326 = Transformer.from_crs(CRS, "EPSG:4326", always_xy=True)
    corners = [
        (x, y),
        (x + SIZE * RESOLUTION, y),
        (x + SIZE * RESOLUTION, y - SIZE * RESOLUTION),
        (x, y - SIZE * RESOLUTION),
    ]
    return shapely.geometry.Polygon([to_4326.transform(cx, cy) for cx, cy in corners])


def _band_pixels(tile_index: int, period_index: int, band_index: int) -> np.ndarray:
    rows, cols = np.mgrid[0:SIZE, 0:SIZE]
    pixels = (rows * 37 + cols * 11 + tile_index * 1000 + period_index * 100 + band_index * 3000) % 9000
    pixels = pixels.astype(np.int16)
    pixels[0, : 3 + period_index] = -9999  # some nodata in every composite
    return pixels


def build_cube_catalog(url: str, folder: Path) -> Catalog:
    """Catalog the small test cube (real COGs under ``folder``) at ``url``; return the open catalog."""
    catalog = Catalog(url)
    catalog.products(id=LCF, name="s2_test LCF", description="16-day LCF composites", tags=["cube", "LCF"],
                     start_datetime="2024-01-01", end_datetime="2024-03-05T23:59:59Z",
                     properties={"collection": SCENES, "temporal_schema": "16D", "grid": "BDC_SM"}).save()  # fmt: skip
    catalog.products(id=MERGE, name="s2_test merges", tags=["cube", "merge"]).save()
    catalog.products(id=SCENES, name=SCENES, tags=["source"]).save()
    for product in (LCF, MERGE):
        SpectralBand(catalog=catalog, product_id=product, name="B04", data_type="Int16", resolution=RESOLUTION,
                     band_index=0, nodata=-9999, data_range=(0, 10000),
                     description="red", wavelength_min=0.650, wavelength_max=0.680).save()  # fmt: skip
        SpectralBand(catalog=catalog, product_id=product, name="B08", data_type="Int16", resolution=RESOLUTION,
                     band_index=1, nodata=-9999, data_range=(0, 10000),
                     description="nir", wavelength_min=0.785, wavelength_max=0.900).save()  # fmt: skip
        ClassBand(catalog=catalog, product_id=product, name="SCL", data_type="UInt8", resolution=RESOLUTION,
                  band_index=2, nodata=0, class_labels={4: "vegetation", 8: "cloud"}).save()  # fmt: skip
    quicklook = folder / "quicklook.png"
    quicklook.write_bytes(b"\x89PNG\r\n\x1a\n")
    for tile_index, (tile, (x, y)) in enumerate(TILES.items()):
        transform = Affine(RESOLUTION, 0, x, 0, -RESOLUTION, y)
        common = {"crs": CRS, "geotransform": transform.to_gdal(), "width": SIZE, "height": SIZE, "tile": tile,
                  "pixel_size_x": RESOLUTION, "pixel_size_y": RESOLUTION, "geometry": tile_footprint(tile)}  # fmt: skip
        for period_index, start in enumerate(PERIODS):
            files = {}
            for band_index, band in enumerate(("B04", "B08")):
                path = folder / tile / f"{CUBE}_{tile}_{start:%Y%m%d}_LCF_{band}.tif"
                write_cog(_band_pixels(tile_index, period_index, band_index), path, crs=CRS, transform=transform,
                          nodata=-9999, blocksize=256)  # fmt: skip
                files[band] = File(str(path), path.stat().st_size)
            scl = folder / tile / f"{CUBE}_{tile}_{start:%Y%m%d}_LCF_SCL.tif"
            write_cog(np.full((SIZE, SIZE), 4, np.uint8), scl, crs=CRS, transform=transform, nodata=0, blocksize=256)
            files["SCL"] = File(str(scl), scl.stat().st_size)
            files["quicklook"] = File(str(quicklook), quicklook.stat().st_size)
            period_start = dt.datetime.combine(start, dt.time(), tzinfo=UTC)
            Image(catalog=catalog, id=f"{CUBE}_{tile}_{start:%Y%m%d}_LCF", product_id=LCF, acquired=period_start,
                  acquired_end=period_start + dt.timedelta(days=15), period_start=start,
                  cloud_fraction=round(0.1 * period_index + 0.05 * tile_index, 3), fill_fraction=0.95,
                  files=files, **common).save()  # fmt: skip
            for day in (3, 11):
                acquired = period_start + dt.timedelta(days=day, hours=13, minutes=tile_index)
                Image(catalog=catalog, id=f"{CUBE}_{tile}_{acquired:%Y%m%d}", product_id=MERGE, acquired=acquired,
                      period_start=start, cloud_fraction=None if day == 11 and period_index == 3 else
                      round(((period_index * 7 + day + tile_index * 3) % 10) / 10, 2), fill_fraction=1.0,
                      files={"B04": File(f"s3://cube-bucket/{tile}/{acquired:%Y%m%d}_B04.tif", 100)},
                      properties={"efficacy": 50 + day}, **common).save()  # fmt: skip
    for k in range(4):
        acquired = dt.datetime(2024, 1, 4 + 9 * k, 13, 10, tzinfo=UTC)
        Image(catalog=catalog, id=f"S2A_MSIL2A_{acquired:%Y%m%d}_T23LLF", product_id=SCENES, acquired=acquired,
              geometry=tile_footprint("023017").buffer(0.001 * (k + 1)), crs=CRS, cloud_fraction=0.1 * k,
              provider="earth-search", provider_id=f"S2A_{acquired:%Y%m%d}",
              files={"B04": File(f"/archive/scenes/{acquired:%Y%m%d}/B04.jp2", 5000)}).save()  # fmt: skip
    return catalog


def free_port() -> int:
    """A free TCP port on 127.0.0.1."""
    with contextlib.closing(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass
class RunningApi:
    """An app served by uvicorn on loopback: ``url`` is its root (ending in ``/``), ``catalog`` what it reads."""

    url: str
    catalog: Catalog
    app: FastAPI
    server: uvicorn.Server
    thread: threading.Thread

    def stop(self) -> None:
        """Stop the server and wait for its thread."""
        self.server.should_exit = True
        self.thread.join(timeout=10)


def serve(app: FastAPI, catalog: Catalog) -> RunningApi:
    """Start ``app`` with uvicorn in a thread on a free loopback port; return once it accepts requests."""
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, name=f"uvicorn-{port}", daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError(f"uvicorn did not start on port {port}")
        time.sleep(0.02)
    return RunningApi(f"http://127.0.0.1:{port}/", catalog, app, server, thread)


@pytest.fixture(scope="session")
def cube_catalog(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Catalog]:
    """The test cube's catalog on SQLite (tests must not change it)."""
    folder = tmp_path_factory.mktemp("cube")
    catalog = build_cube_catalog(f"sqlite:///{folder}/catalog.sqlite", folder)
    yield catalog
    catalog.close()


@pytest.fixture(scope="session")
def cube_catalog_pg(postgresql_server, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Catalog]:  # type: ignore[no-untyped-def]  # the server fixture's type lives in fixtures_postgres
    """The test cube's catalog on the PostgreSQL test server, in its own schema (tests must not change it)."""
    schema = f"stac_api_{uuid.uuid4().hex[:12]}"
    postgresql_server.admin(f'CREATE SCHEMA "{schema}"')
    catalog = build_cube_catalog(postgresql_server.schema_url(schema), tmp_path_factory.mktemp("cube_pg"))
    yield catalog
    catalog.close()
    with contextlib.suppress(Exception):  # the server may already be gone at the end of the session
        postgresql_server.admin(f'DROP SCHEMA "{schema}" CASCADE')


@pytest.fixture(scope="session")
def stac_api(cube_catalog: Catalog) -> Iterator[RunningApi]:
    """The API over the SQLite test cube, on loopback."""
    running = serve(create_app(ServiceSettings(catalog_url="unused"), catalog=cube_catalog), cube_catalog)
    yield running
    running.stop()


@pytest.fixture(scope="session")
def stac_api_pg(cube_catalog_pg: Catalog) -> Iterator[RunningApi]:
    """The API over the PostgreSQL test cube, on loopback."""
    running = serve(create_app(ServiceSettings(catalog_url="unused"), catalog=cube_catalog_pg), cube_catalog_pg)
    yield running
    running.stop()


@pytest.fixture(scope="session")
def synthetic_cube(tmp_path_factory: pytest.TempPathFactory) -> SyntheticCube:
    """Two tiles side by side, three periods of two merges each, and their LCF, MED and AVG composites."""
    return build_synthetic_cube(tmp_path_factory.mktemp("synthetic-cube"), tiles=2, periods=3, merges_per_period=2)


@pytest.fixture(scope="module")
def maps_client(synthetic_cube: SyntheticCube) -> Iterator[TestClient]:
    """An HTTP client of the service app over the synthetic cube's catalog."""
    with TestClient(maps_app(synthetic_cube.catalog_url)) as client:
        yield client
