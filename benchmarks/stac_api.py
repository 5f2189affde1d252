"""The STAC API at scale: typical searches over HTTP from 8 concurrent clients, beside the same searches in process.

Run::

    .venv/bin/python benchmarks/stac_api.py [--images 1000000] [--searches 200] [--clients 8] [--workers 2] [--pgstac]

It starts a throw-away PostgreSQL server (loopback TCP) and loads ``--images`` images with the
loader of ``benchmarks/catalog_search.py`` (1,000 tiles over Brazil, five years, five products,
two files per image), then times ``--searches`` typical STAC searches: ``POST /search`` with
``intersects`` a tile's polygon, ``datetime`` a 1 to 6 month interval, ``filter``
``eo:cloud_cover < 20`` (CQL2 JSON, what every server takes in a POST) and ``limit`` 100. Cases:

* in process: each body parsed the way the API parses it (``parse_search``) and run as the
  catalog search it becomes (``catalog_search(...).limit(101)``, images and files built), from
  one client and from ``--clients`` threads at once over the same ``Catalog``;
* over HTTP: ``cube-assets serve`` in its own process, one worker, from one client and from
  ``--clients`` concurrent clients (one ``httpx`` client each, responses uncompressed, JSON
  parsed); then with ``--workers`` processes (``serve --workers``) from ``--clients`` clients;
* the HTTP floor: the page of median size among these searches, pre-encoded, served by a bare
  ASGI app under uvicorn (``benchmarks/_http_floor.py``: no database, no routing, no encoding)
  with one worker to the same ``--clients`` clients: what a page of that size costs the clients
  and the network stack of this machine alone, the lowest p95 any server could reach here;
* with ``--pgstac``, where ``pypgstac`` and ``stac-fastapi-pgstac`` are installed, the anchor:
  the same Items (built by this project's code) loaded into pgstac on the same server, and the
  same searches against stac-fastapi-pgstac with ``--workers`` processes from ``--clients``
  clients.

It prints a table (p50, p95, max in milliseconds, items found, CPU milliseconds per search of
the processes that searched: this one in process, the server's processes over HTTP, a figure a
shared machine's load sways less than the latencies; the CPU milliseconds per search of the
clients, this process; those of the PostgreSQL server, its ended backends included; peak RSS of
this process), the load average, ``http_floor_p95_ms``,
``pgstac_search_p95_ms`` when the anchor ran, then ``api_overhead_p95`` (p95 over HTTP
from ``--clients`` clients to one worker ÷ p95 in process from as many threads: the cost of the
API at the same concurrency, one process each; target ≤ 1.3) and, last, ``stac_search_p95_ms``
(p95 over HTTP from ``--clients`` clients to ``--workers`` workers; target ≤ 60).
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import psutil
import shapely.geometry

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from _common import machine_summary, measure, peak_rss_method, print_table
from _pgstac_anchor import load_pgstac, pgstac_command, pgstac_missing
from catalog_search import END, START, TILE_COLUMNS, TILE_ROWS, load, postgresql_server, tile_box

from cube_assets.client import Catalog
from cube_assets.service.search_request import catalog_search, parse_search

REPO = Path(__file__).resolve().parents[1]


def _free_port() -> int:
    with contextlib.closing(socket.socket()) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class Server(str):
    """A served root URL (``str``) that knows its process, to read the CPU time the server used."""

    process: subprocess.Popen[str]

    def cpu_seconds(self) -> float:
        """Return the CPU seconds (user and system) of the server's process and its worker processes so far."""
        root = psutil.Process(self.process.pid)
        total = 0.0
        for process in (root, *root.children(recursive=True)):
            with contextlib.suppress(psutil.Error):
                times = process.cpu_times()
                total += times.user + times.system
        return total


