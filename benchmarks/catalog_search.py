"""Catalog search at scale: 1,000,000 images over 1,000 tiles and 5 years in a real PostgreSQL.

Run::

    .venv/bin/python benchmarks/catalog_search.py [--images 1000000] [--searches 200]

It starts its own PostgreSQL server with ``initdb``/``pg_ctl`` in a temporary folder (Unix socket
only; as the ``postgres`` user when run as root), migrates the catalog schema to head (with
PostGIS when the server has it, unless ``--no-postgis``), and bulk-loads with ``COPY``: 5
products, 1,000 tiles of 0.5° × 0.5° (a 40 × 25 block over Brazil), ``--images`` images spread
evenly over the tiles and uniformly over 2020-2024 (composite products carry a 16-day
``acquired_end``), cloud fractions uniform in [0, 1], and two files (B04, B08) of 20-21 MB per
image (each image's ``size_bytes`` is their sum, as the upserts write it). Rows are loaded in the
order the graph writes them: ``catalog_item`` upserts one tile × 16-day-period partition at a
time, so the catalog fills period after period and, within a period, tile after tile. With
PostGIS, the migration's trigger fills ``images.footprint`` during the load.

Then it times, through the public API (``Image.search()``, objects built, files loaded):

* ``--searches`` typical searches: a tile's geometry (so its 8 touching neighbours count too),
  a random time range of 1 to 6 months, ``cloud_fraction < 0.2``, ``limit(100)``; with PostGIS,
  also the same searches on the same data by the portable exact SQL test
  (``Catalog(url, postgis=False)``, the path of a server without PostGIS);
* the same searches with ``repository.search_images`` (the project's first search, which filters
  bounding boxes with plain column comparisons and so only has the B-tree indexes of migration
  0001) as the reference, on ``--reference-searches`` of them;
* ``summary_interval("month")`` of one tile's clear images (cloud < 0.2) over the five years,
  the summary a user draws for an area, ``--summaries`` times (both paths with PostGIS);
* ``summary_interval("month")`` of a whole product (200,000 images) and of the whole catalogue,
  and ``summary()`` of the whole catalogue, ``--scale-summaries`` times each.

It prints a table (p50/p95/max milliseconds, peak RSS of this process during the case), the load
average before and after, with ``--explain`` the plans of one search and of the scale summaries,
and, last, ``search_p95_ms: X``. Targets: search p95 ≤ 50 ms, summary ≤ 500 ms.
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

from _common import format_bytes, machine_summary, measure, peak_rss_method, print_table

from cube_assets.catalog.expressions import properties as p
from cube_assets.catalog.repository import search_images
from cube_assets.client import Catalog, Image

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
def postgresql_server(tcp_port: int | None = None) -> Iterator[str]:
    """Start a throw-away PostgreSQL server; yield its SQLAlchemy URL; stop and delete it on exit.

    The server listens on a Unix socket only, or with ``tcp_port`` on that loopback port too (trust
    authentication; the URL is then the TCP one), for clients that cannot use a socket.
    """
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
        listen = "127.0.0.1" if tcp_port else ""
        options = (
            f"-k {root} -p {tcp_port or 5432} -c listen_addresses='{listen}' -c max_connections=200"
            " -c fsync=off -c synchronous_commit=off -c full_page_writes=off"
        )
        subprocess.run(
            [*run_as, pg_ctl, "-D", str(data), "-o", options, "-l", str(log), "-w", "-t", "60", "start"],
            check=True,
            capture_output=True,
        )
        if tcp_port:
            yield f"postgresql+psycopg://postgres@127.0.0.1:{tcp_port}/postgres"
        else:
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
    file_sizes = rng.integers(20_000_000, 21_048_576, (images, 2))
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
            " cloud_fraction, fill_fraction, tile, period_start, properties, tags, size_bytes"
        )
        image_ids = []
        with connection.cursor() as cursor, cursor.copy(f"COPY images ({columns}) FROM STDIN") as copy:
            batch = io.StringIO()
            for index in range(images):
                tile = int(tile_of[index])
                product = PRODUCTS[product_of[index]]
                moment = START + dt.timedelta(seconds=float(acquired[index]))
                end = moment + dt.timedelta(days=16) if product in COMPOSITES else None
                x0, y0, x1, y1 = tile_box(tile)
                image_id = f"{product}_{tile:04d}_{index:07d}"
                image_ids.append(image_id)
                row = (
                    image_id, product, image_id, moment.isoformat(), _copy_text(end and end.isoformat()),
                    geometries[tile], x0, y0, x1, y1, "EPSG:4326", f"{cloud[index]:.4f}", f"{fill[index]:.4f}",
                    f"{tile:04d}", _copy_text(end and moment.date().isoformat()), "{}", "[]",
                    int(file_sizes[index].sum()),
                )  # fmt: skip
                batch.write("\t".join(str(v) for v in row) + "\n")
                if index % 50_000 == 49_999:
                    copy.write(batch.getvalue())
                    batch = io.StringIO()
            copy.write(batch.getvalue())
        with (
            connection.cursor() as cursor,
            cursor.copy("COPY image_files (image_id, band, href, size_bytes) FROM STDIN") as copy,
        ):
            batch = io.StringIO()
            for index, image_id in enumerate(image_ids):
                for band_number, band in enumerate(("B04", "B08")):
                    batch.write(
                        f"{image_id}\t{band}\t/cube-data/{image_id}_{band}.tif\t{file_sizes[index, band_number]}\n"
                    )
                if index % 50_000 == 49_999:
                    copy.write(batch.getvalue())
                    batch = io.StringIO()
            copy.write(batch.getvalue())
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


def _explain(catalog: Catalog, search: Any, what: str) -> None:
    """Print ``EXPLAIN (ANALYZE, BUFFERS)`` of a search's statement."""
    from sqlalchemy import text

    sql = search.sql()
    with catalog.engine.connect() as connection:
        plan = [row[0] for row in connection.execute(text("EXPLAIN (ANALYZE, BUFFERS) " + sql))]
    print(f"# plan of {what}:")
    for line in plan:
        if "Filter:" in line and len(line) > 160:
            line = line[:160] + " ..."
        print("#   " + line)


