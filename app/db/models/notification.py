"""Outbound notifications: the endpoints a product registered, every notification event (the
once-only guard and the outbox), and one delivery per (event, endpoint) with its attempt log."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from uuid import UUID

from advanced_alchemy.base import UUIDv7AuditBase
from advanced_alchemy.types import DateTimeUTC
from sqlalchemy import ForeignKey, Integer, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from app.db.types import JSONDict


class WebhookEndpoint(UUIDv7AuditBase):
    """Where notifications are sent: deployment-wide (``organization_id`` null) or for one org."""

    __tablename__ = "webhook_endpoint"

    organization_id: Mapped[UUID | None] = mapped_column(
        ForeignKey("organization.id", ondelete="CASCADE"), nullable=True, index=True
    )
    url: Mapped[str] = mapped_column(String(2000))
    events: Mapped[list[str]] = mapped_column(JSONDict, default=list)
    """Event types to send; empty means every type."""
    description: Mapped[str] = mapped_column(String(200), default="")
    secret_encrypted: Mapped[str] = mapped_column(String(500))
    """The ``whsec_`` signing secret, encrypted (Fernet): needed in clear to sign."""
    secret_prefix: Mapped[str] = mapped_column(String(16))
    disabled_at: Mapped[datetime | None] = mapped_column(DateTimeUTC(timezone=True), nullable=True)
    disabled_reason: Mapped[str | None] = mapped_column(String(200), nullable=True)
    failing_since: Mapped[datetime | None] = mapped_column(DateTimeUTC(timezone=True), nullable=True)
    """First failed attempt of the current failure streak; cleared by a success."""


class NotificationEvent(UUIDv7AuditBase):
    """One notification. ``dedupe_key`` is unique: inserting it is the once-only guard (an 80%
    threshold of one org, category and period; one audit event; one grace period)."""

    __tablename__ = "notification_event"

    organization_id: Mapped[UUID | None] = mapped_column(
        ForeignKey("organization.id", ondelete="CASCADE"), nullable=True, index=True
    )
    type: Mapped[str] = mapped_column(String(60))
    dedupe_key: Mapped[str] = mapped_column(String(200), unique=True)
    payload: Mapped[dict[str, Any]] = mapped_column(JSONDict, default=dict)
    """The whole JSON body sent (``type``, ``timestamp``, ``data``)."""


class NotificationDelivery(UUIDv7AuditBase):
    """One event to one endpoint, and how sending it went (the operator's delivery log)."""

    __tablename__ = "notification_delivery"
    __table_args__ = (UniqueConstraint("event_id", "endpoint_id"),)

    event_id: Mapped[UUID] = mapped_column(ForeignKey("notification_event.id", ondelete="CASCADE"))
    endpoint_id: Mapped[UUID] = mapped_column(
        ForeignKey("webhook_endpoint.id", ondelete="CASCADE"), index=True
    )
    status: Mapped[str] = mapped_column(String(20), default="pending", index=True)
    """``pending`` (will be tried at ``next_attempt_at``), ``succeeded`` or ``failed`` (gave up)."""
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime | None] = mapped_column(DateTimeUTC(timezone=True), nullable=True)
    last_attempt_at: Mapped[datetime | None] = mapped_column(DateTimeUTC(timezone=True), nullable=True)
    last_status_code: Mapped[int | None] = mapped_column(Integer, nullable=True)
    last_error: Mapped[str | None] = mapped_column(String(300), nullable=True)
    delivered_at: Mapped[datetime | None] = mapped_column(DateTimeUTC(timezone=True), nullable=True)
