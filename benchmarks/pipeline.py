"""The whole pipeline of one tile and period with Dagster, stage by stage, beside GDAL's own tools.

Run::

    .venv/bin/python benchmarks/pipeline.py                         # a BDC SM tile, 10560², 10 dates (about an hour)
    .venv/bin/python benchmarks/pipeline.py --size 2048 --dates 10  # a reduced tile (minutes)

It simulates Sentinel-2 L2A products (``formats/simulator.py``: lossless JPEG 2000 bands, a 20 m
SCL) for ``--dates`` acquisitions of 2 overlapping "MGRS tiles" that together cover one tile of a
10 m grid in the BDC Albers projection (``--size`` pixels a side; 10560 is a BDC ``SM`` tile), and
writes a cube file for them (bands B02, B03, B04, B08, quality SCL, LCF and MED composites, one
16-day period). The products are written before any timing (the simulator is not a stage).

**Dagster.** The cube's job runs for the tile and period, ``raw_scene → surface_reflectance →
scene_cog → tile_merge → period_blend → catalog_item``, with the in-process executor and with the
multiprocess executor (``--executors``), each on a fresh data root and a temporary instance. Per
stage: seconds (from the step's start to its success in the event log) and peak RSS (of the
whole process tree, sampled every 20 ms: the stage's step process under the multiprocess
executor). In the in-process run the steps' own functions (``providers.fetch_scenes``,
``reflectance_for_cube_scene``, ``publish_scene``, ``merge_date``, ``blend_period``,
``catalog_batch``) are timed too; ``dagster_overhead_share`` is the run's time outside them and
outside the asset check steps (the project's own checks of the outputs) over the run's time:
Dagster, the IO managers writing manifests and the catalog, logging.

**GDAL's tools**, scripted as a user would (one command after the other, Debian's ``gdal-bin``):
``gdal_translate -of COG`` of every band of every scene (the scene COGs), then per date and band
``gdalwarp -multi -wo NUM_THREADS=ALL_CPUS`` of the date's scenes onto the tile, written as a COG;
both with the creation options the project uses (``cog.cog_driver_options``: codec, level,
predictor, 512 blocks, overview resampling). The stages compared are the scene COGs
(``surface_reflectance`` + ``scene_cog`` against ``gdal_translate``) and the merges
(``tile_merge`` against ``gdalwarp``); compositing and cataloguing have no GDAL tool.
``max_stage_ratio_vs_gdal`` is the larger of the two ratios (project seconds over GDAL's, in the
in-process run).

Prints the machine (with its load), a table per executor, the GDAL table, and last
``max_stage_ratio_vs_gdal: X`` and ``dagster_overhead_share: X``. Targets: 1.2 and 5 %.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psutil
import yaml
from rasterio.warp import transform_bounds

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from _common import format_bytes, machine_summary, print_table

from cube_assets.formats.simulator import simulate_archive
from cube_assets.providers.simulated import simulated_scenes
from cube_assets.raster.codecs import DEFAULT_COMPRESSION
from cube_assets.raster.cog import cog_driver_options

BDC_ALBERS = (
    "+proj=aea +lat_0=-12 +lon_0=-54 +lat_1=-2 +lat_2=-22 +x_0=5000000 +y_0=10000000 +ellps=GRS80 +units=m +no_defs"
)
TILE_ORIGIN = (5640227.0, 9573015.0)  # upper-left corner of the demo's BDC tile 285228, near Brasília
UTM = 32723
PIXEL = 10
BANDS = ("B02", "B03", "B04", "B08")
QUALITY = "SCL"
STAGES = ("raw_scene", "surface_reflectance", "scene_cog", "tile_merge", "period_blend", "catalog_item")
MAX_S2_PRODUCT_PX = 10980


# --------------------------------------------------------------------------- the scenes and the cube


def product_layout(size: int) -> list[dict[str, Any]]:
    """Two square simulated products in UTM 23 S that together cover the tile, overlapping by a fifth of it."""
    left, top = TILE_ORIGIN
    minx, miny, maxx, maxy = transform_bounds(
        BDC_ALBERS, f"EPSG:{UTM}", left, top - size * PIXEL, left + size * PIXEL, top
    )
    width, height = maxx - minx, maxy - miny
    side = min(MAX_S2_PRODUCT_PX, math.ceil(max(0.6 * width, height) / PIXEL / 6) * 6 + 60)
    extent = side * PIXEL
    uly = round((maxy + (extent - height) / 2) / PIXEL) * PIXEL
    west = round((minx + 0.6 * width - extent) / PIXEL) * PIXEL
    east = round((maxx - 0.6 * width) / PIXEL) * PIXEL
    return [
        {"tile_id": "T23LKC", "epsg": UTM, "ulx": west, "uly": uly, "size_px": side},
        {"tile_id": "T23LLC", "epsg": UTM, "ulx": east, "uly": uly, "size_px": side},
    ]


def write_cube_file(folder: Path, size: int, dates: int) -> Path:
    """The cube file of the benchmark: one tile of ``size`` px, ``dates`` acquisitions in one 16-day period."""
    start = datetime(2024, 1, 1, 13, 22, 31, tzinfo=UTC)
    step = timedelta(hours=max(1, (15 * 24) // max(dates, 1)))
    acquisitions = [
        {
            "datetime": (start + i * step).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "cloud_fraction": round(0.05 + 0.7 * ((i * 7) % 10) / 10, 2),
        }
        for i in range(dates)
    ]
    project = {
        "providers": [
            {
                "name": "simulator",
                "driver": "simulator",
                "options": {"archive": "archive", "products": product_layout(size), "acquisitions": acquisitions},
            }
        ],
        "cubes": [
            {
                "name": "bench",
                "collection": "sentinel-2-l2a",
                "providers": ["simulator"],
                "grid": {
                    "kind": "user",
                    "name": "BENCH_BDC_ALBERS_10M",
                    "crs": BDC_ALBERS,
                    "origin": list(TILE_ORIGIN),
                    "tile_size": [size, size],
                    "resolution": PIXEL,
                },
                "tiles": ["000000"],
                "start_date": "2024-01-01",
                "end_date": "2024-01-16",
                "temporal": {"step": "16D", "restart": "yearly"},
                "bands": [{"name": band} for band in BANDS],
                "quality": {"band": QUALITY, "rules": {"preset": "scl"}, "nodata": 0},
                "composites": ["LCF", "MED"],
                "dtype": "int16",
                "nodata": -9999,
            }
        ],
    }
    path = folder / "bench.yaml"
    path.write_text(yaml.safe_dump(project, sort_keys=False))
    return path


def simulate_products(config: Path, archive: Path) -> list[Path]:
    """Write the cube file's simulated products into ``archive`` (once: finished products are kept)."""
    options = yaml.safe_load(config.read_text())["providers"][0]["options"]
    archive.mkdir(parents=True, exist_ok=True)
    return simulate_archive(archive, simulated_scenes(options))


