"""docs/operations.md is executed: its rehearsal blocks run as written, the others are checked.

Every fenced block of the page (outside "Scaling to a country") follows an HTML comment that
says what the tests do with it:

* ``<!-- docs-test: run rehearsal-NAME -->``: run as written, in order, in a fresh folder, by
  :func:`test_rehearsal_builds_the_demo_cube_on_postgresql_and_s3`, against the real servers the
  block itself starts (PostgreSQL from ``initdb``/``pg_ctl``, moto's S3 server);
* ``<!-- docs-test: not run (WHY) -->``: needs what this machine cannot run (a Docker engine, a
  Kubernetes cluster, a daemon run by another test, a real bucket); such a block is parsed with
  ``bash -n`` and what it names (compose services, files, Secrets, chart version) is checked
  against the repository.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import re
import shlex
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import pytest
import yaml

from cube_assets_tests.conftest import REPO_ROOT
from cube_assets_tests.fixtures_postgres import postgis_unavailable, postgres_unavailable
from cube_assets_tests.fixtures_s3 import s3_unavailable

OPERATIONS = REPO_ROOT / "docs" / "operations.md"
MARKER = re.compile(r"<!-- docs-test: (run (?P<name>[\w-]+)|not run \((?P<why>[^)]+)\)) -->")
FENCE = re.compile(r"^```(?P<lang>\w*)\n(?P<body>.*?)^```$", re.MULTILINE | re.DOTALL)
#: Sections other authors write; their blocks are not (yet) under this test's marker rule.
UNMARKED_SECTIONS = ("## Scaling to a country",)
CUBE, TILES, PERIOD = "s2_demo", ("285228", "286228"), date(2024, 1, 1)


@dataclass(frozen=True)
class Block:
    """One fenced block of the page: its language, text, marker and the section it is in."""

    lang: str
    body: str
    section: str
    run_name: str | None
    not_run_why: str | None


def operations_blocks(text: str | None = None) -> list[Block]:
    """Return every fenced block of docs/operations.md with the marker comment just above it (if any)."""
    text = OPERATIONS.read_text() if text is None else text
    blocks = []
    for fence in FENCE.finditer(text):
        before = text[: fence.start()]
        section = next((line for line in reversed(before.splitlines()) if line.startswith("## ")), "")
        previous = before.rstrip().splitlines()[-1] if before.strip() else ""
        marker = MARKER.fullmatch(previous.strip())
        blocks.append(
            Block(
                lang=fence["lang"],
                body=fence["body"],
                section=section,
                run_name=marker["name"] if marker else None,
                not_run_why=marker["why"] if marker else None,
            )
        )
    return blocks


def rehearsal_block(name: str) -> Block:
    """Return the block marked ``run rehearsal-{name}``."""
    found = [block for block in operations_blocks() if block.run_name == f"rehearsal-{name}"]
    assert len(found) == 1, f"docs/operations.md: expected one block marked 'run rehearsal-{name}', found {len(found)}"
    return found[0]


def not_run_blocks(why: str) -> list[Block]:
    """Return the blocks marked ``not run (...)`` whose reason starts with ``why``."""
    return [block for block in operations_blocks() if (block.not_run_why or "").startswith(why)]


# -- the marker rule and the blocks that cannot run here ------------------------------------------


def test_every_block_of_the_operations_page_says_whether_it_runs() -> None:
    unmarked = [
        block.body.splitlines()[0]
        for block in operations_blocks()
        if block.run_name is None and block.not_run_why is None and block.section not in UNMARKED_SECTIONS
    ]
    assert unmarked == [], (
        "docs/operations.md: put '<!-- docs-test: run rehearsal-NAME -->' or '<!-- docs-test: not run (why) -->' "
        f"on the line above these blocks: {unmarked}"
    )
    names = [block.run_name for block in operations_blocks() if block.run_name]
    assert names == ["rehearsal-start", "rehearsal-build", "rehearsal-read", "rehearsal-stop"]


def test_blocks_that_cannot_run_here_are_valid_shell() -> None:
    blocks = [block for block in operations_blocks() if block.not_run_why and block.lang == "sh"]
    assert len(blocks) >= 6
    for block in blocks:
        checked = subprocess.run(["bash", "-n"], input=block.body, text=True, capture_output=True)
        assert checked.returncode == 0, f"{block.body.splitlines()[0]!r}: {checked.stderr}"


def _compose() -> dict:
    return yaml.safe_load((REPO_ROOT / "deploy" / "docker-compose.yml").read_text())


def test_compose_block_names_services_files_and_variables_of_the_compose_file() -> None:
    (block,) = not_run_blocks("Docker")
    compose_text = (REPO_ROOT / "deploy" / "docker-compose.yml").read_text()
    services = set(_compose()["services"])
    exec_services = re.findall(r"docker compose exec (\w+)", block.body)
    assert exec_services == ["code_location", "daemon"]
    assert set(exec_services) <= services
    env_names = re.findall(r"^([A-Z_]+)=", block.body, re.MULTILINE)
    assert env_names and all(f"${{{name}" in compose_text for name in env_names), env_names
    cube_file = re.search(r"^CUBE_FILE=(\S+)$", block.body, re.MULTILINE)
    assert cube_file and (REPO_ROOT / "deploy" / cube_file[1]).resolve().is_file()
    # the workspace path the daemon command uses is where the image puts deploy/workspace.yaml
    dockerfile = (REPO_ROOT / "deploy" / "Dockerfile").read_text()
    assert "-w /opt/dagster/workspace.yaml" in block.body
    assert "COPY deploy/workspace.yaml /opt/dagster/workspace.yaml" in dockerfile
    assert "-j s2_demo_job" in block.body and "2024-01-01|285228,2024-01-01|286228" in block.body


def test_kubernetes_block_creates_what_the_helm_values_name() -> None:
    import dagster

    (block,) = not_run_blocks("Kubernetes")
    values_text = (REPO_ROOT / "deploy" / "helm" / "values.yaml").read_text()
    secrets = re.findall(r"create secret generic ([\w-]+)", block.body)
    configmaps = re.findall(r"create configmap ([\w-]+)", block.body)
    assert secrets == ["cube-assets-postgresql", "cube-assets-env"]
    assert configmaps == ["cube-assets-cubes"]
    for name in secrets + configmaps:
        assert name in values_text, f"deploy/helm/values.yaml does not use {name}"
    assert f"--version {dagster.__version__}" in block.body
    assert "--from-literal=postgresql-password=" in block.body and "postgresql-password" in values_text
    for path in re.findall(r"(?:-f |=cubes\.yaml=)(\S+)", block.body):
        assert (REPO_ROOT / path).is_file(), path
    for key in re.findall(r"--from-literal=(CUBE_ASSETS_\w+)=", block.body):
        assert key in (REPO_ROOT / "cube_assets" / "definitions.py").read_text(), key


def _dagster_cli_commands(text: str) -> set[tuple[str, str]]:
    return set(
        re.findall(r"(?:^|[\s/`])dagster (asset|job|definitions|sensor|schedule|instance|code-server) ([\w-]+)", text)
    )


def test_documented_dagster_commands_are_not_superseded_or_deprecated() -> None:
    from dagster._cli import create_dagster_cli

    cli = create_dagster_cli()
    blocks = [
        fence["body"] for page in (OPERATIONS, REPO_ROOT / "README.md") for fence in FENCE.finditer(page.read_text())
    ]
    documented = set().union(*(_dagster_cli_commands(body) for body in blocks))
    assert ("job", "backfill") in documented and ("sensor", "start") in documented
    warned = []
    for group, command in sorted(documented):
        callback = cli.commands[group].commands[command].callback
        if getattr(callback, "_superseded", False) or getattr(callback, "_deprecated", False):
            warned.append(f"dagster {group} {command}")
    assert warned == [], f"these print a SupersessionWarning or DeprecationWarning: {warned}"


def test_make_dev_and_validate_hide_the_supersession_warnings_of_their_dagster_commands(tmp_path: Path) -> None:
    from dagster._cli import create_dagster_cli

    cli = create_dagster_cli()
    assert cli.commands["dev"].callback._superseded  # so without the filter they would warn
    assert cli.commands["definitions"].commands["validate"].callback._superseded
    makefile = (REPO_ROOT / "Makefile").read_text()
    value = re.search(r"^QUIET_SUPERSEDED := PYTHONWARNINGS='([^']+)'$", makefile, re.MULTILINE)
    assert value
    for target, command in (("validate", "dagster definitions validate"), ("dev", "dagster dev")):
        recipe = re.search(rf"^{target}:.*\n((?:\t.*\n)+)", makefile, re.MULTILINE)
        assert recipe and "$(QUIET_SUPERSEDED)" in recipe[1] and command in recipe[1], target
    checked = subprocess.run(
        [str(Path(sys.executable).parent / "dagster"), "definitions", "validate", "-m", "no_such_module_here"],
        env={**_fresh_environment(), "DAGSTER_HOME": str(tmp_path), "PYTHONWARNINGS": value[1]},
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert "no_such_module_here" in checked.stdout + checked.stderr  # it ran
    assert "SupersessionWarning" not in checked.stderr


# -- make targets, .gitignore, the demo's environment ----------------------------------------------


def _make(*args: str, home: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["make", "-s", "-C", str(REPO_ROOT), *args, f"DAGSTER_HOME={home}"],
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_instance_target_installs_the_repository_instance_where_there_is_none(tmp_path: Path) -> None:
    home = tmp_path / "home"
    assert _make("instance", home=home).returncode == 0
    assert (home / "dagster.yaml").read_bytes() == (REPO_ROOT / "dagster.yaml").read_bytes()


def test_instance_target_keeps_a_dagster_yaml_that_differs_from_the_repository(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    production = (REPO_ROOT / "deploy" / "dagster.yaml").read_bytes()
    (home / "dagster.yaml").write_bytes(production)
    made = _make("instance", home=home)
    assert made.returncode == 0
    assert (home / "dagster.yaml").read_bytes() == production
    assert "keeping" in made.stdout and "differs from the repository's dagster.yaml" in made.stdout


def test_instance_target_updates_the_copy_it_installed(tmp_path: Path) -> None:
    home = tmp_path / "home"
    assert _make("instance", home=home).returncode == 0
    # an older repository version of the file, installed by the target: both copies agree
    for name in ("dagster.yaml", ".dagster.yaml.installed"):
        (home / name).write_text("telemetry:\n  enabled: false\n")
    assert _make("instance", home=home).returncode == 0
    assert (home / "dagster.yaml").read_bytes() == (REPO_ROOT / "dagster.yaml").read_bytes()


def test_make_targets_that_use_the_instance_depend_on_it() -> None:
    makefile = (REPO_ROOT / "Makefile").read_text()
    for target in ("demo", "dev", "validate", "backfill"):
        rule = re.search(rf"^{target}:(.*)$", makefile, re.MULTILINE)
        assert rule and "instance" in rule[1].split(), f"Makefile: {target} must depend on instance"


def test_make_prod_local_runs_the_documented_commands(tmp_path: Path) -> None:
    start = _make("-n", "prod-local", f"PROD_ROOT={tmp_path}", home=tmp_path / "home").stdout
    stop = _make("-n", "prod-local-stop", f"PROD_ROOT={tmp_path}", home=tmp_path / "home").stdout
    assert f'.venv/bin/cube-assets prod-local start --root "{tmp_path}"' in start
    assert f'.venv/bin/cube-assets prod-local stop --root "{tmp_path}"' in stop
    assert "cube-assets prod-local start --root .dagster_prod" in rehearsal_block("start").body


def test_git_ignores_the_rehearsal_folder() -> None:
    ignored = subprocess.run(
        ["git", "-C", str(REPO_ROOT), "check-ignore", "-q", ".dagster_prod/env.sh"], capture_output=True
    )
    assert ignored.returncode == 0


def _fresh_environment() -> dict[str, str]:
    """This process's environment without any variable of the production setup (a new terminal)."""
    prefixes = ("CUBE_ENV", "CUBE_ASSETS_", "AWS_", "DAGSTER_")
    return {k: v for k, v in os.environ.items() if not k.startswith(prefixes) or k == "CUBE_ASSETS_REAL_DATA"}


