"""A small catalog shaped like the catalog guide's examples, on SQLite and on PostgreSQL.

``guide_catalog`` connects the client's default catalog (the guide's code uses no explicit
catalog) with a local upload store. It is built once per test module and backend; after each
test, whatever the test added (products, bands, images, uploads) is removed again, so every test
sees the same catalog. It holds:

* :data:`PRODUCTS`: products with the time spans the product-search examples filter on;
* ``landsat:LC08:01:RT:TOAR`` with the guide's Landsat bands (six spectral, six class bands, an
  alpha mask band) and :data:`SCENES`: 8 x 8 pixel GeoTIFFs at 30 m (EPSG:32631) inside the
  guide's Girona triangle, whose alpha band is 0 on the top half;
* ``landsat:LC08:01:T1:TOAR`` with :data:`MONTHLY` images (no pixels, known file sizes) for the
  summary examples.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import rasterio
from pyproj import Transformer
from rasterio.transform import from_origin
from shapely.geometry import box
from sqlalchemy import delete, select

from cube_assets.catalog import models
from cube_assets.client import (
    Catalog,
    ClassBand,
    File,
    Image,
    MaskBand,
    Product,
    SpectralBand,
    connect,
    disconnect,
)
from cube_assets.client.image_upload import upload_executor
from cube_assets.storage.raster_store import LocalRasterStore
from cube_assets_tests.fixtures_postgres import PostgresServer

UTC = dt.UTC
RT = "landsat:LC08:01:RT:TOAR"
T1 = "landsat:LC08:01:T1:TOAR"
#: Product id → (start_datetime, end_datetime).
PRODUCTS: dict[str, tuple[str, str | None]] = {
    "e7e4fc5b0afd45d32c623697cb5a4437d3f09ade:daily-weather:cfsr-v1": ("1979-01-01", "2011-04-01"),
    "daily-weather:gsod-interpolated:v0": ("1980-01-01", "2019-06-01"),
    "fcd57a7bf668c5b65d49c5e32130a2c0a5281322:daily-weather:cfsr-v1:dev-v0": ("1979-06-01", "2011-04-01"),
    "modis:09:v2": ("2000-02-24", "2020-01-01"),
    "old-survey:v1": ("1990-01-01", "1999-12-31"),
    RT: ("2013-03-18", "2021-01-01"),
    "sentinel-2:L1C": ("2015-06-23", None),
    "future:v1": ("2017-01-01", "2020-01-01"),
    T1: ("2013-03-18", "2021-01-01"),
}
SPECTRAL = ("coastal-aerosol", "blue", "green", "red", "nir", "swir1")
CLASSES = ("valid-cloudfree", "qa_snow", "qa_saturated", "qa_cloud_shadow", "qa_cloud", "qa_cirrus")
#: Scene name → (acquired, cloud_fraction).
SCENES: dict[str, tuple[dt.datetime, float]] = {
    "meta_LC08_20161220_v1": (dt.datetime(2016, 12, 20, 10, 30, tzinfo=UTC), 0.05),
    "meta_LC08_20170301_v1": (dt.datetime(2017, 3, 1, 10, 30, tzinfo=UTC), 0.10),
    "meta_LC08_20170601_v1": (dt.datetime(2017, 6, 1, 10, 30, tzinfo=UTC), 0.50),
    "meta_LC08_20170901_v1": (dt.datetime(2017, 9, 1, 10, 30, tzinfo=UTC), 0.15),
    "meta_LC08_20180201_v1": (dt.datetime(2018, 2, 1, 10, 30, tzinfo=UTC), 0.30),
}
#: Month of 2017 → file sizes (bytes) of the T1 images acquired that month.
MONTHLY: dict[int, list[int]] = {1: [100], 2: [200, 300], 3: [400], 4: [500, 600, 700], 5: [800]}
#: The scenes' grid: 8 x 8 pixels of 30 m in UTM 31N, inside the guide's triangle near Girona.
ORIGIN = (494100.0, 4645400.0)
SIZE, PIXEL = 8, 30.0
CRS = "EPSG:32631"
#: The guide's polygon (In [7]).
GEOMETRY = {
    "type": "Polygon",
    "coordinates": [
        [
            [2.915496826171875, 42.044193618165224],
            [2.838592529296875, 41.92475971933975],
            [3.043212890625, 41.929868314485795],
            [2.915496826171875, 42.044193618165224],
        ]
    ],
}


def band_values(scene_index: int, band_index: int) -> np.ndarray:
    """The pixels of one band of one scene: ``1000 * (band + 1) + 10 * scene + column`` (UInt16)."""
    columns = np.arange(SIZE, dtype=np.uint16)[np.newaxis, :].repeat(SIZE, axis=0)
    return (1000 * (band_index + 1) + 10 * scene_index + columns).astype(np.uint16)


#: Rows at the top of every scene where its alpha band is 0 (transparent).
TRANSPARENT_ROWS = 4


def alpha_values() -> np.ndarray:
    """The alpha band: 0 (transparent) on the first :data:`TRANSPARENT_ROWS` rows, 1 elsewhere."""
    alpha = np.ones((SIZE, SIZE), dtype=np.uint16)
    alpha[:TRANSPARENT_ROWS] = 0
    return alpha


def _write(path: Path, values: np.ndarray) -> File:
    profile = {
        "driver": "GTiff",
        "width": SIZE,
        "height": SIZE,
        "count": 1,
        "dtype": values.dtype.name,
        "crs": CRS,
        "transform": from_origin(*ORIGIN, PIXEL, PIXEL),
    }
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(values, 1)
    return File(str(path), path.stat().st_size)


def _footprint() -> Any:
    to_4326 = Transformer.from_crs(CRS, "EPSG:4326", always_xy=True)
    west, north = ORIGIN
    east, south = west + SIZE * PIXEL, north - SIZE * PIXEL
    xs, ys = to_4326.transform([west, east, east, west], [north, north, south, south])
    return box(min(xs), min(ys), max(xs), max(ys))


def _landsat_bands(product: Product) -> None:
    for index, name in enumerate(SPECTRAL):
        SpectralBand(
            name=name, product=product, data_type="UInt16", resolution=30, band_index=index, data_range=(0, 10000)
        ).save()
    for offset, name in enumerate(CLASSES):
        ClassBand(name=name, product=product, data_type="UInt16", resolution=30, band_index=6 + offset).save()
    MaskBand(name="alpha", product=product, data_type="UInt16", resolution=30, band_index=12, is_alpha=True).save()


def _scenes(product: Product, folder: Path) -> None:
    footprint = _footprint()
    for scene_index, (name, (acquired, cloud)) in enumerate(SCENES.items()):
        files = {
            band: _write(folder / f"{name}_{band}.tif", band_values(scene_index, i)) for i, band in enumerate(SPECTRAL)
        }
        files["alpha"] = _write(folder / f"{name}_alpha.tif", alpha_values())
        Image(
            product=product,
            name=name,
            acquired=acquired,
            cloud_fraction=cloud,
            geometry=footprint,
            cs_code=CRS,
            geotrans=(ORIGIN[0], PIXEL, 0.0, ORIGIN[1], 0.0, -PIXEL),
            x_pixels=SIZE,
            y_pixels=SIZE,
            files=files,
        ).save()


def _monthly(product: Product) -> None:
    footprint = _footprint()
    for month, sizes in MONTHLY.items():
        for number, size in enumerate(sizes):
            Image(
                product=product,
                name=f"t1_2017{month:02d}_{number}",
                acquired=dt.datetime(2017, month, 10 + number, tzinfo=UTC),
                geometry=footprint,
                cs_code=CRS,
                files={"blue": File(f"/nowhere/t1_{month}_{number}.tif", size)},
            ).save()


@pytest.fixture(scope="module", params=("sqlite", "postgresql"))
def guide_url(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A new catalog URL per module: a SQLite file, or a fresh schema of the PostgreSQL test server."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path_factory.mktemp('guide')}/catalog.sqlite"
        return
    server: PostgresServer = request.getfixturevalue("postgresql_server")
    schema = f"guide_{uuid.uuid4().hex[:12]}"
    server.admin(f'CREATE SCHEMA "{schema}"')
    try:
        yield server.schema_url(schema)
    finally:
        server.admin(f'DROP SCHEMA "{schema}" CASCADE')


@pytest.fixture(scope="module")
def filled_catalog(guide_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Catalog]:
    """The default catalog, filled as the module docstring says; disconnected after the module."""
    catalog = connect(guide_url, upload_store=LocalRasterStore(tmp_path_factory.mktemp("store")))
    try:
        for product_id, (start, end) in PRODUCTS.items():
            Product(id=product_id, name=product_id, start_datetime=start, end_datetime=end).save()
        rt = Product.get(RT)
        assert rt is not None
        rt.name = "Landsat 8 Collection 1 Real-Time"
        rt.save()
        _landsat_bands(rt)
        _scenes(rt, tmp_path_factory.mktemp("scenes"))
        t1 = Product.get(T1)
        assert t1 is not None
        _monthly(t1)
        yield catalog
    finally:
        disconnect()


def _keys(catalog: Catalog) -> dict[str, set[str]]:
    with catalog.session() as session:
        return {
            "images": set(session.scalars(select(models.Image.id))),
            "products": set(session.scalars(select(models.Product.id))),
            "uploads": set(session.scalars(select(models.ImageUpload.id))),
        }


@pytest.fixture
def guide_catalog(filled_catalog: Catalog) -> Iterator[Catalog]:
    """The filled catalog; what the test adds is deleted afterwards."""
    before = _keys(filled_catalog)
    yield filled_catalog
    upload_executor().submit(lambda: None).result(timeout=60)  # no upload still writing
    after = _keys(filled_catalog)
    with filled_catalog.transaction() as session:
        session.execute(
            delete(models.ImageUpload).where(models.ImageUpload.id.in_(after["uploads"] - before["uploads"]))
        )
        new_images = after["images"] - before["images"]
        session.execute(delete(models.ImageFile).where(models.ImageFile.image_id.in_(new_images)))
        session.execute(delete(models.Image).where(models.Image.id.in_(new_images)))
        added = after["products"] - before["products"]
        session.execute(delete(models.Band).where(models.Band.product_id.in_(added)))
        session.execute(delete(models.Product).where(models.Product.id.in_(added)))
    assert _keys(filled_catalog) == before, "a test removed part of the shared catalog"
