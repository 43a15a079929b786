"""Queries for billing accounts, received Stripe events and overage reports."""

from __future__ import annotations

from datetime import datetime
from typing import Any, cast
from uuid import UUID

from advanced_alchemy.repository import SQLAlchemyAsyncRepository
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from app.db.models import BillingAccount, Organization, OverageReport, StripeEvent, Usage
from app.db.upsert import insert_ignore


class BillingAccountRepository(SQLAlchemyAsyncRepository[BillingAccount]):
    model_type = BillingAccount

    async def for_org(self, organization_id: UUID) -> BillingAccount | None:
        return await self.get_one_or_none(organization_id=organization_id)

    async def ensure(self, organization_id: UUID) -> BillingAccount:
        """The org's account, created (race-free) if it has none."""
        await insert_ignore(
            cast(AsyncSession, self.session),
            BillingAccount,
            {"organization_id": organization_id},
            conflict=["organization_id"],
        )
        account = await self.get_one(organization_id=organization_id)
        await self.session.refresh(account)
        return account

    async def by_customer(self, customer_id: str) -> BillingAccount | None:
        return await self.get_one_or_none(stripe_customer_id=customer_id)

    async def in_grace(self) -> list[BillingAccount]:
        return list(await self.list(BillingAccount.dunning_state == "grace"))

    async def canceling(self) -> list[BillingAccount]:
        return list(
            await self.list(
                BillingAccount.cancel_at_period_end.is_(True),
                BillingAccount.subscription_status.in_(("active", "trialing", "past_due", "unpaid")),
            )
        )


class StripeEventRepository(SQLAlchemyAsyncRepository[StripeEvent]):
    model_type = StripeEvent

    async def store_once(self, row: dict[str, Any]) -> bool:
        """INSERT ... ON CONFLICT (stripe_id) DO NOTHING; True when this delivery is the first."""
        return await insert_ignore(cast(AsyncSession, self.session), StripeEvent, row, conflict=["stripe_id"])

    async def by_stripe_id(self, stripe_id: str) -> StripeEvent | None:
        return await self.get_one_or_none(stripe_id=stripe_id)

    async def unprocessed(self, received_before: datetime, received_after: datetime, limit: int) -> list[str]:
        rows = await self.session.scalars(
            select(StripeEvent.stripe_id)
            .where(
                StripeEvent.processed_at.is_(None),
                StripeEvent.created_at < received_before,
                StripeEvent.created_at > received_after,
            )
            .order_by(StripeEvent.created_at)
            .limit(limit)
        )
        return list(rows)


class OverageRepository(SQLAlchemyAsyncRepository[OverageReport]):
    model_type = OverageReport

    async def pending(self, ended_after: datetime) -> list[tuple[Usage, Organization, BillingAccount, int]]:
        """Usage rows (of periods ending after ``ended_after``) with on-demand units of
        Stripe-billed orgs that have a customer, with what was reported for them so far (cents)."""
        stmt = (
            select(Usage, Organization, BillingAccount, OverageReport.reported_cents)
            .join(Organization, Organization.id == Usage.organization_id)
            .join(BillingAccount, BillingAccount.organization_id == Usage.organization_id)
            .outerjoin(
                OverageReport,
                (OverageReport.organization_id == Usage.organization_id)
                & (OverageReport.category == Usage.category)
                & (OverageReport.period_start == Usage.period_start),
            )
            .where(
                Usage.on_demand_used > 0,
                Usage.period_end > ended_after,
                Organization.billing_source == "stripe",
                BillingAccount.stripe_customer_id.is_not(None),
            )
        )
        rows = (await self.session.execute(stmt)).all()
        return [(u, o, a, int(r or 0)) for u, o, a, r in rows]