# --------------------------------------------------------------------------- measuring


class TreeSampler(threading.Thread):
    """Sample the RSS of this process and all its children every ``interval`` s, with timestamps."""

    def __init__(self, interval: float = 0.02) -> None:
        super().__init__(daemon=True)
        self.interval = interval
        self.samples: list[tuple[float, int]] = []
        self._halt = threading.Event()
        self._me = psutil.Process()

    def _tree_rss(self) -> int:
        total = 0
        for process in [self._me, *self._me.children(recursive=True)]:
            with contextlib.suppress(psutil.Error):
                total += process.memory_info().rss
        return total

    def run(self) -> None:
        while not self._halt.is_set():
            self.samples.append((time.time(), self._tree_rss()))
            time.sleep(self.interval)

    def stop(self) -> None:
        self._halt.set()
        self.join()

    def peak(self, start: float, end: float) -> int:
        """The largest sample between ``start`` and ``end`` (seconds since the epoch)."""
        return max((rss for when, rss in self.samples if start <= when <= end), default=0)


@contextlib.contextmanager
def sampling() -> Iterator[TreeSampler]:
    sampler = TreeSampler()
    sampler.start()
    try:
        yield sampler
    finally:
        sampler.stop()


def covered_seconds(spans: Sequence[tuple[float, float]]) -> float:
    """Seconds covered by the union of the ``(start, end)`` spans (overlaps counted once)."""
    total, reach = 0.0, float("-inf")
    for start, end in sorted(spans):
        if end > reach:
            total += end - max(start, reach)
            reach = end
    return total


