"""The catalog password of ``CUBE_ASSETS_CATALOG_URL`` in none of what Dagster stores or shows.

The definitions are built the way a deployment loads them (``definitions._from_environment``)
with the variables of ``CUBE_ENV=prod``: the loopback S3 server of ``fixtures_s3`` and a real
PostgreSQL server whose URL carries a password (the test server trusts loopback connections,
so any password is accepted and the run really uses the URL). The UI's view is read from
Dagster's GraphQL over a real code-server subprocess loading ``cube_assets/definitions.py``.
Nothing is mocked.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from dagster import DagsterInstance, EnvVar, instance_for_test
from dagster._core.remote_representation.external_data import RepositorySnap
from dagster._serdes import serialize_value
from sqlalchemy import make_url

from cube_assets import definitions
from cube_assets.catalog.database import create_catalog_engine, session_factory
from cube_assets.catalog.repository import search_images
from cube_assets.partitions import partition_key
from cube_assets_tests.conftest import SMALL_CUBE, SMALL_SIMULATOR, write_cube_file
from cube_assets_tests.fixtures_postgres import PostgresServer
from cube_assets_tests.fixtures_s3 import S3Server

PASSWORD = "Catalog-Pa55w0rd-7Qx"
PARTITION = partition_key("000000", "2024-01-01")


@dataclass
class ProdRun:
    """A whole ``small_job`` run of the prod definitions, and everything Dagster kept of it."""

    defs: object
    environment: dict[str, str]
    repository_snapshot: str
    job_snapshot: str
    events: list[str]
    metadata: list[str]
    catalog_url: str


def _serialized_metadata(instance: DagsterInstance, run_id: str) -> list[str]:
    texts = []
    for record in instance.all_logs(run_id):
        event = record.dagster_event
        if event is None or not event.is_step_materialization:
            continue
        metadata = event.step_materialization_data.materialization.metadata
        texts.append(json.dumps({key: str(value.value) for key, value in metadata.items()}))
    return texts


@pytest.fixture(scope="module")
def prod_run(
    tmp_path_factory: pytest.TempPathFactory, s3_server: S3Server, postgresql_server: PostgresServer
) -> Iterator[ProdRun]:
    """Build the prod definitions from the environment, run the cube's job for one partition."""
    root = tmp_path_factory.mktemp("secrets_prod")
    config = write_cube_file(root, SMALL_CUBE, [SMALL_SIMULATOR])
    schema = "secrets_prod_catalog"
    postgresql_server.admin(f'CREATE SCHEMA "{schema}"')
    catalog_url = (
        make_url(postgresql_server.schema_url(schema)).set(password=PASSWORD).render_as_string(hide_password=False)
    )
    environment = {
        **s3_server.environment(s3_server.create_bucket("secrets"), prefix="cubes"),
        "CUBE_ASSETS_CATALOG_URL": catalog_url,
        "CUBE_ASSETS_CONFIG": str(config),
        "CUBE_ASSETS_DATA_ROOT": str(root / "data"),
        "CUBE_ASSETS_EXECUTOR": "in_process",
    }
    with pytest.MonkeyPatch.context() as patch:
        for name, value in environment.items():
            patch.setenv(name, value)
        defs = definitions._from_environment()
        repository_snapshot = serialize_value(RepositorySnap.from_def(defs.get_repository_def()))
        (root / "home").mkdir()
        with instance_for_test(temp_dir=str(root / "home")) as instance:
            result = defs.resolve_job_def(definitions.cube_job_name("small")).execute_in_process(
                instance=instance,
                partition_key=PARTITION,
            )
            assert result.success
            run = instance.get_run_by_id(result.run_id)
            job_snapshot = serialize_value(instance.get_job_snapshot(run.job_snapshot_id))
            events = [serialize_value(record) for record in instance.all_logs(result.run_id)]
            metadata = _serialized_metadata(instance, result.run_id)
            run_record = serialize_value(run)
    yield ProdRun(defs, environment, repository_snapshot, job_snapshot, events + [run_record], metadata, catalog_url)
    postgresql_server.admin(f'DROP SCHEMA "{schema}" CASCADE')


def test_prod_catalog_url_reaches_both_resources_as_an_env_var(prod_run: ProdRun) -> None:
    resources = prod_run.defs.resources  # type: ignore[attr-defined]  # the test's run holds its definitions
    assert resources["catalog_io_manager"].url == EnvVar("CUBE_ASSETS_CATALOG_URL")
    assert resources["providers"].catalog_url == EnvVar("CUBE_ASSETS_CATALOG_URL")


def test_prod_run_used_the_catalog_url_with_the_password(prod_run: ProdRun) -> None:
    engine = create_catalog_engine(prod_run.catalog_url)
    try:
        with session_factory(engine)() as session:
            images = search_images(session, tile="000000")
    finally:
        engine.dispose()
    assert sorted(i.product_id for i in images) == ["small-AVG", "small-LCF", "small-MED", "small-merge", "small-merge"]