@contextlib.contextmanager
def served(command: list[str], environment: dict[str, str], port: int) -> Iterator[Server]:
    """Run a server ``command`` listening on ``port``; yield its root URL once it answers; stop it on exit."""
    process = subprocess.Popen(command, env=environment, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    root = Server(f"http://127.0.0.1:{port}/")
    root.process = process
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                httpx.get(f"{root}_mgmt/ping", timeout=5).raise_for_status()
                break
            except httpx.TransportError:
                if process.poll() is not None or time.monotonic() > deadline:
                    output = process.stderr.read() if process.stderr else ""
                    raise SystemExit(f"stac_api: {command[2:5]} did not start: {output}") from None
                time.sleep(0.2)
        yield root
    finally:
        process.terminate()
        process.wait(timeout=30)


def ours(url: str, workers: int) -> tuple[list[str], dict[str, str], int]:
    """The command, environment and port of ``cube-assets serve`` over the catalog at ``url``."""
    port = _free_port()
    environment = {**os.environ, "PYTHONPATH": str(REPO), "CUBE_ENV": "dev"}
    command = [sys.executable, "-m", "cube_assets.cli", "serve", "--port", str(port), "--catalog", url]
    return [*command, "--workers", str(workers)], environment, port


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
                "filter": {"op": "<", "args": [{"property": "eo:cloud_cover"}, 20]},
                "filter-lang": "cql2-json",
                "limit": 100,
            }
        )
    return bodies


def _run_concurrently(
    one: Callable[[dict[str, Any]], int],
    bodies: list[dict[str, Any]],
    clients: int,
    prepare: Callable[[], None] | None = None,
) -> tuple[list[float], int]:
    """Milliseconds of ``one(body)`` for each body, from ``clients`` threads; the total of what they returned.

    ``prepare`` runs before each call, outside its time (a thread's client is made there).
    """
    lock = threading.Lock()
    times: list[float] = []
    found = [0]

    def timed(body: dict[str, Any]) -> None:
        if prepare is not None:
            prepare()
        started = time.perf_counter()
        count = one(body)
        elapsed = (time.perf_counter() - started) * 1000
        with lock:
            times.append(elapsed)
            found[0] += count

    with ThreadPoolExecutor(clients) as pool:
        list(pool.map(timed, bodies))
    return times, found[0]


def in_process(
    catalog: Catalog, bodies: list[dict[str, Any]], clients: int = 1
) -> tuple[list[float], int, float, float]:
    """Milliseconds of each body's catalog search in this process, from ``clients`` threads; images; CPU ms each.

    The CPU figure is given twice (server and clients): one process both searched and asked.
    """

    def one(body: dict[str, Any]) -> int:
        search = parse_search(body, default_limit=10, max_limit=10_000)
        return len(list(catalog_search(catalog, search).limit(search.limit + 1))[: search.limit])

    started = time.process_time()
    times, found = _run_concurrently(one, bodies, clients)
    cpu = (time.process_time() - started) * 1000 / len(bodies)
    return times, found, cpu, cpu


def over_http(root: str, bodies: list[dict[str, Any]], clients: int) -> tuple[list[float], int, float, float]:
    """Milliseconds of each body's ``POST /search`` from ``clients`` concurrent clients; total features.

    Also the server's CPU milliseconds per search (NaN when ``root`` is a plain URL) and the
    clients' (this process's).
    """
    cpu = root.cpu_seconds if isinstance(root, Server) else lambda: float("nan")
    started, client_started = cpu(), time.process_time()
    times, found = _over_http(root, bodies, clients)
    client = (time.process_time() - client_started) * 1000 / len(bodies)
    return times, found, (cpu() - started) * 1000 / len(bodies), client


def postgres_cpu_seconds(port: int) -> float:
    """CPU seconds (user and system) of the PostgreSQL server listening on ``port`` so far.

    The postmaster's own time, the time of its ended children (backends it has reaped) and that
    of its live ones; 0.0 when no such server runs.
    """
    for process in psutil.process_iter(["name", "cmdline"]):
        command = process.info["cmdline"] or []
        if process.info["name"] != "postgres" or "-p" not in command[:-1]:
            continue
        if command[command.index("-p") + 1] != str(port):
            continue
        with contextlib.suppress(psutil.Error):
            times = process.cpu_times()
            total = times.user + times.system + times.children_user + times.children_system
            for child in process.children():
                with contextlib.suppress(psutil.Error):
                    child_times = child.cpu_times()
                    total += child_times.user + child_times.system
            return total
    return 0.0