@dataclass
class StepTimer:
    """Time spent inside the steps' own functions, by function name (patched in for one run).

    A step works on several scenes at once (in threads), so the calls' spans overlap: a name's
    seconds are the time covered by at least one of its calls, not the sum of the calls.
    """

    spans: dict[str, list[tuple[float, float]]] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def wrap(self, name: str, function: Callable[..., Any]) -> Callable[..., Any]:
        def timed(*args: Any, **kwargs: Any) -> Any:
            start = time.perf_counter()
            try:
                return function(*args, **kwargs)
            finally:
                with self._lock:
                    self.spans.setdefault(name, []).append((start, time.perf_counter()))

        return timed

    @property
    def seconds(self) -> dict[str, float]:
        """Per function name, the seconds covered by its calls."""
        return {name: covered_seconds(spans) for name, spans in self.spans.items()}


@contextlib.contextmanager
def steps_timed(timer: StepTimer) -> Iterator[None]:
    """Patch the asset modules' step functions with timed wrappers for the duration of the block."""
    import cube_assets.assets.blend as blend_assets
    import cube_assets.assets.catalog as catalog_assets
    import cube_assets.assets.merge as merge_assets
    import cube_assets.assets.scenes as scene_assets
    from cube_assets.resources.providers import ProvidersResource

    targets: list[tuple[Any, str]] = [
        (scene_assets, "reflectance_for_cube_scene"),
        (scene_assets, "publish_scene"),
        (merge_assets, "merge_date"),
        (blend_assets, "blend_period"),
        (catalog_assets, "catalog_batch"),
        (ProvidersResource, "fetch_scenes"),
    ]
    originals = [(owner, name, getattr(owner, name)) for owner, name in targets]
    try:
        for owner, name, original in originals:
            setattr(owner, name, timer.wrap(name, original))
        yield
    finally:
        for owner, name, original in originals:
            setattr(owner, name, original)


@dataclass(frozen=True)
class StageTiming:
    seconds: float
    peak_rss: int


def stage_timings(events: Sequence[Any], sampler: TreeSampler) -> dict[str, StageTiming]:
    """Per stage: seconds from its step's start to its success, and the tree's peak RSS meanwhile.

    ``events`` are the run's event log entries (``instance.all_logs(run_id)``).
    """
    from dagster import DagsterEventType

    starts: dict[str, float] = {}
    ends: dict[str, float] = {}
    for record in events:
        timestamp, dagster_event = record.timestamp, record.dagster_event
        if dagster_event is None or dagster_event.step_key is None:
            continue
        stage = dagster_event.step_key.rsplit("__", 1)[-1]
        if dagster_event.event_type == DagsterEventType.STEP_START:
            starts[stage] = timestamp
        elif dagster_event.event_type == DagsterEventType.STEP_SUCCESS:
            ends[stage] = timestamp
    order = [stage for stage in STAGES if stage in ends] + sorted(set(ends) - set(STAGES))
    return {
        stage: StageTiming(ends[stage] - starts[stage], sampler.peak(starts[stage], ends[stage]))
        for stage in order
        if stage in starts
    }


# --------------------------------------------------------------------------- Dagster


def _job_for(config: Path, data_root: Path, executor: str) -> Any:
    from cube_assets.definitions import build_definitions, cube_job_name

    defs = build_definitions(config, data_root, executor=executor)
    return defs.resolve_job_def(cube_job_name("bench"))


def multiprocess_job() -> Any:
    """The benchmark cube's job with the multiprocess executor (reconstructed in each step process)."""
    return _job_for(Path(os.environ["CUBE_ASSETS_CONFIG"]), Path(os.environ["CUBE_ASSETS_DATA_ROOT"]), "multiprocess")


@dataclass(frozen=True)
class DagsterRun:
    executor: str
    seconds: float
    stages: dict[str, StageTiming]
    step_work: dict[str, float]


