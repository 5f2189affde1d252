"""Microwave and derived bands, their extra attributes, and the record of image uploads.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-02

* ``bands.type`` also allows ``microwave`` and ``derived``; new nullable columns
  ``wavelength_fwhm``, ``frequency``, ``bandwidth``, ``resolution_unit`` and ``colormap_name``
  (after ``is_alpha``). SQLite cannot change a CHECK constraint in place, so there the table is
  rebuilt in its modelled form; PostgreSQL swaps the constraint and adds the columns.
* ``image_uploads``: one row per upload (status, options, events, errors), indexed by image.

Hand-written; the drift tests in ``cube_assets_tests/catalog/test_migrations.py`` compare the
result with ``cube_assets/catalog/models.py``.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0005"
down_revision: str | Sequence[str] | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_OLD_COLUMNS = (
    "product_id, name, type, data_type, data_range, display_range, nodata, resolution, band_index,"
    " wavelength_min, wavelength_max, wavelength_center, class_labels, colormap, physical_range, unit, description,"
    " is_alpha"
)
_OLD_TYPES = "type IN ('spectral', 'mask', 'class', 'generic')"
_NEW_TYPES = "type IN ('spectral', 'mask', 'class', 'generic', 'microwave', 'derived')"
_NEW_COLUMNS = ("wavelength_fwhm", "frequency", "bandwidth", "resolution_unit", "colormap_name")
_OLD_BANDS = "_bands_before_0005"


def _json() -> sa.types.TypeEngine:
    """JSON on SQLite, JSONB on PostgreSQL; ``None`` stored as SQL NULL."""
    return sa.JSON(none_as_null=True).with_variant(postgresql.JSONB(none_as_null=True), "postgresql")


def _timestamp() -> sa.DateTime:
    return sa.DateTime(timezone=True)


def _now() -> sa.TextClause:
    """Server default: the database's current UTC time with sub-second precision."""
    if op.get_bind().dialect.name == "sqlite":
        return sa.text("(strftime('%Y-%m-%d %H:%M:%f', 'now'))")
    return sa.text("now()")


def _new_columns() -> list[sa.Column]:
    return [
        sa.Column("wavelength_fwhm", sa.Float(), nullable=True),
        sa.Column("frequency", sa.Float(), nullable=True),
        sa.Column("bandwidth", sa.Float(), nullable=True),
        sa.Column("resolution_unit", sa.String(), nullable=True),
        sa.Column("colormap_name", sa.String(), nullable=True),
    ]


def _create_bands(new: bool) -> None:
    """Create ``bands`` as 0003 left it, or (``new``) with this revision's types and columns."""
    columns = [
        sa.Column("product_id", sa.String(), nullable=False),
        sa.Column("name", sa.String(), nullable=False),
        sa.Column("type", sa.String(), nullable=False),
        sa.Column("data_type", sa.String(), nullable=False),
        sa.Column("data_range", _json(), nullable=True),
        sa.Column("display_range", _json(), nullable=True),
        sa.Column("nodata", sa.Float(), nullable=True),
        sa.Column("resolution", sa.Float(), nullable=False),
        sa.Column("band_index", sa.Integer(), nullable=False),
        sa.Column("wavelength_min", sa.Float(), nullable=True),
        sa.Column("wavelength_max", sa.Float(), nullable=True),
        sa.Column("wavelength_center", sa.Float(), nullable=True),
        sa.Column("class_labels", _json(), nullable=True),
        sa.Column("colormap", _json(), nullable=True),
        sa.Column("physical_range", _json(), nullable=True),
        sa.Column("unit", sa.String(), nullable=True),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("is_alpha", sa.Boolean(), server_default=sa.false(), nullable=False),
    ]
    if new:
        columns.extend(_new_columns())
    op.create_table(
        "bands",
        *columns,
        sa.PrimaryKeyConstraint("product_id", "name", name=op.f("pk_bands")),
        sa.CheckConstraint(_NEW_TYPES if new else _OLD_TYPES, name=op.f("ck_bands_type")),
        sa.CheckConstraint("resolution > 0", name=op.f("ck_bands_resolution_positive")),
        sa.ForeignKeyConstraint(
            ["product_id"], ["products.id"], name=op.f("fk_bands_product_id_products"), ondelete="CASCADE"
        ),
    )


def _rebuild_sqlite_bands(new: bool) -> None:
    # env.py turns foreign keys off while migrating on SQLite and checks them before committing.
    op.rename_table("bands", _OLD_BANDS)
    _create_bands(new)
    op.execute(f"INSERT INTO bands ({_OLD_COLUMNS}) SELECT {_OLD_COLUMNS} FROM {_OLD_BANDS}")
    op.drop_table(_OLD_BANDS)


def upgrade() -> None:
    """Widen the band types, add the band columns and create ``image_uploads``."""
    if op.get_bind().dialect.name == "sqlite":
        _rebuild_sqlite_bands(new=True)
    else:
        op.drop_constraint(op.f("ck_bands_type"), "bands", type_="check")
        op.create_check_constraint(op.f("ck_bands_type"), "bands", _NEW_TYPES)
        for column in _new_columns():
            op.add_column("bands", column)
    op.create_table(
        "image_uploads",
        sa.Column("id", sa.String(), nullable=False),
        sa.Column("product_id", sa.String(), nullable=False),
        sa.Column("image_id", sa.String(), nullable=False),
        sa.Column("status", sa.String(), nullable=False),
        sa.Column("image_upload_options", _json(), nullable=False),
        sa.Column("events", _json(), nullable=False),
        sa.Column("errors", _json(), nullable=False),
        sa.Column("created", _timestamp(), server_default=_now(), nullable=False),
        sa.Column("modified", _timestamp(), server_default=_now(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_image_uploads")),
    )
    op.create_index("ix_image_uploads_image_id", "image_uploads", ["image_id"])


def downgrade() -> None:
    """Drop ``image_uploads`` and return ``bands`` to 0004 (microwave and derived bands are deleted)."""
    op.drop_index("ix_image_uploads_image_id", table_name="image_uploads")
    op.drop_table("image_uploads")
    op.execute("DELETE FROM bands WHERE type IN ('microwave', 'derived')")
    if op.get_bind().dialect.name == "sqlite":
        _rebuild_sqlite_bands(new=False)
        return
    for name in reversed(_NEW_COLUMNS):
        op.drop_column("bands", name)
    op.drop_constraint(op.f("ck_bands_type"), "bands", type_="check")
    op.create_check_constraint(op.f("ck_bands_type"), "bands", _OLD_TYPES)
