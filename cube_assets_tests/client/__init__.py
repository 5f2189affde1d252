"""Tests of cube_assets.catalog: models, migrations, repository."""
