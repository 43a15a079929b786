"""HTTP for outbound notifications: webhook endpoints and their delivery log."""

from __future__ import annotations

from typing import Annotated
from uuid import UUID

from litestar import Controller, delete, get, post
from litestar.params import Parameter
from litestar.status_codes import HTTP_200_OK, HTTP_204_NO_CONTENT
from sqlalchemy.ext.asyncio import AsyncSession

from app.auth.principal import Principal
from app.context import AppContext
from app.notifications import schemas
from app.notifications.services import EndpointService

Limit = Annotated[int, Parameter(ge=1, le=200, description="Page size")]
Offset = Annotated[int, Parameter(ge=0, description="Items to skip")]


class WebhookEndpointController(Controller):
    path = "/v1/webhook-endpoints"
    tags = ["notifications"]

    @post("/", summary="Register an endpoint; the signing secret is returned once")
    async def create(
        self,
        data: schemas.WebhookEndpointCreate,
        principal: Principal,
        session: AsyncSession,
        ctx: AppContext,
    ) -> schemas.WebhookEndpointCreated:
        principal.require("admin", "org")
        return await EndpointService(session, ctx).create(data, principal)

    @get("/", summary="The endpoints this caller may see")
    async def list_endpoints(
        self,
        principal: Principal,
        session: AsyncSession,
        ctx: AppContext,
        limit: Limit = 50,
        offset: Offset = 0,
    ) -> schemas.WebhookEndpointPage:
        principal.require("admin", "org")
        return await EndpointService(session, ctx).page(principal, limit, offset)

    @get("/{endpoint_id:uuid}", summary="One endpoint")
    async def get_endpoint(
        self, endpoint_id: UUID, principal: Principal, session: AsyncSession, ctx: AppContext
    ) -> schemas.WebhookEndpoint:
        principal.require("admin", "org")
        return await EndpointService(session, ctx).get(principal, endpoint_id)

    @post("/{endpoint_id:uuid}/rotate", status_code=HTTP_200_OK, summary="A new signing secret (shown once)")
    async def rotate(
        self, endpoint_id: UUID, principal: Principal, session: AsyncSession, ctx: AppContext
    ) -> schemas.SecretRotated:
        principal.require("admin", "org")
        return await EndpointService(session, ctx).rotate(principal, endpoint_id)

    @post("/{endpoint_id:uuid}/enable", status_code=HTTP_200_OK, summary="Re-enable a disabled endpoint")
    async def enable(
        self, endpoint_id: UUID, principal: Principal, session: AsyncSession, ctx: AppContext
    ) -> schemas.WebhookEndpoint:
        principal.require("admin", "org")
        return await EndpointService(session, ctx).enable(principal, endpoint_id)

    @delete("/{endpoint_id:uuid}", status_code=HTTP_204_NO_CONTENT, summary="Delete an endpoint")
    async def remove(
        self, endpoint_id: UUID, principal: Principal, session: AsyncSession, ctx: AppContext
    ) -> None:
        principal.require("admin", "org")
        await EndpointService(session, ctx).delete(principal, endpoint_id)

    @get("/{endpoint_id:uuid}/deliveries", summary="The endpoint's delivery log, newest first")
    async def deliveries(
        self,
        endpoint_id: UUID,
        principal: Principal,
        session: AsyncSession,
        ctx: AppContext,
        limit: Limit = 50,
        offset: Offset = 0,
    ) -> schemas.DeliveryPage:
        principal.require("admin", "org")
        return await EndpointService(session, ctx).deliveries(principal, endpoint_id, limit, offset)
