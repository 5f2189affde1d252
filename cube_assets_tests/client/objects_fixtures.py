"""Fixtures of the catalog object-model tests: an empty catalog, and a small filled one with its Python oracle.

Import the fixtures into a test module (``from cube_assets_tests.client.objects_fixtures import ...``).
Both run on SQLite and on the real PostgreSQL test server (a fresh schema each).

``RECORDS`` lists every image of the filled catalog as plain dicts, so a test can compute what a
search must return with a Python comprehension and compare it with what the SQL returned.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import shapely.geometry

from cube_assets.catalog.database import upgrade_schema
from cube_assets.catalog.repository import upsert_image
from cube_assets.client import (
    Catalog,
    ClassBand,
    File,
    GenericBand,
    Image,
    MaskBand,
    SpectralBand,
)

BACKENDS = ("sqlite", "postgresql")
#: The filled catalog also runs on PostgreSQL migrated without PostGIS (``postgresql_bbox``), so
#: every search test checks that both PostgreSQL footprint paths give the same answers.
#: ``postgresql`` uses PostGIS where the test server has it (CI installs it).
FILLED_BACKENDS = ("sqlite", "postgresql", "postgresql_bbox")
UTC = dt.UTC

#: Three tiles in a row; neighbours share an edge (A|B at lon -45, B|C at lon -44).
TILES: dict[str, tuple[float, float, float, float]] = {
    "A": (-46.0, -10.0, -45.0, -9.0),
    "B": (-45.0, -10.0, -44.0, -9.0),
    "C": (-44.0, -10.0, -43.0, -9.0),
}
MERGE, LCF, SCENES = "cube-merge", "cube-LCF", "scenes"


def _records() -> list[dict[str, Any]]:
    records: list[dict[str, Any]] = []
    for tile_index, (tile, bounds) in enumerate(TILES.items()):
        for month in range(12):
            cloud = None if month == 11 else ((month * 7 + tile_index * 3) % 10) / 10
            records.append(
                {
                    "id": f"merge_{tile}_2023{month + 1:02d}",
                    "product_id": MERGE,
                    "acquired": dt.datetime(2023, month + 1, 5, 13, 0, tzinfo=UTC),
                    "acquired_end": None,
                    "geometry": shapely.geometry.box(*bounds),
                    "cloud_fraction": cloud,
                    "fill_fraction": 1.0 - month / 100,
                    "tile": tile,
                    "period_start": None,
                    "provider": None,
                    "properties": {
                        "efficacy": month * 10 + tile_index,
                        "sensor": "MSI" if month % 2 == 0 else "OLI",
                        "clear": cloud is not None and cloud < 0.3,
                        "quality": {"score": month},
                    },
                    "tags": ["even" if month % 2 == 0 else "odd"] + (["winter"] if month in (5, 6, 7) else []),
                    "files": {
                        "B04": File(f"/data/merge/{tile}/{month}_B04.tif", 1000 + month),
                        "B08": File(f"/data/merge/{tile}/{month}_B08.tif", None if tile == "C" else 2000 + month),
                    },
                }
            )
        for period in range(6):
            start = dt.datetime(2023, 2 * period + 1, 1, tzinfo=UTC)
            records.append(
                {
                    "id": f"lcf_{tile}_{start:%Y%m}",
                    "product_id": LCF,
                    "acquired": start,
                    "acquired_end": start + dt.timedelta(days=15, hours=23),
                    "geometry": shapely.geometry.box(*bounds),
                    "cloud_fraction": round(0.15 * period, 2),
                    "fill_fraction": 0.9,
                    "tile": tile,
                    "period_start": start.date(),
                    "provider": None,
                    "properties": {"observations": period + 2},
                    "tags": ["composite"],
                    "files": {
                        "B04": File(f"/data/lcf/{tile}/{period}_B04.tif", 5000),
                        "B08": File(f"/data/lcf/{tile}/{period}_B08.tif", 5000),
                        "SCL": File(f"/data/lcf/{tile}/{period}_SCL.tif", 700),
                    },
                }
            )
    spanning_a_and_c = shapely.geometry.MultiPolygon(
        [shapely.geometry.box(-45.9, -9.9, -45.5, -9.5), shapely.geometry.box(-43.5, -9.9, -43.1, -9.5)]
    )
    scenes = [
        ("S2A_20240203", dt.datetime(2024, 2, 3, 13, 10, tzinfo=UTC), spanning_a_and_c, 0.05, "earth-search"),
        (
            "S2B_20240208",
            dt.datetime(2024, 2, 8, 13, 10, tzinfo=UTC),
            shapely.geometry.box(-45.5, -9.8, -44.5, -9.2),
            None,
            "earth-search",
        ),
        (
            "S2A_20240213",
            dt.datetime(2024, 2, 13, 13, 10, tzinfo=UTC),
            shapely.geometry.box(-50.0, -12.0, -49.0, -11.0),
            0.5,
            "cdse",
        ),
        (
            "LC09_20240220",
            dt.datetime(2024, 2, 20, 12, 50, tzinfo=UTC),
            shapely.geometry.box(-44.2, -9.6, -43.8, -9.4),
            0.25,
            "usgs",
        ),
    ]
    for scene_id, acquired, geometry, cloud, provider in scenes:
        records.append(
            {
                "id": scene_id,
                "product_id": SCENES,
                "acquired": acquired,
                "acquired_end": None,
                "geometry": geometry,
                "cloud_fraction": cloud,
                "fill_fraction": None,
                "tile": None,
                "period_start": None,
                "provider": provider,
                "properties": {"sensor": "OLI" if scene_id.startswith("LC") else "MSI"},
                "tags": ["scene"],
                "files": {"B04": File(f"s3://bucket/{scene_id}/B04.tif", 90_000)},
            }
        )
    return records


RECORDS: list[dict[str, Any]] = _records()


def expected_ids(predicate: Callable[[dict[str, Any]], bool], records: list[dict[str, Any]] | None = None) -> list[str]:
    """Ids of the records matching ``predicate``, in the default search order (acquired, then id)."""
    chosen = [r for r in (records or RECORDS) if predicate(r)]
    return [r["id"] for r in sorted(chosen, key=lambda r: (r["acquired"], r["id"]))]


def fill(catalog: Catalog) -> None:
    """Store the products, bands and every image of :data:`RECORDS`.

    Products and bands go through the object API one by one; the images are validated as objects
    and written in one transaction with the repository's upserts (what ``save`` calls), which is
    several times faster than a transaction per image.
    """
    catalog.products(id=MERGE, name="Cube merges", tags=["cube", "merge"]).save()
    catalog.products(
        id=LCF,
        name="Cube LCF composites",
        description="Least-cloud-first 16-day composites",
        tags=["cube", "LCF"],
        start_datetime="2023-01-01",
        end_datetime="2023-12-31T23:59:59Z",
        properties={"license": "CC-BY-4.0", "grid": "TEST"},
    ).save()
    catalog.products(id=SCENES, name="Scenes", tags=["source"]).save()
    for product in (MERGE, LCF):
        SpectralBand(catalog=catalog, product_id=product, name="B04", data_type="Int16", resolution=10.0, band_index=0,
                     nodata=-9999, data_range=(0, 10000), display_range=(0, 4000), description="red",
                     wavelength_min=0.650, wavelength_max=0.680, wavelength_center=0.665).save()  # fmt: skip
        SpectralBand(catalog=catalog, product_id=product, name="B08", data_type="Int16", resolution=10.0, band_index=1,
                     nodata=-9999, data_range=(0, 10000), display_range=(0, 4000), description="nir",
                     wavelength_min=0.785, wavelength_max=0.900).save()  # fmt: skip
    ClassBand(catalog=catalog, product_id=LCF, name="SCL", data_type="UInt8", resolution=10.0, band_index=2, nodata=0,
              class_labels={4: "vegetation", 8: "cloud"},
              colormap={4: [0, 160, 0, 255], 8: [255, 255, 255]}).save()  # fmt: skip
    GenericBand(catalog=catalog, product_id=LCF, name="CLEAROB", data_type="UInt8", resolution=10.0, band_index=3,
                physical_range=(0, 255), unit="observations").save()  # fmt: skip
    MaskBand(catalog=catalog, product_id=LCF, name="ALPHA", data_type="UInt8", resolution=10.0, band_index=4,
             is_alpha=True).save()  # fmt: skip
    with catalog.transaction() as session:
        for record in RECORDS:
            image = Image(
                catalog=catalog,
                name=record["id"],
                crs="EPSG:4326",
                geotransform=None
                if record["tile"] is None
                else (TILES[record["tile"]][0], 0.01, 0.0, TILES[record["tile"]][3], 0.0, -0.01),
                width=None if record["tile"] is None else 100,
                height=None if record["tile"] is None else 100,
                **record,
            )
            upsert_image(session, image._records())


@pytest.fixture
def catalog(catalog_url: str) -> Iterator[Catalog]:
    """An empty, migrated catalog (SQLite and PostgreSQL, via ``catalog_url``)."""
    with Catalog(catalog_url) as opened:
        yield opened


#: The filled catalogs, built once per test session and backend. A session-scoped fixture would
#: not do: this module's fixtures are imported into several test modules, and pytest would then
#: build one per module.
_FILLED: dict[str, Catalog] = {}


def _build_filled(request: pytest.FixtureRequest, backend: str) -> Catalog:
    if backend == "sqlite":
        folder = request.getfixturevalue("tmp_path_factory").mktemp("filled")
        catalog = Catalog(f"sqlite:///{folder}/catalog.sqlite")
        request.config.add_cleanup(catalog.close)
    else:
        server = request.getfixturevalue("postgresql_server")
        schema = f"catalog_objects_{uuid.uuid4().hex[:12]}"
        server.admin(f'CREATE SCHEMA "{schema}"')
        if backend == "postgresql_bbox":
            upgrade_schema(server.schema_url(schema), postgis=False)
        catalog = Catalog(server.schema_url(schema))

        def drop() -> None:
            catalog.close()
            with contextlib.suppress(Exception):  # a server started by the tests is already gone
                server.admin(f'DROP SCHEMA "{schema}" CASCADE')

        request.config.add_cleanup(drop)
    fill(catalog)
    return catalog


@pytest.fixture(params=FILLED_BACKENDS)
def filled(request: pytest.FixtureRequest) -> Catalog:
    """A catalog holding :data:`RECORDS` on each backend (built once per session): tests must not change it."""
    if request.param not in _FILLED:
        _FILLED[request.param] = _build_filled(request, request.param)
    return _FILLED[request.param]


__all__ = [
    "BACKENDS",
    "FILLED_BACKENDS",
    "LCF",
    "MERGE",
    "RECORDS",
    "SCENES",
    "TILES",
    "catalog",
    "expected_ids",
    "fill",
    "filled",
]
