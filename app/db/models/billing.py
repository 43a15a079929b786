"""Stripe billing state: one billing account per org, every webhook event received, and what
on-demand spend has been reported to Stripe."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from uuid import UUID

from advanced_alchemy.base import UUIDv7AuditBase
from advanced_alchemy.types import DateTimeUTC
from sqlalchemy import BigInteger, Boolean, ForeignKey, Integer, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from app.db.types import JSONDict


class BillingAccount(UUIDv7AuditBase):
    """An org's Stripe customer and the subscription state Tollgate last applied."""

    __tablename__ = "billing_account"

    organization_id: Mapped[UUID] = mapped_column(
        ForeignKey("organization.id", ondelete="CASCADE"), unique=True
    )
    stripe_customer_id: Mapped[str | None] = mapped_column(String(255), nullable=True, index=True)
    customer_generation: Mapped[int] = mapped_column(Integer, default=0)
    """Bumped when the Stripe customer is deleted, so the next one gets a fresh idempotency key."""
    stripe_subscription_id: Mapped[str | None] = mapped_column(String(255), nullable=True, index=True)
    subscription_status: Mapped[str | None] = mapped_column(String(30), nullable=True)
    """Stripe's status as last applied (``canceled`` once a cancel-at-period-end period is over)."""
    subscription_created: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    price_lookup_key: Mapped[str | None] = mapped_column(String(120), nullable=True)
    cancel_at_period_end: Mapped[bool] = mapped_column(Boolean, default=False)
    past_due_since: Mapped[datetime | None] = mapped_column(DateTimeUTC(timezone=True), nullable=True)
    dunning_state: Mapped[str | None] = mapped_column(String(20), nullable=True)
    """``grace`` while past_due keeps service, then ``downgraded`` or ``suspended``."""
    synced_at: Mapped[datetime | None] = mapped_column(DateTimeUTC(timezone=True), nullable=True)


class StripeEvent(UUIDv7AuditBase):
    """A webhook event, stored once by its Stripe id and then processed by a job."""

    __tablename__ = "stripe_event"

    stripe_id: Mapped[str] = mapped_column(String(255), unique=True)
    type: Mapped[str] = mapped_column(String(100), index=True)
    created: Mapped[int] = mapped_column(BigInteger)
    """The event's own timestamp (unix seconds)."""
    payload: Mapped[dict[str, Any]] = mapped_column(JSONDict)
    organization_id: Mapped[UUID | None] = mapped_column(nullable=True, index=True)
    processed_at: Mapped[datetime | None] = mapped_column(DateTimeUTC(timezone=True), nullable=True)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    outcome: Mapped[str | None] = mapped_column(String(200), nullable=True)
    """What processing did (or why it failed last), for operators."""


class OverageReport(UUIDv7AuditBase):
    """On-demand spend reported to Stripe per (org, category, period): the cumulative cents."""

    __tablename__ = "overage_report"
    __table_args__ = (UniqueConstraint("organization_id", "category", "period_start"),)

    organization_id: Mapped[UUID] = mapped_column(
        ForeignKey("organization.id", ondelete="CASCADE"), index=True
    )
    category: Mapped[str] = mapped_column(String(40))
    period_start: Mapped[datetime] = mapped_column(DateTimeUTC(timezone=True))
    reported_cents: Mapped[int] = mapped_column(BigInteger, default=0)
    identifier: Mapped[str] = mapped_column(String(255))
    """The meter event identifier of the last report."""