def test_demo_refuses_cube_env_prod_without_a_dagster_home(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "cube_assets.cli", "demo"],
        env={**_fresh_environment(), "CUBE_ENV": "prod"},
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 2
    assert "CUBE_ENV=prod needs DAGSTER_HOME" in result.stderr and "prod-local start" in result.stderr
    assert not (tmp_path / "cube-data").exists() and not (tmp_path / ".dagster_home").exists()


def test_demo_names_the_production_variables_it_misses(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "cube_assets.cli", "demo"],
        env={**_fresh_environment(), "CUBE_ENV": "prod", "DAGSTER_HOME": str(tmp_path / "home")},
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert result.returncode == 2
    assert "CUBE_ASSETS_S3_BUCKET" in result.stderr and "CUBE_ASSETS_CATALOG_URL" in result.stderr
    assert not (tmp_path / "cube-data" / CUBE).exists()


def test_prod_local_says_how_to_install_moto_when_it_is_missing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from cube_assets import prod_local

    monkeypatch.setitem(sys.modules, "moto.server", None)  # what `import moto.server` finds uninstalled
    state = prod_local.ProdLocalState(
        pg_port=1, s3_port=prod_local.free_tcp_port(), pg_password="p", s3_secret_access_key="s"
    )
    with pytest.raises(prod_local.ProdLocalError, match=r"pip install 'moto\[server\]>=5,<6'"):
        prod_local._start_s3(tmp_path, state)
    assert not (tmp_path / "s3.log").exists()


