"""Alembic migrations of the catalog schema.

A package (rather than a plain folder) so that ``env.py`` ships in the wheel with the rest of the
code; ``versions/*.py``, ``*.mako`` and ``*.ini`` ship as package data. Nothing here is meant to
be imported: run the migrations with :func:`cube_assets.catalog.database.upgrade_schema`.
"""
