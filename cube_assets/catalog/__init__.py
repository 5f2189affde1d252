"""The catalog's metadata core: what is catalogued, how it is stored, checked, searched, summarized and shown as STAC.

From the bottom up: :mod:`~cube_assets.catalog.models` (SQLAlchemy tables) and its Alembic
``migrations``, :mod:`~cube_assets.catalog.database` (engines, sessions, schema upgrades),
:mod:`~cube_assets.catalog.validation` (the checks of one field), :mod:`~cube_assets.catalog.repository`
(one frozen, validated record per entity and the idempotent upserts),
:mod:`~cube_assets.catalog.footprints` (exact ``intersects`` on every backend),
:mod:`~cube_assets.catalog.expressions` (property expressions compiled to SQL),
:mod:`~cube_assets.catalog.search` (the lazy search over a class of objects),
:mod:`~cube_assets.catalog.summary` (counts and bytes by SQL aggregates) and
:mod:`~cube_assets.catalog.stac` (Collections and Items, validated offline). It imports nothing
of the client (:mod:`cube_assets.client`, built on top of it), the stores or the providers.
"""
