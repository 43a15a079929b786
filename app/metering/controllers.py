"""HTTP for ingest services: consume, refund, lease. Callers hold an ``ingest`` or ``admin`` token.

These handlers are the hot path: they read the app context straight from state (no per-request
dependency graph) and make exactly one Redis round trip per request.
"""

from __future__ import annotations

from typing import Any
from uuid import UUID

from litestar import Controller, Request, Response, get, post
from litestar.status_codes import HTTP_200_OK
from sqlalchemy.ext.asyncio import AsyncSession

from app.auth.principal import Principal
from app.context import AppContext
from app.metering import schemas
from app.metering.services import QuotaService
from app.metering.usage import read_usage
from app.orgs.repositories import OrganizationRepository

AnyRequest = Request[Any, Any, Any]


async def _ingest(request: AnyRequest) -> tuple[AppContext, QuotaService]:
    ctx: AppContext = request.app.state.ctx
    principal = await ctx.auth.authenticate(request.headers.get("authorization"))
    principal.require("ingest", "admin")
    return ctx, request.app.state.quotas


class QuotaController(Controller):
    path = "/v1/quotas"
    tags = ["quotas"]

    @post("/consume", status_code=HTTP_200_OK, summary="Check and count items for one org")
    async def consume(
        self,
        request: AnyRequest,
        data: schemas.ConsumeRequest,
    ) -> Response[schemas.ConsumeResponse]:
        _, quotas = await _ingest(request)
        body, headers = await quotas.consume(data)
        return Response(body, headers=headers)

    @post(
        "/consume/batch",
        status_code=HTTP_200_OK,
        summary="Check and count items for many orgs in one round trip",
    )
    async def consume_batch(
        self,
        request: AnyRequest,
        data: schemas.ConsumeBatchRequest,
    ) -> Response[schemas.ConsumeBatchResponse]:
        _, quotas = await _ingest(request)
        body, headers = await quotas.consume_batch(data)
        return Response(body, headers=headers)

    @post("/refund", status_code=HTTP_200_OK, summary="Give back units of events dropped later")
    async def refund(
        self,
        request: AnyRequest,
        data: schemas.RefundRequest,
    ) -> schemas.RefundResponse:
        _, quotas = await _ingest(request)
        return await quotas.refund(data)

    @post("/lease", status_code=HTTP_200_OK, summary="Reserve a block of units to decide on locally")
    async def lease(
        self,
        request: AnyRequest,
        data: schemas.LeaseRequest,
    ) -> Response[schemas.LeaseResponse]:
        _, quotas = await _ingest(request)
        body, headers = await quotas.lease(data)
        return Response(body, headers=headers)

    @post(
        "/lease/{lease_id:str}/return",
        status_code=HTTP_200_OK,
        summary="Return a lease's unused units (idempotent)",
    )
    async def return_lease(
        self,
        request: AnyRequest,
        lease_id: str,
        data: schemas.LeaseReturn,
    ) -> schemas.RefundResponse:
        _, quotas = await _ingest(request)
        return await quotas.return_lease(lease_id[:64], data)


class UsageController(Controller):
    path = "/v1/organizations/{organization_id:uuid}/usage"
    tags = ["quotas"]

    @get("/", summary="Usage of the current period, per category")
    async def usage(
        self, organization_id: UUID, principal: Principal, session: AsyncSession, ctx: AppContext
    ) -> schemas.UsageResponse:
        if principal.scope != "ingest":
            await OrganizationRepository(session=session).get_for(principal, organization_id)
        return await read_usage(ctx.meter, str(organization_id))
