"""The viewer in a real browser: Debian's Chromium, driven by playwright, against the app served by uvicorn.

The app (``maps_app.py``) runs in a thread of the test process on a loopback port, over the
synthetic cube's catalog. The test reads the page's pixels from screenshots: tiles drawn where
the cube's tiles are (and the dark background elsewhere), a different image after the period
slider moves, and a chart with one point per composite and per merge after a click. The final
screenshot is written to ``$CUBE_ASSETS_TEST_ARTEFACTS`` (or the test's tmp path).
"""

from __future__ import annotations

import os
import shutil
import socket
import threading
import time
import warnings
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import uvicorn
from rasterio.errors import NotGeoreferencedWarning
from rasterio.io import MemoryFile

from cube_assets.service.viewer import maplibre_installed
from cube_assets_tests.service.maps_app import maps_app
from cube_assets_tests.service.synthetic_cube import SyntheticCube

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--use-angle=swiftshader",
    "--enable-unsafe-swiftshader",
]
BACKGROUND = np.array([0x20, 0x25, 0x2B])  # the style's background colour


def _missing(reason: str) -> None:
    if os.environ.get("CI") == "true":
        pytest.fail(f"browser test cannot run under CI=true: {reason}")
    pytest.skip(reason)


@pytest.fixture(scope="module")
def served(synthetic_cube: SyntheticCube) -> Iterator[str]:
    """The maps app served by uvicorn on a free loopback port; its base URL."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    config = uvicorn.Config(maps_app(synthetic_cube.catalog_url), host="127.0.0.1", port=port, log_level="warning")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            pytest.fail("uvicorn did not start within 20 s")
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(timeout=10)


def _pixels(png: bytes) -> np.ndarray:
    """``(H, W, 3)`` RGB pixels of a screenshot."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NotGeoreferencedWarning)
        with MemoryFile(png) as memory, memory.open() as src:
            return np.moveaxis(src.read()[:3], 0, -1)


def _screenshot_until(page, condition, timeout_s: float = 30.0) -> np.ndarray:
    """Screenshots of the map until ``condition(pixels)`` holds (tiles arrive asynchronously); the last one."""
    deadline = time.monotonic() + timeout_s
    while True:
        page.wait_for_function("window.cubeViewer.map.areTilesLoaded()", timeout=30_000)
        pixels = _pixels(page.locator("#map").screenshot())
        if condition(pixels) or time.monotonic() > deadline:
            return pixels
        time.sleep(0.3)


def test_viewer_draws_tiles_moves_with_the_slider_and_charts_a_clicked_pixel(
    synthetic_cube: SyntheticCube, served: str, tmp_path: Path
) -> None:
    if not Path(CHROMIUM).is_file():
        _missing(f"{CHROMIUM} not found (Debian package chromium)")
    if not maplibre_installed():
        _missing("MapLibre GL JS not installed: run `make install` (npm ci)")
    from playwright.sync_api import sync_playwright

    artefacts = Path(os.environ.get("CUBE_ASSETS_TEST_ARTEFACTS", tmp_path))
    artefacts.mkdir(parents=True, exist_ok=True)
    errors: list[str] = []
    with sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            str(tmp_path / "profile"),
            executable_path=CHROMIUM,
            args=CHROMIUM_ARGS,
            headless=True,
            viewport={"width": 1280, "height": 800},
        )
        try:
            page = context.new_page()
            page.on("pageerror", lambda error: errors.append(str(error)))
            page.goto(f"{served}/viewer")
            page.wait_for_function("window.cubeViewer !== undefined", timeout=30_000)
            page.evaluate("window.cubeViewer.ready")
            map_box = page.locator("#map").bounding_box()
            lon, lat = synthetic_cube.lonlat(0, 200, 200)  # inside tile 0, outside the cloud square
            point = page.evaluate("([lon, lat]) => window.cubeViewer.map.project([lon, lat])", [lon, lat])
            x, y = int(point["x"]), int(point["y"])

            def drawn_at_point(pixels: np.ndarray) -> bool:
                patch = pixels[y - 3 : y + 4, x - 3 : x + 4].reshape(-1, 3).astype(int)
                return bool(np.abs(patch - BACKGROUND).sum(axis=1).min() > 40)

            first = _screenshot_until(page, drawn_at_point)
            assert drawn_at_point(first), "no tile drawn at the tile's place"
            assert np.abs(first[5, 5].astype(int) - BACKGROUND).sum() < 10, "the map's corner should be empty"

            page.locator("#period").focus()
            page.keyboard.press("ArrowRight")
            page.wait_for_function(
                f"document.body.dataset.tiles.includes('period={synthetic_cube.period_starts[1].isoformat()}')"
            )
            region = (slice(y - 20, y + 20), slice(x - 20, x + 20))

            def changed(pixels: np.ndarray) -> bool:
                return bool(np.abs(pixels[region].astype(int) - first[region].astype(int)).sum() > 0)

            second = _screenshot_until(page, changed)
            assert changed(second), "the slider changed nothing"
            assert drawn_at_point(second)

            page.mouse.click(map_box["x"] + x, map_box["y"] + y)
            page.wait_for_function("document.getElementById('chart').dataset.mergePoints !== undefined", timeout=30_000)
            chart = page.locator("#chart")
            assert chart.get_attribute("data-composite-points") == str(len(synthetic_cube.period_starts))
            assert chart.get_attribute("data-merge-points") == str(sum(map(len, synthetic_cube.merge_dates.values())))
            links = page.locator("#series-items a")
            assert links.count() == 3 + 6
            assert links.first.get_attribute("href").startswith("/collections/synth-")
            drawn = _pixels(chart.screenshot())
            assert (drawn.sum(axis=2) < 600).mean() > 0.005, "the chart is blank"
            page.screenshot(path=str(artefacts / "viewer.png"), full_page=True)
        finally:
            context.close()
    assert not errors, errors
    assert (artefacts / "viewer.png").stat().st_size > 10_000
    shutil.rmtree(tmp_path / "profile", ignore_errors=True)
