"""Download speed and memory: the providers' verified HTTP download against plain ``requests``, same process.

Run::

    .venv/bin/python benchmarks/download.py                 # a 200 MiB file, best of 3
    .venv/bin/python benchmarks/download.py --size-mib 1024 --repeat 1

It writes a file of random bytes (``--size-mib``, default 200) in a temporary folder and serves
it from an HTTP server on 127.0.0.1 running in a thread of this process (``http.server``,
``Content-Length``, 1 MiB writes), then downloads it to a file on the same disk, case by case:

* ``stream + size check``: :meth:`cube_assets.providers.http.HttpClient.download` with the
  expected size (streamed to a ``.part`` file, size compared, renamed into place);
* ``+ sha256``: the same with a SHA2-256 ``file:checksum`` multihash, hashed while writing;
* ``+ blake3``: the same with a BLAKE3 multihash (code 0x1e, the ``blake3`` package).

The reference of every case is the plain ``requests`` streaming download a script would write
(``requests.get(url, stream=True)``, ``iter_content`` of 1 MiB chunks written to a file, no
verification), so ``ratio`` (reference time / this project's time) shows what resuming,
verification and the atomic rename cost. Each downloaded file is compared with the source
(size, and SHA2-256 once per case) and deleted. Sides alternate and the fastest run of each is
kept (``--repeat``); the peak RSS is the process's high-water mark during a run (the server
thread included, which is the same for both sides).

Prints a header, one row per case (seconds, reference seconds, ratio, peak RSS of both, then
MiB/s of both) and last ``min_ratio_vs_reference: X``.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import sys
import tempfile
import threading
from collections.abc import Callable, Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import blake3
import requests

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from _common import (
    CaseResult,
    Measurement,
    format_bytes,
    machine_summary,
    measure,
    peak_rss_method,
    pin_mmap_threshold,
    print_results,
)

from cube_assets.providers.http import HttpClient, RemoteFile
from cube_assets.providers.retry import RetryPolicy

CHUNK = 1 << 20


def write_random_file(path: Path, size: int) -> str:
    """Write ``size`` random bytes to ``path``; return their SHA2-256 hex digest."""
    digest = hashlib.sha256()
    with open(path, "wb") as stream:
        left = size
        while left:
            block = os.urandom(min(CHUNK * 8, left))
            stream.write(block)
            digest.update(block)
            left -= len(block)
    return digest.hexdigest()


def file_digests(path: Path) -> tuple[str, str]:
    """The SHA2-256 and BLAKE3 multihashes of the file at ``path`` (hex, as ``file:checksum``)."""
    sha256, b3 = hashlib.sha256(), blake3.blake3()
    with open(path, "rb") as stream:
        for block in iter(lambda: stream.read(CHUNK * 8), b""):
            sha256.update(block)
            b3.update(block)
    return "1220" + sha256.hexdigest(), "1e20" + b3.hexdigest()


def serve_file(path: Path) -> tuple[ThreadingHTTPServer, str]:
    """Serve ``path`` at ``http://127.0.0.1:{port}/file`` from a thread of this process."""
    size = path.stat().st_size

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: object) -> None:  # http.server's name
            pass

        def do_GET(self) -> None:  # http.server's naming
            self.send_response(200)
            self.send_header("Content-Type", "application/octet-stream")
            self.send_header("Content-Length", str(size))
            self.send_header("Accept-Ranges", "bytes")
            self.end_headers()
            with open(path, "rb") as stream:
                shutil.copyfileobj(stream, self.wfile, CHUNK)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}/file"


def reference_download(url: str, destination: Path) -> int:
    """A plain ``requests`` streaming download: 1 MiB chunks written to ``destination``; return the bytes written."""
    written = 0
    with requests.get(url, stream=True, timeout=(10, 60)) as response, open(destination, "wb") as stream:
        response.raise_for_status()
        for chunk in response.iter_content(CHUNK):
            stream.write(chunk)
            written += len(chunk)
    return written


def _check(destination: Path, size: int, sha256: str | None) -> None:
    assert destination.stat().st_size == size, f"{destination}: {destination.stat().st_size} bytes, expected {size}"
    if sha256 is not None:
        assert file_digests(destination)[0] == "1220" + sha256, f"{destination}: bytes differ from the source"
    destination.unlink()


def run_case(
    name: str, ours: Callable[[Path], object], url: str, work: Path, size: int, sha256: str, repeat: int
) -> CaseResult:
    """Time this project's download and the reference, alternating, ``repeat`` times each; keep the fastest."""
    best: dict[str, Measurement] = {}
    peaks: dict[str, int] = {"ours": 0, "reference": 0}
    for attempt in range(repeat):
        for side, run in (("ours", ours), ("reference", lambda d: reference_download(url, d))):
            destination = work / f"{side}.bin"
            result = measure(lambda run=run, destination=destination: run(destination))
            _check(destination, size, sha256 if attempt == 0 else None)
            peaks[side] = max(peaks[side], result.peak_rss)
            if side not in best or result.seconds < best[side].seconds:
                best[side] = result
    mib = size / 2**20
    return CaseResult(
        name,
        best["ours"].seconds,
        best["reference"].seconds,
        peaks["ours"],
        peaks["reference"],
        extras={
            "MiB/s": f"{mib / best['ours'].seconds:.0f}",
            "reference_MiB/s": f"{mib / best['reference'].seconds:.0f}",
        },
    )


def main(argv: Sequence[str] | None = None) -> float:
    """Run the benchmark (see the module docstring); return the minimum ratio."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size-mib", type=int, default=200, help="size of the served file in MiB (default 200)")
    parser.add_argument("--repeat", type=int, default=3, help="runs per side, fastest kept (default 3)")
    parser.add_argument(
        "--work-dir", type=Path, default=None, help="where the file and the downloads go (default: a temporary folder)"
    )
    args = parser.parse_args(argv)
    pin_mmap_threshold()
    size = args.size_mib * 2**20
    work = Path(tempfile.mkdtemp(prefix="download-bench-", dir=args.work_dir))
    server = None
    try:
        source = work / "source.bin"
        sha256 = write_random_file(source, size)
        sha256_multihash, blake3_multihash = file_digests(source)
        server, url = serve_file(source)
        print(f"download benchmark: {format_bytes(size)} over loopback HTTP, in-process server; {machine_summary()}")
        print(f"peak RSS: {peak_rss_method()}; best of {args.repeat} per side; downloads to {work}")
        policy = RetryPolicy(attempts=1, read_timeout_s=60)
        results = []
        with HttpClient("benchmark", retry=policy) as client:
            for name, checksum in (
                ("stream + size check", None),
                ("stream + size check + sha256", sha256_multihash),
                ("stream + size check + blake3", blake3_multihash),
            ):
                remote = RemoteFile(url, size, checksum)
                results.append(
                    run_case(
                        name, lambda d, remote=remote: client.download(remote, d), url, work, size, sha256, args.repeat
                    )
                )
        return print_results(results)
    finally:
        if server is not None:
            server.shutdown()
            server.server_close()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
