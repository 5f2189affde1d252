"""A partition's scenes worked on a few at a time, in threads, the results in the scenes' order.

The scene stages (``raw_scene``, ``surface_reflectance``, ``scene_cog``) spend their time in
downloads, GDAL and numpy, which release the GIL, while each scene's JPEG 2000 tiles are decoded
one after the other (``raster.inputs``): with two scenes at once a step keeps every CPU busy
instead of about one. Each thread enters the store's GDAL environment itself, since GDAL's
configuration (S3 credentials, endpoint) is per thread.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, TypeVar

T = TypeVar("T")
R = TypeVar("R")

DEFAULT_THREADS = 4
"""Scenes worked on at once unless told otherwise (fewer on a machine with fewer CPUs)."""


def thread_count(scenes: int, threads: int | None = None) -> int:
    """Return the threads for ``scenes`` scenes: ``threads``, else the CPUs, at most :data:`DEFAULT_THREADS`.

    Never more than there are scenes, and at least 1.

    Raises:
        ValueError: if ``threads`` is given and is not an integer of at least 1.
    """
    if threads is not None and (isinstance(threads, bool) or not isinstance(threads, int) or threads < 1):
        raise ValueError(f"scene threads must be an integer of at least 1, got {threads!r}")
    count = threads if threads is not None else min(DEFAULT_THREADS, os.cpu_count() or 1)
    return max(1, min(count, scenes))


def map_in_threads(
    work: Callable[[T], R],
    scenes: Sequence[T],
    *,
    environment: Callable[[], contextlib.AbstractContextManager[Any]] = contextlib.nullcontext,
    threads: int | None = None,
) -> list[R]:
    """Return ``[work(scene) for scene in scenes]``, computed by :func:`thread_count` threads.

    Each call runs inside ``environment()`` (a store's ``gdal_environment``). With one thread
    everything runs in the calling thread.

    Raises:
        Exception: the error of the first scene (in the scenes' order) whose ``work`` failed,
            once every scene already started has finished; the scenes not started by then
            never are.
        ValueError: as :func:`thread_count`.
    """
    count = thread_count(len(scenes), threads)
    if count == 1:
        with environment():
            return [work(scene) for scene in scenes]

    def run(scene: T) -> R:
        with environment():
            return work(scene)

    pool = ThreadPoolExecutor(max_workers=count, thread_name_prefix="scene")
    try:
        futures: list[Future[R]] = [pool.submit(run, scene) for scene in scenes]
        return [future.result() for future in futures]
    finally:
        # On an error, drop the scenes not started; either way wait for the running ones, so no
        # file is still being written when the step reports.
        pool.shutdown(wait=True, cancel_futures=True)
