"""Queries for marketplace resources and the marketplace inbox."""

from __future__ import annotations

import contextlib
from datetime import datetime, timedelta
from typing import Any, cast
from uuid import UUID

from advanced_alchemy.filters import LimitOffset, OrderBy
from advanced_alchemy.repository import SQLAlchemyAsyncRepository
from sqlalchemy import ColumnElement, and_, or_, update
from sqlalchemy.ext.asyncio import AsyncSession
from uuid_utils.compat import uuid7

from app.db.models import MarketplaceRequest, MarketplaceResource
from app.db.upsert import insert_ignore


class MarketplaceResourceRepository(SQLAlchemyAsyncRepository[MarketplaceResource]):
    model_type = MarketplaceResource

    async def find(self, provider: str, external_id: str) -> MarketplaceResource | None:
        return await self.get_one_or_none(provider=provider, external_id=external_id)

    async def find_by_reference(self, provider: str, reference: str) -> MarketplaceResource | None:
        """By our id (what we told the marketplace) or by the marketplace's own id: Heroku addresses
        a resource by either, depending on the call."""
        conditions: list[ColumnElement[bool]] = [MarketplaceResource.external_id == reference]
        with contextlib.suppress(ValueError):
            conditions.append(MarketplaceResource.id == UUID(reference))
        found = await self.get_many(MarketplaceResource.provider == provider, or_(*conditions))
        return found[0] if found else None

    async def take_over(self, resource_id: UUID, expected: datetime | None, until: datetime) -> bool:
        """Claim an abandoned resource; ``False`` if someone else changed the claim first."""
        column = MarketplaceResource.claimed_until
        stmt = (
            update(MarketplaceResource)
            .where(
                MarketplaceResource.id == resource_id,
                column.is_(None) if expected is None else column == expected,
            )
            .values(claimed_until=until)
            .execution_options(synchronize_session=False)
        )
        result = await self.session.execute(stmt)
        return bool(result.rowcount)  # type: ignore[attr-defined]

    async def mark_provisioned(self, resource_id: UUID, now: datetime) -> bool:
        stmt = (
            update(MarketplaceResource)
            .where(MarketplaceResource.id == resource_id, MarketplaceResource.state == "provisioning")
            .values(state="provisioned", provisioned_at=now, updated_at=now)
            .execution_options(synchronize_session=False)
        )
        result = await self.session.execute(stmt)
        return bool(result.rowcount)  # type: ignore[attr-defined]

    async def pending(self, provider: str, now: datetime, limit: int = 100) -> list[MarketplaceResource]:
        """Resources with work left for the worker: an unexchanged, unexpired OAuth grant, or an
        async provisioning younger than Heroku's 12 h limit."""
        return list(
            await self.get_many(
                MarketplaceResource.provider == provider,
                MarketplaceResource.organization_id.is_not(None),
                or_(
                    and_(
                        MarketplaceResource.state == "provisioning",
                        MarketplaceResource.created_at > now - timedelta(hours=12),
                    ),
                    and_(
                        MarketplaceResource.state != "deprovisioned",
                        MarketplaceResource.oauth_grant_encrypted.is_not(None),
                        or_(
                            MarketplaceResource.oauth_grant_expires_at.is_(None),
                            MarketplaceResource.oauth_grant_expires_at > now,
                        ),
                    ),
                ),
                LimitOffset(limit=limit, offset=0),
            )
        )

    async def page(
        self, provider: str | None, limit: int, offset: int
    ) -> tuple[list[MarketplaceResource], int]:
        filters: list[Any] = [LimitOffset(limit=limit, offset=offset), OrderBy("created_at", "desc")]
        if provider:
            filters.append(MarketplaceResource.provider == provider)
        items, total = await self.get_many_and_count(*filters)
        return list(items), total


class MarketplaceRequestRepository(SQLAlchemyAsyncRepository[MarketplaceRequest]):
    model_type = MarketplaceRequest

    async def record(
        self,
        *,
        provider: str,
        dedupe_key: str,
        action: str,
        external_id: str | None,
        payload: dict[str, Any],
        now: datetime,
    ) -> bool:
        """Insert the entry once; a repeat delivery only bumps ``deliveries``. ``True`` if new."""
        new = await insert_ignore(
            cast(AsyncSession, self.session),
            MarketplaceRequest,
            {
                "id": _new_id(),
                "provider": provider,
                "dedupe_key": dedupe_key,
                "action": action,
                "external_id": external_id,
                "payload": payload,
                "received_at": now,
                "last_received_at": now,
                "deliveries": 1,
                "status_code": None,
                "result": {},
                "created_at": now,
                "updated_at": now,
            },
            ["provider", "dedupe_key"],
        )
        if not new:
            await self.session.execute(
                update(MarketplaceRequest)
                .where(MarketplaceRequest.provider == provider, MarketplaceRequest.dedupe_key == dedupe_key)
                .values(deliveries=MarketplaceRequest.deliveries + 1, last_received_at=now)
                .execution_options(synchronize_session=False)
            )
        return new

    async def answer(
        self, provider: str, dedupe_key: str, status_code: int, result: dict[str, Any], now: datetime
    ) -> None:
        await self.session.execute(
            update(MarketplaceRequest)
            .where(MarketplaceRequest.provider == provider, MarketplaceRequest.dedupe_key == dedupe_key)
            .values(status_code=status_code, result=result, updated_at=now)
            .execution_options(synchronize_session=False)
        )

    async def page(
        self, provider: str | None, external_id: str | None, limit: int, offset: int
    ) -> tuple[list[MarketplaceRequest], int]:
        filters: list[Any] = [LimitOffset(limit=limit, offset=offset), OrderBy("received_at", "desc")]
        if provider:
            filters.append(MarketplaceRequest.provider == provider)
        if external_id:
            filters.append(MarketplaceRequest.external_id == external_id)
        items, total = await self.get_many_and_count(*filters)
        return list(items), total


def _new_id() -> UUID:
    """The same UUIDv7 the ORM base would assign (a Core insert bypasses the ORM default)."""
    return UUID(str(uuid7()))
