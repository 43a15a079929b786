"""Queries for trials and seats. Tenant scoping stays with ``OrganizationRepository.get_for``."""

from __future__ import annotations

from datetime import datetime
from typing import Any, cast
from uuid import UUID

from advanced_alchemy.repository import SQLAlchemyAsyncRepository
from sqlalchemy import delete, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from uuid_utils.compat import uuid7

from app.db.models import Organization, Seat, Trial
from app.db.upsert import insert_ignore


class TrialRepository(SQLAlchemyAsyncRepository[Trial]):
    model_type = Trial

    async def had(self, organization_id: UUID, plan: str) -> bool:
        return await self.exists(organization_id=organization_id, plan=plan)

    async def running(self, organization_id: UUID) -> Trial | None:
        """The trial row not yet marked ended (at most one)."""
        return await self.get_one_or_none(organization_id=organization_id, ended_at=None)


class TrialStateRepository(SQLAlchemyAsyncRepository[Organization]):
    """The running-trial columns of ``organization``. Writes are compare-and-set, so two callers
    (the job on two workers, the job and a Checkout) cannot both start or both end one trial."""

    model_type = Organization

    async def with_trial(self) -> list[Organization]:
        """Every org whose trial columns are set, soonest end first."""
        rows = await self.session.scalars(
            select(Organization)
            .where(Organization.trial_ends_at.is_not(None))
            .order_by(Organization.trial_ends_at)
        )
        return list(rows)

    async def begin(
        self, organization_id: UUID, plan_key: str, ends_at: datetime, previous_plan: str
    ) -> bool:
        """Set the trial columns if no trial is recorded; False if one is."""
        return await self._set(
            organization_id,
            Organization.trial_plan.is_(None),
            trial_plan=plan_key,
            trial_ends_at=ends_at,
            trial_previous_plan=previous_plan,
        )

    async def clear(self, organization_id: UUID, plan_key: str) -> bool:
        """Clear the trial columns if they still hold this trial (one per plan, so the plan key
        names it); False if someone else did."""
        return await self._set(
            organization_id,
            Organization.trial_plan == plan_key,
            trial_plan=None,
            trial_ends_at=None,
            trial_previous_plan=None,
        )

    async def _set(self, organization_id: UUID, *where: Any, **values: Any) -> bool:
        result = await self.session.execute(
            update(Organization)
            .where(Organization.id == organization_id, *where)
            .values(config_version=Organization.config_version + 1, **values)
            .execution_options(synchronize_session=False)
        )
        return bool(result.rowcount)  # type: ignore[attr-defined]


class SeatRepository(SQLAlchemyAsyncRepository[Seat]):
    model_type = Seat

    async def member_ids(self, organization_id: UUID) -> list[str]:
        rows = await self.session.scalars(
            select(Seat.member_id).where(Seat.organization_id == organization_id)
        )
        return list(rows)

    async def join(self, organization_id: UUID, member_id: str, now: datetime) -> None:
        await insert_ignore(
            cast(AsyncSession, self.session),
            Seat,
            {
                "id": uuid7(),
                "organization_id": organization_id,
                "member_id": member_id,
                "created_at": now,
                "updated_at": now,
            },
            conflict=["organization_id", "member_id"],
        )

    async def leave(self, organization_id: UUID, member_id: str) -> None:
        await self.session.execute(
            delete(Seat).where(Seat.organization_id == organization_id, Seat.member_id == member_id)
        )