def run_dagster(executor: str, config: Path, archive: Path, workdir: Path) -> DagsterRun:
    """One run of the job for the benchmark's partition on a fresh data root and instance."""
    from dagster import DagsterInstance, execute_job, instance_for_test, reconstructable

    data_root = workdir / f"data-{executor}"
    shutil.rmtree(data_root, ignore_errors=True)
    data_root.mkdir(parents=True)
    os.symlink(archive, data_root / "archive")  # the simulated products, already written
    quiet = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}
    timer = StepTimer()
    home = workdir / f"home-{executor}"
    home.mkdir(parents=True, exist_ok=True)
    with instance_for_test(temp_dir=str(home)) as instance:
        assert isinstance(instance, DagsterInstance)
        job = _job_for(config, data_root, "in_process")
        key = job.partitions_def.get_partition_keys()[0]
        with sampling() as sampler:
            start = time.perf_counter()
            if executor == "in_process":
                with steps_timed(timer):
                    result = job.execute_in_process(instance=instance, partition_key=key, run_config=quiet)
                run_id, success = result.run_id, result.success
            else:
                os.environ["CUBE_ASSETS_CONFIG"] = str(config)
                os.environ["CUBE_ASSETS_DATA_ROOT"] = str(data_root)
                tags = job.get_tags_for_partition_key(key, selected_asset_keys=None)
                with execute_job(
                    reconstructable(multiprocess_job),
                    instance,
                    tags=tags,
                    run_config={**quiet, "execution": {"config": {"max_concurrent": os.cpu_count() or 1}}},
                ) as run:
                    run_id, success = run.run_id, run.success
            seconds = time.perf_counter() - start
        if not success:
            raise RuntimeError(f"the {executor} run failed; see its events")
        events = instance.all_logs(run_id)
        return DagsterRun(executor, seconds, stage_timings(events, sampler), dict(timer.seconds))


# --------------------------------------------------------------------------- GDAL's tools


@dataclass(frozen=True)
class GdalStage:
    seconds: float
    peak_rss: int
    commands: int


