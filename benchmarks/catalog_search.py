"""Catalog search at scale: 1,000,000 images over 1,000 tiles and 5 years in a real PostgreSQL.

Run::

    .venv/bin/python benchmarks/catalog_search.py [--images 1000000] [--searches 200]

It starts its own PostgreSQL server with ``initdb``/``pg_ctl`` in a temporary folder (Unix socket
only; as the ``postgres`` user when run as root), migrates the catalog schema to head, and
bulk-loads with ``COPY``: 5 products, 1,000 tiles of 0.5° × 0.5° (a 40 × 25 block over Brazil),
``--images`` images spread evenly over the tiles and uniformly over 2020-2024 (composite products
carry a 16-day ``acquired_end``), cloud fractions uniform in [0, 1], and two files (B04, B08) of
20-21 MB per image. Rows are loaded in the order the graph writes them: ``catalog_item`` upserts
one tile × 16-day-period partition at a time, so the catalog fills period after period and, within
a period, tile after tile.

Then it times, through the public API (``Image.search()``, objects built, files loaded):

* ``--searches`` typical searches: a tile's geometry (so its 8 touching neighbours count too),
  a random time range of 1 to 6 months, ``cloud_fraction < 0.2``, ``limit(100)``;
* the same searches with ``repository.search_images`` (the project's first search, which filters
  with plain column comparisons and so only has the B-tree indexes of migration 0001) as the
  reference, on ``--reference-searches`` of them;
* ``summary_interval("month")`` of one tile's clear images (cloud < 0.2) over the five years,
  the summary a user draws for an area, ``--summaries`` times; and, for scale, once each over a
  whole product and over the whole catalogue.

It prints a table (p50/p95/max milliseconds, peak RSS of this process during the case) and, last,
``search_p95_ms: X``. Targets: search p95 ≤ 50 ms, summary ≤ 500 ms.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import io
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import psycopg
import shapely.geometry

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from _common import format_bytes, machine_summary, measure, peak_rss_method, print_table  # noqa: E402

from cube_assets.catalog.objects import Catalog, Image  # noqa: E402
from cube_assets.catalog.repository import search_images  # noqa: E402
from cube_assets.catalog.search import properties as p  # noqa: E402

PRODUCTS = ("s2_16d-LCF", "s2_16d-MED", "s2_16d-merge", "sentinel-2-l2a", "landsat-c2-l2")
COMPOSITES = {"s2_16d-LCF", "s2_16d-MED"}
TILE_COLUMNS, TILE_ROWS, TILE_DEGREES = 40, 25, 0.5
ORIGIN_LON, ORIGIN_LAT = -60.0, -20.0
START = dt.datetime(2020, 1, 1, tzinfo=dt.UTC)
END = dt.datetime(2025, 1, 1, tzinfo=dt.UTC)


# ------------------------------------------------------------------------------ server


def _binary(name: str) -> str:
    found = shutil.which(name)
    if found:
        return found
    candidates = sorted(Path("/usr/lib/postgresql").glob(f"*/bin/{name}"))
    if not candidates:
        raise SystemExit(f"catalog_search: {name} not found on PATH or in /usr/lib/postgresql/*/bin")
    return str(candidates[-1])


@contextlib.contextmanager
def postgresql_server() -> Iterator[str]:
    """Start a throw-away PostgreSQL server; yield its SQLAlchemy URL; stop and delete it on exit."""
    run_as: list[str] = []
    root = Path(tempfile.mkdtemp(prefix="cube-bench-pg-"))
    if os.geteuid() == 0:
        run_as = ["runuser", "-u", "postgres", "--"]
        shutil.chown(root, user="postgres")
    data, log = root / "data", root / "server.log"
    pg_ctl = _binary("pg_ctl")
    try:
        subprocess.run(
            [*run_as, _binary("initdb"), "-D", str(data), "-U", "postgres", "-A", "trust", "-E", "UTF8", "--no-sync"],
            check=True,
            capture_output=True,
        )
        options = f"-k {root} -p 5432 -c listen_addresses='' -c fsync=off -c synchronous_commit=off -c full_page_writes=off"
        subprocess.run(
            [*run_as, pg_ctl, "-D", str(data), "-o", options, "-l", str(log), "-w", "-t", "60", "start"],
            check=True,
            capture_output=True,
        )
        yield f"postgresql+psycopg://postgres@/postgres?host={root}&port=5432"
    finally:
        subprocess.run([*run_as, pg_ctl, "-D", str(data), "-m", "fast", "stop"], capture_output=True)
        shutil.rmtree(root, ignore_errors=True)


# ------------------------------------------------------------------------------ data


def tile_box(tile: int) -> tuple[float, float, float, float]:
    """``(min_lon, min_lat, max_lon, max_lat)`` of tile number ``tile``."""
    col, row = tile % TILE_COLUMNS, tile // TILE_COLUMNS
    min_lon, min_lat = ORIGIN_LON + col * TILE_DEGREES, ORIGIN_LAT + row * TILE_DEGREES
    return (min_lon, min_lat, min_lon + TILE_DEGREES, min_lat + TILE_DEGREES)


def _copy_text(value: Any) -> str:
    return "\\N" if value is None else str(value)


def load(url: str, images: int, seed: int = 0) -> float:
    """Fill the migrated catalog at ``url`` with ``images`` images and their files; return seconds."""
    started = time.perf_counter()
    conninfo = url.replace("postgresql+psycopg://", "postgresql://")
    rng = np.random.default_rng(seed)
    tiles = TILE_COLUMNS * TILE_ROWS
    span = (END - START).total_seconds()
    acquired = rng.random(images) * span
    tile_of = rng.integers(0, tiles, images)
    period_of = (acquired // (16 * 86400)).astype(np.int64)
    order = np.lexsort((acquired, tile_of, period_of))  # period, then tile, then time: the graph's write order
    acquired, tile_of = acquired[order], tile_of[order]
    product_of = rng.integers(0, len(PRODUCTS), images)
    cloud = rng.random(images)
    fill = 0.5 + rng.random(images) / 2
    geometries = []
    for tile in range(tiles):
        x0, y0, x1, y1 = tile_box(tile)
        geometries.append(
            f'{{"coordinates":[[[{x1},{y0}],[{x1},{y1}],[{x0},{y1}],[{x0},{y0}],[{x1},{y0}]]],"type":"Polygon"}}'
        )
    with psycopg.connect(conninfo, autocommit=True) as connection:
        for product in PRODUCTS:
            connection.execute(
                "INSERT INTO products (id, name, description, tags, properties) VALUES (%s, %s, '', '[]', '{}')",
                (product, product),
            )
        columns = (
            "id, product_id, name, acquired, acquired_end, geometry, min_lon, min_lat, max_lon, max_lat, crs,"
            " cloud_fraction, fill_fraction, tile, period_start, properties, tags"
        )
        with connection.cursor() as cursor, cursor.copy(f"COPY images ({columns}) FROM STDIN") as copy:
            batch = io.StringIO()
            for index in range(images):
                tile = int(tile_of[index])
                product = PRODUCTS[product_of[index]]
                moment = START + dt.timedelta(seconds=float(acquired[index]))
                end = moment + dt.timedelta(days=16) if product in COMPOSITES else None
                x0, y0, x1, y1 = tile_box(tile)
                image_id = f"{product}_{tile:04d}_{index:07d}"
                row = (
                    image_id, product, image_id, moment.isoformat(), _copy_text(end and end.isoformat()),
                    geometries[tile], x0, y0, x1, y1, "EPSG:4326", f"{cloud[index]:.4f}", f"{fill[index]:.4f}",
                    f"{tile:04d}", _copy_text(end and moment.date().isoformat()), "{}", "[]",
                )  # fmt: skip
                batch.write("\t".join(str(v) for v in row) + "\n")
                if index % 50_000 == 49_999:
                    copy.write(batch.getvalue())
                    batch = io.StringIO()
            copy.write(batch.getvalue())
        connection.execute(
            "INSERT INTO image_files (image_id, band, href, size_bytes)"
            " SELECT id, band, '/cube-data/' || id || '_' || band || '.tif', 20000000 + (hashtext(id || band) & 1048575)"
            " FROM images CROSS JOIN (VALUES ('B04'), ('B08')) AS bands (band)"
        )
        connection.execute("VACUUM ANALYZE")
    return time.perf_counter() - started


# ------------------------------------------------------------------------------ timing


def _percentiles(milliseconds: list[float]) -> tuple[float, float, float]:
    values = np.asarray(milliseconds)
    return float(np.percentile(values, 50)), float(np.percentile(values, 95)), float(values.max())


def _timed(calls: list[Callable[[], Any]]) -> tuple[list[float], list[Any], int]:
    """Run each call once; return their milliseconds, results, and the peak RSS over all of them."""
    times: list[float] = []
    results: list[Any] = []

    def run_all() -> None:
        for call in calls:
            started = time.perf_counter()
            results.append(call())
            times.append((time.perf_counter() - started) * 1000)

    measurement = measure(run_all)
    return times, results, measurement.peak_rss


def run_cases(catalog: Catalog, args: argparse.Namespace) -> None:
    """Time every case on the filled ``catalog``; print the table and, last, ``search_p95_ms``."""
    rng = np.random.default_rng(args.seed)
    queries = []
    for _ in range(args.searches):
        tile = int(rng.integers(0, TILE_COLUMNS * TILE_ROWS))
        months = int(rng.integers(1, 7))
        start = START + dt.timedelta(days=int(rng.integers(0, 5 * 365 - months * 31)))
        queries.append((tile, start, start + dt.timedelta(days=30 * months)))

    def search(tile: int, start: dt.datetime, end: dt.datetime) -> list[Image]:
        geometry = shapely.geometry.box(*tile_box(tile))
        return list(
            Image.search(catalog)
            .intersects(geometry)
            .filter(p.acquired >= start)
            .filter(p.acquired < end)
            .filter(p.cloud_fraction < 0.2)
            .limit(100)
        )

    def reference(tile: int, start: dt.datetime, end: dt.datetime) -> list[Any]:
        with catalog.session() as session:
            return search_images(session, bbox=tile_box(tile), start=start, end=end, max_cloud_fraction=0.2, limit=100)

    search(*queries[0])  # one warm-up round trip (connection, statement caches)
    search_ms, found, search_peak = _timed([lambda q=q: search(*q) for q in queries])
    reference_ms, _, reference_peak = _timed([lambda q=q: reference(*q) for q in queries[: args.reference_searches]])

    summary_tiles = [int(t) for t in rng.integers(0, TILE_COLUMNS * TILE_ROWS, args.summaries)]

    def tile_summary(tile: int) -> Any:
        geometry = shapely.geometry.box(*tile_box(tile))
        return Image.search(catalog).intersects(geometry).filter(p.cloud_fraction < 0.2).summary_interval("month")

    summary_ms, summaries, summary_peak = _timed([lambda t=t: tile_summary(t) for t in summary_tiles])
    product_ms, _, product_peak = _timed(
        [lambda: Image.search(catalog).filter(p.product_id == PRODUCTS[0]).summary_interval("month")]
    )
    catalog_ms, whole, catalog_peak = _timed([lambda: Image.search(catalog).summary_interval("month")])

    counts = [len(result) for result in found]
    rows = []
    for case, times, peak in (
        (f"search x{len(search_ms)} (tile, 1-6 months, cloud < 0.2, limit 100)", search_ms, search_peak),
        (f"reference search_images x{len(reference_ms)}", reference_ms, reference_peak),
        (f"summary_interval(month) of a tile x{len(summary_ms)}", summary_ms, summary_peak),
        ("summary_interval(month) of a whole product (scale)", product_ms, product_peak),
        ("summary_interval(month) of the whole catalog (scale)", catalog_ms, catalog_peak),
    ):
        p50, p95, worst = _percentiles(times)
        rows.append((case, f"{p50:.1f}", f"{p95:.1f}", f"{worst:.1f}", format_bytes(peak)))
    print_table(rows, ("case", "p50_ms", "p95_ms", "max_ms", "peak_rss"))
    months = len(summaries[0]) if summaries else 0
    print(
        f"# results per search: median {int(np.median(counts))}, max {max(counts)};"
        f" tile summaries: {months} months each; catalog summary: {sum(s.count for s in whole[0])} images"
    )
    print(f"# reference/search p95 ratio: {_percentiles(reference_ms)[1] / _percentiles(search_ms)[1]:.1f}")
    print(f"summary_p95_ms: {_percentiles(summary_ms)[1]:.1f}")
    print(f"search_p95_ms: {_percentiles(search_ms)[1]:.1f}")


def main(argv: list[str] | None = None) -> int:
    """Start PostgreSQL, load the images, run :func:`run_cases`; return 0."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=1_000_000)
    parser.add_argument("--searches", type=int, default=200)
    parser.add_argument("--reference-searches", type=int, default=40)
    parser.add_argument("--summaries", type=int, default=20)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args(argv)

    print(f"# catalog_search: {machine_summary()}")
    print(f"# peak RSS: {peak_rss_method()}")
    with postgresql_server() as url, Catalog(url) as catalog:
        seconds = load(url, args.images)
        print(f"# loaded {args.images} images, {2 * args.images} files into PostgreSQL in {seconds:.0f} s")
        run_cases(catalog, args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
