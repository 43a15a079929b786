"""Entitlements: the trials an organization has had, and the durable copy of its seats.

The *running* trial lives on the organization row (``trial_plan``, ``trial_ends_at``,
``trial_previous_plan``) so the pure effective-limits function sees it from the row alone; a
:class:`Trial` row is its history and enforces one trial per organization per plan.
"""

from __future__ import annotations

from datetime import datetime
from uuid import UUID

from advanced_alchemy.base import UUIDv7AuditBase
from advanced_alchemy.types import DateTimeUTC
from sqlalchemy import ForeignKey, Integer, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column


class Trial(UUIDv7AuditBase):
    """One card-less trial of one plan; at most one per (organization, plan)."""

    __tablename__ = "trial"
    __table_args__ = (UniqueConstraint("organization_id", "plan"),)

    organization_id: Mapped[UUID] = mapped_column(
        ForeignKey("organization.id", ondelete="CASCADE"), index=True
    )
    plan: Mapped[str] = mapped_column(String(50))
    plan_version: Mapped[int] = mapped_column(Integer)
    previous_plan: Mapped[str] = mapped_column(String(60))
    """Plan key the org was on when the trial started (it returns to it at the end)."""
    started_at: Mapped[datetime] = mapped_column(DateTimeUTC(timezone=True))
    ends_at: Mapped[datetime] = mapped_column(DateTimeUTC(timezone=True))
    ended_at: Mapped[datetime | None] = mapped_column(DateTimeUTC(timezone=True), nullable=True, default=None)
    outcome: Mapped[str | None] = mapped_column(String(20), nullable=True, default=None)
    """``expired`` | ``converted`` (bought a paid plan) | ``plan_changed``; null while running."""
    actor: Mapped[str] = mapped_column(String(100))


class Seat(UUIDv7AuditBase):
    """A member of an organization as the embedding product reported it (Redis holds the live set)."""

    __tablename__ = "seat"
    __table_args__ = (UniqueConstraint("organization_id", "member_id"),)

    organization_id: Mapped[UUID] = mapped_column(
        ForeignKey("organization.id", ondelete="CASCADE"), index=True
    )
    member_id: Mapped[str] = mapped_column(String(200))