def _run_commands(commands: Sequence[Sequence[str]]) -> GdalStage:
    env = {**os.environ, "GDAL_NUM_THREADS": "ALL_CPUS"}
    with sampling() as sampler:
        start = time.perf_counter()
        for command in commands:
            subprocess.run(command, check=True, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        seconds = time.perf_counter() - start
    return GdalStage(seconds, max((rss for _, rss in sampler.samples), default=0), len(commands))


def _co(options: Mapping[str, str]) -> list[str]:
    return [part for key, value in options.items() for part in ("-co", f"{key}={value}")]


def gdal_pipeline(archive: Path, size: int, workdir: Path) -> dict[str, GdalStage]:
    """The scene COGs and the merges made with ``gdal_translate`` and ``gdalwarp``, timed per stage."""
    out = workdir / "gdal"
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    products = sorted(path for path in archive.iterdir() if path.name.endswith(".SAFE"))
    translate: list[list[str]] = []
    by_date: dict[str, dict[str, list[Path]]] = {}
    for product in products:
        day = product.name.split("_")[2][:8]
        for band in (*BANDS, QUALITY):
            resolution = 20 if band == QUALITY else PIXEL
            source = next(product.glob(f"GRANULE/*/IMG_DATA/R{resolution}m/*_{band}_{resolution}m.jp2"))
            cog = out / f"{product.name[:-5]}_{band}.tif"
            options = cog_driver_options(
                "uint16" if band != QUALITY else "uint8",
                width=10980,
                height=10980,
                overview_resampling="nearest" if band == QUALITY else "average",
            )
            translate.append(["gdal_translate", "-q", "-of", "COG", *_co(options), str(source), str(cog)])
            by_date.setdefault(day, {}).setdefault(band, []).append(cog)
    left, top = TILE_ORIGIN
    extent = [str(v) for v in (left, top - size * PIXEL, left + size * PIXEL, top)]
    warp: list[list[str]] = []
    for day, bands in sorted(by_date.items()):
        for band, sources in bands.items():
            options = cog_driver_options(
                "uint16" if band != QUALITY else "uint8",
                width=size,
                height=size,
                overview_resampling="nearest" if band == QUALITY else "average",
            )
            warp.append(
                [
                    "gdalwarp", "-q", "-multi", "-wo", "NUM_THREADS=ALL_CPUS", "-t_srs", BDC_ALBERS,
                    "-te", *extent, "-tr", str(PIXEL), str(PIXEL), "-r", "near" if band == QUALITY else "bilinear",
                    "-srcnodata", "0", "-dstnodata", "0", "-of", "COG", *_co(options),
                    *map(str, sources), str(out / f"merge_{day}_{band}.tif"),
                ]
            )  # fmt: skip
    return {"scene COGs": _run_commands(translate), "merges": _run_commands(warp)}


# --------------------------------------------------------------------------- main


def _dagster_table(run: DagsterRun) -> None:
    rows = [(stage, f"{timing.seconds:.2f}", format_bytes(timing.peak_rss)) for stage, timing in run.stages.items()]
    rows.append(("whole run", f"{run.seconds:.2f}", "-"))
    print(f"# Dagster, {run.executor} executor")
    print_table(rows, ("stage", "seconds", "peak_rss_tree"))


def main(argv: Sequence[str] | None = None) -> tuple[float, float]:
    """Run the benchmark; return ``(max_stage_ratio_vs_gdal, dagster_overhead_share)``."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", type=int, default=10560, help="tile side in pixels (default 10560, a BDC SM tile)")
    parser.add_argument("--dates", type=int, default=10, help="acquisitions in the period (default 10)")
    parser.add_argument(
        "--executors", default="in_process,multiprocess", help="Dagster executors to run (default: both)"
    )
    parser.add_argument("--data-dir", type=Path, default=None, help="keep (and reuse) the simulated products here")
    args = parser.parse_args(argv)
    if args.size <= 0 or args.size % 16 or args.dates <= 0:
        parser.error("--size must be a positive multiple of 16 and --dates positive")
    executors = [name.strip() for name in args.executors.split(",") if name.strip()]
    if "in_process" not in executors:
        parser.error("--executors must include in_process (its run gives the ratios)")
    if shutil.which("gdalwarp") is None or shutil.which("gdal_translate") is None:
        parser.error("GDAL's command-line tools are not installed (make system-packages installs gdal-bin)")
    workdir = Path(tempfile.mkdtemp(prefix="pipeline-benchmark-"))
    try:
        data_dir = args.data_dir or workdir / "products"
        data_dir.mkdir(parents=True, exist_ok=True)
        config = write_cube_file(workdir, args.size, args.dates)
        print(
            f"# pipeline benchmark: one {args.size} x {args.size} px tile at {PIXEL} m, {args.dates} dates x 2 "
            f"simulated Sentinel-2 L2A products (JPEG 2000), codec {DEFAULT_COMPRESSION}",
            flush=True,
        )
        print(f"# machine: {machine_summary()}", flush=True)
        gdal_version = subprocess.run(["gdalinfo", "--version"], capture_output=True, text=True).stdout.strip()
        print(f"# GDAL's tools: {gdal_version}", flush=True)
        start = time.perf_counter()
        simulate_products(config, data_dir / "archive")
        print(f"# simulated products ready in {time.perf_counter() - start:.1f} s (not timed below)", flush=True)

        runs = {}
        for executor in executors:
            runs[executor] = run_dagster(executor, config, (data_dir / "archive").resolve(), workdir)
            _dagster_table(runs[executor])
            print(f"# machine: {machine_summary()}", flush=True)
        gdal = gdal_pipeline((data_dir / "archive").resolve(), args.size, workdir)
        print("# GDAL's command-line tools, one command after the other")
        print_table(
            [(name, f"{s.seconds:.2f}", format_bytes(s.peak_rss), s.commands) for name, s in gdal.items()],
            ("stage", "seconds", "peak_rss_tree", "commands"),
        )
        in_process = runs["in_process"]
        project = {
            "scene COGs": in_process.stages["surface_reflectance"].seconds + in_process.stages["scene_cog"].seconds,
            "merges": in_process.stages["tile_merge"].seconds,
        }
        ratios = {name: project[name] / gdal[name].seconds for name in project}
        print_table(
            [(name, f"{project[name]:.2f}", f"{gdal[name].seconds:.2f}", f"{ratios[name]:.2f}") for name in project],
            ("stage", "project_s", "gdal_s", "ratio"),
        )
        checks = sum(timing.seconds for stage, timing in in_process.stages.items() if stage not in STAGES)
        work = sum(in_process.step_work.values()) + checks
        own = json.dumps({name: round(seconds, 2) for name, seconds in in_process.step_work.items()})
        print(f"# steps' own work in the in-process run (s): {own}; asset check steps: {checks:.2f}")
        overhead = (in_process.seconds - work) / in_process.seconds
        print(f"# machine after: {machine_summary()}", flush=True)
        print(f"max_stage_ratio_vs_gdal: {max(ratios.values()):.2f}")
        print(f"dagster_overhead_share: {overhead:.3f}", flush=True)
        return max(ratios.values()), overhead
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
