"""Run a function in several processes started at once, and collect what each reported."""

from __future__ import annotations

import multiprocessing
import queue
import traceback
from collections.abc import Callable
from typing import Any

import pytest

#: fork starts a process in milliseconds (spawn re-imports everything: seconds); callers give the
#: workers only plain values (URLs, paths), so nothing open in the parent is inherited.
CONTEXT: Any = multiprocessing.get_context("fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn")


def _report(target: Callable[..., None], worker: int, args: tuple[Any, ...], start: Any, results: Any) -> None:
    try:
        start.wait(timeout=120)
        target(worker, *args)
        results.put((worker, None))
    except BaseException:  # the traceback is reported to the parent process
        results.put((worker, traceback.format_exc()))


def run_in_processes(
    target: Callable[..., None], workers: int, *args: Any, timeout_s: float = 600
) -> dict[int, str | None]:
    """Run ``target(worker, *args)`` in ``workers`` processes released together by a barrier.

    Returns:
        Each worker's number mapped to None when it returned, else the traceback it raised.

    Raises:
        pytest.fail.Exception: when the workers have not all reported after ``timeout_s``.
    """
    start = CONTEXT.Barrier(workers)
    results = CONTEXT.Queue()
    processes = [CONTEXT.Process(target=_report, args=(target, k, args, start, results)) for k in range(workers)]
    for process in processes:
        process.start()
    outcomes: dict[int, str | None] = {}
    try:
        for _ in processes:
            worker, error = results.get(timeout=timeout_s)
            outcomes[worker] = error
    except queue.Empty:
        pytest.fail(f"workers did not finish; reported so far: {outcomes}")
    finally:
        for process in processes:
            process.join(timeout=60)
            if process.is_alive():
                process.kill()
    return outcomes
