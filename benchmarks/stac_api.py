"""The STAC API at scale: typical searches over HTTP from 8 concurrent clients, beside the same searches in process.

Run::

    .venv/bin/python benchmarks/stac_api.py [--images 1000000] [--searches 200] [--clients 8]

It starts a throw-away PostgreSQL server and loads ``--images`` images with the loader of
``benchmarks/catalog_search.py`` (1,000 tiles over Brazil, five years, five products, two files per
image), then starts ``cube-assets serve`` over that catalog in its own process (uvicorn, one
worker) and times:

* ``--searches`` typical STAC searches, ``POST /search`` with ``intersects`` a tile's polygon,
  ``datetime`` a 1 to 6 month interval, ``filter`` ``eo:cloud_cover < 20`` (CQL2 text) and
  ``limit`` 100, sent by ``--clients`` concurrent clients (one ``httpx`` client each); the
  latency is each request's round trip (JSON parsed); the same from one client, to tell the
  cost of a request from the queueing of eight on one server process;
* the same searches in process: each request body parsed the way the API parses it
  (``parse_search``) and run as the catalog search it becomes (``catalog_search(...).limit(101)``,
  images and files built), one after another;
* where ``pypgstac`` and ``stac-fastapi-pgstac`` are installed and ``--pgstac`` is given, the
  anchor: the same Items loaded into pgstac on the same server and the same searches against
  stac-fastapi-pgstac (not run by default; see the output when absent).

It prints a table (p50, p95, max in milliseconds, peak RSS of this process), the load average,
then ``api_overhead_p95`` (p95 over HTTP ÷ p95 in process; target ≤ 1.3) and, last,
``stac_search_p95_ms`` (target ≤ 60).
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import shapely.geometry

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from _common import machine_summary, measure, peak_rss_method, print_table
from catalog_search import END, START, TILE_COLUMNS, TILE_ROWS, load, postgresql_server, tile_box

from cube_assets.client import Catalog
from cube_assets.service.search_request import catalog_search, parse_search

REPO = Path(__file__).resolve().parents[1]


def _free_port() -> int:
    with contextlib.closing(socket.socket()) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@contextlib.contextmanager
def served(url: str) -> Iterator[str]:
    """Run ``cube-assets serve --catalog url`` in its own process; yield its root URL; stop it on exit."""
    port = _free_port()
    environment = {**os.environ, "PYTHONPATH": str(REPO), "CUBE_ENV": "dev"}
    command = [sys.executable, "-m", "cube_assets.cli", "serve", "--port", str(port), "--catalog", url]
    process = subprocess.Popen(command, env=environment, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    root = f"http://127.0.0.1:{port}/"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                httpx.get(f"{root}_mgmt/ping", timeout=5).raise_for_status()
                break
            except httpx.TransportError:
                if process.poll() is not None or time.monotonic() > deadline:
                    output = process.stderr.read() if process.stderr else ""
                    raise SystemExit(f"stac_api: the server did not start: {output}") from None
                time.sleep(0.2)
        yield root
    finally:
        process.terminate()
        process.wait(timeout=30)


def search_bodies(count: int, seed: int) -> list[dict[str, Any]]:
    """``count`` typical search bodies: a tile's polygon, 1 to 6 months, cloud cover < 20 %, 100 items."""
    rng = np.random.default_rng(seed)
    bodies = []
    for _ in range(count):
        tile = int(rng.integers(0, TILE_COLUMNS * TILE_ROWS))
        months = int(rng.integers(1, 7))
        start = START + dt.timedelta(days=int(rng.integers(0, 5 * 365 - months * 31)))
        end = min(start + dt.timedelta(days=30 * months), END)
        bodies.append(
            {
                "intersects": shapely.geometry.mapping(shapely.geometry.box(*tile_box(tile))),
                "datetime": f"{start:%Y-%m-%dT%H:%M:%SZ}/{end:%Y-%m-%dT%H:%M:%SZ}",
                "filter": "eo:cloud_cover < 20",
                "filter-lang": "cql2-text",
                "limit": 100,
            }
        )
    return bodies


def in_process(catalog: Catalog, bodies: list[dict[str, Any]]) -> tuple[list[float], int]:
    """Milliseconds of each body's catalog search, run in this process one after another; total images."""
    times, found = [], 0
    for body in bodies:
        started = time.perf_counter()
        search = parse_search(body, default_limit=10, max_limit=10_000)
        found += len(list(catalog_search(catalog, search).limit(search.limit + 1))[: search.limit])
        times.append((time.perf_counter() - started) * 1000)
    return times, found


