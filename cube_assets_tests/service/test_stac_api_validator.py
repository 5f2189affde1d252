"""stac-api-validator, run against the API served on loopback: core, collections, features, item-search and filter.

The validator validates every object with stac-validator and pystac, which download JSON schemas by URL;
offline, each schema URL is mapped to its copy in ``stac-schemas`` beside the real sample data (core 1.1.0 and
GeoJSON to the copies inside pystac), see its SOURCES.md. Nothing is mocked: the validator's
HTTP requests reach the real server. One schema has no offline copy: PROJJSON
(``https://proj.org/schemas/v0.4/projjson.schema.json``, which the datacube extension references
for a ``reference_system`` given as an object); it is replaced by ``{"type": "object"}``, and the
API writes reference systems as EPSG codes (numbers), never as PROJJSON objects.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
from pathlib import Path
from typing import Any

import pystac
import pytest
import stac_validator.utilities
from pystac.validation.stac_validator import JsonSchemaSTACValidator
from stac_api_validator.validations import QueryConfig, validate_api

from cube_assets_tests.service.conftest import LCF, RunningApi, tile_footprint

#: Beside the real sample data (``$CUBE_ASSETS_REAL_DATA``, default ``../shared/data/real``).
_REAL = Path(os.environ.get("CUBE_ASSETS_REAL_DATA", Path(__file__).resolve().parents[2].parent / "shared/data/real"))
SCHEMAS = Path(os.environ.get("CUBE_ASSETS_STAC_SCHEMAS", _REAL.parent / "stac-schemas"))
PYSTAC_SCHEMAS = Path(pystac.__file__).parent / "validation" / "jsonschemas"
CONFORMANCE = ["core", "collections", "features", "item-search", "filter"]


PROJJSON_URL = "https://proj.org/schemas/v0.4/projjson.schema.json"


def local_schema(url: str, projjson: Path) -> str:
    """The local copy of a schema URL, or the URL itself when there is none."""
    if url == PROJJSON_URL:
        return str(projjson)
    if match := re.fullmatch(r"https://stac-extensions\.github\.io/([^/]+)/(v[^/]+)/schema\.json", url):
        candidate = SCHEMAS / "stac-extensions" / match[1] / match[2] / "schema.json"
    elif match := re.fullmatch(r"https://schemas\.stacspec\.org/v1\.0\.0/(.+)", url):
        candidate = SCHEMAS / "stac-spec" / "v1.0.0" / match[1]
    elif match := re.fullmatch(r"https://schemas\.stacspec\.org/v1\.1\.0/(.+)", url):
        candidate = PYSTAC_SCHEMAS / "stac-spec" / "v1.1.0" / Path(match[1]).name  # pystac keeps them flat
    elif match := re.fullmatch(r"https://geojson\.org/schema/(.+)", url):
        candidate = PYSTAC_SCHEMAS / "geojson" / match[1]
    else:
        return url
    return str(candidate) if candidate.is_file() else url


@pytest.fixture
def offline_schemas(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """stac-validator reads every schema from the local copies."""
    if not SCHEMAS.is_dir():
        pytest.fail(f"the offline STAC schemas are missing at {SCHEMAS}")
    projjson = tmp_path / "projjson.schema.json"
    projjson.write_text(
        json.dumps({"$schema": "http://json-schema.org/draft-07/schema#", "$id": PROJJSON_URL, "type": "object"})
    )
    original = stac_validator.utilities._map_extension_url_to_local
    monkeypatch.setattr(
        stac_validator.utilities, "_map_extension_url_to_local", lambda url: original(local_schema(url, projjson))
    )
    get_schema = JsonSchemaSTACValidator._get_schema

    def local_get_schema(validator: JsonSchemaSTACValidator, uri: str) -> dict[str, Any]:
        local = local_schema(uri, projjson)
        if local != uri and uri not in validator.schema_cache:
            validator.schema_cache[uri] = json.loads(Path(local).read_text())
        return get_schema(validator, uri)

    monkeypatch.setattr(JsonSchemaSTACValidator, "_get_schema", local_get_schema)


def run_validator(api: RunningApi) -> tuple[list[str], list[str]]:
    geometry = tile_footprint("023017").centroid.buffer(0.0005).envelope.__geo_interface__
    warnings, errors = validate_api(
        root_url=api.url.rstrip("/"),
        ccs_to_validate=CONFORMANCE,
        collection=LCF,
        geometry=json.dumps(geometry),
        auth_bearer_token=None,
        auth_query_parameter=None,
        fields_nested_property=None,
        validate_pagination=True,
        query_config=QueryConfig(*[None] * len(dataclasses.fields(QueryConfig))),
        transaction_collection=None,
        headers=None,
        open_assets_urls=False,
    )
    return list(warnings), list(errors)


def test_stac_api_validator_passes_on_sqlite(stac_api: RunningApi, offline_schemas: None) -> None:
    warnings, errors = run_validator(stac_api)

    assert errors == [], "\n".join(errors)


def test_stac_api_validator_passes_on_postgresql(stac_api_pg: RunningApi, offline_schemas: None) -> None:
    warnings, errors = run_validator(stac_api_pg)

    assert errors == [], "\n".join(errors)
