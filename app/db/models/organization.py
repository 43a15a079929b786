"""Organizations (tenants) and their API keys."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from uuid import UUID

from advanced_alchemy.base import UUIDv7AuditBase
from advanced_alchemy.types import DateTimeUTC
from sqlalchemy import BigInteger, Boolean, ForeignKey, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from app.db.types import JSONDict


class Organization(UUIDv7AuditBase):
    """A customer of the embedding product: has one plan, a status and a billing period."""

    __tablename__ = "organization"

    name: Mapped[str] = mapped_column(String(200))
    slug: Mapped[str] = mapped_column(String(63), unique=True)
    plan: Mapped[str] = mapped_column(String(50))
    plan_version: Mapped[int] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(String(20), default="active")
    """``active`` | ``suspended`` | ``past_due`` | ``deprovisioned``."""
    billing_source: Mapped[str] = mapped_column(String(20), default="self")
    """Who bills the org: ``self`` (free / invoiced), ``stripe`` or ``marketplace``."""
    overrides: Mapped[dict[str, Any]] = mapped_column(JSONDict, default=dict)
    on_demand_budget_cents: Mapped[int] = mapped_column(BigInteger, default=0)
    spike_protection: Mapped[bool | None] = mapped_column(Boolean, nullable=True, default=None)
    """``None`` follows the plan's default."""
    spike_paused_until: Mapped[datetime | None] = mapped_column(
        DateTimeUTC(timezone=True), nullable=True, default=None
    )
    project_caps: Mapped[dict[str, Any]] = mapped_column(JSONDict, default=dict)
    """``{project: {category: limit}}`` set by the org's admins."""
    period_anchor: Mapped[datetime] = mapped_column(DateTimeUTC(timezone=True))
    subscription_period_start: Mapped[datetime | None] = mapped_column(
        DateTimeUTC(timezone=True), nullable=True, default=None
    )
    subscription_period_end: Mapped[datetime | None] = mapped_column(
        DateTimeUTC(timezone=True), nullable=True, default=None
    )
    config_version: Mapped[int] = mapped_column(Integer, default=1)
    """Bumped on every change the meter must see."""
    trial_plan: Mapped[str | None] = mapped_column(String(60), nullable=True, default=None)
    """Plan key (``team@v1``) of a running trial (app/entitlements); it applies on top of ``plan``."""
    trial_ends_at: Mapped[datetime | None] = mapped_column(
        DateTimeUTC(timezone=True), nullable=True, default=None, index=True
    )
    trial_previous_plan: Mapped[str | None] = mapped_column(String(60), nullable=True, default=None)
    """Plan key the trial started from; a plan change since then voids the trial."""


class ApiKey(UUIDv7AuditBase):
    """An org-scoped API key. Only its SHA-256 is stored; the secret is shown once."""

    __tablename__ = "api_key"

    organization_id: Mapped[UUID] = mapped_column(
        ForeignKey("organization.id", ondelete="CASCADE"), index=True
    )
    name: Mapped[str] = mapped_column(String(100))
    prefix: Mapped[str] = mapped_column(String(16))
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    revoked_at: Mapped[datetime | None] = mapped_column(
        DateTimeUTC(timezone=True), nullable=True, default=None
    )