def over_http(root: str, bodies: list[dict[str, Any]], clients: int) -> tuple[list[float], int]:
    """Milliseconds of each body's ``POST /search`` from ``clients`` concurrent clients; total features."""
    local = threading.local()
    lock = threading.Lock()
    times: list[float] = []
    found = [0]

    def one(body: dict[str, Any]) -> None:
        if not hasattr(local, "client"):
            local.client = httpx.Client(base_url=root, timeout=120)
        started = time.perf_counter()
        response = local.client.post("search", json=body)
        response.raise_for_status()
        features = len(response.json()["features"])
        elapsed = (time.perf_counter() - started) * 1000
        with lock:
            times.append(elapsed)
            found[0] += features

    with ThreadPoolExecutor(clients) as pool:
        list(pool.map(one, bodies))
    return times, found[0]


def _percentiles(milliseconds: list[float]) -> tuple[float, float, float]:
    values = np.asarray(milliseconds)
    return float(np.percentile(values, 50)), float(np.percentile(values, 95)), float(values.max())


def _load_average() -> str:
    one, five, fifteen = os.getloadavg()
    return f"{one:.2f} {five:.2f} {fifteen:.2f} ({os.cpu_count()} CPUs)"


def _pgstac_available() -> str | None:
    try:
        import pypgstac  # noqa: F401 - imported only to learn whether it is installed
        import stac_fastapi.pgstac  # noqa: F401 - imported only to learn whether it is installed
    except ImportError as exc:
        return f"not installed ({exc})"
    return None


def main(argv: list[str] | None = None) -> int:
    """Start PostgreSQL, load the images, serve them, time the searches; return 0."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=1_000_000)
    parser.add_argument("--searches", type=int, default=200)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--pgstac", action="store_true", help="also time stac-fastapi-pgstac on the same items")
    args = parser.parse_args(argv)

    print(f"# stac_api: {machine_summary()}")
    print(f"# peak RSS: {peak_rss_method()}")
    with postgresql_server() as url, Catalog(url) as catalog:
        seconds = load(url, args.images)
        print(f"# loaded {args.images} images into PostgreSQL in {seconds:.0f} s")
        bodies = search_bodies(args.searches, args.seed)
        in_process(catalog, bodies[:3])  # warm-up: connection and statement caches
        print(f"# load average before the cases: {_load_average()}")
        local = measure(lambda: in_process(catalog, bodies))
        local_ms, local_found = local.result
        with served(url) as root:
            over_http(root, bodies[: args.clients], args.clients)  # warm-up
            single = measure(lambda: over_http(root, bodies, 1))
            remote = measure(lambda: over_http(root, bodies, args.clients))
        remote_ms, remote_found = remote.result
        single_ms, single_found = single.result
        print(f"# load average after the cases: {_load_average()}")
    rows = []
    for name, times, found, peak in (
        (f"in process: catalog_search x{len(local_ms)} (1 client)", local_ms, local_found, local.peak_rss),
        (f"HTTP POST /search x{len(single_ms)} (1 client)", single_ms, single_found, single.peak_rss),
        (f"HTTP POST /search x{len(remote_ms)} ({args.clients} clients)", remote_ms, remote_found, remote.peak_rss),
    ):
        p50, p95, worst = _percentiles(times)
        rows.append((name, f"{p50:.1f}", f"{p95:.1f}", f"{worst:.1f}", found, f"{peak / 2**20:.0f} MiB"))
    if args.pgstac:
        reason = _pgstac_available() or "loading into pgstac is not implemented in this script yet"
        rows.append(("stac-fastapi-pgstac (anchor)", "-", "-", "-", "-", reason))
    else:
        rows.append(("stac-fastapi-pgstac (anchor)", "-", "-", "-", "-", "not run (--pgstac)"))
    print_table(rows, ["case", "p50_ms", "p95_ms", "max_ms", "items", "peak_rss"])
    if local_found != remote_found:
        print(f"# WARNING: {local_found} images in process, {remote_found} features over HTTP")
    overhead = _percentiles(remote_ms)[1] / _percentiles(local_ms)[1]
    print(f"api_overhead_p95: {overhead:.2f}")
    print(f"stac_search_p95_ms: {_percentiles(remote_ms)[1]:.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