@pytest.mark.parametrize("what", ["repository_snapshot", "job_snapshot", "events", "metadata"])
def test_catalog_password_is_in_no_snapshot_event_or_metadata_value(prod_run: ProdRun, what: str) -> None:
    stored = getattr(prod_run, what)
    texts = stored if isinstance(stored, list) else [stored]
    assert texts and all(texts), f"{what}: nothing was recorded, so the test would prove nothing"
    assert [text for text in texts if PASSWORD in text] == []


def test_catalog_metadata_names_the_database_without_the_password(prod_run: ProdRun) -> None:
    catalog = [json.loads(text)["catalog"] for text in prod_run.metadata if '"catalog"' in text]
    expected = make_url(prod_run.catalog_url)
    assert catalog, "the catalog_item materialization records which catalog it wrote to"
    assert all(f"{expected.username}:***@{expected.host}:{expected.port}/{expected.database}" in url for url in catalog)


def test_local_catalog_url_variable_also_travels_as_an_env_var(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, postgresql_server: PostgresServer
) -> None:
    url = make_url(postgresql_server.admin_url).set(password=PASSWORD).render_as_string(hide_password=False)
    monkeypatch.setenv("CUBE_ENV", "local")
    monkeypatch.setenv("CUBE_ASSETS_CATALOG_URL", url)
    monkeypatch.setenv("CUBE_ASSETS_CONFIG", str(write_cube_file(tmp_path, SMALL_CUBE, [SMALL_SIMULATOR])))
    monkeypatch.setenv("CUBE_ASSETS_DATA_ROOT", str(tmp_path / "data"))

    defs = definitions._from_environment()

    assert defs.resources["catalog_io_manager"].url == EnvVar("CUBE_ASSETS_CATALOG_URL")
    assert defs.resources["providers"].catalog_url == EnvVar("CUBE_ASSETS_CATALOG_URL")
    assert PASSWORD not in serialize_value(RepositorySnap.from_def(defs.get_repository_def()))


def test_explicit_catalog_url_argument_is_still_used_as_given(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CUBE_ASSETS_CATALOG_URL", "postgresql://ignored@127.0.0.1:9/ignored")
    url = f"sqlite:///{tmp_path}/explicit.sqlite"

    defs = definitions.build_definitions(
        write_cube_file(tmp_path, SMALL_CUBE, [SMALL_SIMULATOR]), tmp_path / "data", url
    )

    assert (defs.resources["catalog_io_manager"].url, defs.resources["providers"].catalog_url) == (url, url)


def test_local_without_the_variable_keeps_the_sqlite_default(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CUBE_ASSETS_CATALOG_URL", raising=False)

    defs = definitions.build_definitions(write_cube_file(tmp_path, SMALL_CUBE, [SMALL_SIMULATOR]), tmp_path / "data")

    assert defs.resources["catalog_io_manager"].url == f"sqlite:///{(tmp_path / 'data').resolve()}/catalog.sqlite"


RESOURCES_QUERY = """
query Resources($selector: RepositorySelector!) {
  allTopLevelResourceDetailsOrError(repositorySelector: $selector) {
    __typename
    ... on ResourceDetailsList { results { name configuredValues { key value type } } }
  }
}
"""
DEFAULT_CONFIG_QUERY = """
query DefaultConfig($selector: PipelineSelector!) {
  runConfigSchemaOrError(selector: $selector) { __typename ... on RunConfigSchema { rootDefaultYaml } }
}
"""


def test_catalog_password_is_not_in_what_the_dagster_ui_shows(prod_run: ProdRun, tmp_path: Path) -> None:
    from dagster_graphql.test.utils import define_out_of_process_context, execute_dagster_graphql

    repository = Path(definitions.__file__).resolve().parents[1]
    with pytest.MonkeyPatch.context() as patch:
        for name, value in prod_run.environment.items():
            patch.setenv(name, value)
        # The code server is a subprocess: it must import this checkout's package.
        patch.setenv("PYTHONPATH", str(repository))
        with (
            instance_for_test(temp_dir=str(tmp_path)) as instance,
            define_out_of_process_context(definitions.__file__, "defs", instance) as context,
        ):
            location = next(iter(context.get_code_location_entries()))
            selector = {"repositoryLocationName": location, "repositoryName": "__repository__"}
            resources = execute_dagster_graphql(context, RESOURCES_QUERY, {"selector": selector}).data
            default_config = execute_dagster_graphql(
                context,
                DEFAULT_CONFIG_QUERY,
                {"selector": {**selector, "pipelineName": definitions.cube_job_name("small")}},
            ).data
    shown = json.dumps([resources, default_config])
    assert PASSWORD not in shown
    assert resources["allTopLevelResourceDetailsOrError"]["__typename"] == "ResourceDetailsList"
    assert default_config["runConfigSchemaOrError"]["__typename"] == "RunConfigSchema"
    assert "CUBE_ASSETS_CATALOG_URL" in shown, "the UI names the variable the URL comes from"
