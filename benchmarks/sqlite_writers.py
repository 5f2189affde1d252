"""Concurrent writers of the embedded SQLite catalog: upserts per second, and that none fails.

    .venv/bin/python benchmarks/sqlite_writers.py                 # 2 and 8 processes x 100 upserts, cores busy
    .venv/bin/python benchmarks/sqlite_writers.py --upserts 200 --no-burn

Each case starts N processes on a new catalog file, released together, each upserting its own
images (neighbours share half of theirs) one transaction at a time, with a read before each
write; they wait for each other through ``BEGIN IMMEDIATE`` and the busy timeout
(``cube_assets/catalog/database.py``). The reference is the same upserts done by one process
alone, one after the other: what the concurrent writers cost beyond the work itself (a ratio
near 1 means waiting for the lock wastes nothing). Every case checks that no writer failed and
that the catalog holds each image once. With ``--burn`` (the default) a CPU burner per core
runs throughout, as on a loaded machine. Peak RSS is the largest of the writer processes.
"""

from __future__ import annotations

import argparse
import datetime as dt
import multiprocessing
import queue
import resource
import sys
import tempfile
import time
import traceback
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import shapely.geometry
from sqlalchemy import func, select

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from _common import CaseResult, machine_summary, print_results

from cube_assets.catalog import database
from cube_assets.catalog.models import Image
from cube_assets.catalog.repository import (
    ImageFileRecord,
    ImageRecord,
    ProductRecord,
    search_images,
    upsert_image,
    upsert_product,
)

CONTEXT: Any = multiprocessing.get_context("fork")
PRODUCT = "cube:bench"
UTC = dt.UTC


def _image(n: int) -> ImageRecord:
    image_id = f"bench:{n:05d}"
    return ImageRecord(
        id=image_id,
        product_id=PRODUCT,
        name=image_id,
        acquired=dt.datetime(2024, 1, 1, tzinfo=UTC),
        geometry=shapely.geometry.mapping(shapely.geometry.box(-45, -10, -44, -9)),
        crs="EPSG:32723",
        tile=f"{n:05d}",
        period_start=dt.date(2024, 1, 1),
        files=(ImageFileRecord("B04", f"/cube/{n:05d}/B04.tif", n),),
    )


def _writer(url: str, images: Sequence[int], start: Any, results: Any) -> None:
    try:
        start.wait(timeout=120)
        engine = database.create_catalog_engine(url)
        sessions = database.session_factory(engine)
        product = ProductRecord(id=PRODUCT, name="bench", start_datetime=dt.datetime(2024, 1, 1, tzinfo=UTC))
        for n in images:
            with sessions.begin() as session:
                search_images(session, tile=f"{n:05d}")
                upsert_product(session, product)
                upsert_image(session, _image(n))
        engine.dispose()
        results.put((None, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024))
    except BaseException:  # reported to the parent process, which counts it as a failure
        results.put((traceback.format_exc(), 0))


def run_writers(url: str, work: Sequence[Sequence[int]]) -> tuple[float, int, list[str]]:
    """Time one process per range of ``work`` upserting into the catalog at ``url``.

    Return the seconds, the peak RSS and the failures.
    """
    database.upgrade_schema(url)
    start, results = CONTEXT.Barrier(len(work) + 1), CONTEXT.Queue()
    processes = [CONTEXT.Process(target=_writer, args=(url, images, start, results)) for images in work]
    for process in processes:
        process.start()
    start.wait(timeout=120)
    began = time.perf_counter()
    failures, peak = [], 0
    try:
        for _ in processes:
            error, rss = results.get(timeout=1800)
            peak = max(peak, rss)
            if error:
                failures.append(error.strip().splitlines()[-1])
    except queue.Empty:
        failures.append("writers did not finish in 30 minutes")
    seconds = time.perf_counter() - began
    for process in processes:
        process.join(timeout=60)
    engine = database.create_catalog_engine(url)
    with database.session_factory(engine)() as session:
        stored = session.scalar(select(func.count()).select_from(Image))
    engine.dispose()
    expected = len(set().union(*work))
    if stored != expected:
        failures.append(f"the catalog holds {stored} images, expected {expected}")
    return seconds, peak, failures


def _burn(stop: Any) -> None:
    while not stop.is_set():
        sum(i * i for i in range(10_000))


def main(argv: list[str] | None = None) -> int:
    """Run the cases and print the table; return 1 if any writer failed."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--upserts", type=int, default=100, help="upserts per writer process (default 100)")
    parser.add_argument("--writers", type=int, nargs="+", default=[2, 8], help="process counts (default 2 8)")
    parser.add_argument("--no-burn", dest="burn", action="store_false", help="leave the cores idle")
    args = parser.parse_args(argv)
    stop = CONTEXT.Event()
    burners = [CONTEXT.Process(target=_burn, args=(stop,), daemon=True) for _ in range(multiprocessing.cpu_count())]
    if args.burn:
        for burner in burners:
            burner.start()
    print(
        f"SQLite catalog writers: {args.upserts} upserts each, "
        f"cores {'busy' if args.burn else 'idle'}; {machine_summary()}"
    )
    results, failures = [], 0
    try:
        with tempfile.TemporaryDirectory(prefix="sqlite-writers-") as folder:
            for writers in args.writers:
                stride = args.upserts // 2
                work = [range(k * stride, k * stride + args.upserts) for k in range(writers)]
                ours = run_writers(f"sqlite:///{folder}/concurrent-{writers}.sqlite", work)
                serial = [[n for images in work for n in images]]
                reference = run_writers(f"sqlite:///{folder}/serial-{writers}.sqlite", serial)
                failures += len(ours[2]) + len(reference[2])
                for side, outcome in (("concurrent", ours), ("one process", reference)):
                    for failure in outcome[2]:
                        print(f"  {writers} writers, {side}: FAILED: {failure}")
                total = writers * args.upserts
                results.append(
                    CaseResult(
                        f"{writers} processes x {args.upserts} upserts",
                        ours[0],
                        reference[0],
                        ours[1],
                        reference[1],
                        {
                            "upserts_per_s": f"{total / ours[0]:.0f}",
                            "one_process_upserts_per_s": f"{total / reference[0]:.0f}",
                        },
                    )
                )
    finally:
        stop.set()
        for burner in burners:
            if burner.is_alive():
                burner.join(timeout=10)
    print(f"sqlite_writer_failures: {failures}")
    print_results(results)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