def _explain_last_statement(catalog: Catalog, call: Callable[[], Any], what: str) -> None:
    """Run ``call`` and print ``EXPLAIN (ANALYZE, BUFFERS)`` of the last statement it sent, with its parameters."""
    from sqlalchemy import event

    sent: list[tuple[str, Any]] = []

    def listener(conn: Any, cursor: Any, statement: str, parameters: Any, *rest: Any) -> None:
        sent.append((statement, parameters))

    event.listen(catalog.engine, "before_cursor_execute", listener)
    try:
        call()
    finally:
        event.remove(catalog.engine, "before_cursor_execute", listener)
    statement, parameters = sent[-1]
    with catalog.engine.connect() as connection:
        plan = [row[0] for row in connection.exec_driver_sql("EXPLAIN (ANALYZE, BUFFERS) " + statement, parameters)]
    print(f"# plan of {what} (its last statement):")
    for line in plan:
        print("#   " + (line if len(line) <= 200 else line[:200] + " ..."))


def run_cases(catalog: Catalog, args: argparse.Namespace) -> None:
    """Time every case on the filled ``catalog``; print the table and, last, ``search_p95_ms``."""
    rng = np.random.default_rng(args.seed)
    postgis = catalog.postgis_schema is not None
    portable = Catalog(catalog.engine, migrate=False, postgis=False)  # same data, no PostGIS
    queries = []
    for _ in range(args.searches):
        tile = int(rng.integers(0, TILE_COLUMNS * TILE_ROWS))
        months = int(rng.integers(1, 7))
        start = START + dt.timedelta(days=int(rng.integers(0, 5 * 365 - months * 31)))
        queries.append((tile, start, start + dt.timedelta(days=30 * months)))

    def typical(on: Catalog, tile: int, start: dt.datetime, end: dt.datetime) -> Any:
        geometry = shapely.geometry.box(*tile_box(tile))
        return (
            Image.search(on)
            .intersects(geometry)
            .filter(p.acquired >= start)
            .filter(p.acquired < end)
            .filter(p.cloud_fraction < 0.2)
            .limit(100)
        )

    def search(tile: int, start: dt.datetime, end: dt.datetime, on: Catalog = catalog) -> list[Image]:
        return list(typical(on, tile, start, end))

    def reference(tile: int, start: dt.datetime, end: dt.datetime) -> list[Any]:
        with catalog.session() as session:
            return search_images(session, bbox=tile_box(tile), start=start, end=end, max_cloud_fraction=0.2, limit=100)

    print(f"# load average before the cases: {_load_average()}")
    search(*queries[0])  # one warm-up round trip (connection, statement caches)
    search(*queries[0], on=portable)
    path = "PostGIS" if postgis else "exact SQL, no PostGIS"
    cases: list[tuple[str, list[float], int]] = []
    search_ms, found, search_peak = _timed([lambda q=q: search(*q) for q in queries])
    cases.append(
        (f"search x{len(search_ms)} [{path}] (tile, 1-6 months, cloud < 0.2, limit 100)", search_ms, search_peak)
    )
    if postgis:
        portable_ms, portable_found, portable_peak = _timed([lambda q=q: search(*q, on=portable) for q in queries])
        cases.append((f"search x{len(portable_ms)} [exact SQL, no PostGIS] same data", portable_ms, portable_peak))
        same = all([i.id for i in a] == [i.id for i in b] for a, b in zip(found, portable_found, strict=True))
        print(f"# PostGIS and exact-SQL searches returned the same images: {same}")
    reference_ms, _, reference_peak = _timed([lambda q=q: reference(*q) for q in queries[: args.reference_searches]])
    cases.append(
        (f"reference search_images x{len(reference_ms)} (bbox only, 0001's B-trees)", reference_ms, reference_peak)
    )

    summary_tiles = [int(t) for t in rng.integers(0, TILE_COLUMNS * TILE_ROWS, args.summaries)]

    def tile_search(tile: int, on: Catalog = catalog) -> Any:
        geometry = shapely.geometry.box(*tile_box(tile))
        return Image.search(on).intersects(geometry).filter(p.cloud_fraction < 0.2)

    summary_ms, summaries, summary_peak = _timed(
        [lambda t=t: tile_search(t).summary_interval("month") for t in summary_tiles]
    )
    cases.append((f"summary_interval(month) of a tile x{len(summary_ms)} [{path}]", summary_ms, summary_peak))
    if postgis:
        times, _, peak = _timed([lambda t=t: tile_search(t, portable).summary_interval("month") for t in summary_tiles])
        cases.append((f"summary_interval(month) of a tile x{len(times)} [exact SQL, no PostGIS]", times, peak))
    repeat = args.scale_summaries
    product_search = Image.search(catalog).filter(p.product_id == PRODUCTS[0])
    product_ms, _, product_peak = _timed([lambda: product_search.summary_interval("month")] * repeat)
    cases.append((f"summary_interval(month) of a whole product x{repeat}", product_ms, product_peak))
    catalog_ms, whole, catalog_peak = _timed([lambda: Image.search(catalog).summary_interval("month")] * repeat)
    cases.append((f"summary_interval(month) of the whole catalog x{repeat}", catalog_ms, catalog_peak))
    total_ms, totals, total_peak = _timed([lambda: Image.search(catalog).summary()] * repeat)
    cases.append((f"summary() of the whole catalog x{repeat}", total_ms, total_peak))
    print(f"# load average after the cases: {_load_average()}")

    counts = [len(result) for result in found]
    rows = []
    for case, times, peak in cases:
        p50, p95, worst = _percentiles(times)
        rows.append((case, f"{p50:.1f}", f"{p95:.1f}", f"{worst:.1f}", format_bytes(peak)))
    print_table(rows, ("case", "p50_ms", "p95_ms", "max_ms", "peak_rss"))
    months = len(summaries[0]) if summaries else 0
    print(
        f"# results per search: median {int(np.median(counts))}, max {max(counts)};"
        f" tile summaries: {months} months each; catalog summary: {sum(s.count for s in whole[0])} images,"
        f" {totals[0].bytes / 1e12:.2f} TB"
    )
    print(f"# reference/search p95 ratio: {_percentiles(reference_ms)[1] / _percentiles(search_ms)[1]:.1f}")
    if args.explain:
        heaviest = queries[int(np.argmax(search_ms))]
        _explain(catalog, typical(catalog, *heaviest), f"the slowest search [{path}]")
        if postgis:
            _explain(portable, typical(portable, *heaviest), "the same search [exact SQL, no PostGIS]")
        for what, search_ in (("a whole product", product_search), ("the whole catalog", Image.search(catalog))):
            _explain_last_statement(
                catalog, lambda s=search_: s.summary_interval("month"), f"summary_interval(month) of {what}"
            )
    print(f"summary_p95_ms: {_percentiles(summary_ms)[1]:.1f}")
    print(f"search_p95_ms: {_percentiles(search_ms)[1]:.1f}")


