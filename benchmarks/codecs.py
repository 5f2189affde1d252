"""Which codec the merges and composites are written with: write + read seconds and size, per codec.

Run::

    .venv/bin/python benchmarks/codecs.py                 # 2048 x 2048 x 10 dates, best of 2
    .venv/bin/python benchmarks/codecs.py --size 4096 --repeat 1

It builds the synthetic period of ``blend.py`` (10 merges of an int16 band and a Sentinel-2 SCL
band) and the composites a blend makes of it (LCF, MED and AVG of the band; the LCF quality band,
PROVENANCE, CLEAROB and TOTALOB), keeps each as an uncompressed tiled GeoTIFF (what a step stages
before its COG conversion), then, per codec:

* ``write_s``: converting every staged raster to a COG with ``cog.cog_from_file`` and GDAL's COG
  driver, as ``steps/merge.py`` and ``steps/blend.py`` do (overviews and validation included);
* ``read_s``: decoding every block of the full resolution of every COG once, one file after the
  other in this thread (what a blend does with the merges, and a reader with a composite);
* ``cpu_s``: the CPU seconds of both (every thread of the process), which the machine's load
  changes much less than the wall time; ``cpu_speedup`` is DEFLATE level 6's over the codec's;
* ``MiB``: the files' total size, and ``size_vs_deflate`` against today's DEFLATE level 6.

Codecs run interleaved, ``--repeat`` passes, the best of each kept. The chosen codec is the one
with the smallest ``write+read_s`` among those no larger than DEFLATE level 6 (run it on a quiet
machine; under load read ``cpu_s``); every codec is lossless
(the pixels of every COG are compared with the staged ones). The last line is
``fastest_codec_no_larger_than_deflate: CODEC-level``.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import rasterio
from rasterio.shutil import copy as rio_copy

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from _common import machine_summary, print_table
from blend import BAND_NODATA, FUNCTIONS, build_synthetic_period
from reference_blend import QUALITY_OUTPUTS

from cube_assets.raster.cog import cog_from_file
from cube_assets.raster.composite import blend_band, blend_quality
from cube_assets.raster.masks import SCL_RULES

CODECS: tuple[tuple[str, int], ...] = (
    ("DEFLATE", 6),
    ("DEFLATE", 1),
    ("DEFLATE", 3),
    ("ZSTD", 1),
    ("ZSTD", 2),
    ("ZSTD", 3),
    ("ZSTD", 5),
    ("ZSTD", 9),
    ("LERC_ZSTD", 1),
)
REFERENCE_CODEC = ("DEFLATE", 6)


def stage_rasters(period_dir: Path, staging: Path, size: int, dates: int) -> list[Path]:
    """Write the merges and a blend's outputs as uncompressed tiled GeoTIFFs under ``staging``.

    Returns:
        The staged paths: merges first, then composites.
    """
    period = build_synthetic_period(period_dir, size, dates)
    staging.mkdir(parents=True, exist_ok=True)
    staged: list[Path] = []
    for path in period.band_paths + period.quality_paths:
        out = staging / f"merge_{path.name}"
        rio_copy(path, out, driver="GTiff", tiled=True, blockxsize=512, blockysize=512)
        staged.append(out)

    def keep(tmp: Path, destination: Path) -> None:
        shutil.copyfile(tmp, destination)

    outs = {function: staging / f"composite_{function}.tif" for function in FUNCTIONS}
    blend_band(
        period.band_paths,
        period.quality_paths,
        period.dates,
        period.efficacies,
        SCL_RULES,
        list(FUNCTIONS),
        outs,
        BAND_NODATA,
        finalize=keep,
    )
    quality = [staging / f"composite_{name}.tif" for name in QUALITY_OUTPUTS]
    blend_quality(period.quality_paths, period.dates, period.efficacies, SCL_RULES, *quality, finalize=keep)
    return staged + list(outs.values()) + quality


def decode_all(paths: Sequence[Path]) -> tuple[float, float]:
    """Wall and CPU seconds to decode every block of band 1 of ``paths`` once, in this thread."""
    start, cpu = time.perf_counter(), time.process_time()
    for path in paths:
        with rasterio.open(path) as dataset:
            for _, window in dataset.block_windows(1):
                dataset.read(1, window=window)
    return time.perf_counter() - start, time.process_time() - cpu


@dataclass
class Timings:
    """The best wall and CPU seconds of a codec's writes and reads so far, and its files' size."""

    write: float = float("inf")
    read: float = float("inf")
    write_cpu: float = float("inf")
    read_cpu: float = float("inf")
    size: int = 0


def run_codec_once(codec: str, level: int, staged: Sequence[Path], out_dir: Path, best: Timings) -> None:
    """Convert every staged raster with ``codec`` at ``level`` and read them back; keep the best times in ``best``.

    Raises:
        AssertionError: if a COG's pixels differ from its staged raster's.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    outputs = [out_dir / path.name for path in staged]
    start, cpu = time.perf_counter(), time.process_time()
    for src, dst in zip(staged, outputs, strict=True):
        overview = "average" if "B04" in src.name and "merge" in src.name else "nearest"
        cog_from_file(src, dst, compress=codec, level=level, overview_resampling=overview, driver="gdal")
    best.write = min(best.write, time.perf_counter() - start)
    best.write_cpu = min(best.write_cpu, time.process_time() - cpu)
    read, read_cpu = decode_all(outputs)
    best.read, best.read_cpu = min(best.read, read), min(best.read_cpu, read_cpu)
    for src, dst in zip(staged, outputs, strict=True):
        with rasterio.open(src) as want, rasterio.open(dst) as got:
            if not np.array_equal(want.read(1), got.read(1)):
                raise AssertionError(f"{codec}-{level}: {dst.name} differs from its staged raster")
    best.size = sum(path.stat().st_size for path in outputs)
    shutil.rmtree(out_dir)


