"""``cube-assets serve``: which catalog it serves, and the real command answering over HTTP."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

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


def test_the_serve_command_answers_stac_requests(tmp_path: Path) -> None:
    build_cube_catalog(f"sqlite:///{tmp_path}/catalog.sqlite", tmp_path).close()
    port = free_port()
    environment = {**os.environ, "PYTHONPATH": str(REPO), "CUBE_ENV": "dev"}
    command = [sys.executable, "-m", "cube_assets.cli", "serve", "--port", str(port), "--data-root", str(tmp_path)]
    process = subprocess.Popen(command, env=environment, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
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
        found = httpx.get(f"http://127.0.0.1:{port}/search", params={"collections": LCF, "limit": 100}).json()
    finally:
        process.terminate()
        output, _ = process.communicate(timeout=30)

    assert landing.status_code == 200 and landing.json()["type"] == "Catalog"
    assert found["numberReturned"] == 8
    assert f"sqlite:///{tmp_path}/catalog.sqlite on http://127.0.0.1:{port}/" in output
