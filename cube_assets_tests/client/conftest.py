"""Client fixtures: the catalog databases of ``cube_assets_tests/catalog/conftest.py``, on SQLite and PostgreSQL."""

from cube_assets_tests.catalog.conftest import catalog_url, engine, footprint_backend, sessions  # noqa: F401 - fixtures