def test_prod_local_stop_refuses_a_folder_it_never_started(tmp_path: Path) -> None:
    from cube_assets.prod_local import ProdLocalError, stop_prod_local

    with pytest.raises(ProdLocalError, match=f"prod-local folder {tmp_path}: no state.json"):
        stop_prod_local(tmp_path)


# -- the rehearsal, run as written -------------------------------------------------------------------


def _script(block: Block) -> str:
    if block.lang == "python":
        return f".venv/bin/python - <<'PYTHON_BLOCK'\n{block.body}PYTHON_BLOCK\n"
    assert block.lang == "sh", block.lang
    return block.body


def run_block(block: Block, folder: Path, environment: dict[str, str], timeout_s: float) -> tuple[str, float]:
    """Run ``block`` with bash in ``folder``; update ``environment`` as a terminal would keep it.

    Returns:
        The block's standard output and how long it took, in seconds.
    """
    dump = folder / ".environment"
    script = f"set -euo pipefail\n{_script(block)}\nenv -0 > {shlex.quote(str(dump))}\n"
    started = time.monotonic()
    result = subprocess.run(
        ["bash", "-c", script], cwd=folder, env=environment, capture_output=True, text=True, timeout=timeout_s
    )
    elapsed = time.monotonic() - started
    assert result.returncode == 0, f"block {block.run_name} failed:\n{result.stdout[-3000:]}\n{result.stderr[-5000:]}"
    assert "SupersessionWarning" not in result.stderr and "DeprecationWarning" not in result.stderr, result.stderr
    environment.clear()
    for entry in dump.read_bytes().split(b"\0"):
        if entry:
            name, _, value = entry.decode().partition("=")
            environment[name] = value
    return result.stdout, elapsed


