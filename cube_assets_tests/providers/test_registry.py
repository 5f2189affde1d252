"""The provider registry in the catalog database (SQLite and PostgreSQL), its files and its command line."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from sqlalchemy import inspect, text

from cube_assets.catalog.database import create_catalog_engine, downgrade_schema, session_factory, upgrade_schema
from cube_assets.cli import main
from cube_assets.errors import ProviderError
from cube_assets.providers.registry import (
    EXAMPLES_DIR,
    collection_providers,
    get_provider,
    list_providers,
    load_providers,
    parse_provider_definition,
    read_provider_directory,
    set_priority,
)

# Both catalog backends, as in the catalog tests (PostgreSQL started by the fixture; fails on CI if absent).
from cube_assets_tests.catalog.conftest import catalog_url  # noqa: F401 - pytest fixtures, found by name

REGISTRY_TABLES = {"providers", "provider_priorities"}


def _write(folder: Path, name: str, **fields) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    document = {"name": name, "driver": "stac", "url": f"https://{name}.example/v1", **fields}
    path = folder / f"{name}.json"
    path.write_text(json.dumps(document))
    return path


@pytest.fixture
def sessions(catalog_url):
    engine = create_catalog_engine(catalog_url)
    upgrade_schema(engine)
    try:
        yield session_factory(engine)
    finally:
        engine.dispose()


def test_migration_0002_adds_and_removes_only_the_registry_tables(catalog_url) -> None:
    upgrade_schema(catalog_url, "0001")
    engine = create_catalog_engine(catalog_url)
    try:
        assert not REGISTRY_TABLES & set(inspect(engine).get_table_names())
        upgrade_schema(engine, "0002")
        assert REGISTRY_TABLES <= set(inspect(engine).get_table_names())
        downgrade_schema(engine, "0001")
        tables = set(inspect(engine).get_table_names())
        assert not REGISTRY_TABLES & tables and "images" in tables
    finally:
        engine.dispose()


def test_loading_adds_new_providers_and_skips_existing_ones(sessions, tmp_path) -> None:
    _write(tmp_path, "alpha", description="first")
    _write(tmp_path, "beta")
    with sessions.begin() as session:
        first = load_providers(session, read_provider_directory(tmp_path))
    _write(tmp_path, "alpha", description="changed")
    with sessions.begin() as session:
        second = load_providers(session, read_provider_directory(tmp_path))
        description = get_provider(session, "alpha").description

    assert (first.added, first.skipped) == (("alpha", "beta"), ())
    assert (second.added, second.updated, second.skipped) == ((), (), ("alpha", "beta"))
    assert description == "first"


def test_update_replaces_changed_providers_and_is_idempotent(sessions, tmp_path) -> None:
    _write(tmp_path, "alpha", description="first")
    with sessions.begin() as session:
        load_providers(session, read_provider_directory(tmp_path))
    _write(tmp_path, "alpha", description="changed", options={"page_size": 50})
    with sessions.begin() as session:
        updated = load_providers(session, read_provider_directory(tmp_path), update=True)
    with sessions.begin() as session:
        again = load_providers(session, read_provider_directory(tmp_path), update=True)
        stored = get_provider(session, "alpha")

    assert updated.updated == ("alpha",) and again.skipped == ("alpha",)
    assert (stored.description, dict(stored.options)) == ("changed", {"page_size": 50})


def test_registry_stores_credential_references_never_values(sessions, catalog_url, tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("CDSE_PASSWORD", "n0t-in-the-catalog")
    with sessions.begin() as session:
        load_providers(session, read_provider_directory(EXAMPLES_DIR))
    engine = create_catalog_engine(catalog_url)
    try:
        with engine.connect() as connection:
            rows = connection.execute(text("SELECT name, credentials FROM providers")).all()
    finally:
        engine.dispose()
    stored = {
        name: credentials if isinstance(credentials, dict) else json.loads(credentials) for name, credentials in rows
    }
    assert stored["cdse"]["password"] == {"env": "CDSE_PASSWORD"}
    assert "n0t-in-the-catalog" not in json.dumps(stored)


def test_priorities_order_the_collection_and_disabled_providers_are_skipped(sessions, tmp_path) -> None:
    for name in ("alpha", "beta", "gamma"):
        _write(tmp_path, name)
    with sessions.begin() as session:
        load_providers(session, read_provider_directory(tmp_path))
        set_priority(session, "sentinel-2-l2a", "gamma", 0)
        set_priority(session, "sentinel-2-l2a", "alpha", 1)
        set_priority(session, "sentinel-2-l2a", "beta", 2)
        set_priority(session, "landsat-c2-l2", "beta", 0)
    with sessions.begin() as session:
        set_priority(session, "sentinel-2-l2a", "gamma", 0, enabled=False)
    with sessions() as session:
        enabled = [p.provider.name for p in collection_providers(session, "sentinel-2-l2a")]
        everything = [
            (p.provider.name, p.enabled) for p in collection_providers(session, "sentinel-2-l2a", include_disabled=True)
        ]
        landsat = [p.provider.name for p in collection_providers(session, "landsat-c2-l2")]

    assert enabled == ["alpha", "beta"]
    assert everything == [("gamma", False), ("alpha", True), ("beta", True)]
    assert landsat == ["beta"]


def test_priority_of_an_unknown_provider_or_a_negative_rank_is_refused(sessions, tmp_path) -> None:
    _write(tmp_path, "alpha")
    with sessions.begin() as session:
        load_providers(session, read_provider_directory(tmp_path))
        with pytest.raises(ProviderError, match=r"no provider called 'nope' in the registry; registered: \['alpha'\]"):
            set_priority(session, "sentinel-2-l2a", "nope", 0)
        with pytest.raises(ProviderError, match="must be an integer >= 0"):
            set_priority(session, "sentinel-2-l2a", "alpha", -1)


def test_deleting_a_provider_removes_its_priorities(sessions, tmp_path) -> None:
    from cube_assets.providers.registry_models import RegisteredProvider

    _write(tmp_path, "alpha")
    with sessions.begin() as session:
        load_providers(session, read_provider_directory(tmp_path))
        set_priority(session, "sentinel-2-l2a", "alpha", 0)
    with sessions.begin() as session:
        session.delete(session.get(RegisteredProvider, "alpha"))
    with sessions() as session:
        assert collection_providers(session, "sentinel-2-l2a", include_disabled=True) == []
        assert list_providers(session) == []


# --------------------------------------------------------------------------------------------
# Files


def test_example_files_are_valid_stac_providers() -> None:
    definitions = {d.name: d for d in read_provider_directory(EXAMPLES_DIR)}
    assert set(definitions) == {"earth-search", "cdse", "bdc"}
    assert definitions["cdse"].credentials["type"] == "oauth2_password"
    assert definitions["bdc"].driver_options()["collections"] == {"sentinel-2-l2a": "S2_L2A-1"}


@pytest.mark.parametrize(
    ("document", "message"),
    [
        ({"name": "x", "driver": "ftp", "url": "https://x"}, "driver 'ftp' is not one of"),
        ({"name": "X Y", "driver": "stac", "url": "https://x"}, "must be lower-case"),
        ({"name": "x", "driver": "stac"}, "a stac provider needs a url"),
        ({"name": "x", "driver": "stac", "url": "https://u:p@x"}, "must not hold user info"),
        ({"name": "x", "driver": "stac", "url": "https://x", "colour": "red"}, "unknown keys"),
        ({"name": "x", "driver": "stac", "url": "https://x", "options": {"retries": -1}}, "option retries"),
        (
            {"name": "x", "driver": "local", "credentials": {"type": "bearer", "token": {"env": "T"}}},
            "takes no credentials",
        ),
    ],
)
def test_invalid_provider_files_are_refused_with_the_reason(document, message) -> None:
    with pytest.raises(ProviderError, match=message):
        parse_provider_definition(document, "x.json")


def test_literal_password_in_a_file_is_refused_without_repeating_it(tmp_path) -> None:
    path = _write(tmp_path, "alpha", credentials={"type": "basic", "username": {"env": "U"}, "password": "pl41n-t3xt"})
    with pytest.raises(
        ProviderError, match=r"alpha.json \(provider alpha\): credentials.password must be a reference"
    ) as raised:
        read_provider_directory(tmp_path)
    assert "pl41n-t3xt" not in str(raised.value) and path.is_file()


def test_two_files_with_the_same_name_are_refused(tmp_path) -> None:
    _write(tmp_path, "alpha")
    shutil.copy(tmp_path / "alpha.json", tmp_path / "zz-copy.json")
    with pytest.raises(ProviderError, match="provider 'alpha' is also declared in"):
        read_provider_directory(tmp_path)


# --------------------------------------------------------------------------------------------
# Command line


def test_command_line_loads_sets_priorities_and_lists(tmp_path, capsys) -> None:
    url = f"sqlite:///{tmp_path}/catalog.sqlite"
    assert main(["providers", "load", "--from-dir", str(EXAMPLES_DIR), "--catalog-url", url]) == 0
    assert main(["providers", "load", "--from-dir", str(EXAMPLES_DIR), "--catalog-url", url]) == 0
    assert main(["providers", "set-priority", "sentinel-2-l2a", "cdse", "1", "--catalog-url", url]) == 0
    assert main(["providers", "set-priority", "sentinel-2-l2a", "earth-search", "0", "--catalog-url", url]) == 0
    assert main(["providers", "set-priority", "sentinel-2-l2a", "bdc", "2", "--disable", "--catalog-url", url]) == 0
    output = capsys.readouterr().out
    assert "added: bdc\nadded: cdse\nadded: earth-search\n" in output
    assert "skipped: earth-search" in output

    assert main(["providers", "list", "--collection", "sentinel-2-l2a", "--catalog-url", url]) == 0
    listing = capsys.readouterr().out.splitlines()
    assert listing[-3:] == [
        "sentinel-2-l2a    0  earth-search",
        "sentinel-2-l2a    1  cdse",
        "sentinel-2-l2a    2  bdc  (disabled)",
    ]


def test_command_line_reports_bad_input_with_status_2(tmp_path, capsys) -> None:
    url = f"sqlite:///{tmp_path}/catalog.sqlite"
    assert main(["providers", "load", "--from-dir", str(tmp_path / "missing"), "--catalog-url", url]) == 2
    assert main(["providers", "set-priority", "sentinel-2-l2a", "nope", "0", "--catalog-url", url]) == 2
    errors = capsys.readouterr().err
    assert "provider folder not found" in errors and "no provider called 'nope'" in errors
