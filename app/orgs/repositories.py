"""Queries for organizations. Tenant scoping goes through :meth:`get_for` only."""

from __future__ import annotations

from uuid import UUID

from advanced_alchemy.filters import LimitOffset, OrderBy
from advanced_alchemy.repository import SQLAlchemyAsyncRepository

from app.auth.principal import Principal
from app.db.models import ApiKey, AuditEvent, Organization
from app.orgs.errors import OrganizationNotFound


class OrganizationRepository(SQLAlchemyAsyncRepository[Organization]):
    model_type = Organization

    async def get_for(self, principal: Principal, organization_id: UUID) -> Organization:
        """The org, if this caller may see it. Another tenant's org is indistinguishable from a
        missing one (404), so keys cannot probe for ids."""
        if not principal.can_access(organization_id):
            raise OrganizationNotFound
        org = await self.get_one_or_none(id=organization_id)
        if org is None:
            raise OrganizationNotFound
        return org

    async def page(self, limit: int, offset: int) -> tuple[list[Organization], int]:
        items, total = await self.get_many_and_count(
            LimitOffset(limit=limit, offset=offset), OrderBy("created_at", "asc")
        )
        return list(items), total

    async def slug_exists(self, slug: str) -> bool:
        return await self.exists(slug=slug)


class ApiKeyRepository(SQLAlchemyAsyncRepository[ApiKey]):
    model_type = ApiKey

    async def active_for(self, organization_id: UUID) -> list[ApiKey]:
        return list(
            await self.get_many(
                ApiKey.organization_id == organization_id,
                ApiKey.revoked_at.is_(None),
                OrderBy("created_at", "asc"),
            )
        )


class AuditRepository(SQLAlchemyAsyncRepository[AuditEvent]):
    model_type = AuditEvent

    async def page_for(self, organization_id: UUID, limit: int, offset: int) -> tuple[list[AuditEvent], int]:
        items, total = await self.get_many_and_count(
            AuditEvent.organization_id == organization_id,
            LimitOffset(limit=limit, offset=offset),
            OrderBy("created_at", "desc"),
        )
        return list(items), total
