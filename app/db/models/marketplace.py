"""Marketplace add-ons: one row per marketplace resource, and an inbox of what marketplaces asked.

Provider-neutral: ``provider`` names the marketplace (``heroku`` first) and ``external_id`` is the
marketplace's id for the resource (Heroku's ``uuid``), unique per provider so a duplicate delivery
finds the existing row. ``id`` is ours and is what the marketplace is told.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any
from uuid import UUID

from advanced_alchemy.base import UUIDv7AuditBase
from advanced_alchemy.types import DateTimeUTC
from sqlalchemy import ForeignKey, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from app.db.types import JSONDict


class MarketplaceResource(UUIDv7AuditBase):
    """An add-on resource bought through a marketplace, tied to the organization it created."""

    __tablename__ = "marketplace_resource"
    __table_args__ = (UniqueConstraint("provider", "external_id"),)

    provider: Mapped[str] = mapped_column(String(20))
    external_id: Mapped[str] = mapped_column(String(100))
    plan: Mapped[str] = mapped_column(String(100))
    """The marketplace's plan slug (mapped to a Tollgate plan by settings)."""
    region: Mapped[str | None] = mapped_column(String(100), nullable=True, default=None)
    name: Mapped[str | None] = mapped_column(String(200), nullable=True, default=None)
    state: Mapped[str] = mapped_column(String(20), default="provisioning")
    """``provisioning`` | ``provisioned`` | ``deprovisioned``."""
    organization_id: Mapped[UUID | None] = mapped_column(
        ForeignKey("organization.id", ondelete="RESTRICT"), index=True, nullable=True, default=None
    )
    api_key_id: Mapped[UUID | None] = mapped_column(nullable=True, default=None)
    """The org API key handed out in the config vars (revoked on deprovision)."""
    config_encrypted: Mapped[str | None] = mapped_column(Text, nullable=True, default=None)
    """The config vars as returned (they hold a secret), encrypted, so a replay returns them again."""
    callback_url: Mapped[str | None] = mapped_column(String(500), nullable=True, default=None)
    options: Mapped[dict[str, Any]] = mapped_column(JSONDict, default=dict)
    oauth_grant_encrypted: Mapped[str | None] = mapped_column(Text, nullable=True, default=None)
    oauth_grant_expires_at: Mapped[datetime | None] = mapped_column(
        DateTimeUTC(timezone=True), nullable=True, default=None
    )
    access_token_encrypted: Mapped[str | None] = mapped_column(Text, nullable=True, default=None)
    refresh_token_encrypted: Mapped[str | None] = mapped_column(Text, nullable=True, default=None)
    access_token_expires_at: Mapped[datetime | None] = mapped_column(
        DateTimeUTC(timezone=True), nullable=True, default=None
    )
    claimed_until: Mapped[datetime | None] = mapped_column(
        DateTimeUTC(timezone=True), nullable=True, default=None
    )
    """Set while a request is creating the org and credential; a delivery that finds it expired
    (the creator crashed) takes the work over."""
    provisioned_at: Mapped[datetime | None] = mapped_column(
        DateTimeUTC(timezone=True), nullable=True, default=None
    )
    deprovisioned_at: Mapped[datetime | None] = mapped_column(
        DateTimeUTC(timezone=True), nullable=True, default=None
    )


class MarketplaceRequest(UUIDv7AuditBase):
    """The inbox: one row per distinct request (or worker step) per dedupe key, never a secret."""

    __tablename__ = "marketplace_request"
    __table_args__ = (UniqueConstraint("provider", "dedupe_key"),)

    provider: Mapped[str] = mapped_column(String(20))
    dedupe_key: Mapped[str] = mapped_column(String(200))
    action: Mapped[str] = mapped_column(String(40))
    external_id: Mapped[str | None] = mapped_column(String(100), index=True, nullable=True)
    payload: Mapped[dict[str, Any]] = mapped_column(JSONDict, default=dict)
    received_at: Mapped[datetime] = mapped_column(DateTimeUTC(timezone=True))
    last_received_at: Mapped[datetime] = mapped_column(DateTimeUTC(timezone=True))
    deliveries: Mapped[int] = mapped_column(Integer, default=1)
    status_code: Mapped[int | None] = mapped_column(Integer, nullable=True, default=None)
    result: Mapped[dict[str, Any]] = mapped_column(JSONDict, default=dict)
