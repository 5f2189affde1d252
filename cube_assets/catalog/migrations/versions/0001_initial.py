"""Initial catalog schema: products, bands, images, image_files.

Revision ID: 0001
Revises:
Create Date: 2025-01-01

Hand-written to match ``cube_assets/catalog/models.py`` exactly; the test
``test_migrated_schema_matches_models`` compares the two. Types and defaults are spelled out
here rather than imported from the models, so this revision keeps meaning what it meant when the
models change.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0001"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


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


def upgrade() -> None:
    """Create the four catalog tables and their indexes."""
    op.create_table(
        "products",
        sa.Column("id", sa.String(), nullable=False),
        sa.Column("name", sa.String(), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("start_datetime", _timestamp(), nullable=True),
        sa.Column("end_datetime", _timestamp(), nullable=True),
        sa.Column("tags", _json(), nullable=False),
        sa.Column("properties", _json(), nullable=False),
        sa.Column("created", _timestamp(), server_default=_now(), nullable=False),
        sa.Column("modified", _timestamp(), server_default=_now(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_products")),
    )
    op.create_table(
        "bands",
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
        sa.PrimaryKeyConstraint("product_id", "name", name=op.f("pk_bands")),
        sa.CheckConstraint("type IN ('spectral', 'mask', 'class', 'generic')", name=op.f("ck_bands_type")),
        sa.CheckConstraint("resolution > 0", name=op.f("ck_bands_resolution_positive")),
        sa.ForeignKeyConstraint(
            ["product_id"], ["products.id"], name=op.f("fk_bands_product_id_products"), ondelete="CASCADE"
        ),
    )
    op.create_table(
        "images",
        sa.Column("id", sa.String(), nullable=False),
        sa.Column("product_id", sa.String(), nullable=False),
        sa.Column("name", sa.String(), nullable=False),
        sa.Column("acquired", _timestamp(), nullable=False),
        sa.Column("acquired_end", _timestamp(), nullable=True),
        sa.Column("geometry", _json(), nullable=False),
        sa.Column("min_lon", sa.Float(), nullable=False),
        sa.Column("min_lat", sa.Float(), nullable=False),
        sa.Column("max_lon", sa.Float(), nullable=False),
        sa.Column("max_lat", sa.Float(), nullable=False),
        sa.Column("crs", sa.Text(), nullable=False),
        sa.Column("geotransform", _json(), nullable=True),
        sa.Column("width", sa.Integer(), nullable=True),
        sa.Column("height", sa.Integer(), nullable=True),
        sa.Column("pixel_size_x", sa.Float(), nullable=True),
        sa.Column("pixel_size_y", sa.Float(), nullable=True),
        sa.Column("cloud_fraction", sa.Float(), nullable=True),
        sa.Column("fill_fraction", sa.Float(), nullable=True),
        sa.Column("provider", sa.String(), nullable=True),
        sa.Column("provider_id", sa.String(), nullable=True),
        sa.Column("tile", sa.String(), nullable=True),
        sa.Column("period_start", sa.Date(), nullable=True),
        sa.Column("properties", _json(), nullable=False),
        sa.Column("tags", _json(), nullable=False),
        sa.Column("created", _timestamp(), server_default=_now(), nullable=False),
        sa.Column("modified", _timestamp(), server_default=_now(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_images")),
        sa.CheckConstraint("cloud_fraction >= 0 AND cloud_fraction <= 1", name=op.f("ck_images_cloud_fraction_range")),
        sa.CheckConstraint("fill_fraction >= 0 AND fill_fraction <= 1", name=op.f("ck_images_fill_fraction_range")),
        sa.CheckConstraint("min_lon <= max_lon AND min_lat <= max_lat", name=op.f("ck_images_bbox_ordered")),
        sa.ForeignKeyConstraint(["product_id"], ["products.id"], name=op.f("fk_images_product_id_products")),
    )
    # "Images of product P between t0 and t1", ordered by time.
    op.create_index(op.f("ix_images_product_id_acquired"), "images", ["product_id", "acquired"])
    # Bounding-box overlap: each side can be the selective one, so each gets an index.
    op.create_index(op.f("ix_images_min_lon"), "images", ["min_lon"])
    op.create_index(op.f("ix_images_min_lat"), "images", ["min_lat"])
    op.create_index(op.f("ix_images_max_lon"), "images", ["max_lon"])
    op.create_index(op.f("ix_images_max_lat"), "images", ["max_lat"])
    op.create_index(op.f("ix_images_tile"), "images", ["tile"])
    # "Is this provider scene already catalogued?"
    op.create_index(op.f("ix_images_provider_provider_id"), "images", ["provider", "provider_id"])
    op.create_table(
        "image_files",
        sa.Column("image_id", sa.String(), nullable=False),
        sa.Column("band", sa.String(), nullable=False),
        sa.Column("href", sa.Text(), nullable=False),
        sa.Column("size_bytes", sa.BigInteger(), nullable=True),
        sa.PrimaryKeyConstraint("image_id", "band", name=op.f("pk_image_files")),
        sa.CheckConstraint("size_bytes >= 0", name=op.f("ck_image_files_size_bytes_non_negative")),
        sa.ForeignKeyConstraint(
            ["image_id"], ["images.id"], name=op.f("fk_image_files_image_id_images"), ondelete="CASCADE"
        ),
    )


def downgrade() -> None:
    """Drop the catalog tables, children first."""
    op.drop_table("image_files")
    for index in (
        "ix_images_provider_provider_id",
        "ix_images_tile",
        "ix_images_max_lat",
        "ix_images_max_lon",
        "ix_images_min_lat",
        "ix_images_min_lon",
        "ix_images_product_id_acquired",
    ):
        op.drop_index(op.f(index), table_name="images")
    op.drop_table("images")
    op.drop_table("bands")
    op.drop_table("products")