@pytest.fixture
def rehearsal_folder() -> Iterator[Path]:
    """A fresh folder under /tmp (which the ``postgres`` user can enter when the tests run as root)."""
    folder = Path(tempfile.mkdtemp(prefix="cube-rehearsal-", dir="/tmp"))
    folder.chmod(0o755)
    # The documented commands call .venv/bin/…: the venv running these tests, as in a checkout.
    (folder / ".venv").symlink_to(sys.prefix)
    try:
        yield folder
    finally:
        from cube_assets.prod_local import read_state, stop_prod_local

        root = folder / ".dagster_prod"
        if read_state(root) is not None:
            stop_prod_local(root)  # a failed test must not leave the servers running
        shutil.rmtree(folder, ignore_errors=True)


def _s3(environment: dict[str, str]):
    import boto3
    from botocore.config import Config

    return boto3.client(
        "s3",
        endpoint_url=environment["AWS_ENDPOINT_URL"],
        region_name=environment["AWS_REGION"],
        aws_access_key_id=environment["CUBE_ASSETS_S3_ACCESS_KEY_ID"],
        aws_secret_access_key=environment["CUBE_ASSETS_S3_SECRET_ACCESS_KEY"],
        config=Config(s3={"addressing_style": "path"}),
    )


def bucket_contents(environment: dict[str, str]) -> dict[str, str]:
    """Return every object's key and the SHA-256 of its bytes."""
    client, bucket = _s3(environment), environment["CUBE_ASSETS_S3_BUCKET"]
    keys = [
        item["Key"]
        for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket)
        for item in page.get("Contents", [])
    ]
    return {key: hashlib.sha256(client.get_object(Bucket=bucket, Key=key)["Body"].read()).hexdigest() for key in keys}


