"""Map tiles through the HTTP app against rio-tiler directly, and pixel time series against odc-stac + xarray.

Run::

    .venv/bin/python benchmarks/tiles.py [--tiles 200] [--tile-size 2048] [--periods 23] [--merges 10]

Both cases use the synthetic cube of ``cube_assets_tests/service/synthetic_cube.py`` (COGs of
the same bands, dtypes, blocks and overviews the graph publishes, catalogued in SQLite), written
to a temporary folder:

* **tiles** — one ``--tile-size`` px composite tile. ``--tiles`` random 256 px Web Mercator tiles
  at the zooms that cover it (from the zoom where the whole tile fits in one map tile to the
  zoom of its own resolution), true colour with the default stretch, requested one after the
  other over HTTP from the maps app served by uvicorn on a loopback port (``httpx``), against
  rio-tiler reading the same three COGs directly in the same process (``Reader.tile`` per band,
  stretched and encoded to PNG the same way). ``tile_overhead_p95`` is the ratio of the p95
  latencies (target ≤ 1.2); tiles per second is what the HTTP client got, one request at a time.
* **time series** — a ``--series-tile-size`` px tile with ``--periods`` periods of ``--merges``
  merges each. The series of one point (B04, B08 and the SCL flags of every merge) at
  ``--points`` random points, through :func:`cube_assets.client.timeseries.point_timeseries`
  (one block read per COG, in parallel), against what users do today: ``odc.stac.load`` of the
  merges' STAC Items with the same bands over the point's pixel, then ``xarray`` selecting the
  pixel. The items come from the static STAC export of the same catalog (``cube-assets catalog
  export-stac``, read with pystac), the same Items the API serves, so neither side pays for a
  catalog query. ``timeseries_ratio_vs_odc_stac`` is odc-stac's p95 over ours (target ≥ 5); our
  p95 target is ≤ 150 ms. Our files stay open between series (the process's dataset pool, as in
  a running server): the first series, which opens every file, is printed on its own line and
  left out of the percentiles; odc-stac opens every file on every load.

It prints the machine's load, a table per case, and ends with ``timeseries_ratio_vs_odc_stac: X``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import socket
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from _common import machine_summary, print_table


def _p(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values) * 1000.0, q))


def _serve(catalog_url: str):
    import uvicorn

    from cube_assets_tests.service.maps_app import maps_app

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(maps_app(catalog_url), host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.05)
    return server, thread, f"http://127.0.0.1:{port}"


def bench_tiles(root: Path, count: int, tile_size: int, seed: int) -> dict[str, float]:
    import httpx
    import morecantile
    from rio_tiler.io import Reader
    from rio_tiler.models import ImageData

    from cube_assets_tests.service.synthetic_cube import CUBE, build_synthetic_cube

    cube = build_synthetic_cube(root / "tiles", tiles=1, periods=1, merges_per_period=2, tile_size=tile_size)
    item = f"{CUBE}_000000_{cube.period_starts[0]:%Y%m%d}_LCF"
    folder = cube.root / CUBE / "000000" / cube.period_starts[0].isoformat()
    paths = [str(folder / f"{item}_{band}.tif") for band in ("B04", "B03", "B02")]
    west, north = cube.lonlat(0, 0, 0)
    east, south = cube.lonlat(0, tile_size - 1, tile_size - 1)
    tms = morecantile.tms.get("WebMercatorQuad")
    resolution_zoom = tms.zoom_for_res(10.0)
    first_zoom = max(0, resolution_zoom - int(np.ceil(np.log2(tile_size / 256))))
    zooms = list(range(first_zoom, resolution_zoom + 1))
    candidates = list(tms.tiles(west, south, east, north, zooms))
    rng = np.random.default_rng(seed)
    chosen = [candidates[i] for i in rng.integers(0, len(candidates), count)]

    server, thread, base = _serve(cube.catalog_url)
    http_times: list[float] = []
    direct_times: list[float] = []
    try:
        with httpx.Client(base_url=base, timeout=60) as client:
            client.get(f"/maps/images/{item}/tiles/{chosen[0].z}/{chosen[0].x}/{chosen[0].y}.png").raise_for_status()
            started = time.perf_counter()
            for tile in chosen:
                t0 = time.perf_counter()
                response = client.get(f"/maps/images/{item}/tiles/{tile.z}/{tile.x}/{tile.y}.png")
                response.raise_for_status()
                http_times.append(time.perf_counter() - t0)
            http_total = time.perf_counter() - started
        for tile in chosen:
            t0 = time.perf_counter()
            parts = []
            for path in paths:
                with Reader(path) as src:
                    parts.append(src.tile(tile.x, tile.y, tile.z, tilesize=256, indexes=1))
            data = ImageData.create_from_list(parts)
            data.rescale(in_range=[(0, 4000)] * 3).render(img_format="PNG")
            direct_times.append(time.perf_counter() - t0)
    finally:
        server.should_exit = True
        thread.join(timeout=10)
    overhead = _p(http_times, 95) / _p(direct_times, 95)
    rows = [
        ("http app", f"{_p(http_times, 50):.1f}", f"{_p(http_times, 95):.1f}", f"{count / http_total:.1f}"),
        (
            "rio-tiler direct",
            f"{_p(direct_times, 50):.1f}",
            f"{_p(direct_times, 95):.1f}",
            f"{count / sum(direct_times):.1f}",
        ),
    ]
    print(f"\ntiles: {count} random 256 px tiles of a {tile_size} px composite at zooms {zooms[0]}-{zooms[-1]}")
    print_table(rows, ("case", "p50_ms", "p95_ms", "tiles_per_s"))
    return {"tile_overhead_p95": overhead, "tiles_per_second": count / http_total}


def bench_timeseries(root: Path, periods: int, merges: int, tile_size: int, points: int, seed: int) -> dict[str, float]:
    import odc.stac
    import pystac

    from cube_assets.client import Catalog
    from cube_assets.client.stac_export import export_static_catalog
    from cube_assets.client.timeseries import band_scale, observations_of, point_timeseries
    from cube_assets.service.map_catalog import MapCatalog
    from cube_assets_tests.service.synthetic_cube import CUBE, NODATA, build_synthetic_cube

    started = time.perf_counter()
    cube = build_synthetic_cube(
        root / "series", tiles=1, periods=periods, merges_per_period=merges, tile_size=tile_size
    )
    print(f"\n(time series cube written in {time.perf_counter() - started:.0f} s)")
    catalog = MapCatalog(cube.catalog_url)
    images = catalog.images(f"{CUBE}-merge")
    bands = catalog.bands(f"{CUBE}-merge")
    scales = {name: band_scale(band) for name, band in bands.items()}
    observations = observations_of(images)
    client_catalog = Catalog(cube.catalog_url)
    export_static_catalog(client_catalog, root / "stac", product_ids=[f"{CUBE}-merge"], validate=False)
    client_catalog.close()
    items = [pystac.Item.from_file(str(path)) for path in sorted((root / "stac" / f"{CUBE}-merge").glob("*/*.json"))]
    rng = np.random.default_rng(seed)
    pixels = rng.integers(0, tile_size, (points, 2))
    ours: list[float] = []
    reference: list[float] = []
    t0 = time.perf_counter()
    point_timeseries(observations, ["B04", "B08"], *cube.lonlat(0, 0, 0), scales)
    first_series_ms = (time.perf_counter() - t0) * 1000.0
    for row, col in pixels:
        lon, lat = cube.lonlat(0, int(row), int(col))
        t0 = time.perf_counter()
        series = point_timeseries(observations, ["B04", "B08"], lon, lat, scales)
        ours.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        eps = 1e-6
        loaded = odc.stac.load(items, bands=["B04", "B08", "SCL"], bbox=(lon - eps, lat - eps, lon + eps, lat + eps))
        values = loaded.sel(x=loaded.x[0], y=loaded.y[0])[["B04", "B08", "SCL"]].to_dataframe()
        reference.append(time.perf_counter() - t0)
        if len(series) != len(images) or len(values) != len(images):
            raise RuntimeError(f"expected {len(images)} observations, got {len(series)} and {len(values)}")
        ours_b04 = [NODATA if v.raw["B04"] is None else v.raw["B04"] for v in series]  # None: nodata
        if ours_b04 != [float(v) for v in values["B04"]]:
            raise RuntimeError(f"the two extractions disagree on B04 at {lon}, {lat}: {ours_b04} {list(values['B04'])}")
    catalog.close()
    ratio = _p(reference, 95) / _p(ours, 95)
    rows = [
        ("point_timeseries, first (opens files)", f"{first_series_ms:.1f}", f"{first_series_ms:.1f}"),
        ("point_timeseries, files open", f"{_p(ours, 50):.1f}", f"{_p(ours, 95):.1f}"),
        ("odc-stac + xarray", f"{_p(reference, 50):.1f}", f"{_p(reference, 95):.1f}"),
    ]
    print(
        f"time series: one point over {periods} periods x {merges} merges "
        f"({len(images)} images, B04 B08 SCL), {points} points"
    )
    print_table(rows, ("case", "p50_ms", "p95_ms"))
    return {"timeseries_p95_ms": _p(ours, 95), "timeseries_ratio_vs_odc_stac": ratio}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tiles", type=int, default=200)
    parser.add_argument("--tile-size", type=int, default=2048)
    parser.add_argument("--periods", type=int, default=23)
    parser.add_argument("--merges", type=int, default=10)
    parser.add_argument("--series-tile-size", type=int, default=512)
    parser.add_argument("--points", type=int, default=20)
    parser.add_argument("--seed", type=int, default=14)
    parser.add_argument("--cases", default="tiles,series", help="comma-separated: tiles, series")
    args = parser.parse_args()
    print(f"machine before: {machine_summary()}")
    with tempfile.TemporaryDirectory(prefix="bench-tiles-") as folder:
        root = Path(folder)
        cases = set(args.cases.split(","))
        tiles = bench_tiles(root, args.tiles, args.tile_size, args.seed) if "tiles" in cases else None
        series = (
            bench_timeseries(root, args.periods, args.merges, args.series_tile_size, args.points, args.seed)
            if "series" in cases
            else None
        )
    print(f"\nmachine after: {machine_summary()}  ({dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC)")
    if tiles is not None:
        print(f"tiles_per_second: {tiles['tiles_per_second']:.1f}")
        print(f"tile_overhead_p95: {tiles['tile_overhead_p95']:.2f}")
    if series is not None:
        print(f"timeseries_p95_ms: {series['timeseries_p95_ms']:.1f}")
        print(f"timeseries_ratio_vs_odc_stac: {series['timeseries_ratio_vs_odc_stac']:.1f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