def with_postgres_cpu(port: int, searches: int, run: Callable[[], tuple[Any, ...]]) -> Callable[[], tuple[Any, ...]]:
    """``run`` with one more result: the PostgreSQL server's CPU milliseconds per search meanwhile."""

    def case() -> tuple[Any, ...]:
        before = postgres_cpu_seconds(port)
        result = run()
        return (*result, (postgres_cpu_seconds(port) - before) * 1000 / searches)

    return case


def median_page(root: str, bodies: list[dict[str, Any]], path: Path) -> int:
    """Write to ``path`` the response of median size among ``POST /search`` of ``bodies``; return its Item count."""
    with httpx.Client(base_url=root, timeout=120, headers={"Accept-Encoding": "identity"}) as client:
        pages = sorted((client.post("search", json=body).raise_for_status().content for body in bodies), key=len)
    page = pages[len(pages) // 2]
    path.write_bytes(page)
    return len(json.loads(page)["features"])


def http_floor(page: Path) -> tuple[list[str], dict[str, str], int]:
    """The command, environment and port of the bare ASGI app serving ``page`` (``_http_floor.py``)."""
    port = _free_port()
    environment = {**os.environ, "HTTP_FLOOR_PAGE": str(page)}
    command = [sys.executable, "-m", "uvicorn", "_http_floor:app", "--app-dir", str(Path(__file__).parent)]
    return [*command, "--port", str(port), "--no-access-log", "--log-level", "warning"], environment, port


def _over_http(root: str, bodies: list[dict[str, Any]], clients: int) -> tuple[list[float], int]:
    local = threading.local()

    def prepare() -> None:
        if not hasattr(local, "client"):
            local.client = httpx.Client(base_url=root, timeout=120, headers={"Accept-Encoding": "identity"})

    def one(body: dict[str, Any]) -> int:
        response = local.client.post("search", json=body)
        if response.status_code != 200:
            raise SystemExit(f"stac_api: {root}search answered {response.status_code}: {response.text[:500]}")
        return len(response.json()["features"])

    return _run_concurrently(one, bodies, clients, prepare)


def _percentiles(milliseconds: list[float]) -> tuple[float, float, float]:
    values = np.asarray(milliseconds)
    return float(np.percentile(values, 50)), float(np.percentile(values, 95)), float(values.max())


def _load_average() -> str:
    one, five, fifteen = os.getloadavg()
    return f"{one:.2f} {five:.2f} {fifteen:.2f} ({os.cpu_count()} CPUs)"


def main(argv: list[str] | None = None) -> int:
    """Start PostgreSQL, load the images, serve them, time the searches; return 0."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=1_000_000)
    parser.add_argument("--searches", type=int, default=200)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="server processes (default: CPUs)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--pgstac", action="store_true", help="also time stac-fastapi-pgstac on the same items")
    args = parser.parse_args(argv)

    print(f"# stac_api: {machine_summary()}")
    print(f"# peak RSS: {peak_rss_method()}")
    cases: list[tuple[str, Any]] = []
    anchor_note = "not run (--pgstac)"
    floor_page = Path(tempfile.mkdtemp(prefix="stac-api-floor-")) / "page.json"
    pg_port = _free_port()
    with postgresql_server(tcp_port=pg_port) as url, Catalog(url) as catalog:
        seconds = load(url, args.images)
        print(f"# loaded {args.images} images into PostgreSQL in {seconds:.0f} s")
        bodies = search_bodies(args.searches, args.seed)
        anchor = args.pgstac and pgstac_missing() is None
        if args.pgstac and not anchor:
            anchor_note = str(pgstac_missing())
        if anchor:
            seconds, loaded = load_pgstac(url, catalog)
            print(f"# loaded the same {loaded} Items into pgstac in {seconds:.0f} s")
        in_process(catalog, bodies[:3])  # warm-up: connection and statement caches
        print(f"# load average before the cases: {_load_average()}")
        cases.append(
            (
                "in process (1 client)",
                measure(with_postgres_cpu(pg_port, len(bodies), lambda: in_process(catalog, bodies))),
            )
        )
        cases.append(
            (
                f"in process ({args.clients} threads)",
                measure(with_postgres_cpu(pg_port, len(bodies), lambda: in_process(catalog, bodies, args.clients))),
            )
        )
        with served(*ours(url, 1)) as root:
            floor_items = median_page(root, bodies[:50], floor_page)
            over_http(root, bodies[: args.clients], args.clients)  # warm-up
            cases.append(
                (
                    "HTTP, 1 worker (1 client)",
                    measure(with_postgres_cpu(pg_port, len(bodies), lambda: over_http(root, bodies, 1))),
                )
            )
            one_worker = measure(with_postgres_cpu(pg_port, len(bodies), lambda: over_http(root, bodies, args.clients)))
            cases.append((f"HTTP, 1 worker ({args.clients} clients)", one_worker))
        workers = one_worker
        if args.workers > 1:
            with served(*ours(url, args.workers)) as root:
                over_http(root, bodies[: args.clients * 2], args.clients)  # warm-up: every worker
                workers = measure(
                    with_postgres_cpu(pg_port, len(bodies), lambda: over_http(root, bodies, args.clients))
                )
            cases.append((f"HTTP, {args.workers} workers ({args.clients} clients)", workers))
        with served(*http_floor(floor_page)) as root:
            over_http(root, bodies[: args.clients], args.clients)  # warm-up
            floor = measure(with_postgres_cpu(pg_port, len(bodies), lambda: over_http(root, bodies, args.clients)))
        cases.append((f"HTTP floor: 1 page of {floor_items} Items ({args.clients} clients)", floor))
        if anchor:
            port = _free_port()
            command, environment = pgstac_command(url, port, args.workers)
            with served(command, environment, port) as root:
                over_http(root, bodies[: args.clients * 2], args.clients)  # warm-up
                pgstac = measure(with_postgres_cpu(pg_port, len(bodies), lambda: over_http(root, bodies, args.clients)))
            cases.append((f"stac-fastapi-pgstac, {args.workers} workers ({args.clients} clients)", pgstac))
        print(f"# load average after the cases: {_load_average()}")
    rows = []
    for name, measured in cases:
        times, found, cpu, client, postgres = measured.result
        p50, p95, worst = _percentiles(times)
        rss = f"{measured.peak_rss / 2**20:.0f} MiB"
        cpus = (f"{cpu:.1f}", f"{client:.1f}", f"{postgres:.1f}")
        rows.append((name, f"{p50:.1f}", f"{p95:.1f}", f"{worst:.1f}", found, *cpus, rss))
    if not anchor:
        rows.append(("stac-fastapi-pgstac (anchor)", "-", "-", "-", "-", "-", "-", "-", anchor_note))
    columns = ["case", "p50_ms", "p95_ms", "max_ms", "items", "cpu_ms", "client_cpu_ms", "postgres_cpu_ms", "peak_rss"]
    print_table(rows, columns)
    shutil.rmtree(floor_page.parent, ignore_errors=True)
    counts = {name: measured.result[1] for name, measured in cases if not name.startswith("HTTP floor")}
    if len(set(counts.values())) > 1:
        print(f"# NOTE: the cases found different numbers of items: {counts}")
    threads = cases[1][1].result[0]
    print(f"http_floor_p95_ms: {_percentiles(floor.result[0])[1]:.1f}")
    if anchor:
        print(f"pgstac_search_p95_ms: {_percentiles(pgstac.result[0])[1]:.1f}")
    print(f"api_overhead_p95: {_percentiles(one_worker.result[0])[1] / _percentiles(threads)[1]:.2f}")
    print(f"stac_search_p95_ms: {_percentiles(workers.result[0])[1]:.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