def catalog_rows(environment: dict[str, str]) -> dict[str, list[tuple]]:
    """Return the rows of the catalog's tables (their identifying columns), sorted."""
    from sqlalchemy import text

    from cube_assets.catalog.database import create_catalog_engine

    engine = create_catalog_engine(environment["CUBE_ASSETS_CATALOG_URL"])
    try:
        with engine.connect() as connection:
            return {
                "products": sorted(connection.execute(text("SELECT id FROM products")).all()),
                "bands": sorted(connection.execute(text("SELECT product_id, name FROM bands")).all()),
                "images": sorted(connection.execute(text("SELECT id, product_id FROM images")).all()),
                "image_files": sorted(
                    connection.execute(text("SELECT image_id, band, href, size_bytes FROM image_files")).all()
                ),
            }
    finally:
        engine.dispose()


def successful_dagster_runs(environment: dict[str, str]) -> dict[str, int]:
    """Return how many successful runs of each job Dagster's PostgreSQL run storage holds."""
    import psycopg

    with psycopg.connect(
        host=environment["DAGSTER_PG_HOST"],
        port=int(environment["DAGSTER_PG_PORT"]),
        dbname=environment["DAGSTER_PG_DB"],
        user=environment["DAGSTER_PG_USERNAME"],
        password=environment["DAGSTER_PG_PASSWORD"],
    ) as connection:
        rows = connection.execute(
            "SELECT pipeline_name, count(*) FROM runs WHERE status = 'SUCCESS' GROUP BY pipeline_name"
        ).fetchall()
    return {job: int(count) for job, count in rows}


def check_lcf_pixels_over_vsis3(environment: dict[str, str], tile: str, merge_dates: list[date]) -> int:
    """Check, over /vsis3/, that each LCF B04 pixel is the B04 of the merge its PROVENANCE names; return them."""
    import numpy as np
    import rasterio
    from rasterio.windows import Window

    from cube_assets.storage.layout import composite_key, merge_key
    from cube_assets.storage.s3_store import S3RasterStore

    store = S3RasterStore(
        environment["CUBE_ASSETS_S3_BUCKET"],
        environment["CUBE_ASSETS_S3_PREFIX"],
        endpoint_url=environment["AWS_ENDPOINT_URL"],
        region=environment["AWS_REGION"],
        access_key_id=environment["CUBE_ASSETS_S3_ACCESS_KEY_ID"],
        secret_access_key=environment["CUBE_ASSETS_S3_SECRET_ACCESS_KEY"],
    )
    window = Window(384, 384, 256, 256)

    def read(key: str) -> tuple[np.ndarray, float | None]:
        path = store.gdal_path(store.uri(key))
        assert path.startswith("/vsis3/")
        with store.gdal_environment(), rasterio.open(path) as src:
            return src.read(1, window=window), src.nodata

    red, red_nodata = read(composite_key(CUBE, tile, PERIOD, "LCF", "B04"))
    provenance, provenance_nodata = read(composite_key(CUBE, tile, PERIOD, "LCF", "PROVENANCE"))
    chosen = provenance != provenance_nodata
    assert chosen.sum() > 0.5 * chosen.size  # the demo's six dates leave most pixels observed
    for day in merge_dates:
        merged, _ = read(merge_key(CUBE, tile, day, "B04"))
        here = chosen & (provenance == day.timetuple().tm_yday)
        np.testing.assert_array_equal(red[here], merged[here])
    assert (red[~chosen] == red_nodata).all()
    return int(chosen.sum())


