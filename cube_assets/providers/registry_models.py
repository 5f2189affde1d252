"""SQLAlchemy models of the provider registry, on the catalog's ``Base`` metadata.

Two tables, created by migration ``0002`` of the catalog:

* ``providers``: one row per registered provider (name, description, URL, driver, driver
  options, and the credentials *declaration*: references to environment variables, never a
  secret value);
* ``provider_priorities``: per collection, which providers serve it, in which order
  (``priority`` 0 is tried first) and whether each is enabled.

Importing this module registers the tables on ``cube_assets.catalog.models.Base.metadata``;
the migrations environment imports it so that autogenerate and the drift test see them.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import Boolean, CheckConstraint, ForeignKey, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column, relationship

from cube_assets.catalog.models import Base, UTCDateTime, json_document, utcnow

#: Drivers a registered provider may use.
REGISTRY_DRIVERS: tuple[str, ...] = ("stac", "local", "simulator")


class RegisteredProvider(Base):
    """A provider in the registry; ``credentials`` holds only ``{"env": NAME}`` references."""

    __tablename__ = "providers"
    __table_args__ = (
        CheckConstraint("driver IN ({})".format(", ".join(f"'{d}'" for d in REGISTRY_DRIVERS)), name="driver"),
    )

    name: Mapped[str] = mapped_column(String, primary_key=True)
    description: Mapped[str] = mapped_column(Text, default="")
    url: Mapped[str | None] = mapped_column(Text)
    driver: Mapped[str] = mapped_column(String)
    options: Mapped[dict[str, Any]] = mapped_column(json_document(), default=dict)
    credentials: Mapped[dict[str, Any]] = mapped_column(json_document(), default=dict)
    created: Mapped[dt.datetime] = mapped_column(UTCDateTime(), server_default=utcnow())
    modified: Mapped[dt.datetime] = mapped_column(UTCDateTime(), server_default=utcnow(), onupdate=utcnow())

    priorities: Mapped[list[ProviderPriority]] = relationship(
        back_populates="provider", cascade="all, delete-orphan", passive_deletes=True
    )

    def __repr__(self) -> str:
        return f"RegisteredProvider(name={self.name!r}, driver={self.driver!r})"


class ProviderPriority(Base):
    """The rank of one provider for one collection (0 is tried first)."""

    __tablename__ = "provider_priorities"
    __table_args__ = (CheckConstraint("priority >= 0", name="priority_non_negative"),)

    collection: Mapped[str] = mapped_column(String, primary_key=True)
    provider_name: Mapped[str] = mapped_column(ForeignKey("providers.name", ondelete="CASCADE"), primary_key=True)
    priority: Mapped[int] = mapped_column(Integer)
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    modified: Mapped[dt.datetime] = mapped_column(UTCDateTime(), server_default=utcnow(), onupdate=utcnow())

    provider: Mapped[RegisteredProvider] = relationship(back_populates="priorities")

    def __repr__(self) -> str:
        return (
            f"ProviderPriority(collection={self.collection!r}, provider={self.provider_name!r}, "
            f"priority={self.priority})"
        )