def main(argv: Sequence[str] | None = None) -> str:
    """Run the benchmark; return the chosen codec as ``CODEC-level``."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", type=int, default=2048, help="tile width and height in pixels (default 2048)")
    parser.add_argument("--dates", type=int, default=10, help="observations in the period (default 10)")
    parser.add_argument("--repeat", type=int, default=2, help="runs per codec, fastest kept (default 2)")
    args = parser.parse_args(argv)
    workdir = Path(tempfile.mkdtemp(prefix="codec-benchmark-"))
    try:
        print(f"# codec benchmark: {args.size} x {args.size} px x {args.dates} dates; merges + composites", flush=True)
        print(f"# machine: {machine_summary()}", flush=True)
        staged = stage_rasters(workdir / "period", workdir / "staged", args.size, args.dates)
        raw = sum(path.stat().st_size for path in staged)
        print(f"# {len(staged)} rasters staged, {raw / 2**20:.1f} MiB uncompressed", flush=True)
        best = {codec: Timings() for codec in CODECS}
        for attempt in range(args.repeat):  # codecs interleaved, so that a change of load hits them all alike
            for codec, level in CODECS if attempt % 2 == 0 else reversed(CODECS):
                run_codec_once(codec, level, staged, workdir / f"{codec}-{level}", best[(codec, level)])
            print(f"# pass {attempt + 1} of {args.repeat} done; {machine_summary()}", flush=True)
        reference = best[REFERENCE_CODEC]
        rows = [
            (
                f"{codec}-{level}",
                f"{t.write:.3f}",
                f"{t.read:.3f}",
                f"{t.write + t.read:.3f}",
                f"{t.write_cpu + t.read_cpu:.3f}",
                f"{t.size / 2**20:.1f}",
                f"{t.size / reference.size:.3f}",
                f"{(reference.write_cpu + reference.read_cpu) / (t.write_cpu + t.read_cpu):.2f}",
            )
            for (codec, level), t in best.items()
        ]
        headers = ("codec", "write_s", "read_s", "write+read_s", "cpu_s", "MiB", "size_vs_deflate", "cpu_speedup")
        print_table(rows, headers)
        print(f"# machine after: {machine_summary()}", flush=True)
        eligible = [key for key, t in best.items() if t.size <= reference.size]
        chosen = min(eligible, key=lambda key: best[key].write + best[key].read)
        name = f"{chosen[0]}-{chosen[1]}"
        print(f"fastest_codec_no_larger_than_deflate: {name}", flush=True)
        return name
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