@pytest.mark.slow
@pytest.mark.timeout(1800)
def test_rehearsal_builds_the_demo_cube_on_postgresql_and_s3(rehearsal_folder: Path) -> None:
    from cube_assets.cube_config import DEMO_CONFIG, load_project_config
    from cube_assets.prod_local import ProdLocalError, postgres_binary

    try:
        postgres_binary("initdb")
        postgis = list(Path("/usr/share/postgresql").glob("*/extension/postgis.control"))
    except ProdLocalError as exc:
        postgres_unavailable(str(exc))  # skipped here, failed under CI=true
    if not postgis:
        postgis_unavailable("no postgis.control under /usr/share/postgresql")
    if importlib.util.find_spec("moto") is None:
        s3_unavailable("moto is not installed (pip install 'moto[server]>=5,<6')")
    cube = load_project_config(DEMO_CONFIG).cube(CUBE)
    environment = _fresh_environment()
    timings: dict[str, float] = {}

    _, timings["start"] = run_block(rehearsal_block("start"), rehearsal_folder, environment, 300)
    assert environment["CUBE_ENV"] == "prod"
    assert environment["DAGSTER_HOME"] == str(rehearsal_folder / ".dagster_prod" / "dagster_home")
    # one password: the catalog URL's is Dagster's
    assert f":{environment['DAGSTER_PG_PASSWORD']}@" in environment["CUBE_ASSETS_CATALOG_URL"]
    assert "postgres" in (Path(environment["DAGSTER_HOME"]) / "dagster.yaml").read_text()

    output, timings["build"] = run_block(rehearsal_block("build"), rehearsal_folder, environment, 1500)
    assert "CUBE_ENV=prod: rasters in s3://cubes/demo" in output
    assert environment["DAGSTER_PG_PASSWORD"] not in output  # the catalog URL is shown redacted
    assert not (rehearsal_folder / "cube-data").exists() and not (rehearsal_folder / ".dagster_home").exists()
    objects = bucket_contents(environment)
    assert all(key.startswith("demo/") for key in objects)
    composites = {
        key: digest
        for key, digest in objects.items()
        if re.fullmatch(rf"demo/{CUBE}/\d+/{PERIOD}/{CUBE}_\d+_{PERIOD:%Y%m%d}_[A-Z]+_\w+\.tif", key)
    }
    functions = {key.rsplit("_", 2)[-2] for key in composites}
    assert functions == {"LCF", "MED"}
    assert {key.split("/")[2] for key in composites} == set(TILES)
    rows = catalog_rows(environment)
    assert [product for (product,) in rows["products"]] == sorted(
        [f"{CUBE}-LCF", f"{CUBE}-MED", f"{CUBE}-merge", cube.collection]
    )
    images = [image for image, _ in rows["images"]]
    assert len(images) == len(set(images)) == 28
    assert all(href.startswith("s3://cubes/demo/") for _, _, href, _ in rows["image_files"])
    assert successful_dagster_runs(environment) == {f"{CUBE}_job": len(TILES)}  # the cube's job, both tiles
    manifest = _s3(environment).get_object(
        Bucket="cubes", Key=f"demo/{CUBE}/_manifests/tile_merge/{TILES[0]}/{PERIOD}.json"
    )
    merge_dates = [date.fromisoformat(merge["date"]) for merge in json.loads(manifest["Body"].read())["merges"]]
    assert len(merge_dates) == 6
    assert check_lcf_pixels_over_vsis3(environment, TILES[0], merge_dates) > 0

    output, timings["read"] = run_block(rehearsal_block("read"), rehearsal_folder, environment, 120)
    assert re.search(
        r"s3://cubes/demo/s2_demo/285228/2024-01-01/s2_demo_285228_20240101_LCF_B04\.tif 1024 1024 \d+", output
    )

    _, timings["rebuild"] = run_block(rehearsal_block("build"), rehearsal_folder, environment, 1500)
    again = bucket_contents(environment)
    assert sorted(again) == sorted(objects)  # the same keys: nothing added, nothing duplicated
    changed = sorted(key for key in objects if again[key] != objects[key])
    # every raster, quicklook and raw file byte-identical; only the runs' JSON manifests are rewritten
    assert all(f"/{CUBE}/_manifests/" in key for key in changed), changed
    assert {key: again[key] for key in composites} == composites
    assert catalog_rows(environment) == rows
    assert successful_dagster_runs(environment) == {f"{CUBE}_job": 2 * len(TILES)}

    ports = [int(environment["DAGSTER_PG_PORT"]), int(environment["AWS_ENDPOINT_URL"].rsplit(":", 1)[1])]
    _, timings["stop"] = run_block(rehearsal_block("stop"), rehearsal_folder, environment, 120)
    for port in ports:
        with socket.socket() as probe:
            assert probe.connect_ex(("127.0.0.1", port)) != 0, f"port {port} still answers after stop"
    print("rehearsal timings:", {name: round(seconds, 1) for name, seconds in timings.items()})
