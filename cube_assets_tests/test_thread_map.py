"""Scenes worked on in threads: order, per-thread environment, errors, thread counts."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator

import pytest

from cube_assets import thread_map
from cube_assets.thread_map import map_in_threads, thread_count


def test_results_keep_the_scenes_order_when_a_later_scene_finishes_first() -> None:
    second_done = threading.Event()

    def work(scene: int) -> int:
        if scene == 0:
            assert second_done.wait(10), "scene 1 never ran beside scene 0"
        if scene == 1:
            second_done.set()
        return scene * 10

    assert map_in_threads(work, [0, 1, 2], threads=2) == [0, 10, 20]


def test_each_scene_runs_inside_the_environment_of_its_own_thread() -> None:
    active = threading.local()
    entered: list[int] = []

    @contextlib.contextmanager
    def environment() -> Iterator[None]:
        active.on = True
        entered.append(threading.get_ident())
        try:
            yield
        finally:
            active.on = False

    def work(scene: int) -> tuple[int, bool]:
        return threading.get_ident(), getattr(active, "on", False)

    results = map_in_threads(work, list(range(6)), environment=environment, threads=2)
    assert all(inside for _, inside in results)
    assert {ident for ident, _ in results} <= set(entered)
    assert threading.get_ident() not in entered


def test_one_thread_works_in_the_calling_thread_inside_one_environment() -> None:
    entered: list[int] = []

    @contextlib.contextmanager
    def environment() -> Iterator[None]:
        entered.append(threading.get_ident())
        yield

    idents = map_in_threads(lambda _: threading.get_ident(), [1, 2, 3], environment=environment, threads=1)
    assert set(idents) == {threading.get_ident()}
    assert entered == [threading.get_ident()]


def test_the_first_failing_scene_in_order_is_raised_after_the_running_ones_end() -> None:
    first_may_fail = threading.Event()
    running = [0]
    lock = threading.Lock()

    def work(scene: int) -> int:
        with lock:
            running[0] += 1
        try:
            if scene == 1:
                first_may_fail.set()
                raise ValueError("scene 1 is broken")
            if scene == 0:
                assert first_may_fail.wait(10)
                raise ValueError("scene 0 is broken")
            return scene
        finally:
            with lock:
                running[0] -= 1

    with pytest.raises(ValueError, match="scene 0 is broken"):
        map_in_threads(work, list(range(8)), threads=2)
    assert running[0] == 0


@pytest.mark.parametrize(
    ("scenes", "threads", "cpus", "expected"),
    [(10, None, 2, 2), (10, None, 64, thread_map.DEFAULT_THREADS), (1, None, 8, 1), (0, None, 8, 1), (5, 3, 2, 3)],
)
def test_thread_count(
    monkeypatch: pytest.MonkeyPatch, scenes: int, threads: int | None, cpus: int, expected: int
) -> None:
    monkeypatch.setattr(thread_map.os, "cpu_count", lambda: cpus)
    assert thread_count(scenes, threads) == expected


@pytest.mark.parametrize("threads", [0, -1, 2.5, True])
def test_bad_thread_counts_are_refused_by_name(threads: object) -> None:
    with pytest.raises(ValueError, match=f"scene threads must be an integer of at least 1, got {threads!r}"):
        thread_count(4, threads)  # type: ignore[arg-type]
