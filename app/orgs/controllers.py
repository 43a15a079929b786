"""HTTP for organizations, their keys and audit trail. Thin: authorize, one service call, schema."""

from __future__ import annotations

from typing import Annotated
from uuid import UUID

from litestar import Controller, delete, get, patch, post
from litestar.params import Parameter
from litestar.status_codes import HTTP_200_OK, HTTP_201_CREATED, HTTP_204_NO_CONTENT
from sqlalchemy.ext.asyncio import AsyncSession

from app.auth.principal import Principal
from app.context import AppContext
from app.orgs import schemas
from app.orgs.services import ApiKeyService, OrganizationService

Limit = Annotated[int, Parameter(ge=1, le=200, description="Page size")]
Offset = Annotated[int, Parameter(ge=0, description="Items to skip")]


class OrganizationController(Controller):
    path = "/v1/organizations"
    tags = ["organizations"]

    @post("/", status_code=HTTP_201_CREATED, summary="Create an organization")
    async def create(
        self,
        data: schemas.OrganizationCreate,
        principal: Principal,
        session: AsyncSession,
        ctx: AppContext,
    ) -> schemas.Organization:
        principal.require("admin")
        service = OrganizationService(session, ctx)
        return service.to_schema(await service.create(data, principal.actor))

    @get("/", summary="List organizations (admin)")
    async def list_orgs(
        self,
        principal: Principal,
        session: AsyncSession,
        ctx: AppContext,
        limit: Limit = 50,
        offset: Offset = 0,
    ) -> schemas.OrganizationPage:
        principal.require("admin")
        service = OrganizationService(session, ctx)
        items, total = await service.page(limit, offset)
        return schemas.OrganizationPage([service.to_schema(o) for o in items], total, limit, offset)

    @get("/{organization_id:uuid}", summary="Read an organization")
    async def read(
        self, organization_id: UUID, principal: Principal, session: AsyncSession, ctx: AppContext
    ) -> schemas.Organization:
        service = OrganizationService(session, ctx)
        return service.to_schema(await service.get(principal, organization_id))

    @patch("/{organization_id:uuid}", summary="Change name, overrides, budget, spike protection")
    async def update(
        self,
        organization_id: UUID,
        data: schemas.OrganizationUpdate,
        principal: Principal,
        session: AsyncSession,
        ctx: AppContext,
    ) -> schemas.Organization:
        principal.require("admin", "org")
        service = OrganizationService(session, ctx)
        org = await service.get(principal, organization_id)
        return service.to_schema(await service.update(org, data, principal))

    @post(
        "/{organization_id:uuid}/plan",
        status_code=HTTP_200_OK,
        summary="Change plan (control plane; self-serve upgrades go through Checkout)",
    )
    async def change_plan(
        self,
        organization_id: UUID,
        data: schemas.PlanChange,
        principal: Principal,
        session: AsyncSession,
        ctx: AppContext,
    ) -> schemas.Organization:
        principal.require("admin")
        service = OrganizationService(session, ctx)
        org = await service.get(principal, organization_id)
        return service.to_schema(
            await service.change_plan(org, data.plan, principal.actor, version=data.version)
        )

    @post(
        "/{organization_id:uuid}/suspend",
        status_code=HTTP_200_OK,
        summary="Suspend: every consume is refused",
    )
    async def suspend(
        self, organization_id: UUID, principal: Principal, session: AsyncSession, ctx: AppContext
    ) -> schemas.Organization:
        principal.require("admin")
        service = OrganizationService(session, ctx)
        org = await service.get(principal, organization_id)
        return service.to_schema(await service.set_status(org, "suspended", principal.actor))

    @post("/{organization_id:uuid}/reactivate", status_code=HTTP_200_OK, summary="Lift a suspension")
    async def reactivate(
        self, organization_id: UUID, principal: Principal, session: AsyncSession, ctx: AppContext
    ) -> schemas.Organization:
        principal.require("admin")
        service = OrganizationService(session, ctx)
        org = await service.get(principal, organization_id)
        return service.to_schema(await service.set_status(org, "active", principal.actor))

    @post(
        "/{organization_id:uuid}/spike-protection/pause",
        status_code=HTTP_200_OK,
        summary="Suspend spike protection for a planned load window",
    )
    async def pause_spike(
        self,
        organization_id: UUID,
        data: schemas.SpikePause,
        principal: Principal,
        session: AsyncSession,
        ctx: AppContext,
    ) -> schemas.Organization:
        principal.require("admin", "org")
        service = OrganizationService(session, ctx)
        org = await service.get(principal, organization_id)
        return service.to_schema(await service.pause_spike(org, data.minutes, principal.actor))

    @post(
        "/{organization_id:uuid}/spike-protection/reset",
        status_code=HTTP_200_OK,
        summary="Refill the spike-protection buckets after a legitimate spike",
    )
    async def reset_spike(
        self, organization_id: UUID, principal: Principal, session: AsyncSession, ctx: AppContext
    ) -> schemas.Organization:
        principal.require("admin", "org")
        service = OrganizationService(session, ctx)
        org = await service.get(principal, organization_id)
        return service.to_schema(await service.reset_spike(org, principal.actor))

    @get("/{organization_id:uuid}/audit", summary="The org's audit trail, newest first")
    async def audit(
        self,
        organization_id: UUID,
        principal: Principal,
        session: AsyncSession,
        ctx: AppContext,
        limit: Limit = 50,
        offset: Offset = 0,
    ) -> schemas.AuditPage:
        service = OrganizationService(session, ctx)
        org = await service.get(principal, organization_id)
        items, total = await service.audit_page(org, limit, offset)
        return schemas.AuditPage(
            [schemas.AuditEntry(e.id, e.kind, e.actor, e.detail, e.created_at) for e in items],
            total,
        )

    # -- API keys
    @post(
        "/{organization_id:uuid}/api-keys",
        status_code=HTTP_201_CREATED,
        summary="Create an org API key (the secret is shown once)",
    )
    async def create_key(
        self,
        organization_id: UUID,
        data: schemas.ApiKeyCreate,
        principal: Principal,
        session: AsyncSession,
        ctx: AppContext,
    ) -> schemas.ApiKeyCreated:
        principal.require("admin", "org")
        org = await OrganizationService(session, ctx).get(principal, organization_id)
        key, secret = await ApiKeyService(session, ctx).create(org, data.name, principal.actor)
        return schemas.ApiKeyCreated(key.id, key.name, key.prefix, key.created_at, secret)

    @get("/{organization_id:uuid}/api-keys", summary="List active API keys (prefix only)")
    async def list_keys(
        self, organization_id: UUID, principal: Principal, session: AsyncSession, ctx: AppContext
    ) -> list[schemas.ApiKey]:
        org = await OrganizationService(session, ctx).get(principal, organization_id)
        keys = await ApiKeyService(session, ctx).list(org)
        return [schemas.ApiKey(k.id, k.name, k.prefix, k.created_at) for k in keys]

    @delete(
        "/{organization_id:uuid}/api-keys/{key_id:uuid}",
        status_code=HTTP_204_NO_CONTENT,
        summary="Revoke an API key",
    )
    async def revoke_key(
        self,
        organization_id: UUID,
        key_id: UUID,
        principal: Principal,
        session: AsyncSession,
        ctx: AppContext,
    ) -> None:
        principal.require("admin", "org")
        org = await OrganizationService(session, ctx).get(principal, organization_id)
        await ApiKeyService(session, ctx).revoke(org, key_id, principal.actor)
