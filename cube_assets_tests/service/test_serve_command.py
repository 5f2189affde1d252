"""``cube-assets serve``: which catalog it serves, and the real command answering over HTTP."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from cube_assets.commands.serve import catalog_url
from cube_assets_tests.service.conftest import LCF, build_cube_catalog, free_port

REPO = Path(__file__).resolve().parents[2]


def arguments(**values: object) -> argparse.Namespace:
    return argparse.Namespace(**{"catalog": None, "data_root": "cube-data", **values})


def test_the_demo_catalog_is_served_by_default(tmp_path: Path) -> None:
    assert catalog_url(arguments(data_root=str(tmp_path)), {}) == f"sqlite:///{tmp_path}/catalog.sqlite"


def test_prod_serves_the_catalog_url_of_the_environment() -> None:
    environ = {"CUBE_ENV": "prod", "CUBE_ASSETS_CATALOG_URL": "postgresql+psycopg://u@db/cubes"}

    assert catalog_url(arguments(), environ) == "postgresql+psycopg://u@db/cubes"
    assert catalog_url(arguments(catalog="sqlite:///x.sqlite"), environ) == "sqlite:///x.sqlite"
    with pytest.raises(SystemExit, match="CUBE_ASSETS_CATALOG_URL"):
        catalog_url(arguments(), {"CUBE_ENV": "prod"})


def serve(tmp_path: Path, *options: str) -> tuple[dict[str, Any], dict[str, Any], str, int]:
    """Run ``cube-assets serve`` over the test cube's catalog; return the landing page, a search, its output, port."""
    build_cube_catalog(f"sqlite:///{tmp_path}/catalog.sqlite", tmp_path).close()
    port = free_port()
    environment = {**os.environ, "PYTHONPATH": str(REPO), "CUBE_ENV": "dev"}
    command = [sys.executable, "-m", "cube_assets.cli", "serve", "--port", str(port), "--data-root", str(tmp_path)]
    process = subprocess.Popen(
        [*command, *options], env=environment, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                landing = httpx.get(f"http://127.0.0.1:{port}/", timeout=5)
                break
            except httpx.TransportError:
                if time.monotonic() > deadline or process.poll() is not None:
                    output = process.stdout.read() if process.stdout else ""
                    raise AssertionError(f"serve did not start: {output}") from None
                time.sleep(0.2)
        assert landing.status_code == 200
        found = [
            httpx.get(f"http://127.0.0.1:{port}/search", params={"collections": LCF, "limit": 100}).json()
            for _ in range(4)
        ]
    finally:
        process.terminate()
        output, _ = process.communicate(timeout=30)
    assert all(page == found[0] for page in found)
    return landing.json(), found[0], output, port


def test_the_serve_command_answers_stac_requests(tmp_path: Path) -> None:
    landing, found, output, port = serve(tmp_path)

    assert landing["type"] == "Catalog"
    assert found["numberReturned"] == 8
    assert output.count("Started server process") == 1
    assert f"sqlite:///{tmp_path}/catalog.sqlite on http://127.0.0.1:{port}/" in output


def test_serve_with_workers_runs_that_many_processes_on_one_port(tmp_path: Path) -> None:
    landing, found, output, port = serve(tmp_path, "--workers", "2")

    assert landing["type"] == "Catalog"
    assert found["numberReturned"] == 8
    assert f"on http://127.0.0.1:{port}/ (2 workers)" in output
    started = {line.split("[")[-1].rstrip("]") for line in output.splitlines() if "Started server process" in line}
    assert len(started) == 2, output


@pytest.mark.parametrize("workers", ["0", "65", "two"])
def test_a_bad_worker_count_is_refused_by_name(tmp_path: Path, workers: str) -> None:
    command = [sys.executable, "-m", "cube_assets.cli", "serve", "--workers", workers, "--data-root", str(tmp_path)]
    result = subprocess.run(command, env={**os.environ, "PYTHONPATH": str(REPO)}, capture_output=True, text=True)

    assert result.returncode == 2
    assert f"--workers: {workers!r} is not a number of workers from 1 to 64" in result.stderr
    assert not (tmp_path / "catalog.sqlite").exists()
