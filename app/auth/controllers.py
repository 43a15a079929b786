"""Service tokens over HTTP (admin only). The CLI does the same through the same service."""

from __future__ import annotations

from uuid import UUID

from litestar import Controller, delete, get, post
from litestar.status_codes import HTTP_201_CREATED, HTTP_204_NO_CONTENT
from sqlalchemy.ext.asyncio import AsyncSession

from app.auth.principal import Principal
from app.auth.services import ServiceTokenService
from app.context import AppContext
from app.orgs import schemas


class ServiceTokenController(Controller):
    path = "/v1/service-tokens"
    tags = ["service tokens"]

    @post("/", status_code=HTTP_201_CREATED, summary="Create a scoped service token")
    async def create(
        self,
        data: schemas.ServiceTokenCreate,
        principal: Principal,
        session: AsyncSession,
        ctx: AppContext,
    ) -> schemas.ServiceTokenCreated:
        principal.require("admin")
        token, secret = await ServiceTokenService(session, ctx.auth).create(data.name, data.scope)
        return schemas.ServiceTokenCreated(
            token.id, token.name, token.scope, token.prefix, token.created_at, secret
        )

    @get("/", summary="List active service tokens")
    async def list_tokens(
        self, principal: Principal, session: AsyncSession, ctx: AppContext
    ) -> list[schemas.ServiceToken]:
        principal.require("admin")
        tokens = await ServiceTokenService(session, ctx.auth).list()
        return [schemas.ServiceToken(t.id, t.name, t.scope, t.prefix, t.created_at) for t in tokens]

    @delete("/{token_id:uuid}", status_code=HTTP_204_NO_CONTENT, summary="Revoke a token")
    async def revoke(
        self, token_id: UUID, principal: Principal, session: AsyncSession, ctx: AppContext
    ) -> None:
        principal.require("admin")
        await ServiceTokenService(session, ctx.auth).revoke(token_id, ctx.clock.now())
