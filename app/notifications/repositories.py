"""Queries for endpoints, notification events, deliveries and daily usage snapshots.

Tenant scoping of endpoints goes through :meth:`WebhookEndpointRepository.get_for` and
:meth:`WebhookEndpointRepository.page_for` only.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any, cast
from uuid import UUID

from advanced_alchemy.filters import LimitOffset, OrderBy
from advanced_alchemy.repository import SQLAlchemyAsyncRepository
from sqlalchemy import or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from app.auth.principal import Principal
from app.db.models import (
    AuditEvent,
    NotificationDelivery,
    NotificationEvent,
    UsageDaily,
    WebhookEndpoint,
)
from app.db.upsert import insert_ignore, upsert
from app.notifications.errors import WebhookEndpointNotFound


class WebhookEndpointRepository(SQLAlchemyAsyncRepository[WebhookEndpoint]):
    model_type = WebhookEndpoint

    async def get_for(self, principal: Principal, endpoint_id: UUID) -> WebhookEndpoint:
        """The endpoint if this caller may see it: admins every endpoint, an org key only its
        org's (another org's endpoint is indistinguishable from a missing one)."""
        endpoint = await self.get_one_or_none(id=endpoint_id)
        if endpoint is None:
            raise WebhookEndpointNotFound
        if not principal.is_admin and (
            endpoint.organization_id is None or not principal.can_access(endpoint.organization_id)
        ):
            raise WebhookEndpointNotFound
        return endpoint

    async def page_for(
        self, principal: Principal, limit: int, offset: int
    ) -> tuple[list[WebhookEndpoint], int]:
        where: list[Any] = []
        if not principal.is_admin:
            where.append(WebhookEndpoint.organization_id == principal.organization_id)
        items, total = await self.get_many_and_count(
            *where, LimitOffset(limit=limit, offset=offset), OrderBy("created_at", "asc")
        )
        return list(items), total

    async def enabled(self) -> list[WebhookEndpoint]:
        """Every enabled endpoint (there are few; callers match orgs and event types in Python)."""
        return list(await self.get_many(WebhookEndpoint.disabled_at.is_(None)))


class NotificationEventRepository(SQLAlchemyAsyncRepository[NotificationEvent]):
    model_type = NotificationEvent

    async def existing_keys(self, keys: Sequence[str]) -> set[str]:
        if not keys:
            return set()
        rows = await self.session.scalars(
            select(NotificationEvent.dedupe_key).where(NotificationEvent.dedupe_key.in_(list(keys)))
        )
        return set(rows.all())

    async def insert_once(self, row: dict[str, Any]) -> bool:
        """INSERT ... ON CONFLICT (dedupe_key) DO NOTHING: True for the one caller that wins."""
        return await insert_ignore(
            cast(AsyncSession, self.session), NotificationEvent, row, conflict=["dedupe_key"]
        )

    async def audit_since(self, since: datetime, kinds: Sequence[str], limit: int) -> list[AuditEvent]:
        """Audit events of ``kinds`` written at or after ``since``, oldest first."""
        rows = await self.session.scalars(
            select(AuditEvent)
            .where(AuditEvent.created_at >= since, AuditEvent.kind.in_(list(kinds)))
            .order_by(AuditEvent.created_at, AuditEvent.id)
            .limit(limit)
        )
        return list(rows.all())


class DeliveryRepository(SQLAlchemyAsyncRepository[NotificationDelivery]):
    model_type = NotificationDelivery

    async def claim(self, delivery_id: UUID, attempts: int, now: datetime, lease_until: datetime) -> bool:
        """Take attempt ``attempts + 1`` of a pending delivery; False if another worker took it."""
        result = await self.session.execute(
            update(NotificationDelivery)
            .where(
                NotificationDelivery.id == delivery_id,
                NotificationDelivery.status == "pending",
                NotificationDelivery.attempts == attempts,
            )
            .values(attempts=attempts + 1, last_attempt_at=now, next_attempt_at=lease_until, updated_at=now)
        )
        return bool(result.rowcount)  # type: ignore[attr-defined]

    async def due(self, now: datetime, limit: int = 500) -> list[NotificationDelivery]:
        rows = await self.session.scalars(
            select(NotificationDelivery)
            .where(
                NotificationDelivery.status == "pending",
                or_(
                    NotificationDelivery.next_attempt_at.is_(None),
                    NotificationDelivery.next_attempt_at <= now,
                ),
            )
            .order_by(NotificationDelivery.id)
            .limit(limit)
        )
        return list(rows.all())

    async def fail_pending(self, endpoint_id: UUID, reason: str, now: datetime) -> None:
        await self.session.execute(
            update(NotificationDelivery)
            .where(NotificationDelivery.endpoint_id == endpoint_id, NotificationDelivery.status == "pending")
            .values(status="failed", last_error=reason[:300], next_attempt_at=None, updated_at=now)
        )

    async def page_for_endpoint(
        self, endpoint_id: UUID, limit: int, offset: int
    ) -> tuple[list[tuple[NotificationDelivery, NotificationEvent]], int]:
        total = await self.count(NotificationDelivery.endpoint_id == endpoint_id)
        rows = await self.session.execute(
            select(NotificationDelivery, NotificationEvent)
            .join(NotificationEvent, NotificationEvent.id == NotificationDelivery.event_id)
            .where(NotificationDelivery.endpoint_id == endpoint_id)
            .order_by(NotificationDelivery.id.desc())
            .limit(limit)
            .offset(offset)
        )
        return [(d, e) for d, e in rows.tuples().all()], total


class UsageDailyRepository(SQLAlchemyAsyncRepository[UsageDaily]):
    model_type = UsageDaily

    async def record(self, rows: list[dict[str, Any]], now: datetime) -> None:
        """Upsert the period-to-date totals of each (org, category, period, day)."""
        for row in rows:
            row.setdefault("id", uuid.uuid4())
            row.setdefault("created_at", now)
            row["updated_at"] = now
        await upsert(
            cast(AsyncSession, self.session),
            UsageDaily,
            rows,
            conflict=["organization_id", "category", "period_start", "day"],
            update=["used", "on_demand_used", "updated_at"],
        )

    async def series(self, organization_id: UUID, period_start: datetime) -> list[UsageDaily]:
        return list(
            await self.get_many(
                UsageDaily.organization_id == organization_id,
                UsageDaily.period_start == period_start,
                OrderBy("day", "asc"),
            )
        )
