"""Provider registry: providers and their per-collection priorities.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-21

Hand-written to match ``cube_assets/providers/registry_models.py``; the drift tests in
``cube_assets_tests/catalog/test_migrations.py`` compare the two.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0002"
down_revision: str | Sequence[str] | None = "0001"
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
    """Create ``providers`` and ``provider_priorities``."""
    op.create_table(
        "providers",
        sa.Column("name", sa.String(), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("url", sa.Text(), nullable=True),
        sa.Column("driver", sa.String(), nullable=False),
        sa.Column("options", _json(), nullable=False),
        sa.Column("credentials", _json(), nullable=False),
        sa.Column("created", _timestamp(), server_default=_now(), nullable=False),
        sa.Column("modified", _timestamp(), server_default=_now(), nullable=False),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_providers")),
        sa.CheckConstraint("driver IN ('stac', 'local', 'simulator')", name=op.f("ck_providers_driver")),
    )
    op.create_table(
        "provider_priorities",
        sa.Column("collection", sa.String(), nullable=False),
        sa.Column("provider_name", sa.String(), nullable=False),
        sa.Column("priority", sa.Integer(), nullable=False),
        sa.Column("enabled", sa.Boolean(), nullable=False),
        sa.Column("modified", _timestamp(), server_default=_now(), nullable=False),
        sa.PrimaryKeyConstraint("collection", "provider_name", name=op.f("pk_provider_priorities")),
        sa.CheckConstraint("priority >= 0", name=op.f("ck_provider_priorities_priority_non_negative")),
        sa.ForeignKeyConstraint(
            ["provider_name"],
            ["providers.name"],
            name=op.f("fk_provider_priorities_provider_name_providers"),
            ondelete="CASCADE",
        ),
    )


def downgrade() -> None:
    """Drop the registry tables."""
    op.drop_table("provider_priorities")
    op.drop_table("providers")