def _load_average() -> str:
    one, five, fifteen = os.getloadavg()
    return f"{one:.2f} {five:.2f} {fifteen:.2f} (1, 5, 15 min; {os.cpu_count()} cores)"


def main(argv: list[str] | None = None) -> int:
    """Start PostgreSQL, load the images, run :func:`run_cases`; return 0."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=1_000_000)
    parser.add_argument("--searches", type=int, default=200)
    parser.add_argument("--reference-searches", type=int, default=40)
    parser.add_argument("--summaries", type=int, default=20)
    parser.add_argument("--scale-summaries", type=int, default=5)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--no-postgis", action="store_true", help="migrate without PostGIS even if the server has it")
    parser.add_argument(
        "--explain", action="store_true", help="print EXPLAIN ANALYZE of one search and the scale summaries"
    )
    args = parser.parse_args(argv)

    print(f"# catalog_search: {machine_summary()}")
    print(f"# peak RSS: {peak_rss_method()}")
    with postgresql_server() as url, Catalog(url, postgis=not args.no_postgis) as catalog:
        schema = catalog.postgis_schema
        print(
            "# footprints: "
            f"{'PostGIS in schema ' + repr(schema) if schema else 'no PostGIS (bbox index + exact SQL test)'}"
        )
        seconds = load(url, args.images)
        print(f"# loaded {args.images} images, {2 * args.images} files into PostgreSQL in {seconds:.0f} s")
        run_cases(catalog, args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
